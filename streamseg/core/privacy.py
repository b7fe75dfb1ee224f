"""Optional pseudonymisation of customer ids (``privacy.pseudonymise_key``).

With a key set, every customer id is replaced by ``HMAC-SHA256(key, id)`` (hex) as soon
as an event is parsed, so the clear id is never stored, published or logged; the read
API and ``streamseg get`` hash the id they are asked for the same way. Without the key
the hash cannot be reversed or recomputed, so keep the key secret and stable (changing
it starts every customer afresh).

>>> pseudonymise("customer-42", b"secret")[:16]
'1e22f3f25e29689b'
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


def pseudonymise(customer_id: str, key: bytes) -> str:
    """The keyed hash that stands for ``customer_id``."""
    return hmac.new(key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()


def scrub_payload(payload: str, key: bytes) -> str | None:
    """A rejected payload with its customer id hashed, or None when it must be withheld.

    Dead letters keep the payload so that it can be repaired and replayed, with the id
    hashed like everywhere else. Only a complete JSON object can be searched: its
    ``customer_id`` (whatever its type) is replaced by its keyed hash, and so is every
    occurrence of that id inside its other strings (event ids often embed it). Anything
    else -- malformed or cut-off JSON, a payload over 64 KiB, a CSV row, a JSON value
    that is not an object, an object without a customer id -- may hold a clear id where
    nothing can find it: it is withheld (None), and the dead letter keeps only a keyed
    digest and the length (:func:`payload_digest`).

    >>> scrubbed = scrub_payload('{"customer_id": "bob", "event_id": "bob-1"}', b"k")
    >>> "bob" in scrubbed, pseudonymise("bob", b"k") + "-1" in scrubbed
    (False, True)
    >>> scrub_payload('{"customer_id": "bob", "event_id": "bo', b"k") is None
    True
    """
    try:
        document: Any = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(document, dict) or "customer_id" not in document:
        return None
    value = document["customer_id"]
    clear = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    hashed = pseudonymise(clear, key)
    document = _replace_text(document, clear, hashed) if clear else document
    document["customer_id"] = hashed
    return json.dumps(document, ensure_ascii=False)


def payload_digest(payload: bytes, key: bytes) -> str:
    """A keyed digest of a withheld payload: whoever holds the key and the payload can
    match them; nobody else learns anything from it."""
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _replace_text(value: Any, clear: str, hashed: str) -> Any:
    """``value`` with ``clear`` replaced by ``hashed`` in every string, keys included."""
    if isinstance(value, str):
        return value.replace(clear, hashed)
    if isinstance(value, list):
        return [_replace_text(item, clear, hashed) for item in value]
    if isinstance(value, dict):
        return {_replace_text(k, clear, hashed): _replace_text(v, clear, hashed)
                for k, v in value.items()}
    return value
