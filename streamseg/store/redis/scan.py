"""Whole-store reads and deletes: every bucket of a prefix, found by ``SCAN``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from streamseg.store.redis.codec import _state_length
from streamseg.store.redis.connection import _text
from streamseg.store.redis.keys import (
    _MAX_CHUNKS,
    BUCKETS_PER_TRIP,
    Keys,
    _leading,
    _split_field,
)


def scan_buckets(client: redis.Redis, keys: Keys) -> list[int]:
    """The buckets that hold a hash, in order."""
    head = len(keys.prefix) + 3
    found: set[int] = set()
    for key in client.scan_iter(match=keys.buckets_pattern, count=1000):
        suffix = _text(key)[head:]
        if suffix.isdigit():
            found.add(int(suffix))
    return sorted(found)


def customers_in(table: dict[bytes, bytes]) -> Iterator[tuple[str, bytes, bytes]]:
    """(id, readable record, packed state) of every customer of a bucket hash.

    A chunk left over from a longer earlier state is cut off by the state's length:

    >>> table = {b"b": b"|1|0", b"a": b"1||2", b"\\x01a": b"\\x40\\x00left over"}
    >>> list(customers_in(table))
    [('b', b'|1|0', b''), ('a', b'1||2', b'@\\x00')]
    """
    publics: dict[bytes, bytes] = {}
    chunks: dict[bytes, dict[int, bytes]] = {}
    for field, value in table.items():
        index, raw = _split_field(field)
        if index < 0:
            publics[raw] = value
        else:
            chunks.setdefault(raw, {})[index] = value
    for raw, public in publics.items():
        parts = chunks.get(raw, {})
        data = b"".join(_leading([parts.get(i) for i in range(_MAX_CHUNKS)]))
        length = _state_length(data) if data else None
        yield raw.decode("utf-8"), public, data[:length] if length else data


def iter_records(client: redis.Redis, keys: Keys) -> Iterator[tuple[str, bytes, bytes]]:
    """(id, readable record, packed state) of every customer, bucket by bucket (SCAN over
    ``{p}:c:*``, then ``HGETALL`` of 128 buckets per round trip; not in id order)."""
    buckets = scan_buckets(client, keys)
    for start in range(0, len(buckets), BUCKETS_PER_TRIP):
        pipe = client.pipeline(transaction=False)
        for bucket in buckets[start:start + BUCKETS_PER_TRIP]:
            pipe.hgetall(keys.bucket(bucket))
        for table in pipe.execute():
            yield from customers_in(table)


def _delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key of ``prefix`` (tests, benchmarks); returns how many."""
    deleted = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=Keys(prefix).all_pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted
