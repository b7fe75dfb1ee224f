"""The Redis codec, without a server: every value comes back exactly as it was written."""

from __future__ import annotations

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
     back.recent_ids) = _unpack_state(state.customer_id, data, names.__getitem__)
    back.snapshots = _unpack_snapshots(state.customer_id, data)
    back.risk_band, back.traits_since = _unpack_all(state.customer_id, data,
                                                    names.__getitem__)[6:8]
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
    assert data[0] & _HAS_RESCORE and data[0] >> 6 == 2
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
    data[0] = (data[0] & 0x3F) | (3 << 6)
    with pytest.raises(ValueError, match="unknown state codec version 3"):
        _unpack_state("c", bytes(data), NAMES.__getitem__)


# A state of codec version 1 (layout v1), written by hand: header 0x41 (version 1,
# next_rescore_at present), the time, the length 9 of the rest, no feature floats
# (tags: None, None, None, then +0.0 four times), orders 2, refunds 0, one applied
# offset (stream 1, offset 41 zigzagged = 82), no recent ids; then a byte left over
# from a longer earlier state.
V1_STATE = (bytes([0x41]) + struct.pack("<d", 12.5)
            + bytes([9, 0x00, 0x92, 0x04, 2, 0, 1, 1, 82, 0]) + b"\xff")


def test_a_version_1_state_still_decodes_without_a_partition() -> None:
    assert _state_length(V1_STATE) == len(V1_STATE) - 1  # a byte left over is ignored
    due, features, vector, applied, recent = _unpack_state("c", V1_STATE, NAMES.__getitem__)
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
    assert _unpack_state("c", new, names.__getitem__) == _unpack_state(
        "c", old, names.__getitem__)
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
