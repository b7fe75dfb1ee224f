"""RedisStore against a real redis-server: the store contract, atomicity, memory."""

from __future__ import annotations

import inspect
import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from streamseg.bench.redis_memory import measure_memory_per_customer
from streamseg.config import StoreSettings
from streamseg.core.features import CustomerFeatures
from streamseg.store import BatchWrite, CustomerState, Store, open_store
from streamseg.store.redis import RedisStore, SegmentReader, bucket_of
from tests.unit.store import test_stores as contract

pytestmark = pytest.mark.integration

# The contract every store honours (every test of tests/unit/store/test_stores.py that takes a
# ``store``), collected here again and run against Redis through the fixture below.
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and "store" in inspect.signature(_test).parameters:
        globals()[_name] = _test


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[Store]:
    backend = open_store(StoreSettings(uri=redis_url, redis_prefix=redis_prefix))
    yield backend
    backend.close()


@pytest.fixture
def small_store(redis_url: str, redis_prefix: str) -> Iterator[RedisStore]:
    """Few buckets, so that several customers share one (the interesting case)."""
    backend = RedisStore.from_uri(f"{redis_url}?buckets=4", prefix=redis_prefix)
    yield backend
    backend.close()


def _customer(cid: str, segment: int | None, due: float | None = None, *,
              t0: float = 1_714_557_600.123456, orders: int = 1) -> CustomerState:
    features = CustomerFeatures.empty()
    for index in range(orders):
        features.apply(t0 + index * 86_400.5, 19.99 + index, "purchase", half_life_days=90)
    return CustomerState(
        cid, features, segment=segment,
        segment_name=None if segment is None else f"Segment {segment}",
        vector=[0.25, -1.5, 3.0, 0.0, 1e-3, -0.75], updated_at=t0 + 0.5,
        model_version=3, next_rescore_at=due, applied={"kafka:events:2": 41},
        recent_ids=[0, 7, 2**32 - 1, 123_456_789],
    )


def test_states_round_trip_exactly(small_store: RedisStore) -> None:
    odd = _customer("odd|id é", 2, 1.5e9 + 0.1, orders=3)
    odd.features.apply(1_714_600_000.25, 5.0, "refund", half_life_days=90)
    odd.vector = [0.1, 1 / 3]  # not float32-exact: must come back unrounded
    odd.applied = {"file:/a/very/long/path/to/a/file/of/events.jsonl": 7, "kafka:x:0": 0,
                   "stdin-ish": -1}
    bare = CustomerState("bare", CustomerFeatures.empty())
    tagged = _customer("\x01looks-like-a-chunk", 1)  # ids may start with any byte
    small_store.write_batch([odd, bare, tagged], BatchWrite())
    got = small_store.get_many(["odd|id é", "bare", "absent", tagged.customer_id])
    assert got["odd|id é"].to_dict() == odd.to_dict()
    assert got["bare"].to_dict() == bare.to_dict()
    assert got[tagged.customer_id].to_dict() == tagged.to_dict()
    assert "absent" not in got
    assert small_store.count() == 3
    assert sorted(s.customer_id for s in small_store.iter_customers()) == sorted(
        [odd.customer_id, "bare", tagged.customer_id])


def test_long_and_shrinking_states(small_store: RedisStore) -> None:
    """A state over three chunks needs a second read; a shorter rewrite ignores the rest."""
    big = _customer("big", 2, 10.0)
    big.recent_ids = list(range(64))  # dedupe_window 64: 256 bytes of hashes
    big.applied = {f"file:/data/part-{i}.jsonl": i for i in range(20)}
    small_store.write_batch([big], BatchWrite())
    assert small_store.get("big").to_dict() == big.to_dict()  # type: ignore[union-attr]
    assert [s.to_dict() for s in small_store.iter_customers()] == [big.to_dict()]
    small = _customer("big", 2, 5.0)
    small_store.write_batch([small], BatchWrite())  # not loaded first: old chunks stay
    assert small_store.get("big").to_dict() == small.to_dict()  # type: ignore[union-attr]
    assert [s.to_dict() for s in small_store.iter_customers()] == [small.to_dict()]
    assert small_store.due_for_rescore(6.0, 10) == ["big"]
    small_store.write_batch([big], BatchWrite())
    small_store.get_many(["big"])  # loaded: the shorter rewrite deletes the extra chunks
    small_store.write_batch([small], BatchWrite())
    key = f"{small_store.prefix}:c:{bucket_of('big', small_store.buckets)}"
    assert small_store._redis.hlen(key) == 3  # readable record + two chunks
    assert small_store.get("big").to_dict() == small.to_dict()  # type: ignore[union-attr]


