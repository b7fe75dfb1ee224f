"""RedisStore against a real redis-server: the store contract, atomicity, fencing, the
lease, the due scan per partition, migration of the previous layout, memory."""

from __future__ import annotations

import inspect
import json
import math
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from streamseg.config import StoreSettings
from streamseg.core.features import CustomerFeatures
from streamseg.store import (
    BatchWrite,
    CustomerState,
    FencedError,
    LeaseHeld,
    Partition,
    PartitionWrite,
    Store,
    open_store,
)
from streamseg.store.redis import RedisStore, SegmentReader, bucket_of
from streamseg.store.redis.codec import _pack_public, _upgrade_state
from streamseg.store.redis.keys import Keys, _chunk_field, _chunks, _public_field
from streamseg.store.redis.migrate import Migration
from streamseg_bench.redis_memory import measure_memory_per_customer
from tests._codec_v2 import pack_state_v2
from tests.unit.store import test_stores as contract

pytestmark = pytest.mark.integration

# The contract every store honours (every test of tests/unit/store/test_stores.py that takes a
# ``store``), collected here again and run against Redis through the fixture below.
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and "store" in inspect.signature(_test).parameters:
        globals()[_name] = _test

#: The partition of the customers of most tests (their events come from its stream).
P = "kafka:events:2"


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


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    raw = redis.Redis.from_url(redis_url)
    yield raw
    raw.close()


def _customer(cid: str, segment: int | None, due: float | None = None, *,
              t0: float = 1_714_557_600.123456, orders: int = 1,
              partition: str | None = P) -> CustomerState:
    features = CustomerFeatures.empty()
    for index in range(orders):
        features.apply(t0 + index * 86_400.5, 19.99 + index, "purchase", half_life_days=90)
    return CustomerState(
        cid, features, segment=segment,
        segment_name=None if segment is None else f"Segment {segment}",
        vector=[0.25, -1.5, 3.0, 0.0, 1e-3, -0.75], updated_at=t0 + 0.5,
        model_version=3, next_rescore_at=due,
        applied={partition or P: 41},
        recent_ids=[0, 7, 2**32 - 1, 123_456_789], partition=partition,
    )


def _write(store: Store, states: Sequence[CustomerState], part: Partition | None = None,
           **batch: Any) -> Partition:
    """Write ``states`` of partition ``P`` (taken first unless ``part`` is given), with
    sizes and count recomputed as an engine would (absolute values)."""
    return contract.write(store, part or store.read_partition(P), states, **batch)


