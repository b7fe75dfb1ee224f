"""The due scan: the customers whose ``next_rescore_at`` has come, earliest first."""

from __future__ import annotations

import heapq
from typing import cast

import redis

from streamseg.store.redis.connection import _text
from streamseg.store.redis.keys import BUCKETS_PER_TRIP, Keys
from streamseg.store.redis.scripts import Script


def due_customers(client: redis.Redis, keys: Keys, scan: Script, until: float,
                  limit: int) -> list[str]:
    """The ``limit`` customers due earliest (``next_rescore_at <= until``).

    Buckets are visited in order of their lower bound in ``{p}:due``, 128 per call of
    the atomic due-scan script (``scan``, :data:`.scripts.DUE_SCAN`), which lists their
    due customers and sets their bounds to the exact minimum. The scan stops once no
    remaining bucket can hold a customer due earlier than the ``limit`` found so far.
    Round trips: one, plus one per 128 buckets visited. Ties go by id, as in the other
    stores.
    """
    if limit <= 0:
        return []
    cutoff = repr(float(until))
    candidates = cast(
        "list[tuple[bytes, float]]",
        client.zrange(keys.due, "-inf", cutoff, byscore=True, withscores=True),
    )
    best: list[tuple[float, str]] = []  # the `limit` earliest (time, id) so far, sorted
    for start in range(0, len(candidates), BUCKETS_PER_TRIP):
        chunk = candidates[start:start + BUCKETS_PER_TRIP]
        if len(best) >= limit:
            kth = best[-1][0]
            chunk = [(member, bound) for member, bound in chunk if bound <= kth]
            if not chunk:
                break
        buckets = [int(member) for member, _ in chunk]
        reply = scan([keys.due, *(keys.bucket(bucket) for bucket in buckets)],
                     [cutoff, *(str(bucket) for bucket in buckets)])
        found = [(float(reply[i + 1]), _text(reply[i])) for i in range(0, len(reply), 2)]
        best = heapq.nsmallest(limit, best + found)  # ties: by id, as the other stores
    return [cid for _, cid in best]