def test_outbox_is_replaced_by_every_batch(small_store: RedisStore) -> None:
    small_store.write_batch([], BatchWrite(outbox=['{"id": 1}', '{"id": 2}']))
    assert small_store.outbox() == ['{"id": 1}', '{"id": 2}']
    small_store.write_batch([_customer("a", 1)], BatchWrite(outbox=['{"id": 3}']))
    assert small_store.outbox() == ['{"id": 3}']
    small_store.write_batch([], BatchWrite())
    assert small_store.outbox() == []


def test_write_batch_is_one_transaction(small_store: RedisStore, monkeypatch: Any) -> None:
    used: list[bool] = []
    original = small_store._redis.pipeline

    def spy(transaction: bool = True, shard_hint: Any = None) -> Any:
        used.append(transaction)
        return original(transaction=transaction, shard_hint=shard_hint)

    small_store.write_batch([_customer("first", 0)], BatchWrite())  # registers the stream
    monkeypatch.setattr(small_store._redis, "pipeline", spy)
    small_store.get_many(["a", "b"])
    used.clear()
    small_store.write_batch([_customer("a", 0, 5.0), _customer("b", 1, 6.0)],
                            BatchWrite(model_checkpoint={"m": 1}, positions={"p": 1},
                                       meta={"watermark": 2.0}))
    assert used == [True]  # everything in one MULTI/EXEC pipeline, one round trip


def test_failed_encoding_writes_nothing(small_store: RedisStore) -> None:
    broken = _customer("broken", 1)
    broken.features.orders = -1  # cannot be encoded
    small_store.write_batch([_customer("fine", 0)], BatchWrite(positions={"p": 9}))
    with pytest.raises(ValueError):
        small_store.write_batch([_customer("fine2", 0), broken],
                                BatchWrite(positions={"p": 10}, model_checkpoint={"m": 2}))
    assert small_store.get("fine2") is None
    assert small_store.positions() == {"p": 9}
    assert small_store.load_model() is None
    assert small_store.count() == 1


def test_readers_never_see_half_a_batch(redis_url: str, small_store: RedisStore) -> None:
    """Counters and records change together: a MULTI reader always sees sum(sizes) == n."""
    prefix = small_store.prefix
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def reader() -> None:
        client = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            pipe = client.pipeline(transaction=True)
            pipe.get(f"{prefix}:n")
            pipe.hvals(f"{prefix}:sizes")
            count, sizes = pipe.execute()
            seen.append((int(count or 0), sum(int(v) for v in sizes)))
        client.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for batch in range(30):
            ids = [f"c{batch}-{i}" for i in range(40)]
            ids += [f"c{batch - 1}-{i}" for i in range(20) if batch]
            states = small_store.get_many(ids)
            for cid in ids:
                state = states.get(cid) or _customer(cid, None)
                state.segment = random.randrange(5)
                states[cid] = state
            small_store.write_batch(list(states.values()), BatchWrite(positions={"p": batch}))
    finally:
        stop.set()
        thread.join()
    assert seen and all(count == total for count, total in seen)
    assert small_store.count() == 30 * 40


def test_sizes_follow_segment_changes(small_store: RedisStore) -> None:
    small_store.write_batch([_customer(f"c{i}", i % 3) for i in range(30)], BatchWrite())
    moved = small_store.get_many([f"c{i}" for i in range(10)])
    for state in moved.values():
        state.segment = 7
    small_store.write_batch(list(moved.values()), BatchWrite())
    # a write without a get_many first: the store looks the previous segment up itself
    small_store.write_batch([_customer("c29", 7), _customer("new", None)], BatchWrite())
    expected: dict[int, int] = {}
    for state in small_store.iter_customers():
        if state.segment is not None:
            expected[state.segment] = expected.get(state.segment, 0) + 1
    assert small_store.segment_sizes() == expected
    assert expected[7] == 11
    assert small_store.count() == 31 == sum(1 for _ in small_store.iter_customers())


def test_due_scan_matches_brute_force(small_store: RedisStore) -> None:
    rng = random.Random(5)
    # half the times tie (re-scoring clamps many waits to the same value): ties go by id
    due = {f"c{i}": rng.uniform(0, 1000) if i % 2 else float(rng.randrange(0, 1000, 100))
           for i in range(300)}
    small_store.write_batch([_customer(cid, 0, at) for cid, at in due.items()], BatchWrite())
    for _ in range(3):  # rewrite some later, as re-scoring does; bounds go stale
        moved = rng.sample(sorted(due), 60)
        for cid in moved:
            due[cid] += rng.uniform(0, 500)
        small_store.write_batch([_customer(cid, 0, due[cid]) for cid in moved], BatchWrite())
        for until, limit in ((100.0, 10), (500.0, 1000), (2000.0, 5), (-1.0, 10), (300.0, 7)):
            expected = sorted((at, cid) for cid, at in due.items() if at <= until)[:limit]
            assert small_store.due_for_rescore(until, limit) == [cid for _, cid in expected]


