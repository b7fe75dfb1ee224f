"""The customer part of a batch write: every value encoded before the transaction.

Encoding first means an encoding error writes nothing; :meth:`EncodedCustomers.queue`
then adds the commands to the store's ``MULTI``/``EXEC`` pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.client import Pipeline

from streamseg.store.base import CustomerState
from streamseg.store.redis.codec import _pack_public, _pack_state
from streamseg.store.redis.keys import Keys, _chunk_field, _chunks, _public_field, bucket_of
from streamseg.store.redis.memo import MISSING


@dataclass
class EncodedCustomers:
    """The commands a batch's customers need, as values."""

    records: dict[int, dict[bytes, bytes]] = field(default_factory=dict)  # bucket -> fields
    stale: dict[int, list[bytes]] = field(default_factory=dict)  # chunks of a longer state
    due: dict[str, float] = field(default_factory=dict)  # bucket -> lowest next_rescore_at
    size_delta: dict[int, int] = field(default_factory=dict)  # segment -> customers
    new_customers: int = 0
    written_chunks: dict[str, int] = field(default_factory=dict)  # customer -> chunks

    def queue(self, pipe: Pipeline, keys: Keys) -> None:
        """Add the writes to ``pipe``: records, stale chunks, due index, counters."""
        for bucket, fields in self.records.items():
            pipe.hset(keys.bucket(bucket), mapping=fields)  # type: ignore[arg-type]
        for bucket, names in self.stale.items():
            pipe.hdel(keys.bucket(bucket), *names)
        if self.due:
            pipe.zadd(keys.due, self.due, lt=True)
        for segment, delta in self.size_delta.items():
            if delta:
                pipe.hincrby(keys.sizes, str(segment), delta)
        if self.new_customers:
            pipe.incrby(keys.count, self.new_customers)


def encode_customers(
    latest: dict[str, CustomerState],
    buckets: int,
    stream_ids: dict[str, int],
    previous: dict[str, Any],
    chunks_before: Callable[[str], int],
) -> EncodedCustomers:
    """Encode the customers of a batch (id -> its last state in the batch).

    ``previous`` is the segment each customer has in Redis (or :data:`.memo.MISSING`),
    ``chunks_before`` the chunk fields it has there: chunks beyond the new state's are
    deleted, segment sizes and the customer count adjusted.
    """
    out = EncodedCustomers()
    for cid, state in latest.items():
        bucket = bucket_of(cid, buckets)
        fields = out.records.setdefault(bucket, {})
        raw = cid.encode("utf-8")
        fields[_public_field(raw)] = _pack_public(state)
        chunks = _chunks(_pack_state(state, stream_ids))
        for index, chunk in enumerate(chunks):
            fields[_chunk_field(raw, index)] = chunk
        out.written_chunks[cid] = len(chunks)
        for index in range(len(chunks), chunks_before(cid)):
            out.stale.setdefault(bucket, []).append(_chunk_field(raw, index))
        if state.next_rescore_at is not None:
            member = str(bucket)
            out.due[member] = min(out.due.get(member, math.inf), float(state.next_rescore_at))
        before = previous[cid]
        if before is MISSING:
            out.new_customers += 1
            before = None
        if before != state.segment:
            if before is not None:
                out.size_delta[before] = out.size_delta.get(before, 0) - 1
            if state.segment is not None:
                out.size_delta[state.segment] = out.size_delta.get(state.segment, 0) + 1
    return out
