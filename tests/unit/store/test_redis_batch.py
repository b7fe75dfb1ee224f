"""Encoding a batch for the fenced-write script, and reading customers back from a bucket
hash: without a server."""

from __future__ import annotations

import pytest

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import BatchWrite, CustomerState, Partition, PartitionWrite
from streamseg.store.redis.batch import _MAX_ARGS, Commands, EncodedBatch, encode_batch
from streamseg.store.redis.codec import (
    _pack_public,
    _pack_state,
    _state_partition,
    _unpack_public,
    _unpack_state,
)
from streamseg.store.redis.keys import Keys, _chunk_field, _chunks, _public_field, bucket_of
from streamseg.store.redis.scan import customers_in

KEYS = Keys("p")
IDS = {"kafka:events:0": 1, "kafka:events:1": 2}
PARTITION_IDS = {"kafka:events:0": 1, "kafka:events:1": 2}


def _state(cid: str, segment: int | None, due: float | None = None, recent: int = 2,
           partition: str | None = "kafka:events:0") -> CustomerState:
    features = CustomerFeatures.empty()
    features.apply(1_714_557_600.0, 12.5, "purchase", half_life_days=90.0)
    return CustomerState(cid, features, segment=segment, segment_name=f"s{segment}",
                         vector=[0.5, 1.5], updated_at=1_714_557_600.0, model_version=3,
                         next_rescore_at=due, applied={"kafka:events:0": 41},
                         recent_ids=list(range(recent)), partition=partition)


def _encode(write: BatchWrite, buckets: int = 1, chunks_before: int = 0,
            model_parts: dict[str, str] | None = None, legacy: bool = False) -> EncodedBatch:
    return encode_batch(write, KEYS, buckets, PARTITION_IDS, IDS, lambda cid: chunks_before,
                        model_parts or {}, legacy)


def _commands(commands: Commands) -> list[tuple[str | bytes, str, list[str | bytes]]]:
    """(command, key, arguments) as the script reads them from the flat list."""
    out = []
    args, index = commands.args, 0
    while index < len(args):
        name, key, count = args[index], int(args[index + 1]), int(args[index + 2])
        out.append((name, commands.keys[key - 1], list(args[index + 3:index + 3 + count])))
        index += 3 + count
    return out


def test_fenced_partitions_come_first_with_their_epochs() -> None:
    write = BatchWrite([PartitionWrite(Partition("kafka:events:1", epoch=4)),
                        PartitionWrite(Partition("kafka:events:0", epoch=9))], lease="tok")
    encoded = _encode(write)
    assert encoded.commands.keys[:3] == ["p:lease", "p:part:2", "p:part:1"]
    assert encoded.partitions == ["kafka:events:1", "kafka:events:0"]
    assert encoded.commands.script_args("tok")[:4] == ["tok", "2", "4", "9"]
    assert encoded.commands.script_args(None)[0] == ""  # no lease: not checked


def test_customers_due_groups_and_the_partition_hash() -> None:
    states = [_state("a", 1, 50.5), _state("b", 2, 20.25), _state("c", 2)]
    part = Partition("kafka:events:0", epoch=1, positions={"kafka:events:0": 42},
                     sizes={1: 1, 2: 2}, customers=3, outbox=["x", "y"])
    encoded = _encode(BatchWrite([PartitionWrite(part, states)], meta={"watermark": 2.5}))
    commands = _commands(encoded.commands)
    fields = {_public_field(s.customer_id.encode()): _pack_public(s) for s in states}
    fields.update({_chunk_field(s.customer_id.encode(), index): chunk for s in states
                   for index, chunk in enumerate(_chunks(_pack_state(s, IDS)))})
    written = [args for name, key, args in commands if name == "HSET" and key == "p:c:0"]
    assert len(written) == 1 and dict(zip(written[0][::2], written[0][1::2],
                                          strict=True)) == fields
    assert commands[:5] == [
        ("HDELPREFIX", "p:part:1", ["s:"]),  # sizes are replaced, not merged
        ("HSET", "p:part:1", ["n", "3", "s:1", "1", "s:2", "2", "pos:kafka:events:0", "42"]),
        ("DEL", "p:outbox:1", []),
        ("RPUSH", "p:outbox:1", ["x", "y"]),
        ("ZADD", "p:due:1", ["LT", "20", "0"]),  # one group, the floor of the earliest
    ]
    assert commands[-1] == ("HSET", "p:meta", ["watermark", "2.5"])
    assert encoded.written_chunks == {s.customer_id: len(_chunks(_pack_state(s, IDS)))
                                      for s in states}


