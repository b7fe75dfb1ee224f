"""A batch write as the commands of one fenced script call, every value encoded first.

Encoding first means an encoding error writes nothing. :func:`encode_batch` turns a
:class:`~streamseg.store.base.BatchWrite` into :class:`Commands`: the keys and the flat
argument list that :data:`.scripts.FENCED_EXEC` takes, which checks the lease and the
epochs, then runs every command, in one atomic call.

What a batch writes, per partition ``i`` of it: its customers' fields in their bucket
hashes (and the deletion of chunks a longer earlier state left), ``ZADD LT`` of the due
groups of its customers to ``{p}:due:{i}``, its hash ``{p}:part:{i}`` (customer count,
sizes replaced: ``s:`` fields of segments it no longer has are deleted; positions
merged; its share of the model, when given), its outbox replaced, its changed sample
rows in ``{p}:sample:{i}``; and for the whole batch the changed model parts and the
metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from streamseg.store.base import BatchWrite, Partition, SampleRow
from streamseg.store.redis.codec import _pack_public, _pack_state
from streamseg.store.redis.keys import (
    F_COUNT,
    F_MODEL,
    POSITION_FIELD,
    SIZE_FIELD,
    Keys,
    _chunk_field,
    _chunks,
    _public_field,
    bucket_of,
    group_size,
)
from streamseg.store.redis.partitions import encode_sample_row

# Arguments per command at most: Lua's unpack() takes a few thousand values.
_MAX_ARGS = 1000


@dataclass
class Commands:
    """Commands for :data:`.scripts.FENCED_EXEC`: ``keys`` (the lease and the fenced
    partitions' hashes first), ``epochs`` (of those partitions) and a flat ``args``."""

    keys: list[str]
    epochs: list[str]
    args: list[str | bytes] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {key: index for index, key in enumerate(self.keys, 1)}

    def key(self, name: str) -> int:
        """The 1-based index of a key in ``keys``, added if new."""
        if name not in self._index:
            self.keys.append(name)
            self._index[name] = len(self.keys)
        return self._index[name]

    def add(self, command: str, key: str, items: Sequence[str | bytes] = (),
            head: Sequence[str] = (), step: int = 1) -> None:
        """``command key *head *items``, as several commands if ``items`` is long (cut
        between groups of ``step`` items: field-value pairs, score-member pairs)."""
        index = str(self.key(key))
        per = max(step, _MAX_ARGS // step * step)
        for start in range(0, max(1, len(items)), per):
            piece = items[start:start + per]
            self.args += [command, index, str(len(head) + len(piece)), *head, *piece]

    def script_args(self, lease: str | None) -> list[str | bytes]:
        """ARGV of the script call."""
        return [lease or "", str(len(self.epochs)), *self.epochs, *self.args]


@dataclass
class EncodedBatch:
    """A batch ready for the script call, and what the store remembers after it."""

    commands: Commands
    partitions: list[str]  # the fenced partitions, in the order of their epochs
    written_chunks: dict[str, int]  # customer -> chunk fields written


def _bound(at: float) -> str:
    """A due index score: a lower bound of ``at`` in whole seconds, which a listpack
    stores as a small integer rather than as 17 characters of text.

    >>> _bound(1714557600.75), _bound(-0.5), _bound(math.inf)
    ('1714557600', '-1', 'inf')
    """
    return str(math.floor(at)) if math.isfinite(at) else repr(at)


def _flat(mapping: Iterable[tuple[str | bytes, str | bytes]]) -> list[str | bytes]:
    return [item for pair in mapping for item in pair]


def encode_batch(write: BatchWrite, keys: Keys, buckets: int, partition_ids: dict[str, int],
                 stream_ids: dict[str, int], chunks_before: Callable[[str], int],
                 model_parts: dict[str, str], model_legacy: bool) -> EncodedBatch:
    """Encode ``write``: ``partition_ids`` holds the id of each of its partitions,
    ``stream_ids`` the id of every stream and partition its states name,
    ``chunks_before`` the chunk fields a customer has in Redis, ``model_parts`` the
    model parts to write (as JSON) and ``model_legacy`` whether ``{p}:model`` is still
    the single string of an earlier version.

    Raises ``ValueError`` for a value that cannot be encoded, and for a state that
    names another partition than the one it is written under (its owner's fence
    would not guard it); a state that names none is recorded under that one.
    """
    names = [part.partition.name for part in write.partitions]
    commands = Commands([keys.lease, *(keys.part(partition_ids[name]) for name in names)],
                        [str(int(part.partition.epoch)) for part in write.partitions])
    records: dict[int, dict[bytes, bytes]] = {}
    stale: dict[int, list[bytes]] = {}
    written: dict[str, int] = {}
    per_group = group_size(buckets)
    for part in write.partitions:
        name = part.partition.name
        partition_id = partition_ids[name]
        due: dict[str, float] = {}
        for cid, state in {state.customer_id: state for state in part.states}.items():
            if state.partition is None:
                state = dataclasses.replace(state, partition=name)
            elif state.partition != name:
                raise ValueError(f"customer {cid!r} of partition {state.partition!r} "
                                 f"written under partition {name!r}")
            bucket = bucket_of(cid, buckets)
            fields = records.setdefault(bucket, {})
            raw = cid.encode("utf-8")
            fields[_public_field(raw)] = _pack_public(state)
            chunks = _chunks(_pack_state(state, stream_ids))
            for index, chunk in enumerate(chunks):
                fields[_chunk_field(raw, index)] = chunk
            written[cid] = len(chunks)
            for index in range(len(chunks), chunks_before(cid)):
                stale.setdefault(bucket, []).append(_chunk_field(raw, index))
            if state.next_rescore_at is not None and not math.isnan(state.next_rescore_at):
                # (a NaN time is never due, as in the other stores; nor a valid score)
                group = str(bucket // per_group)
                due[group] = min(due.get(group, math.inf), float(state.next_rescore_at))
        _partition_commands(commands, keys, partition_id, part.partition, due)
        _sample_commands(commands, keys.sample(partition_id), part.sample)
    for bucket, fields in records.items():
        commands.add("HSET", keys.bucket(bucket), _flat(fields.items()), step=2)
    for bucket, names_to_delete in stale.items():
        commands.add("HDEL", keys.bucket(bucket), names_to_delete)
    if model_parts:
        if model_legacy:
            commands.add("DEL", keys.model)  # the single string of an earlier version
        commands.add("HSET", keys.model, _flat(model_parts.items()), step=2)
    if write.meta:
        commands.add("HSET", keys.meta,
                     _flat((name, json.dumps(value)) for name, value in write.meta.items()),
                     step=2)
    return EncodedBatch(commands, names, written)


def _partition_commands(commands: Commands, keys: Keys, partition_id: int,
                        partition: Partition, due: dict[str, float]) -> None:
    """A partition's hash (absolute values), outbox and due groups."""
    part_key = keys.part(partition_id)
    fields: list[str | bytes] = [F_COUNT, str(int(partition.customers))]
    for segment, count in partition.sizes.items():
        fields += [f"{SIZE_FIELD}{int(segment)}", str(int(count))]
    for stream, position in partition.positions.items():
        fields += [f"{POSITION_FIELD}{stream}", str(int(position))]
    if partition.model is not None:
        fields += [F_MODEL, json.dumps(partition.model)]
    commands.add("HDELPREFIX", part_key, [SIZE_FIELD])
    commands.add("HSET", part_key, fields, step=2)
    outbox = keys.outbox(partition_id)
    commands.add("DEL", outbox)
    if partition.outbox:
        commands.add("RPUSH", outbox, list(partition.outbox))
    if due:
        commands.add("ZADD", keys.due(partition_id),
                     _flat((_bound(at), group) for group, at in due.items()),
                     head=["LT"], step=2)


def _sample_commands(commands: Commands, key: str, rows: dict[str, SampleRow | None]) -> None:
    """The partition's changed sample rows: set, or deleted (None)."""
    gone = [cid for cid, row in rows.items() if row is None]
    kept = [(cid, encode_sample_row(row)) for cid, row in rows.items() if row is not None]
    if gone:
        commands.add("HDEL", key, gone)
    if kept:
        commands.add("HSET", key, _flat(kept), step=2)
