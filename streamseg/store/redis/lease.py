"""The model lease: ``{p}:lease``, a STRING holding the holder's token, with an expiry.

The token is ``<holder>#<random>``: the holder's name (for the error another worker
gets) and a random part that tells two acquisitions by the same holder apart. The expiry
is Redis's own (``PX``), so it needs no clock shared between workers: the lease lapses
on the Redis server's clock unless the holder renews it. Every operation is atomic on
the server (Lua, :mod:`.scripts`): acquiring is ``SET NX PX`` (and, if that fails, the
holder and its time left, read in the same call); renewing and releasing act only if the
stored token is still the caller's, so a worker whose lease lapsed and was taken cannot
extend or delete the new holder's. A batch write that carries a token is refused unless
the token is still the lease's (:data:`.scripts.FENCED_EXEC`).
"""

from __future__ import annotations

import math
import uuid

import redis

from streamseg.store.base import LeaseHeld
from streamseg.store.redis.connection import _text
from streamseg.store.redis.scripts import LEASE_ACQUIRE, LEASE_RELEASE, LEASE_RENEW, Script


def _milliseconds(ttl_s: float) -> str:
    """A time to live in whole milliseconds, rounded up (a lease of 0.0001 s lives)."""
    return str(max(0, math.ceil(ttl_s * 1000)))


class Lease:
    """The lease of one prefix."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._key = key
        self._acquire = Script(client, LEASE_ACQUIRE)
        self._renew = Script(client, LEASE_RENEW)
        self._release = Script(client, LEASE_RELEASE)

    def acquire(self, holder: str, ttl_s: float, replace_own: bool = False) -> str:
        """Take the lease for ``ttl_s`` seconds and return its token; raise
        :class:`LeaseHeld` (naming the holder) while another token holds it (with
        ``replace_own``, a token of the same ``holder`` is replaced). A lease of no time
        (``ttl_s <= 0``) has lapsed as soon as it is taken: it holds nothing."""
        token = f"{holder}#{uuid.uuid4().hex[:12]}"
        reply = self._acquire([self._key], [token, _milliseconds(ttl_s),
                                            holder if replace_own else ""])
        if int(reply[0]) == 1:
            return token
        pttl_ms = int(reply[2])  # -1: a key without expiry (not set by this code)
        raise LeaseHeld(_text(reply[1]).rpartition("#")[0],
                        math.inf if pttl_ms < 0 else pttl_ms / 1000)

    def renew(self, token: str, ttl_s: float) -> bool:
        """Extend the lease by ``ttl_s`` from now if ``token`` still holds it."""
        return bool(self._renew([self._key], [token, _milliseconds(ttl_s)]))

    def release(self, token: str) -> None:
        """Give the lease up if ``token`` holds it."""
        self._release([self._key], [token, "0"])