def test_due_groups_are_per_partition() -> None:
    buckets = 512  # 4 buckets per group
    mine = [_state(f"m{i}", 0, 100.0 + i) for i in range(30)]
    theirs = [_state(f"t{i}", 0, 5.0, partition="kafka:events:1") for i in range(30)]
    encoded = _encode(BatchWrite([
        PartitionWrite(Partition("kafka:events:0", 1), mine),
        PartitionWrite(Partition("kafka:events:1", 1), theirs)]), buckets=buckets)
    zadds = {key: args for name, key, args in _commands(encoded.commands) if name == "ZADD"}
    expected: dict[str, int] = {}
    for state in mine:
        group = str(bucket_of(state.customer_id, buckets) // 4)
        expected[group] = min(expected.get(group, 10**9), int(state.next_rescore_at or 0))
    got = dict(zip(zadds["p:due:1"][2::2], (int(x) for x in zadds["p:due:1"][1::2]),
                   strict=True))
    assert got == expected
    assert set(zadds["p:due:2"][1::2]) == {"5"}


def test_chunks_of_a_longer_earlier_state_are_deleted() -> None:
    write = BatchWrite([PartitionWrite(Partition("kafka:events:0"), [_state("a", None)])])
    encoded = _encode(write, buckets=8, chunks_before=5)
    written = encoded.written_chunks["a"]
    assert written < 5
    assert ("HDEL", f"p:c:{bucket_of('a', 8)}",
            [_chunk_field(b"a", index) for index in range(written, 5)]) in _commands(
        encoded.commands)


def test_model_parts_replace_a_legacy_string() -> None:
    encoded = _encode(BatchWrite(), model_parts={"model": "{}"}, legacy=True)
    assert _commands(encoded.commands) == [("DEL", "p:model", []),
                                           ("HSET", "p:model", ["model", "{}"])]


def test_long_commands_are_cut_between_pairs() -> None:
    states = [_state(f"c{i}", 0, float(i)) for i in range(600)]
    part = Partition("kafka:events:0", outbox=[f"e{i}" for i in range(2500)])
    commands = _commands(_encode(BatchWrite([PartitionWrite(part, states)])).commands)
    hsets = [args for name, key, args in commands if name == "HSET" and key == "p:c:0"]
    pushes = [args for name, _, args in commands if name == "RPUSH"]
    assert len(hsets) > 1 and all(len(args) <= _MAX_ARGS and len(args) % 2 == 0
                                  for args in hsets)
    assert [item for args in pushes for item in args] == part.outbox
    assert all(len(args) <= _MAX_ARGS for args in pushes)


def test_a_state_is_recorded_under_the_partition_it_is_written_with() -> None:
    unnamed = _state("a", 0, partition=None)
    encoded = _encode(BatchWrite([PartitionWrite(Partition("kafka:events:1"), [unnamed])]))
    chunk0 = next(args[args.index(_chunk_field(b"a", 0)) + 1]
                  for name, _, args in _commands(encoded.commands)
                  if name == "HSET" and _chunk_field(b"a", 0) in args)
    assert isinstance(chunk0, bytes) and _state_partition(chunk0) == 2
    assert unnamed.partition is None  # the caller's state is left alone
    with pytest.raises(ValueError, match="written under partition 'kafka:events:1'"):
        _encode(BatchWrite([PartitionWrite(Partition("kafka:events:1"), [_state("b", 0)])]))


def test_customers_read_back_from_the_bucket_hash() -> None:
    ids = ["\x00zero", "\x1fescape", "\x05five", "plain", "long"]
    states = {cid: _state(cid, index, recent=48 if cid == "long" else 2)
              for index, cid in enumerate(ids)}
    encoded = _encode(BatchWrite([PartitionWrite(Partition("kafka:events:0"),
                                                 list(states.values()))]))
    assert encoded.written_chunks["long"] > 3
    table: dict[bytes, bytes] = {}
    for name, key, args in _commands(encoded.commands):
        if name == "HSET" and key == "p:c:0":
            table.update(dict(zip(args[::2], args[1::2], strict=True)))  # type: ignore[arg-type]
    table[_chunk_field(b"plain", 7)] = b"left over"  # after a gap: never read
    names = {index: name for name, index in IDS.items()}
    back = {}
    for cid, public, packed in customers_in(table):
        state = CustomerState(cid, CustomerFeatures.empty())
        (state.segment, state.updated_at, state.model_version,
         state.segment_name, state.traits) = _unpack_public(public)
        (state.next_rescore_at, state.features, state.vector, state.applied,
         state.recent_ids) = _unpack_state(cid, packed, names.__getitem__,
                                            state.updated_at)
        state.partition = names[_state_partition(packed)]
        back[cid] = state
    assert {cid: s.to_dict() for cid, s in back.items()} == {
        cid: s.to_dict() for cid, s in states.items()}
