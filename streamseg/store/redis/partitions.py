"""Partitions in Redis: their ids, taking one, reading their state.

A partition's keys are named by its small id (``{p}:part:{i}``, ``{p}:outbox:{i}``,
``{p}:due:{i}``, see :mod:`.keys`), the id the name registry ``{p}:streams`` gives its
name (:mod:`.streams`): a Kafka partition and the source stream it is read from have one
name, ``kafka:<topic>:<n>``, and so one id. ``{p}:parts`` lists the partitions taken so
far (name -> id). Ids are never reused, so this store keeps what it has read of them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from streamseg.store.base import Partition, SampleRow
from streamseg.store.redis.connection import _text
from streamseg.store.redis.keys import (
    F_COUNT,
    F_EPOCH,
    F_MODEL,
    POSITION_FIELD,
    SIZE_FIELD,
    Keys,
)
from streamseg.store.redis.scripts import TAKE_PARTITION, Script
from streamseg.store.redis.streams import StreamIds


def decode_partition(name: str, table: dict[Any, Any], outbox: Sequence[Any] = ()
                     ) -> Partition:
    """A partition from its hash (``HGETALL``) and its outbox (``LRANGE``).

    >>> decode_partition("kafka:t:0", {b"name": b"kafka:t:0", b"epoch": b"3", b"n": b"5",
    ...                                b"s:4": b"3", b"s:0": b"2",
    ...                                b"pos:kafka:t:0": b"41"}, [b"change"])
    Partition(name='kafka:t:0', epoch=3, positions={'kafka:t:0': 41}, sizes={0: 2, 4: 3}, \
customers=5, outbox=['change'], model=None)
    """
    partition = Partition(name, outbox=[_text(item) for item in outbox])
    for raw, value in table.items():
        field = _text(raw)
        if field == F_EPOCH:
            partition.epoch = int(value)
        elif field == F_COUNT:
            partition.customers = int(value)
        elif field == F_MODEL:
            partition.model = json.loads(value)
        elif field.startswith(SIZE_FIELD):
            partition.sizes[int(field.removeprefix(SIZE_FIELD))] = int(value)
        elif field.startswith(POSITION_FIELD):
            partition.positions[field.removeprefix(POSITION_FIELD)] = int(value)
    partition.sizes = dict(sorted(partition.sizes.items()))
    return partition


#: First byte of a packed sample row (a row of the text format starts with its segment:
#: a digit or "-").
_PACKED_ROW = b"\x01"
_SEGMENT = struct.Struct("<h")


def encode_sample_row(row: SampleRow) -> bytes:
    """A sample row as stored: a tag byte, the segment (int16) and the vector's float64s,
    little-endian: exact, and in Redis about half the size of the text format
    ``segment|x1,x2,...`` (a six-feature row is 51 bytes against about 120, which also
    keeps it in the 64 bytes of a listpack value). Both formats read.

    >>> row = (2, [0.1, -1.25])
    >>> encode_sample_row(row).hex()
    '0102009a9999999999b93f000000000000f4bf'
    >>> decode_sample_row(encode_sample_row(row)) == row
    True
    >>> decode_sample_row(b"2|0.1,-1.25") == row   # the text format of earlier releases
    True
    """
    vector = [float(v) for v in row[1]]
    return (_PACKED_ROW + _SEGMENT.pack(int(row[0]))
            + struct.pack(f"<{len(vector)}d", *vector))


def decode_sample_row(value: bytes | str) -> SampleRow:
    if isinstance(value, bytes) and value[:1] == _PACKED_ROW:
        (segment,) = _SEGMENT.unpack_from(value, 1)
        count = (len(value) - 3) // 8
        return int(segment), list(struct.unpack_from(f"<{count}d", value, 3))
    segment, _, vector = _text(value).partition("|")
    return int(segment), [float(v) for v in vector.split(",")] if vector else []


class Partitions:
    """The partitions of one prefix: ids, take, read."""

    def __init__(self, client: redis.Redis, keys: Keys, streams: StreamIds) -> None:
        self._redis = client
        self._keys = keys
        self._streams = streams
        self._ids: dict[str, int] = {}
        self._take = Script(client, TAKE_PARTITION)

    def id_of(self, name: str) -> int | None:
        """The id of a partition taken so far (None: never taken)."""
        if name not in self._ids:
            value = self._redis.hget(self._keys.parts, name)
            if value is None:
                return None
            self._ids[name] = int(value)
        return self._ids[name]

    def ids(self) -> dict[str, int]:
        """Every partition taken so far: name -> id."""
        for name, value in self._redis.hgetall(self._keys.parts).items():
            self._ids[_text(name)] = int(value)
        return dict(self._ids)

    def take(self, name: str) -> Partition:
        """Register the partition, bump its epoch and read it, atomically (Lua)."""
        partition_id = self._streams.ids_for([name])[name]
        keys = self._keys
        table, outbox = self._take([keys.parts, keys.part(partition_id),
                                    keys.outbox(partition_id)], [name, str(partition_id)])
        self._ids[name] = partition_id
        return decode_partition(name, dict(zip(table[::2], table[1::2], strict=True)), outbox)

    def read(self, name: str) -> Partition:
        """The partition's stored state, its hash and outbox read in one ``MULTI``."""
        partition_id = self.id_of(name)
        if partition_id is None:
            return Partition(name)
        return self.read_all({name: partition_id})[0]

    def snapshot(self, names: Iterable[str]) -> tuple[dict[str, Partition],
                                                      dict[str, dict[str, SampleRow]]]:
        """The partitions ``names`` and their sample rows, read in one ``MULTI``."""
        ids = {name: pid for name in names if (pid := self.id_of(name)) is not None}
        order = sorted(ids)
        pipe = self._redis.pipeline(transaction=True)
        for name in order:
            pipe.hgetall(self._keys.part(ids[name]))
            pipe.hgetall(self._keys.sample(ids[name]))
        replies = pipe.execute() if order else []
        partitions = {name: Partition(name) for name in names}
        samples: dict[str, dict[str, SampleRow]] = {name: {} for name in names}
        for index, name in enumerate(order):
            partitions[name] = decode_partition(name, replies[2 * index])
            samples[name] = {_text(cid): decode_sample_row(value)
                             for cid, value in replies[2 * index + 1].items()}
        return partitions, samples

    def read_all(self, ids: dict[str, int] | None = None, outboxes: bool = True
                 ) -> list[Partition]:
        """The given partitions (default: all), in name order, read in one ``MULTI``:
        totals over them are consistent with each other."""
        ids = self.ids() if ids is None else ids
        names = sorted(ids)
        if not names:
            return []
        pipe = self._redis.pipeline(transaction=True)
        for name in names:
            pipe.hgetall(self._keys.part(ids[name]))
            if outboxes:
                pipe.lrange(self._keys.outbox(ids[name]), 0, -1)
        replies = pipe.execute()
        step = 2 if outboxes else 1
        return [decode_partition(name, replies[index * step],
                                 replies[index * step + 1] if outboxes else ())
                for index, name in enumerate(names)]
