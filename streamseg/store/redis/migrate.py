"""Migrating a prefix of layout v1 to v2, in place, when a ``RedisStore`` opens it.

Layout v1 (the previous version, see :mod:`.keys`) kept one set of counters, positions,
outbox and due index for the whole prefix, and packed states without a partition. The
migration is one scan of every bucket:

* each customer's partition is read from the streams of its ``applied`` offsets: the
  stream key ``kafka:<topic>:<n>`` *is* the partition's name (of several, the first in
  name order); a customer with only file (or no) streams goes to ``local``. Its packed
  state is rewritten in codec version 2 with that partition (:func:`.codec.
  _upgrade_state`: the same bytes and a varint more);
* each partition's customer count, segment sizes and due index are counted from its
  customers;
* a position ``kafka:...`` is its own partition's, any other (``file:...``) ``local``'s;
* the outbox goes to the partition of the customer of its first change (its CloudEvents
  ``subject``), or to ``local``.

Then, in one ``MULTI``: the partition keys are written (epoch 0), the v1 keys deleted and
``{p}:layout`` set to ``v2``. The readable records, the model and the metadata do not
change.

Safety: every group of buckets is rewritten in a ``MULTI`` under ``WATCH`` of its
buckets and the layout, and the final step under ``WATCH`` of the layout and the v1
keys, so two stores migrating at once do not undo each other, nor a store of this
version that writes once the other finished, and a crash leaves a v1 prefix (partly
rewritten to codec 2, which the next migration takes as it is). Workers of the previous
version must be stopped first: one still writing makes the v1 counters change during the
scan, which the final step detects (it compares them with their state at the start) and
answers by starting again, up to a few times, then with an error. A v1 worker that reads
a rewritten state stops with "unknown state codec version 2" rather than writing.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from streamseg.store.base import LOCAL_PARTITION
from streamseg.store.redis.codec import (
    _state_partition,
    _unpack_public,
    _unpack_state,
    _upgrade_state,
)
from streamseg.store.redis.connection import _raw, _text
from streamseg.store.redis.keys import (
    BUCKETS_PER_TRIP,
    F_COUNT,
    F_EPOCH,
    F_NAME,
    LAYOUT_V1,
    POSITION_FIELD,
    SIZE_FIELD,
    Keys,
    _chunk_field,
    _chunks,
    _parse_layout,
    _split_field,
    group_size,
    layout_value,
)
from streamseg.store.redis.scan import customers_in, scan_buckets
from streamseg.store.redis.streams import StreamIds

log = logging.getLogger(__name__)

_ATTEMPTS = 5


class _Restart(Exception):
    """The v1 keys changed during the migration: a worker of the previous version wrote."""


@dataclass
class _Tally:
    """What the scan counts per partition."""

    customers: Counter[str] = field(default_factory=Counter)
    sizes: dict[str, Counter[int]] = field(default_factory=dict)
    due: dict[str, dict[int, float]] = field(default_factory=dict)  # group -> earliest
    partition_of: dict[str, str] = field(default_factory=dict)  # only the outbox's customer

    def add(self, other: _Tally) -> None:
        self.customers.update(other.customers)
        for name, sizes in other.sizes.items():
            self.sizes.setdefault(name, Counter()).update(sizes)
        for name, groups in other.due.items():
            mine = self.due.setdefault(name, {})
            for group, at in groups.items():
                mine[group] = min(mine.get(group, math.inf), at)
        self.partition_of.update(other.partition_of)


def _partition_of_streams(streams: list[str]) -> str:
    """A v1 customer's partition, from the streams it applied offsets of.

    >>> _partition_of_streams(["file:a.jsonl", "kafka:t:3", "kafka:t:1"])
    'kafka:t:1'
    >>> _partition_of_streams(["file:a.jsonl"]), _partition_of_streams([])
    ('local', 'local')
    """
    kafka = sorted(name for name in streams if name.startswith("kafka:"))
    return kafka[0] if kafka else LOCAL_PARTITION


def _subject(change: bytes | str) -> str | None:
    """The customer id of a change event (CloudEvents JSON), None if unreadable."""
    try:
        event = json.loads(change)
        subject = event.get("subject") or event.get("data", {}).get("customer_id")
    except (ValueError, AttributeError):
        return None
    return subject if isinstance(subject, str) else None


class Migration:
    """The migration of one v1 prefix (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys, buckets: int,
                 streams: StreamIds) -> None:
        self._redis = client
        self._keys = keys
        self._buckets = buckets
        self._streams = streams

    def run(self) -> bool:
        """Migrate; False if the prefix was no longer v1 (another store migrated it)."""
        for _ in range(_ATTEMPTS):
            try:
                return self._once()
            except _Restart:
                log.warning("Redis prefix %r: the layout v1 counters changed during the "
                            "migration (a worker of the previous version is writing?); "
                            "starting again", self._keys.prefix)
        raise RuntimeError(
            f"Redis prefix {self._keys.prefix!r} kept changing while it was migrated from "
            "layout v1: stop every worker of the previous streamseg version, then start again")

    def _v1_state(self) -> list[Any]:
        keys = self._keys
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(keys.v1_count)
        pipe.hgetall(keys.v1_sizes)
        pipe.hgetall(keys.v1_positions)
        pipe.lrange(keys.v1_outbox, 0, -1)
        return list(pipe.execute())

    def _is_v1(self, layout: bytes | str | None) -> bool:
        return _parse_layout(_raw(layout), self._keys.layout)[0] == LAYOUT_V1

    def _once(self) -> bool:
        start = self._v1_state()
        outbox_customer = _subject(start[3][0]) if start[3] else None
        tally = _Tally()
        buckets = scan_buckets(self._redis, self._keys)
        for first in range(0, len(buckets), BUCKETS_PER_TRIP):
            done = self._rewrite(buckets[first:first + BUCKETS_PER_TRIP], outbox_customer)
            if done is None:
                return False
            tally.add(done)
        return self._finish(start, tally, outbox_customer)

    def _rewrite(self, buckets: list[int], outbox_customer: str | None) -> _Tally | None:
        """Rewrite a group of buckets in codec 2 and count them (None: not v1 any more)."""
        keys = self._keys
        names = [keys.bucket(bucket) for bucket in buckets]
        for _ in range(_ATTEMPTS * 4):
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.watch(keys.layout, *names)
                reads = self._redis.pipeline(transaction=False)  # after WATCH: guarded
                reads.get(keys.layout)
                for name in names:
                    reads.hgetall(name)
                layout, *tables = reads.execute()
                if not self._is_v1(layout):
                    return None
                tally = _Tally()
                pipe.multi()
                for bucket, name, table in zip(buckets, names, tables, strict=True):
                    self._bucket(pipe, bucket, name, table, tally, outbox_customer)
                try:
                    pipe.execute()
                except redis.WatchError:
                    continue  # a bucket changed while it was read: read it again
                return tally
        raise _Restart  # buckets that keep changing: a worker of the previous version

    def _bucket(self, pipe: Any, bucket: int, name: str, table: dict[bytes, bytes],
                tally: _Tally, outbox_customer: str | None) -> None:
        chunk_counts: Counter[bytes] = Counter(
            raw for index, raw in map(_split_field, table) if index >= 0)
        for cid, public, packed in customers_in(table):
            segment, updated_at = _unpack_public(public)[:2]
            due_at: float | None = None
            partition = LOCAL_PARTITION
            if packed:
                due_at, _, _, applied, _ = _unpack_state(cid, packed, self._streams.name,
                                                         updated_at)
                known = _state_partition(packed)
                partition = (self._streams.name(known) if known
                             else _partition_of_streams(list(applied)))
                new = _upgrade_state(packed, self._streams.ids_for([partition])[partition])
                if new != packed:
                    raw = cid.encode("utf-8")
                    chunks = _chunks(new)
                    pipe.hset(name, mapping={_chunk_field(raw, index): chunk
                                             for index, chunk in enumerate(chunks)})
                    extra = [_chunk_field(raw, index)
                             for index in range(len(chunks), chunk_counts[raw])]
                    if extra:
                        pipe.hdel(name, *extra)
            tally.customers[partition] += 1
            if segment is not None:
                tally.sizes.setdefault(partition, Counter())[segment] += 1
            if due_at is not None and not math.isnan(due_at):
                group = bucket // group_size(self._buckets)
                groups = tally.due.setdefault(partition, {})
                groups[group] = min(groups.get(group, math.inf), due_at)
            if cid == outbox_customer:
                tally.partition_of[cid] = partition

    def _finish(self, start: list[Any], tally: _Tally, outbox_customer: str | None) -> bool:
        keys = self._keys
        v1 = [keys.v1_count, keys.v1_sizes, keys.v1_positions, keys.v1_outbox, keys.v1_due]
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.watch(keys.layout, *v1)
            if not self._is_v1(self._redis.get(keys.layout)):
                return False
            if self._v1_state() != start:
                raise _Restart
            positions: dict[str, dict[str, int]] = {}
            for raw, value in start[2].items():
                stream = _text(raw)
                owner = stream if stream.startswith("kafka:") else LOCAL_PARTITION
                positions.setdefault(owner, {})[stream] = int(value)
            outbox = [_text(item) for item in start[3]]
            outbox_owner = tally.partition_of.get(outbox_customer or "", LOCAL_PARTITION)
            names = sorted(set(tally.customers) | set(positions)
                           | ({outbox_owner} if outbox else set()))
            ids = self._streams.ids_for(names)
            pipe.multi()
            for name in names:
                self._partition(pipe, name, ids[name], tally, positions.get(name, {}),
                                outbox if name == outbox_owner else [])
            pipe.delete(*v1)
            pipe.set(keys.layout, layout_value(self._buckets))
            try:
                pipe.execute()
            except redis.WatchError:
                if not self._is_v1(self._redis.get(keys.layout)):
                    return False
                raise _Restart from None
        log.info("Redis prefix %r migrated from layout v1 to v2: %d customers in %d "
                 "partition(s)", keys.prefix, sum(tally.customers.values()), len(names))
        return True

    def _partition(self, pipe: Any, name: str, partition_id: int, tally: _Tally,
                   positions: dict[str, int], outbox: list[str]) -> None:
        keys = self._keys
        fields: dict[str, Any] = {F_NAME: name, F_EPOCH: 0,
                                  F_COUNT: tally.customers.get(name, 0)}
        for segment, count in sorted(tally.sizes.get(name, Counter()).items()):
            fields[f"{SIZE_FIELD}{segment}"] = count
        for stream, position in positions.items():
            fields[f"{POSITION_FIELD}{stream}"] = position
        pipe.hset(keys.parts, name, partition_id)
        pipe.delete(keys.part(partition_id), keys.due(partition_id),
                    keys.outbox(partition_id))
        pipe.hset(keys.part(partition_id), mapping=fields)
        due = tally.due.get(name)
        if due:
            pipe.zadd(keys.due(partition_id),
                      {str(group): math.floor(at) if math.isfinite(at) else at
                       for group, at in due.items()})
        if outbox:
            pipe.rpush(keys.outbox(partition_id), *outbox)
