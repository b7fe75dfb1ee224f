"""Encoding a batch's customers for Redis, and reading them back from a bucket hash."""

from __future__ import annotations

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import CustomerState
from streamseg.store.redis.batch import encode_customers
from streamseg.store.redis.codec import _pack_public, _pack_state, _unpack_public, _unpack_state
from streamseg.store.redis.keys import _chunk_field, _chunks, _public_field, bucket_of
from streamseg.store.redis.memo import MISSING
from streamseg.store.redis.scan import customers_in

IDS = {"kafka:events:0": 1}


def _state(cid: str, segment: int | None, due: float | None = None,
           recent: int = 2) -> CustomerState:
    features = CustomerFeatures.empty()
    features.apply(1_714_557_600.0, 12.5, "purchase", half_life_days=90.0)
    return CustomerState(cid, features, segment=segment, segment_name=f"s{segment}",
                         vector=[0.5, 1.5], updated_at=1_714_557_600.0, model_version=3,
                         next_rescore_at=due, applied={"kafka:events:0": 41},
                         recent_ids=list(range(recent)))


def test_records_due_and_counters() -> None:
    states = {"a": _state("a", 1, 50.0), "b": _state("b", 2, 20.0), "c": _state("c", 2)}
    previous = {"a": MISSING, "b": 1, "c": 2}
    out = encode_customers(states, 1, IDS, previous, lambda cid: 0)
    chunks = {cid: len(_chunks(_pack_state(state, IDS))) for cid, state in states.items()}
    assert set(out.records) == {0}
    assert out.records[0] == {
        **{_public_field(cid.encode()): _pack_public(state) for cid, state in states.items()},
        **{_chunk_field(cid.encode(), index): chunk for cid, state in states.items()
           for index, chunk in enumerate(_chunks(_pack_state(state, IDS)))},
    }
    assert out.due == {"0": 20.0}  # the bucket's lowest next_rescore_at
    assert out.size_delta == {1: 0, 2: 1}  # a new in 1, b from 1 to 2, c stays in 2
    assert out.new_customers == 1
    assert out.written_chunks == chunks
    assert out.stale == {}


def test_chunks_of_a_longer_earlier_state_are_deleted() -> None:
    out = encode_customers({"a": _state("a", None)}, 8, IDS, {"a": None},
                           lambda cid: 5)
    written = out.written_chunks["a"]
    assert written < 5
    assert out.stale == {bucket_of("a", 8): [_chunk_field(b"a", index)
                                             for index in range(written, 5)]}
    assert out.size_delta == {} and out.new_customers == 0


def test_customers_read_back_from_the_bucket_hash() -> None:
    ids = ["\x00zero", "\x1fescape", "\x05five", "plain", "long"]
    states = {cid: _state(cid, index, recent=40 if cid == "long" else 2)
              for index, cid in enumerate(ids)}
    out = encode_customers(states, 1, IDS, dict.fromkeys(ids, MISSING), lambda cid: 0)
    assert out.written_chunks["long"] > 3
    table = dict(out.records[0])
    table[_chunk_field(b"plain", 7)] = b"left over"  # after a gap: never read
    back = {}
    for cid, public, packed in customers_in(table):
        state = CustomerState(cid, CustomerFeatures.empty())
        (state.segment, state.updated_at, state.model_version,
         state.segment_name) = _unpack_public(public)
        (state.next_rescore_at, state.features, state.vector, state.applied,
         state.recent_ids) = _unpack_state(cid, packed, {1: "kafka:events:0"}.__getitem__)
        back[cid] = state
    assert {cid: s.to_dict() for cid, s in back.items()} == {
        cid: s.to_dict() for cid, s in states.items()}
