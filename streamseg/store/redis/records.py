"""Reading customers' fields from their bucket hashes, one ``HMGET`` per bucket.

Each ``HMGET`` reads every field asked of a customer atomically, so a reader never sees
half of a write.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from streamseg.store.redis.codec import _state_length
from streamseg.store.redis.keys import (
    _CHUNK_BYTES,
    _CHUNKS_READ,
    Keys,
    _chunk_field,
    _leading,
    _public_field,
    by_bucket,
)


@dataclass
class Record:
    """What Redis holds of one customer: its readable record and its packed state."""

    public: bytes
    packed: bytes  # trimmed to the state's length; empty if there is none
    chunks: int  # chunk fields found (those a shorter next state must delete)


def _read(client: redis.Redis, keys: Keys, groups: dict[int, list[str]], first_chunk: int,
          chunks: int) -> list[list[bytes | None]]:
    """Per bucket, per customer: [readable record (first_chunk == 0 only), chunks...]."""
    width = chunks + (first_chunk == 0)
    pipe = client.pipeline(transaction=False)
    for bucket, cids in groups.items():
        fields: list[bytes] = []
        for cid in cids:
            raw = cid.encode("utf-8")
            if first_chunk == 0:
                fields.append(_public_field(raw))
            fields += [_chunk_field(raw, first_chunk + i) for i in range(chunks)]
        pipe.hmget(keys.bucket(bucket), fields)
    rows: list[list[bytes | None]] = []
    for values in pipe.execute():
        rows += [values[i:i + width] for i in range(0, len(values), width)]
    return rows


def read_records(client: redis.Redis, keys: Keys, buckets: int,
                 groups: dict[int, list[str]]) -> dict[str, Record]:
    """The records of the customers of ``groups`` (bucket -> ids) that exist.

    One round trip reads the readable record and the first three chunks; a customer
    whose packed state is longer needs a second one for the rest. ``buckets`` is the
    layout's bucket count.
    """
    ordered = [cid for cids in groups.values() for cid in cids]
    rows = _read(client, keys, groups, 0, _CHUNKS_READ)
    found: dict[str, Record] = {}
    longer: dict[str, int] = {}  # customer -> chunks still to read
    for cid, row in zip(ordered, rows, strict=True):
        public = row[0]
        if public is None:
            continue
        present = list(_leading(row[1:]))
        data = b"".join(present)
        length = _state_length(data) if data else None
        if length is not None and length > len(data):
            longer[cid] = -(-length // _CHUNK_BYTES) - _CHUNKS_READ
        found[cid] = Record(public, data[:length] if length is not None else data,
                            len(present))
    if longer:
        groups = by_bucket(longer, buckets)
        extra = _read(client, keys, groups, _CHUNKS_READ, max(longer.values()))
        for cid, row in zip([c for cs in groups.values() for c in cs], extra, strict=True):
            present = list(_leading(row))
            record = found[cid]
            record.chunks += len(present)
            data = record.packed + b"".join(present)
            record.packed = data[:_state_length(data) or len(data)]
    return found

