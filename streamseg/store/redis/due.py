"""The due scan: a partition's customers whose ``next_rescore_at`` has come, earliest first.

A partition's due index ``{p}:due:{i}`` holds groups of buckets (:func:`.keys.group_size`
buckets each) where that partition's customers are due, each with a lower bound of their
earliest time. Buckets are shared by every partition (customers are addressed by id), so
the scan reads a group's buckets whole and keeps the customers whose packed state
records this partition (:data:`.scripts.DUE_SCAN`).
"""

from __future__ import annotations

import heapq
from typing import cast

import redis

from streamseg.store.redis.connection import _text
from streamseg.store.redis.keys import BUCKETS_PER_TRIP, Keys, group_buckets, group_size
from streamseg.store.redis.scripts import Script


def due_customers(client: redis.Redis, keys: Keys, scan: Script, buckets: int,
                  partition_id: int, until: float, limit: int) -> list[str]:
    """The ``limit`` customers of the partition due earliest (``next_rescore_at <=
    until``).

    Groups are visited in order of their lower bound, about 128 buckets per call of the
    atomic due-scan script (``scan``), which lists the partition's due customers in them
    and sets the groups' bounds to the exact (whole-second) bound. The scan stops once
    no remaining group can hold a customer due earlier than the ``limit`` found so far.
    Round trips: one, plus one per call. Ties go by id, as in the other stores.
    """
    if limit <= 0:
        return []
    due_key = keys.due(partition_id)
    cutoff = repr(float(until))
    candidates = cast(
        "list[tuple[bytes, float]]",
        client.zrange(due_key, "-inf", cutoff, byscore=True, withscores=True),
    )
    per_call = max(1, BUCKETS_PER_TRIP // group_size(buckets))
    best: list[tuple[float, str]] = []  # the `limit` earliest (time, id) so far, sorted
    for start in range(0, len(candidates), per_call):
        chunk = candidates[start:start + per_call]
        if len(best) >= limit:
            kth = best[-1][0]
            chunk = [(member, bound) for member, bound in chunk if bound <= kth]
            if not chunk:
                break
        bucket_keys: list[str] = []
        args = [cutoff, str(partition_id)]
        for member, _ in chunk:
            members = group_buckets(int(member), buckets)
            bucket_keys += [keys.bucket(bucket) for bucket in members]
            args += [_text(member), str(len(members))]
        reply = scan([due_key, *bucket_keys], args)
        found = [(float(reply[i + 1]), _text(reply[i])) for i in range(0, len(reply), 2)]
        best = heapq.nsmallest(limit, best + found)  # ties: by id, as the other stores
    return [cid for _, cid in best]


#: A due-scan cutoff later than any real time: lists every customer of the groups.
_EVERYONE = "1e308"


def partition_page(client: redis.Redis, keys: Keys, scan: Script, buckets: int,
                   partition_id: int, cursor: str, limit: int) -> tuple[list[str], str]:
    """The partition's customers in the groups of its due index after group ``cursor``
    ('' = from the first), group by group until about ``limit``; and the last group read
    ('' when none is left). Every scored customer is in its partition's index."""
    stored = cast("list[bytes]", client.zrange(keys.due(partition_id), 0, -1))
    members = sorted(int(member) for member in stored)
    after = int(cursor) if cursor else -1
    found: list[str] = []
    last = ""
    for group in (member for member in members if member > after):
        bucket_keys = [keys.bucket(bucket) for bucket in group_buckets(group, buckets)]
        reply = scan([keys.due(partition_id), *bucket_keys],
                     [_EVERYONE, str(partition_id), str(group), str(len(bucket_keys))])
        found += [_text(reply[i]) for i in range(0, len(reply), 2)]
        last = str(group)
        if len(found) >= limit:
            return found, last if group != members[-1] else ""
    return found, ""