def test_iter_and_reader(redis_url: str, small_store: RedisStore) -> None:
    small_store.write_batch([_customer("x", 4), _customer("y", 4), _customer("z", None)],
                            BatchWrite())
    assert sorted(s.customer_id for s in small_store.iter_customers()) == ["x", "y", "z"]
    reader = SegmentReader(redis_url, prefix=small_store.prefix)
    assert reader.segment_of("x") == {"segment": 4, "name": "Segment 4",
                                      "updated_at": 1_714_557_600.623456, "model_version": 3}
    assert reader.segment_of("z") == {"segment": None, "name": None,
                                      "updated_at": 1_714_557_600.623456, "model_version": 3}
    assert reader.segment_of("nobody") is None
    assert reader.sizes() == {4: 2}
    assert SegmentReader(redis_url, prefix="no-such-prefix").segment_of("x") is None
    reader.close()


def test_layout_is_fixed_per_prefix(redis_url: str, small_store: RedisStore) -> None:
    small_store.write_batch([_customer("k", 1)], BatchWrite())
    again = RedisStore.from_uri(redis_url, prefix=small_store.prefix, buckets=999)
    assert again.buckets == 4 and again.get("k") is not None
    assert bucket_of("k", 4) == bucket_of("k", again.buckets)
    again.close()


def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(ConnectionError) as caught:
        RedisStore.from_uri("redis://user:s3cret@127.0.0.1:1/0")
    assert "127.0.0.1:1" in str(caught.value) and "s3cret" not in str(caught.value)


def test_memory_per_customer_within_budget(redis_url: str) -> None:
    # 5k customers in 256 buckets: ~20 per bucket, as the default 1024 buckets at 20k.
    # Noise from other clients of the shared Redis can only add: keep the better of two.
    per_customer = min(measure_memory_per_customer(redis_url, 5000, buckets=256)
                       for _ in range(2))
    assert per_customer <= 250, f"{per_customer:.1f} bytes per customer"


def test_model_parts_are_written_only_when_they_change(
    redis_url: str, small_store: RedisStore
) -> None:
    key = f"{small_store.prefix}:model"
    client = redis.Redis.from_url(redis_url)
    first = {"model": {"version": 1}, "reservoir_keys": ["a", "b"]}
    small_store.write_batch([], BatchWrite(model_checkpoint=first))
    assert small_store.load_model() == first
    # A marker in place of the unchanged part: a rewrite of it would erase the marker.
    client.hset(key, "reservoir_keys", '"marker"')
    second = {"model": {"version": 2}, "reservoir_keys": ["a", "b"]}
    small_store.write_batch([], BatchWrite(model_checkpoint=second))
    assert client.hget(key, "reservoir_keys") == b'"marker"'
    assert client.hget(key, "model") == b'{"version": 2}'
    third = {"model": {"version": 3}, "reservoir_keys": ["a", "c"]}
    small_store.write_batch([], BatchWrite(model_checkpoint=third))
    fresh = RedisStore.from_uri(redis_url, prefix=small_store.prefix)
    assert fresh.load_model() == third
    # After a failed write the store no longer trusts what it remembers writing.
    client.hset(key, "reservoir_keys", '"marker"')
    small_store.forget_cached()
    small_store.write_batch([], BatchWrite(model_checkpoint=third))
    assert fresh.load_model() == third
    fresh.close()


def test_commands_time_out_by_default_and_the_url_can_say_otherwise(
    redis_url: str, redis_prefix: str
) -> None:
    default = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    chosen = RedisStore.from_uri(f"{redis_url}?socket_timeout=2.5&buckets=8",
                                 prefix=f"{redis_prefix}-b")
    try:
        options = default._redis.connection_pool.connection_kwargs
        assert options["socket_timeout"] == 30.0
        assert options["socket_connect_timeout"] == 10.0
        assert chosen._redis.connection_pool.connection_kwargs["socket_timeout"] == 2.5
        assert chosen.buckets == 8
    finally:
        default.close()
        chosen.close()


def test_a_model_checkpoint_written_as_one_string_is_read_and_replaced(
    redis_url: str, redis_prefix: str
) -> None:
    """Earlier versions kept the model as one JSON string: it must load, and the next
    write must replace it with the hash of parts (an HSET on a string would fail)."""
    client = redis.Redis.from_url(redis_url)
    old = {"kind": "customer-kmeans", "model": {"version": 7}, "scaler": {"n": 3}}
    client.set(f"{redis_prefix}:model", json.dumps(old))
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    try:
        assert store.load_model() == old
        new = {"kind": "customer-kmeans", "model": {"version": 8}, "scaler": {"n": 3}}
        store.write_batch([], BatchWrite(model_checkpoint=new))
        assert client.type(f"{redis_prefix}:model") == b"hash"
        assert store.load_model() == new
        assert RedisStore.from_uri(redis_url, prefix=redis_prefix).load_model() == new
    finally:
        store.close()
