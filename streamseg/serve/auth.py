"""Bearer tokens for the read API: who may read customers' segments.

The API serves every customer's data, so:

* tokens come from the settings (``api.tokens``, a secret: set it through the
  environment, ``STREAMSEG_API__TOKENS``; several tokens, comma-separated, let a new
  one replace an old one without a gap);
* when tokens are configured, every data endpoint needs ``Authorization: Bearer
  <token>``; ``/healthz`` and ``/readyz`` (and the OpenAPI spec and docs, which hold no
  data) stay open;
* an API bound to anything but a loopback address must have tokens: starting it without
  any fails (:func:`check_exposure`), as the Docker image (``0.0.0.0``) would;
* tokens are compared in constant time (digests through :func:`hmac.compare_digest`,
  every configured token every time), and never logged or echoed.

>>> verifier = TokenVerifier(["s3cret-token-for-doctests"])
>>> verifier.accepts("s3cret-token-for-doctests"), verifier.accepts("guess")
(True, False)
>>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
(True, True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable

from pydantic import SecretStr

__all__ = [
    "MIN_TOKEN_LENGTH",
    "TOKENS_ENV",
    "ApiExposedError",
    "TokenVerifier",
    "check_exposure",
    "is_loopback",
    "parse_tokens",
]

#: Where operators put the tokens (the settings field is ``api.tokens``).
TOKENS_ENV = "STREAMSEG_API__TOKENS"
#: Shortest accepted token: long enough that guessing is hopeless (e.g. 32 hex digits
#: from ``openssl rand -hex 16``).
MIN_TOKEN_LENGTH = 16


class ApiExposedError(ValueError):
    """The API would serve customers' data beyond loopback to anyone."""


def parse_tokens(value: SecretStr | None) -> list[str]:
    """The tokens of ``api.tokens``: comma-separated, blanks ignored.

    >>> parse_tokens(SecretStr(" aaaaaaaaaaaaaaaa, ,bbbbbbbbbbbbbbbb "))
    ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']
    >>> parse_tokens(None)
    []
    """
    if value is None:
        return []
    return [token.strip() for token in value.get_secret_value().split(",") if token.strip()]


def is_loopback(host: str) -> bool:
    """True when binding ``host`` serves this machine only.

    ``localhost`` and loopback addresses are; ``0.0.0.0``, ``::``, an empty host (all
    interfaces) and any other name or address are not (a name is not resolved: it could
    resolve to anything).

    >>> [is_loopback(h) for h in ("localhost", "127.0.0.2", "", "::", "example.org")]
    [True, True, False, False, False]
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, protected: bool) -> None:
    """Refuse to serve the API on a non-loopback ``host`` unless ``protected`` (tokens
    are configured).

    >>> check_exposure("127.0.0.1", protected=False)
    >>> try:
    ...     check_exposure("0.0.0.0", protected=False)
    ... except ApiExposedError as error:
    ...     print(str(error)[:61])
    the read API would listen on 0.0.0.0, which is not a loopback
    """
    if protected or is_loopback(host):
        return
    raise ApiExposedError(
        f"the read API would listen on {host or '(all interfaces)'}, which is not a "
        f"loopback address, and no bearer token is configured: set api.tokens "
        f"({TOKENS_ENV}=<token>[,<token>...], each at least {MIN_TOKEN_LENGTH} "
        f"characters), or bind api.host to 127.0.0.1"
    )


class TokenVerifier:
    """Checks a presented token against the configured ones in constant time.

    Only SHA-256 digests are kept, so every comparison is between equal-length values
    (``hmac.compare_digest`` leaks nothing but the length, and that is fixed); every
    configured token is compared every time, so which one matched is not timed either.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [self._digest(token) for token in tokens]

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str) -> bool:
        given = self._digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return matched