def _snapshot(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of the prefix with its serialised value: equal iff nothing changed."""
    return {key: client.dump(key) for key in client.scan_iter(match=Keys(prefix).all_pattern)}


# -- customers ---------------------------------------------------------------------------
def test_states_round_trip_exactly(small_store: RedisStore) -> None:
    small_store.take_partition(P)
    odd = _customer("odd|id é", 2, 1.5e9 + 0.1, orders=3)
    odd.features.apply(1_714_600_000.25, 5.0, "refund", half_life_days=90)
    odd.vector = [0.1, 1 / 3]  # not float32-exact: must come back unrounded
    odd.applied = {"file:/a/very/long/path/to/a/file/of/events.jsonl": 7, "kafka:x:0": 0,
                   "stdin-ish": -1}
    bare = CustomerState("bare", CustomerFeatures.empty())  # no partition named
    tagged = _customer("\x01looks-like-a-chunk", 1)  # ids may start with any byte
    _write(small_store, [odd, bare, tagged])
    got = small_store.get_many(["odd|id é", "bare", "absent", tagged.customer_id])
    assert got["odd|id é"].to_dict() == odd.to_dict()
    assert got["bare"].partition == P  # recorded under the partition it was written with
    assert got["bare"].to_dict() == {**bare.to_dict(), "partition": P}
    assert got[tagged.customer_id].to_dict() == tagged.to_dict()
    assert "absent" not in got
    assert small_store.count() == 3
    assert sorted(s.customer_id for s in small_store.iter_customers()) == sorted(
        [odd.customer_id, "bare", tagged.customer_id])


def test_long_and_shrinking_states(small_store: RedisStore) -> None:
    """A state over three chunks needs a second read; a shorter rewrite ignores the rest."""
    small_store.take_partition(P)
    big = _customer("big", 2, 10.0)
    big.recent_ids = list(range(64))  # dedupe_window 64: 256 bytes of hashes
    big.applied = {f"file:/data/part-{i}.jsonl": i for i in range(20)}
    _write(small_store, [big])
    assert small_store.get("big").to_dict() == big.to_dict()  # type: ignore[union-attr]
    assert [s.to_dict() for s in small_store.iter_customers()] == [big.to_dict()]
    small = _customer("big", 2, 5.0)
    small_store.forget_cached()
    _write(small_store, [small])  # no memo of the chunks: the old ones stay
    assert small_store.get("big").to_dict() == small.to_dict()  # type: ignore[union-attr]
    assert [s.to_dict() for s in small_store.iter_customers()] == [small.to_dict()]
    assert small_store.due_for_rescore(P, 6.0, 10) == ["big"]
    _write(small_store, [big])
    small_store.get_many(["big"])  # loaded: the shorter rewrite deletes the extra chunks
    _write(small_store, [small])
    key = f"{small_store.prefix}:c:{bucket_of('big', small_store.buckets)}"
    assert small_store._redis.hlen(key) == 3  # readable record + two chunks
    assert small_store.get("big").to_dict() == small.to_dict()  # type: ignore[union-attr]


def test_outbox_is_replaced_by_every_batch_of_its_partition(small_store: RedisStore) -> None:
    small_store.take_partition(P)
    other = small_store.take_partition("kafka:events:3")
    _write(small_store, [], outbox=['{"id": 1}', '{"id": 2}'])
    _write(small_store, [], other, outbox=['{"id": 9}'])
    assert small_store.read_partition(P).outbox == ['{"id": 1}', '{"id": 2}']
    _write(small_store, [_customer("a", 1)], outbox=['{"id": 3}'])
    assert small_store.read_partition(P).outbox == ['{"id": 3}']
    _write(small_store, [])
    assert small_store.read_partition(P).outbox == []
    assert small_store.outbox() == ['{"id": 9}']  # the other partition's is its own


def test_write_batch_is_one_script_call(small_store: RedisStore, monkeypatch: Any) -> None:
    part = small_store.take_partition(P)
    _write(small_store, [_customer("first", 0)], part)  # registers the streams
    sent: list[Any] = []
    original = small_store._redis.execute_command

    def spy(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return original(*args, **options)

    def no_pipeline(*args: Any, **options: Any) -> Any:
        raise AssertionError("write_batch used a pipeline")

    small_store.get_many(["a", "b"])
    monkeypatch.setattr(small_store._redis, "execute_command", spy)
    monkeypatch.setattr(small_store._redis, "pipeline", no_pipeline)
    small_store.write_batch(BatchWrite(
        [PartitionWrite(Partition(P, part.epoch, {P: 5}, {0: 2, 1: 1}, 3, ["c"]),
                        [_customer("a", 0, 5.0), _customer("b", 1, 6.0)])],
        model_checkpoint={"m": 1}, meta={"watermark": 2.0}))
    assert sent == ["EVALSHA"]  # everything in one atomic call, one round trip
    monkeypatch.undo()
    assert small_store.get("b").segment == 1  # type: ignore[union-attr]
    assert small_store.meta() == {"watermark": 2.0} and small_store.load_model() == {"m": 1}


def test_failed_encoding_writes_nothing(client: redis.Redis, small_store: RedisStore) -> None:
    part = small_store.take_partition(P)
    broken = _customer("broken", 1)
    broken.features.orders = -1  # cannot be encoded
    _write(small_store, [_customer("fine", 0)], part, positions={"p": 9})
    before = _snapshot(client, small_store.prefix)
    with pytest.raises(ValueError):
        _write(small_store, [_customer("fine2", 0), broken], part, positions={"p": 10},
               model_checkpoint={"m": 2})
    assert _snapshot(client, small_store.prefix) == before
    assert small_store.get("fine2") is None
    assert small_store.positions() == {"p": 9}
    assert small_store.load_model() is None
    assert small_store.count() == 1


def test_readers_never_see_half_a_batch(redis_url: str, small_store: RedisStore) -> None:
    """A partition's counters and its customers' records change together: a MULTI reader
    always finds as many records in the buckets as the partition counts, per segment."""
    prefix = small_store.prefix
    part = small_store.take_partition(P)
    part_key = f"{prefix}:part:{small_store._partitions.id_of(P)}"
    stop = threading.Event()
    seen: list[tuple[dict[bytes, int], dict[bytes, int]]] = []

    def reader() -> None:
        client = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            pipe = client.pipeline(transaction=True)
            pipe.hgetall(part_key)
            for bucket in range(4):
                pipe.hgetall(f"{prefix}:c:{bucket}")
            table, *buckets = pipe.execute()
            counted = {b"n": int(table.get(b"n", 0))}
            counted.update({name[2:]: int(value) for name, value in table.items()
                            if name.startswith(b"s:") and int(value)})
            records: dict[bytes, int] = {b"n": 0}
            for fields in buckets:
                for name, value in fields.items():
                    if name[0] >= 0x20:  # a readable record (ids here are plain)
                        records[b"n"] += 1
                        segment = value.split(b"|")[0]
                        records[segment] = records.get(segment, 0) + 1
            seen.append((counted, records))
        client.close()

    thread = threading.Thread(target=reader)
    thread.start()
    segments: dict[str, int] = {}
    try:
        for batch in range(30):
            ids = [f"c{batch}-{i}" for i in range(40)]
            ids += [f"c{batch - 1}-{i}" for i in range(20) if batch]
            states = small_store.get_many(ids)
            for cid in ids:
                state = states.get(cid) or _customer(cid, None)
                state.segment = segments[cid] = random.randrange(5)
                states[cid] = state
            sizes: dict[int, int] = {}
            for segment in segments.values():
                sizes[segment] = sizes.get(segment, 0) + 1
            small_store.write_batch(BatchWrite([PartitionWrite(
                Partition(P, part.epoch, {P: batch}, sizes, len(segments)),
                list(states.values()))]))
    finally:
        stop.set()
        thread.join()
    assert seen and all(counted == records for counted, records in seen)
    assert small_store.count() == 30 * 40


def test_sizes_and_counts_are_the_absolute_values_written_per_partition(
    client: redis.Redis, small_store: RedisStore,
) -> None:
    a, b = small_store.take_partition("kafka:t:0"), small_store.take_partition("kafka:t:1")
    states_a = [_customer(f"a{i}", i % 2, partition="kafka:t:0") for i in range(3)]
    states_b = [_customer(f"b{i}", 1, partition="kafka:t:1") for i in range(5)]
    small_store.write_batch(BatchWrite([
        PartitionWrite(Partition("kafka:t:0", a.epoch, sizes={0: 2, 1: 1}, customers=3),
                       states_a),
        PartitionWrite(Partition("kafka:t:1", b.epoch, sizes={1: 5}, customers=5), states_b),
    ]))
    assert small_store.segment_sizes() == {0: 2, 1: 6} and small_store.count() == 8
    moved = [_customer(f"a{i}", 1, partition="kafka:t:0") for i in range(3)]
    again = BatchWrite([PartitionWrite(Partition("kafka:t:0", a.epoch, sizes={1: 3},
                                                 customers=3), moved)])
    small_store.write_batch(again)
    small_store.write_batch(again)  # replayed (a retry): nothing is counted twice
    assert small_store.read_partition("kafka:t:0").sizes == {1: 3}
    part_key = f"{small_store.prefix}:part:{small_store._partitions.id_of('kafka:t:0')}"
    assert not client.hexists(part_key, "s:0")  # a segment it no longer has is gone
    assert small_store.segment_sizes() == {1: 8} and small_store.count() == 8
    # What the engine says is stored as it is: the store derives nothing.
    small_store.write_batch(BatchWrite([PartitionWrite(
        Partition("kafka:t:1", b.epoch, sizes={4: 1}, customers=1))]))
    assert small_store.segment_sizes() == {1: 3, 4: 1} and small_store.count() == 4


# -- fencing and the lease ---------------------------------------------------------------
def test_a_paused_owner_is_fenced_off_by_the_next_owner(
    redis_url: str, client: redis.Redis, small_store: RedisStore,
) -> None:
    """Two stores on one prefix (two workers): the first owner pauses, the partition
    moves, the first wakes up and writes: refused, and nothing changed."""
    first = small_store.take_partition(P)
    _write(small_store, [_customer("a", 0, 10.0), _customer("b", 1, 20.0)], first,
           positions={P: 100}, outbox=["first"], meta={"watermark": 1.0})
    second_store = RedisStore.from_uri(redis_url, prefix=small_store.prefix)
    try:
        second = second_store.take_partition(P)  # a rebalance, while the first is paused
        assert second.epoch == first.epoch + 1 and second.positions == {P: 100}
        assert second.outbox == ["first"]  # the next owner republishes it
        before = _snapshot(client, small_store.prefix)
        late = Partition(P, first.epoch, {P: 50}, {2: 3}, 3, ["stale"])
        with pytest.raises(FencedError) as refused:
            small_store.write_batch(BatchWrite(
                [PartitionWrite(late, [_customer("a", 2, 1.0), _customer("b", 2, 1.0),
                                       _customer("new", 2, 1.0)])],
                model_checkpoint={"m": "stale"}, meta={"watermark": 0.0}))
        assert refused.value.partitions == [P] and not refused.value.lease
        assert _snapshot(client, small_store.prefix) == before  # nothing at all changed
        assert small_store.get("a").segment == 0  # type: ignore[union-attr]
        assert small_store.get("new") is None
        assert small_store.due_for_rescore(P, 5.0, 10) == []
        assert small_store.load_model() is None and small_store.meta() == {"watermark": 1.0}
        _write(second_store, [_customer("a", 3, 30.0)], second, positions={P: 101})
        assert small_store.get("a").segment == 3  # type: ignore[union-attr]
        assert small_store.positions() == {P: 101}
    finally:
        second_store.close()


def test_one_stale_partition_refuses_the_whole_batch(
    redis_url: str, client: redis.Redis, small_store: RedisStore,
) -> None:
    mine, taken = small_store.take_partition("kafka:t:0"), small_store.take_partition("kafka:t:1")
    _write(small_store, [_customer("x", 0, partition="kafka:t:1")], taken)
    other = RedisStore.from_uri(redis_url, prefix=small_store.prefix)
    try:
        other.take_partition("kafka:t:1")
    finally:
        other.close()
    before = _snapshot(client, small_store.prefix)
    with pytest.raises(FencedError) as refused:
        small_store.write_batch(BatchWrite([
            PartitionWrite(Partition("kafka:t:0", mine.epoch, {"kafka:t:0": 5}, {1: 1}, 1,
                                     ["change"]),
                           [_customer("y", 1, 5.0, partition="kafka:t:0")]),
            PartitionWrite(Partition("kafka:t:1", taken.epoch, {"kafka:t:1": 5}, {1: 1}, 1),
                           [_customer("x", 1, partition="kafka:t:1")]),
        ], meta={"watermark": 9.0}))
    assert refused.value.partitions == ["kafka:t:1"]
    assert _snapshot(client, small_store.prefix) == before  # not even the fresh partition


def test_a_partition_never_taken_cannot_be_written(small_store: RedisStore) -> None:
    with pytest.raises(FencedError) as refused:
        small_store.write_batch(BatchWrite([PartitionWrite(Partition("kafka:t:9"),
                                                           [_customer("z", 0)])]))
    assert refused.value.partitions == ["kafka:t:9"]
    assert small_store.get("z") is None and small_store.partition_names() == []


def test_the_lease_across_two_stores(redis_url: str, small_store: RedisStore) -> None:
    other = RedisStore.from_uri(redis_url, prefix=small_store.prefix)
    try:
        token = small_store.acquire_lease("worker-a", ttl_s=30.0)
        with pytest.raises(LeaseHeld) as held:
            other.acquire_lease("worker-b", ttl_s=30.0)
        assert held.value.holder == "worker-a" and 0 < held.value.expires_in <= 30.0
        assert not other.renew_lease("worker-a#forged", ttl_s=30.0)
        other.release_lease("worker-a#forged")  # not the token: nothing happens
        assert small_store.renew_lease(token, ttl_s=0.2)  # renewed, for a short time
        # ... and not renewed again: it expires on the server's clock.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                new = other.acquire_lease("worker-b", ttl_s=30.0)
                break
            except LeaseHeld:
                assert time.monotonic() < deadline, "the lease never expired"
                time.sleep(0.05)
        assert not small_store.renew_lease(token, ttl_s=30.0)  # lost: cannot extend it
        small_store.release_lease(token)  # nor delete the new holder's
        with pytest.raises(FencedError) as refused:
            small_store.write_batch(BatchWrite(model_checkpoint={"v": "old"}, lease=token))
        assert refused.value.lease and refused.value.partitions == []
        other.write_batch(BatchWrite(model_checkpoint={"v": "new"}, lease=new))
        assert small_store.load_model() == {"v": "new"}
        with pytest.raises(LeaseHeld, match="worker-b"):
            small_store.acquire_lease("worker-a", ttl_s=30.0)
        other.release_lease(new)
        assert small_store.acquire_lease("worker-a", ttl_s=30.0)
    finally:
        other.close()


# -- the due scan ----------------------------------------------------------------------
def test_due_scan_matches_brute_force(small_store: RedisStore) -> None:
    rng = random.Random(5)
    names = ["kafka:t:0", "kafka:t:1"]
    parts = {name: small_store.take_partition(name) for name in names}
    # half the times tie (re-scoring clamps many waits to the same value): ties go by id
    due = {f"c{i}": rng.uniform(0, 1000) if i % 2 else float(rng.randrange(0, 1000, 100))
           for i in range(300)}
    owner = {cid: names[index % 3 == 0] for index, cid in enumerate(due)}

    def write(cids: list[str]) -> None:
        for name in names:
            mine = [_customer(cid, 0, due[cid], partition=name) for cid in cids
                    if owner[cid] == name]
            _write(small_store, mine, parts[name])

    write(sorted(due))
    for _ in range(3):  # rewrite some later, as re-scoring does; bounds go stale
        moved = rng.sample(sorted(due), 60)
        for cid in moved:
            due[cid] += rng.uniform(0, 500)
        write(moved)
        for name in names:
            for until, limit in ((100.0, 10), (500.0, 1000), (2000.0, 5), (-1.0, 10),
                                 (300.0, 7)):
                expected = sorted((at, cid) for cid, at in due.items()
                                  if at <= until and owner[cid] == name)[:limit]
                assert small_store.due_for_rescore(name, until, limit) == [
                    cid for _, cid in expected]


def test_due_scan_of_one_partition_leaves_the_others_bounds(
    client: redis.Redis, small_store: RedisStore,
) -> None:
    """Customers of two partitions share every bucket: a partition's scan returns only
    its own, sets only its own bounds, and the other's are not lost."""
    mine, theirs = small_store.take_partition("kafka:t:0"), small_store.take_partition("kafka:t:1")
    _write(small_store, [_customer(f"m{i}", 0, 100.0 + i, partition="kafka:t:0")
                         for i in range(40)], mine)
    _write(small_store, [_customer(f"t{i}", 0, 5.5 + i, partition="kafka:t:1")
                         for i in range(40)], theirs)
    ids = small_store._partitions.ids()
    key = {name: f"{small_store.prefix}:due:{ids[name]}" for name in ids}
    assert {int(bucket) for bucket in client.zrange(key["kafka:t:0"], 0, -1)} == set(range(4))
    theirs_before = client.zrange(key["kafka:t:1"], 0, -1, withscores=True)
    found = small_store.due_for_rescore("kafka:t:0", 1000.0, 100)
    assert sorted(found) == sorted(f"m{i}" for i in range(40))
    assert client.zrange(key["kafka:t:1"], 0, -1, withscores=True) == theirs_before
    # its own bounds are exact (whole seconds): never lowered to the other's times
    earliest: dict[int, float] = {}
    for i in range(40):
        bucket = bucket_of(f"m{i}", 4)
        earliest[bucket] = min(earliest.get(bucket, 1e9), 100.0 + i)
    assert {int(member): score for member, score in client.zrange(
        key["kafka:t:0"], 0, -1, withscores=True)} == {
        bucket: float(int(at)) for bucket, at in earliest.items()}
    assert small_store.due_for_rescore("kafka:t:1", 10.0, 100) == [
        f"t{i}" for i in range(5)]
    assert small_store.due_for_rescore("kafka:t:9", 1e9, 100) == []  # unknown partition


def test_a_nan_due_time_is_never_due_and_breaks_nothing(small_store: RedisStore) -> None:
    part = small_store.take_partition(P)
    states = [_customer(f"n{i}", 0, math.nan) for i in range(8)]
    states += [_customer(f"d{i}", 0, 5.0 + i) for i in range(8)]  # sharing the 4 buckets
    _write(small_store, states, part)
    assert small_store.due_for_rescore(P, 1e12, 100) == [f"d{i}" for i in range(8)]
    assert math.isnan(small_store.get("n0").next_rescore_at)  # type: ignore[arg-type,union-attr]


# -- readers, layout, connection ----------------------------------------------------------
def test_iter_and_reader(redis_url: str, small_store: RedisStore) -> None:
    _write(small_store, [_customer("x", 4), _customer("y", 4), _customer("z", None)],
           small_store.take_partition(P))
    _write(small_store, [_customer("w", 4, partition="kafka:events:5"),
                         _customer("v", 1, partition="kafka:events:5")],
           small_store.take_partition("kafka:events:5"))
    assert sorted(s.customer_id for s in small_store.iter_customers()) == [
        "v", "w", "x", "y", "z"]
    reader = SegmentReader(redis_url, prefix=small_store.prefix)
    # Written without traits: version 1 records, read as such.
    assert reader.segment_of("x") == {"segment": 4, "name": "Segment 4",
                                      "updated_at": 1_714_557_600.623456, "model_version": 3,
                                      "traits": None}
    assert reader.segment_of("z") == {"segment": None, "name": None,
                                      "updated_at": 1_714_557_600.623456, "model_version": 3,
                                      "traits": None}
    assert reader.segment_of("nobody") is None
    assert reader.sizes() == {1: 1, 4: 3}  # summed over partitions
    assert SegmentReader(redis_url, prefix="no-such-prefix").segment_of("x") is None
    reader.close()


def test_layout_is_fixed_per_prefix(redis_url: str, small_store: RedisStore) -> None:
    _write(small_store, [_customer("k", 1)], small_store.take_partition(P))
    again = RedisStore.from_uri(redis_url, prefix=small_store.prefix, buckets=999)
    assert again.buckets == 4 and again.get("k") is not None
    assert bucket_of("k", 4) == bucket_of("k", again.buckets)
    assert again._redis.get(f"{small_store.prefix}:layout") == b"v2 buckets=4"
    again.close()


def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(ConnectionError) as caught:
        RedisStore.from_uri("redis://user:s3cret@127.0.0.1:1/0")
    assert "127.0.0.1:1" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.serial  # other tests' keys would count in the shared Redis' used_memory
def test_memory_per_customer_within_budget(redis_url: str) -> None:
    # 5k customers in 256 buckets: ~20 per bucket, as the default 1024 buckets at 20k;
    # over the 12 partitions of a topic, so that they share every bucket.
    # Noise (other clients of the shared Redis, the allocator's state) can only add:
    # keep the best of four. With traits and codec 2 the figure sat at the budget's edge
    # (249.97 to 250.07 in repeated runs); codec 3 measures 222.22 on a fresh Redis.
    per_customer = min(measure_memory_per_customer(redis_url, 5000, buckets=256)
                       for _ in range(4))
    assert per_customer <= 250, f"{per_customer:.1f} bytes per customer"


def test_model_parts_are_written_only_when_they_change_under_one_lease(
    redis_url: str, client: redis.Redis, small_store: RedisStore
) -> None:
    key = f"{small_store.prefix}:model"
    token = small_store.acquire_lease("worker-a", ttl_s=30.0)
    first = {"model": {"version": 1}, "reservoir_keys": ["a", "b"]}
    small_store.write_batch(BatchWrite(model_checkpoint=first, lease=token))
    assert small_store.load_model() == first
    # A marker in place of the unchanged part: a rewrite of it would erase the marker.
    client.hset(key, "reservoir_keys", '"marker"')
    second = {"model": {"version": 2}, "reservoir_keys": ["a", "b"]}
    small_store.write_batch(BatchWrite(model_checkpoint=second, lease=token))
    assert client.hget(key, "reservoir_keys") == b'"marker"'
    assert client.hget(key, "model") == b'{"version": 2}'
    third = {"model": {"version": 3}, "reservoir_keys": ["a", "c"]}
    small_store.write_batch(BatchWrite(model_checkpoint=third, lease=token))
    fresh = RedisStore.from_uri(redis_url, prefix=small_store.prefix)
    assert fresh.load_model() == third
    fresh.close()
    # Unless the write is fenced by the same lease, every part is written: another
    # writer may have written the model since.
    for how in ("no lease", "another lease", "forgotten"):
        client.hset(key, "reservoir_keys", '"marker"')
        if how == "no lease":
            small_store.write_batch(BatchWrite(model_checkpoint=third))
        elif how == "another lease":
            small_store.release_lease(token)
            token = small_store.acquire_lease("worker-a", ttl_s=30.0)
            small_store.write_batch(BatchWrite(model_checkpoint=third, lease=token))
        else:  # after a failed write the store no longer trusts what it remembers
            small_store.write_batch(BatchWrite(model_checkpoint=third, lease=token))
            client.hset(key, "reservoir_keys", '"marker"')
            small_store.forget_cached()
            small_store.write_batch(BatchWrite(model_checkpoint=third, lease=token))
        assert small_store.load_model() == third, how


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
        chosen.delete_all()
        chosen.close()


def test_a_model_checkpoint_written_as_one_string_is_read_and_replaced(
    redis_url: str, client: redis.Redis, redis_prefix: str
) -> None:
    """Earlier versions kept the model as one JSON string: it must load, and the next
    write must replace it with the hash of parts (an HSET on a string would fail)."""
    old = {"kind": "customer-kmeans", "model": {"version": 7}, "scaler": {"n": 3}}
    client.set(f"{redis_prefix}:model", json.dumps(old))
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    try:
        assert store.load_model() == old
        new = {"kind": "customer-kmeans", "model": {"version": 8}, "scaler": {"n": 3}}
        store.write_batch(BatchWrite(model_checkpoint=new))
        assert client.type(f"{redis_prefix}:model") == b"hash"
        assert store.load_model() == new
        assert RedisStore.from_uri(redis_url, prefix=redis_prefix).load_model() == new
    finally:
        store.close()


# -- migration of layout v1 ----------------------------------------------------------------
V1_IDS = {"kafka:events:0": 1, "kafka:events:1": 2, "file:x": 3}


def _v1_packed(state: CustomerState) -> bytes:
    """The codec-1 packed state (layout v1): codec 2's without the partition varint."""
    data = pack_state_v2(CustomerState.from_dict({**state.to_dict(), "partition": None}),
                         V1_IDS)
    at = 9 if state.next_rescore_at is not None else 1
    assert data[at] == 0  # the varint of "no partition"
    return bytes([(data[0] & 0x3F) | 1 << 6]) + data[1:at] + data[at + 1:]


def _change(cid: str) -> str:
    return json.dumps({"specversion": "1.0", "subject": cid, "data": {"customer_id": cid}})


def _v1_prefix(client: redis.Redis, prefix: str) -> dict[str, CustomerState]:
    """A prefix as the previous version left it, written by hand: layout v1, codec 1
    states, counters, positions, outbox and due index for the whole prefix."""
    def customer(cid: str, segment: int | None, due: float | None, streams: list[str]
                 ) -> CustomerState:
        state = _customer(cid, segment, due, partition=None)
        state.applied = {name: 10 + index for index, name in enumerate(streams)}
        return state

    states = {
        "a": customer("a", 1, 100.5, ["kafka:events:0"]),
        "b": customer("b", 2, 50.25, ["kafka:events:1"]),
        "c": customer("c", 1, None, ["file:x"]),
        "d": customer("d", None, 70.0, ["file:x", "kafka:events:1"]),
        "e": customer("e", 2, None, ["kafka:events:1", "kafka:events:0"]),
        "f": customer("f", 0, 20.0, ["kafka:events:1"]),
    }
    keys = Keys(prefix)
    client.set(keys.layout, "v1 buckets=4")
    client.hset(keys.streams, mapping=V1_IDS)  # type: ignore[arg-type]
    client.set(keys.streams_next, 3)
    for cid, state in states.items():
        packed = _v1_packed(state)
        if cid == "f":  # rewritten already by a migration that was interrupted
            packed = _upgrade_state(packed, V1_IDS["kafka:events:1"])
        fields = {_public_field(cid.encode()): _pack_public(state)}
        fields.update({_chunk_field(cid.encode(), index): chunk
                       for index, chunk in enumerate(_chunks(packed))})
        if cid == "a":  # a chunk left over from a longer earlier state
            fields[_chunk_field(b"a", len(_chunks(packed)))] = b"left over"
        client.hset(keys.bucket(bucket_of(cid, 4)), mapping=fields)  # type: ignore[arg-type]
    client.hset(keys.v1_sizes, mapping={"0": 1, "1": 2, "2": 2, "3": 0})
    client.set(keys.v1_count, 6)
    client.hset(keys.v1_positions, mapping={"kafka:events:0": 10, "kafka:events:1": 7,
                                            "file:x": 3})
    client.rpush(keys.v1_outbox, _change("b"), _change("a"))
    client.zadd(keys.v1_due, {"0": 1.0, "1": 2.0, "2": 3.0, "3": 4.0})
    client.hset(keys.meta, "watermark", "5.0")
    return states


def test_a_v1_prefix_is_migrated_in_place_when_opened(
    redis_url: str, client: redis.Redis, redis_prefix: str
) -> None:
    states = _v1_prefix(client, redis_prefix)
    reader = SegmentReader(redis_url, prefix=redis_prefix)
    assert reader.sizes() == {0: 1, 1: 2, 2: 2}  # v1 is readable before it is migrated
    assert reader.segment_of("b")["segment"] == 2  # type: ignore[index]
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    try:
        keys = Keys(redis_prefix)
        assert client.get(keys.layout) == b"v2 buckets=4"
        assert not client.exists(keys.v1_sizes, keys.v1_count, keys.v1_positions,
                                 keys.v1_outbox, keys.v1_due)
        assert store.partition_names() == ["kafka:events:0", "kafka:events:1", "local"]
        got = {name: store.read_partition(name) for name in store.partition_names()}
        assert got["kafka:events:0"] == Partition(
            "kafka:events:0", 0, {"kafka:events:0": 10}, {1: 1, 2: 1}, 2, [])
        assert got["kafka:events:1"] == Partition(
            "kafka:events:1", 0, {"kafka:events:1": 7}, {0: 1, 2: 1}, 3,
            [_change("b"), _change("a")])  # with its first change's customer
        assert got["local"] == Partition("local", 0, {"file:x": 3}, {1: 1}, 1, [])
        owner = {"a": "kafka:events:0", "b": "kafka:events:1", "c": "local",
                 "d": "kafka:events:1", "e": "kafka:events:0", "f": "kafka:events:1"}
        loaded = store.get_many(states)
        for cid, state in states.items():
            assert loaded[cid].to_dict() == {**state.to_dict(), "partition": owner[cid]}
        assert {s.customer_id: s.partition for s in store.iter_customers()} == owner
        assert store.due_for_rescore("kafka:events:0", 1000.0, 10) == ["a"]
        assert store.due_for_rescore("kafka:events:1", 1000.0, 10) == ["f", "b", "d"]
        assert store.due_for_rescore("local", 1000.0, 10) == []
        assert store.segment_sizes() == {0: 1, 1: 2, 2: 2} == reader.sizes()
        assert store.count() == 6 and store.meta() == {"watermark": 5.0}
        # Migrated once: opening it again changes nothing.
        before = _snapshot(client, redis_prefix)
        RedisStore.from_uri(redis_url, prefix=redis_prefix).close()
        assert _snapshot(client, redis_prefix) == before
        # And it is an ordinary v2 prefix now.
        part = store.take_partition("kafka:events:1")
        assert part.epoch == 1
        _write(store, [_customer("b", 3, partition="kafka:events:1")], part)
        assert store.segment_sizes() == {0: 1, 1: 2, 2: 1, 3: 1}
    finally:
        reader.close()
        store.close()


def test_a_v1_worker_writing_during_the_migration_makes_it_start_again(
    redis_url: str, client: redis.Redis, redis_prefix: str, monkeypatch: Any
) -> None:
    _v1_prefix(client, redis_prefix)
    keys = Keys(redis_prefix)
    rewrite = Migration._rewrite
    calls: list[int] = []

    def old_worker_writes(self: Migration, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # a worker of the previous version commits a batch meanwhile
            client.hset(keys.v1_positions, "kafka:events:0", 11)
        return rewrite(self, *args)

    monkeypatch.setattr(Migration, "_rewrite", old_worker_writes)
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    try:
        assert store.read_partition("kafka:events:0").positions == {"kafka:events:0": 11}
    finally:
        store.close()

    other = f"{redis_prefix}-again"
    _v1_prefix(client, other)

    def keeps_writing(self: Migration, *args: Any) -> Any:
        client.hincrby(Keys(other).v1_positions, "kafka:events:0", 1)
        return rewrite(self, *args)

    monkeypatch.setattr(Migration, "_rewrite", keeps_writing)
    try:
        with pytest.raises(RuntimeError, match="stop every worker of the previous"):
            RedisStore.from_uri(redis_url, prefix=other)
        assert client.get(Keys(other).layout) == b"v1 buckets=4"  # left as it was
    finally:
        for key in client.scan_iter(match=Keys(other).all_pattern):
            client.delete(key)


def test_sample_rows_round_trip_packed_and_rows_of_the_text_format_still_read(
        small_store: RedisStore, client: redis.Redis, redis_prefix: str) -> None:
    part = small_store.take_partition(P)
    rows: dict[str, Any] = {"a": (2, [0.1, -1 / 3, 1e-300, -0.0, 5.0, 7.25]), "b": (-1, [])}
    small_store.write_batch(BatchWrite([PartitionWrite(part, [], rows)]))
    key = Keys(redis_prefix).sample(small_store._partitions.id_of(P))
    stored = client.hgetall(key)
    assert stored[b"a"][:1] == b"\x01" and len(stored[b"a"]) == 3 + 6 * 8  # packed
    # A row as a release before the packed rows wrote it: exact float text.
    client.hset(key, "old", "3|0.5,-1.25,0.30000000000000004")
    back = small_store.read_sample([P])[P]
    assert back["a"] == (2, [0.1, -1 / 3, 1e-300, -0.0, 5.0, 7.25])
    assert math.copysign(1.0, back["a"][1][3]) == -1.0
    assert back["b"] == (-1, [])
    assert back["old"] == (3, [0.5, -1.25, 0.30000000000000004])
