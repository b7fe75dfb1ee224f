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


def scrub_payload(payload: str, key: bytes) -> str:
    """A rejected payload with its customer id hashed, when it has a readable one.

    Dead letters keep the payload so that it can be repaired and replayed; the id in it
    is hashed like everywhere else. A payload that is not a JSON object cannot be
    searched for an id and is kept as it is.
    """
    try:
        document: Any = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(document, dict) and isinstance(document.get("customer_id"), str):
        document["customer_id"] = pseudonymise(document["customer_id"], key)
        return json.dumps(document, ensure_ascii=False)
    return payload
