"""The Redis codec, without a server: every value comes back exactly as it was written."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import CustomerState
from streamseg.store.redis.codec import (
    _HAS_RESCORE,
    _HAS_VECTOR,
    _VECTOR_F64,
    _head,
    _pack_public,
    _pack_state,
    _read_varint,
    _sizes,
    _state_length,
    _state_partition,
    _unpack_all,
    _unpack_public,
    _unpack_snapshots,
    _unpack_state,
    _unzigzag,
    _upgrade_state,
    _varint,
    _zigzag,
)
from streamseg.store.redis.keys import _CHUNK_BYTES, _CHUNKS_READ, _chunks
from streamseg.traits.schedule import Snapshot
from tests._codec_v2 import pack_state_v2

STREAMS = {"kafka:events:0": 1, "kafka:events:1": 2, "local": 3}
NAMES = {index: name for name, index in STREAMS.items()}


def _features() -> CustomerFeatures:
    features = CustomerFeatures.empty()
    features.apply(1_714_557_600.25, 19.99, "purchase", half_life_days=90.0)
    features.apply(1_714_644_000.5, 5.0, "refund", half_life_days=90.0)
    return features


def _round_trip(state: CustomerState, names: dict[int, str] = NAMES,
                ids: dict[str, int] = STREAMS) -> CustomerState:
    data = _pack_state(state, ids)
    assert _state_length(data) == len(data)
    back = CustomerState(state.customer_id, CustomerFeatures.empty())
    (back.next_rescore_at, back.features, back.vector, back.applied,
     back.recent_ids) = _unpack_state(state.customer_id, data, names.__getitem__,
                                         state.updated_at)
    back.snapshots = _unpack_snapshots(state.customer_id, data, state.updated_at)
    back.risk_band, back.traits_since = _unpack_all(state.customer_id, data,
                                                    names.__getitem__, state.updated_at)[6:8]
    partition = _state_partition(data)
    back.partition = names[partition] if partition else None
    (back.segment, back.updated_at, back.model_version,
     back.segment_name, back.traits) = _unpack_public(_pack_public(state))
    return back


def test_snapshots_and_traits_round_trip() -> None:
    state = CustomerState("c1", _features(), segment=3, segment_name="A|B",
                          updated_at=1_714_644_000.5, traits=(0.812, 54.0), risk_band=2,
                          traits_since=1_714_600_000.25,
                          snapshots=[Snapshot(19_837 * 86_400.0, 301, 2, 24.99),
                                     Snapshot(19_927 * 86_400.0, 12, 7, 1234.56)])
    back = _round_trip(state)
    assert back == state and back.traits_since == state.traits_since
    assert _pack_public(state).startswith(b"v2|3|")  # versioned: a v1 reader sees no segment
    state.traits = None
    assert not _pack_public(state).startswith(b"v2")  # without traits, the v1 record


def test_a_snapshot_time_that_is_not_a_whole_day_is_refused() -> None:
    state = CustomerState("c1", _features(), snapshots=[Snapshot(1_714_000_000.5, 1, 1, 1.0)])
    with pytest.raises(ValueError, match="not a whole day"):
        _pack_state(state, STREAMS)


def test_version_1_records_still_read() -> None:
    assert _unpack_public(b"2|1714557600|7|VIP|x") == (2, 1714557600.0, 7, "VIP|x", None)
    assert _unpack_public(b"v2|2|1714557600|7|||VIP") == (2, 1714557600.0, 7, "VIP", None)


def test_state_with_every_optional_field_none() -> None:
    state = CustomerState("c1", CustomerFeatures.empty())
    data = _pack_state(state, {})
    assert data[0] & (_HAS_RESCORE | _HAS_VECTOR) == 0
    assert _round_trip(state).to_dict() == state.to_dict()


def test_full_state_round_trip() -> None:
    state = CustomerState(
        "cust-000042", _features(), segment=3, segment_name="Loyal regulars",
        vector=[0.5, -1.25, 3.0], updated_at=1_714_644_000.5, model_version=7,
        next_rescore_at=1_715_000_000.125, applied={"kafka:events:1": 1234, "kafka:events:0": 9},
        recent_ids=[0, 1, 2**32 - 1], partition="kafka:events:1",
    )
    data = _pack_state(state, STREAMS)
    assert data[0] & _HAS_RESCORE and data[0] >> 6 == 3
    # where the due-scan script reads them: the time at byte 1, the partition at byte 9
    assert struct.unpack_from("<d", data, 1)[0] == state.next_rescore_at
    assert data[9] == STREAMS["kafka:events:1"]
    assert _round_trip(state).to_dict() == state.to_dict()


def test_float32_exact_vector_is_packed_as_float32() -> None:
    vector = [0.5, -1.25, 3.0, 1e-3]
    vector = list(struct.unpack("<4f", struct.pack("<4f", *vector)))  # float32-exact
    state = CustomerState("c", CustomerFeatures.empty(), vector=vector)
    data = _pack_state(state, {})
    assert data[0] & _HAS_VECTOR and not data[0] & _VECTOR_F64
    assert _round_trip(state).vector == vector


def test_vector_that_is_not_float32_exact_is_never_rounded() -> None:
    vector = [0.1, 1 / 3, 1e300]  # not float32-exact, the last not even float32-sized
    state = CustomerState("c", CustomerFeatures.empty(), vector=vector)
    data = _pack_state(state, {})
    assert data[0] & _VECTOR_F64
    assert _round_trip(state).vector == vector


def test_features_tags_round_trip() -> None:
    features = CustomerFeatures(
        first_purchase=100.0, last_purchase=100.0, reference_time=100.0,  # repeats
        decayed_orders=0.0, decayed_spend=2.0**40, orders=2**40, total_spend=-7.0,
        refunded=0.1, refunds=0,
    )
    state = CustomerState("c", features)
    assert _round_trip(state).features == features


def test_many_streams_and_negative_offsets() -> None:
    ids = {f"kafka:events:{partition}": partition + 1 for partition in range(150)}
    names = {index: name for name, index in ids.items()}
    applied = {name: (-1) ** index * index**3 for index, name in enumerate(ids)}
    state = CustomerState("c", CustomerFeatures.empty(), applied=applied)
    assert _round_trip(state, names, ids).applied == applied


def test_long_state_over_three_chunks() -> None:
    state = CustomerState("c", _features(), vector=[0.5] * 16, next_rescore_at=5.0,
                          applied={"kafka:events:0": 3}, recent_ids=list(range(100, 140)))
    data = _pack_state(state, STREAMS)
    assert len(_chunks(data)) > _CHUNKS_READ
    # The length is known from the first chunk: get_many reads the rest in one more trip.
    assert _state_length(data[:_CHUNK_BYTES]) == len(data)
    assert _round_trip(state).to_dict() == state.to_dict()


def test_left_over_bytes_of_a_longer_state_are_ignored() -> None:
    state = CustomerState("c", _features(), recent_ids=[7])
    data = _pack_state(state, {})
    assert _state_length(data + b"\xff" * 70) == len(data)
    assert _state_length(b"") is None


def test_packed_state_is_limited_to_thirty_chunks() -> None:
    state = CustomerState("c", CustomerFeatures.empty(), recent_ids=list(range(500)))
    with pytest.raises(ValueError, match="exceeds 1920"):
        _pack_state(state, {})


def test_unknown_codec_version_is_refused() -> None:
    data = bytearray(_pack_state(CustomerState("c", CustomerFeatures.empty()), {}))
    data[0] = data[0] & 0x3F  # version 0 was never written
    with pytest.raises(ValueError, match="unknown state codec version 0"):
        _unpack_state("c", bytes(data), NAMES.__getitem__, None)


# A state of codec version 1 (layout v1), written by hand: header 0x41 (version 1,
# next_rescore_at present), the time, the length 9 of the rest, no feature floats
# (tags: None, None, None, then +0.0 four times), orders 2, refunds 0, one applied
# offset (stream 1, offset 41 zigzagged = 82), no recent ids; then a byte left over
# from a longer earlier state.
V1_STATE = (bytes([0x41]) + struct.pack("<d", 12.5)
            + bytes([9, 0x00, 0x92, 0x04, 2, 0, 1, 1, 82, 0]) + b"\xff")


def test_a_version_1_state_still_decodes_without_a_partition() -> None:
    assert _state_length(V1_STATE) == len(V1_STATE) - 1  # a byte left over is ignored
    due, features, vector, applied, recent = _unpack_state("c", V1_STATE, NAMES.__getitem__, None)
    assert (due, vector, applied, recent) == (12.5, None, {"kafka:events:0": 41}, [])
    assert (features.orders, features.reference_time, features.total_spend) == (2, None, 0.0)
    assert _state_partition(V1_STATE) == 0


@pytest.mark.parametrize("partition_id", [1, 127, 128, 300, 2**20])
def test_upgrading_a_version_1_state_adds_only_the_partition(partition_id: int) -> None:
    old = V1_STATE[:-1]
    new = _upgrade_state(old, partition_id)
    names = {**NAMES, partition_id: "kafka:events:9"}
    assert new[0] >> 6 == 2 and _state_partition(new) == partition_id
    assert _state_length(new) == len(new)
    assert _unpack_state("c", new, names.__getitem__, None) == _unpack_state(
        "c", old, names.__getitem__, None)
    assert _upgrade_state(new, 5) == new  # already version 2: unchanged
    without_time = bytes([0x40]) + old[9:]  # no next_rescore_at: the varint at byte 1
    assert _state_partition(_upgrade_state(without_time, partition_id)) == partition_id


@pytest.mark.parametrize("partition", [None, "local", "kafka:events:1"])
def test_partition_round_trips(partition: str | None) -> None:
    state = CustomerState("c", _features(), next_rescore_at=3.0, partition=partition)
    data = _pack_state(state, STREAMS)
    assert _state_partition(data) == (0 if partition is None else STREAMS[partition])
    assert _round_trip(state).partition == partition


def test_a_large_partition_id_takes_more_varint_bytes_and_still_decodes() -> None:
    ids = {"kafka:events:0": 1, "kafka:big:7": 70_000}
    state = CustomerState("c", _features(), next_rescore_at=3.0, partition="kafka:big:7",
                          applied={"kafka:events:0": 5})
    data = _pack_state(state, ids)
    assert _state_partition(data) == 70_000
    names = {index: name for name, index in ids.items()}
    assert _round_trip(state, names, ids).to_dict() == state.to_dict()


def test_negative_count_cannot_be_encoded() -> None:
    features = CustomerFeatures.empty()
    features.orders = -1
    with pytest.raises(ValueError):
        _pack_state(CustomerState("c", features), {})


@given(st.integers(min_value=0, max_value=2**70))
def test_varint_round_trip(value: int) -> None:
    out = bytearray(b"x")
    _varint(value, out)
    assert _read_varint(bytes(out), 1) == (value, len(out))


@given(st.integers(min_value=-(2**63), max_value=2**63))
def test_zigzag_round_trip(value: int) -> None:
    assert _zigzag(value) >= 0
    assert _unzigzag(_zigzag(value)) == value


@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=12))
def test_any_vector_comes_back_exactly(vector: list[float]) -> None:
    state = CustomerState("c", CustomerFeatures.empty(), vector=vector)
    assert _round_trip(state).vector == vector


def test_public_record_is_readable_text() -> None:
    state = CustomerState("c", CustomerFeatures.empty(), segment=0, segment_name="A|B é",
                          updated_at=1_714_557_600.125, model_version=12)
    data = _pack_public(state)
    assert data == "0|1714557600.125|12|A|B é".encode()
    assert _unpack_public(data) == (0, 1_714_557_600.125, 12, "A|B é", None)


def test_public_record_without_segment_time_or_name() -> None:
    state = CustomerState("c", CustomerFeatures.empty())
    assert _pack_public(state) == b"||0"
    assert _unpack_public(b"||0") == (None, None, 0, None, None)


def test_sizes_leave_out_empty_segments() -> None:
    assert _sizes({b"2": b"5", b"0": b"0", b"1": b"-1", b"10": b"3"}) == {2: 5, 10: 3}


# --------------------------------------------------------------- codec version 3
# A state of codec version 2, as the previous release wrote it (with every part: a
# time, the partition, integral features as i32, a vector, an applied offset, recent
# ids, a snapshot in absolute days, orders and cents, a band and traits_since).
V2_STATE = bytes.fromhex(
    "bb000008b0348ed94102599bb40900002008d98cd941000010a8848cd94180902966020000000000"
    "000000803f403d0ad7a3707d4640050000000301020000003f0000a0bf0102a4130207000000ffff"
    "ffff01fd9a01ad0202c3130200001010ae8cd941")


def _v2_state() -> CustomerState:
    """What V2_STATE holds (with its readable record's fields)."""
    features = CustomerFeatures(
        first_purchase=1_714_000_000.0, last_purchase=1_714_557_600.25,
        reference_time=1_714_644_000.5, decayed_orders=2.0, decayed_spend=31.5, orders=3,
        total_spend=44.98, refunded=5.0, refunds=1)
    return CustomerState(
        "c", features, updated_at=1_714_644_000.5, next_rescore_at=1_715_000_000.125,
        vector=[0.5, -1.25], applied={"kafka:events:1": 1234}, recent_ids=[7, 2**32 - 1],
        partition="kafka:events:1", snapshots=[Snapshot(19_837 * 86_400.0, 301, 2, 24.99)],
        risk_band=2, traits_since=1_714_600_000.25)


def _decode(cid: str, data: bytes, updated_at: float | None) -> CustomerState:
    back = CustomerState(cid, CustomerFeatures.empty(), updated_at=updated_at)
    (back.next_rescore_at, back.features, back.vector, back.applied, back.recent_ids,
     back.snapshots, back.risk_band, back.traits_since) = _unpack_all(
        cid, data, NAMES.__getitem__, updated_at)
    partition = _state_partition(data)
    back.partition = NAMES[partition] if partition else None
    return back


def test_a_version_2_state_still_decodes_exactly() -> None:
    expected = _v2_state()
    assert V2_STATE[0] >> 6 == 2 and _state_length(V2_STATE) == len(V2_STATE)
    back = _decode("c", V2_STATE, expected.updated_at)
    assert back == expected and back.traits_since == expected.traits_since
    # (updated_at is not needed to read version 2: nothing in it refers to it)
    assert _decode("c", V2_STATE, None).features == expected.features
    # Written again, it is version 3, shorter, and reads back the same.
    again = _pack_state(expected, STREAMS)
    assert again[0] >> 6 == 3 and len(again) < len(V2_STATE) - 15
    # the head the due scan reads is alike: flags, time, partition
    assert (again[0] & 0x3F, again[1:10]) == (V2_STATE[0] & 0x3F, V2_STATE[1:10])
    assert _decode("c", again, expected.updated_at) == expected


def _feature_tags(data: bytes) -> list[int]:
    pos = _head(data)[1]
    _, pos = _read_varint(data, pos)
    tags = int.from_bytes(data[pos:pos + 3], "little")
    return [(tags >> (3 * index)) & 7 for index in range(7)]


def test_the_last_event_time_is_stored_relative_to_updated_at() -> None:
    features = _features()  # reference_time 1_714_644_000.5
    reference = features.reference_time
    assert reference is not None
    sizes = {}
    for label, updated_at in [("same", reference), ("later", reference + 12.345678),
                              ("inexact", reference + 1 / 3),
                              ("none", None)]:
        state = CustomerState("c", features, updated_at=updated_at)
        data = _pack_state(state, {})
        sizes[label] = len(data)
        assert _decode("c", data, updated_at).features == features
    # equal: one byte; a few seconds earlier: four; else what the time takes alone (this
    # one is whole cents: six)
    assert sizes["same"] + 3 == sizes["later"] and sizes["same"] + 5 == sizes["none"]
    assert sizes["inexact"] == sizes["none"]
    data = _pack_state(CustomerState("c", features, updated_at=reference), {})
    assert _feature_tags(data)[0] == 7
    # Read without the readable record's updated_at, such a state is refused, clearly.
    with pytest.raises(ValueError, match="customer 'c': .*relative to updated_at"):
        _unpack_all("c", data, NAMES.__getitem__, None)


@pytest.mark.parametrize(("value", "tag", "size"), [
    (1.0, 2, 1), (-7.0, 2, 1), (2.0**52, 2, 8), (2.0**53, 3, 8),  # integral: a varint
    (339.02, 6, 3), (-0.05, 6, 1), (0.1 + 0.2, 3, 8),  # whole cents: a varint of them
    (1e300, 3, 8), (float("inf"), 3, 8), (-0.0, 3, 8),
])
def test_integral_and_whole_cent_amounts_take_varints(value: float, tag: int,
                                                      size: int) -> None:
    empty = CustomerFeatures.empty()
    features = CustomerFeatures(**{**empty.to_dict(), "total_spend": value})
    data = _pack_state(CustomerState("c", features), {})
    base = _pack_state(CustomerState("c", empty), {})
    assert _feature_tags(data)[5] == tag
    assert len(data) - len(base) == size
    back = _decode("c", data, None).features.total_spend
    assert back == value and math.copysign(1.0, back) == math.copysign(1.0, value)


def test_the_offset_of_the_partition_s_own_stream_omits_its_id() -> None:
    own = CustomerState("c", _features(), partition="kafka:events:1",
                        applied={"kafka:events:1": 1234})
    other = CustomerState("c", _features(), partition="kafka:events:1",
                          applied={"kafka:events:0": 1234})
    assert len(_pack_state(own, STREAMS)) + 1 == len(_pack_state(other, STREAMS))
    for state in (own, other, CustomerState("c", _features(), applied={"local": 3})):
        assert _round_trip(state).to_dict() == state.to_dict()


_TIMES = st.floats(allow_nan=False)


@st.composite
def _states(draw: st.DrawFn) -> CustomerState:
    features = CustomerFeatures(
        first_purchase=draw(st.none() | _TIMES), last_purchase=draw(st.none() | _TIMES),
        reference_time=draw(st.none() | _TIMES), decayed_orders=draw(_TIMES),
        decayed_spend=draw(_TIMES), orders=draw(st.integers(0, 2**40)),
        total_spend=draw(_TIMES | st.integers(-10**12, 10**12).map(lambda c: c / 100)),
        refunded=draw(_TIMES), refunds=draw(st.integers(0, 1000)))
    reference = features.reference_time
    updated_at = draw(st.none() | _TIMES | (
        st.just(reference) if reference is None else
        st.integers(-10**13, 10**13).map(lambda us: reference + us / 1e6)))
    snapshots = draw(st.lists(st.builds(
        Snapshot, st.integers(-10**6, 10**6).map(lambda day: day * 86_400.0),
        st.integers(0, 10**6), st.integers(0, 10**6),
        st.integers(0, 10**10).map(lambda c: c / 100)), max_size=3))
    partition = draw(st.sampled_from([None, *STREAMS]))
    applied = draw(st.dictionaries(st.sampled_from(list(STREAMS)),
                                   st.integers(-2**40, 2**40), max_size=3))
    return CustomerState("c", features, updated_at=updated_at, snapshots=snapshots,
                         partition=partition, applied=applied)


@given(_states())
def test_any_state_comes_back_exactly(state: CustomerState) -> None:
    if any(math.isinf(snapshot.spend * 100) for snapshot in state.snapshots):
        return
    back = _round_trip(state)
    assert back.features == state.features
    for name in ("first_purchase", "last_purchase", "reference_time", "decayed_orders",
                 "decayed_spend", "total_spend", "refunded"):
        value, got = getattr(state.features, name), getattr(back.features, name)
        assert value is None or math.copysign(1.0, value) == math.copysign(1.0, got)
    assert back.snapshots == [Snapshot(s.at, s.cell, s.orders, round(s.spend * 100) / 100)
                              for s in state.snapshots]
    assert (back.applied, back.partition) == (state.applied, state.partition)


@given(_states())
def test_any_state_of_codec_version_2_reads_back_exactly(state: CustomerState) -> None:
    # (what version 2 could write: times of snapshots after the epoch, integral values
    # in i32 range, and nothing that it refused)
    state.snapshots = [s for s in state.snapshots if s.at >= 0]
    try:
        old = pack_state_v2(state, STREAMS)
    except (ValueError, OverflowError):
        return
    assert old[0] >> 6 == 2
    back = _decode("c", old, state.updated_at)
    assert back.features == state.features
    assert back.snapshots == [Snapshot(s.at, s.cell, s.orders, round(s.spend * 100) / 100)
                              for s in state.snapshots]
    assert (back.applied, back.partition) == (state.applied, state.partition)
    # and the same state written now reads back the same
    assert _decode("c", _pack_state(state, STREAMS), state.updated_at) == back


@pytest.mark.parametrize(("last", "reference"), [(0.0, -0.0), (-0.0, 0.0)])
def test_a_time_equal_to_another_but_for_the_sign_of_zero_keeps_its_sign(
        last: float, reference: float) -> None:
    # 0.0 == -0.0: a time stored as "the same as reference_time" would read back with
    # the other sign (hypothesis found it in test_any_state_comes_back_exactly).
    empty = CustomerFeatures.empty()
    features = CustomerFeatures(**{**empty.to_dict(), "last_purchase": last,
                                   "first_purchase": last, "reference_time": reference})
    back = _round_trip(CustomerState("c", features)).features
    for name, value in (("last_purchase", last), ("first_purchase", last),
                        ("reference_time", reference)):
        got = getattr(back, name)
        assert math.copysign(1.0, got) == math.copysign(1.0, value), name
