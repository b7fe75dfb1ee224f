"""Every store honours the same contract (tests/integration/test_redis_store.py runs
these tests against Redis too)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from streamseg.config import StoreSettings
from streamseg.core.features import CustomerFeatures
from streamseg.store import (
    BatchWrite,
    CustomerState,
    FencedError,
    LeaseHeld,
    MemoryStore,
    Partition,
    PartitionWrite,
    SQLiteStore,
    Store,
    open_store,
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield backend
    backend.close()


def _state(cid: str, segment: int | None, due: float | None, partition: str = "p0"
           ) -> CustomerState:
    features = CustomerFeatures.empty()
    features.apply(0.0, 10.0, "purchase", half_life_days=90)
    return CustomerState(cid, features, segment=segment, vector=[0.5, 1.5], next_rescore_at=due,
                         applied={"file:x": 3}, partition=partition)


def write(store: Store, part: Partition, states: Sequence[CustomerState], *,
          outbox: Sequence[str] = (), positions: dict[str, int] | None = None,
          **batch: object) -> Partition:
    """Write ``states`` under ``part`` as an engine would: sizes and the customer count
    recomputed as absolute values; returns the partition as written."""
    known = {s.customer_id: s for s in store.iter_customers() if s.partition == part.name}
    known.update({s.customer_id: s for s in states})
    sizes: dict[int, int] = {}
    for s in known.values():
        if s.segment is not None:
            sizes[s.segment] = sizes.get(s.segment, 0) + 1
    written = Partition(part.name, part.epoch, dict(positions or {}), sizes, len(known),
                        list(outbox))
    store.write_batch(BatchWrite([PartitionWrite(written, list(states))], **batch))  # type: ignore[arg-type]
    return written


def test_round_trip_and_totals_over_partitions(store: Store) -> None:
    p0, p1 = store.take_partition("p0"), store.take_partition("p1")
    write(store, p0, [_state("a", 0, 10.0), _state("b", 1, 20.0)],
          positions={"kafka:t:0": 3}, model_checkpoint={"k": 1}, meta={"watermark": 5.0})
    write(store, p1, [_state("c", 1, None, "p1"), _state("d", None, None, "p1")],
          positions={"kafka:t:1": 7})
    got = store.get_many(["a", "c", "zz"])
    assert set(got) == {"a", "c"}
    assert got["a"].to_dict() == _state("a", 0, 10.0).to_dict()
    assert got["c"].partition == "p1"
    assert store.count() == 4
    assert store.segment_sizes() == {0: 1, 1: 2}
    assert store.load_model() == {"k": 1}
    assert store.positions() == {"kafka:t:0": 3, "kafka:t:1": 7}
    assert store.meta() == {"watermark": 5.0}
    assert store.partition_names() == ["p0", "p1"]
    assert sorted(s.customer_id for s in store.iter_customers()) == ["a", "b", "c", "d"]


def test_partition_state_is_absolute_and_outboxes_are_per_partition(store: Store) -> None:
    p0, p1 = store.take_partition("p0"), store.take_partition("p1")
    write(store, p0, [_state("a", 0, None)], outbox=["a-change"], positions={"s0": 1})
    write(store, p1, [_state("b", 0, None, "p1")], outbox=["b-change"])
    write(store, p0, [_state("a", 1, None)], outbox=[], positions={"s0": 2})
    read = store.read_partition("p0")
    assert (read.sizes, read.customers, read.positions, read.outbox) == (
        {1: 1}, 1, {"s0": 2}, [])
    assert store.read_partition("p1").outbox == ["b-change"]  # p0's write left it alone
    assert store.segment_sizes() == {0: 1, 1: 1}
    assert store.outbox() == ["b-change"]


def test_taking_a_partition_bumps_its_epoch_and_fences_the_previous_owner(store: Store) -> None:
    first = store.take_partition("p0")
    write(store, first, [_state("a", 0, None)], positions={"s": 1})
    second = store.take_partition("p0")  # another worker, after a rebalance
    assert second.epoch == first.epoch + 1 and second.positions == {"s": 1}
    with pytest.raises(FencedError) as refused:
        write(store, first, [_state("a", 1, None)], positions={"s": 99})
    assert refused.value.partitions == ["p0"]
    assert store.get("a").segment == 0  # type: ignore[union-attr]
    assert store.positions() == {"s": 1}
    write(store, second, [_state("a", 1, None)], positions={"s": 2})
    assert store.get("a").segment == 1  # type: ignore[union-attr]


def test_a_fenced_partition_refuses_the_whole_batch(store: Store) -> None:
    mine, theirs = store.take_partition("p0"), store.take_partition("p1")
    store.take_partition("p1")
    ok = Partition("p0", mine.epoch, customers=1)
    stale = Partition("p1", theirs.epoch, customers=1)
    with pytest.raises(FencedError):
        store.write_batch(BatchWrite([PartitionWrite(ok, [_state("a", 0, None)]),
                                      PartitionWrite(stale, [_state("b", 0, None, "p1")])]))
    assert store.get_many(["a", "b"]) == {} and store.count() == 0


def test_due_index_is_per_partition_and_follows_the_latest_write(store: Store) -> None:
    p0, p1 = store.take_partition("p0"), store.take_partition("p1")
    write(store, p0, [_state("a", 0, 10.0), _state("b", 0, 30.0)])
    write(store, p1, [_state("z", 0, 5.0, "p1")])
    assert store.due_for_rescore("p0", 15.0, 10) == ["a"]
    assert store.due_for_rescore("p1", 15.0, 10) == ["z"]
    write(store, p0, [_state("a", 0, 40.0)])  # re-scored: due later
    assert store.due_for_rescore("p0", 15.0, 10) == []
    assert store.due_for_rescore("p0", 50.0, 1) == ["b"]
    assert sorted(store.due_for_rescore("p0", 50.0, 10)) == ["a", "b"]


def test_model_checkpoint_kept_when_batch_has_none(store: Store) -> None:
    store.write_batch(BatchWrite(model_checkpoint={"v": 1}))
    write(store, store.take_partition("p0"), [_state("a", 0, None)])
    assert store.load_model() == {"v": 1}


def test_the_lease_is_held_by_one_worker_until_it_expires_or_is_released(store: Store) -> None:
    token = store.acquire_lease("worker-a", ttl_s=30.0)
    with pytest.raises(LeaseHeld, match="worker-a"):
        store.acquire_lease("worker-b", ttl_s=30.0)
    assert store.renew_lease(token, ttl_s=30.0)
    store.release_lease(token)
    other = store.acquire_lease("worker-b", ttl_s=30.0)
    assert not store.renew_lease(token, ttl_s=30.0)
    with pytest.raises(FencedError) as refused:
        store.write_batch(BatchWrite(model_checkpoint={"v": 2}, lease=token))
    assert refused.value.lease
    store.write_batch(BatchWrite(model_checkpoint={"v": 3}, lease=other))
    assert store.load_model() == {"v": 3}


def test_a_worker_restarted_under_the_same_name_takes_its_lease_over(store: Store) -> None:
    old = store.acquire_lease("worker-1", ttl_s=30.0)
    with pytest.raises(LeaseHeld):
        store.acquire_lease("worker-1", ttl_s=30.0)
    new = store.acquire_lease("worker-1", ttl_s=30.0, replace_own=True)
    assert new != old and not store.renew_lease(old, ttl_s=30.0)
    with pytest.raises(LeaseHeld):
        store.acquire_lease("worker-2", ttl_s=30.0, replace_own=True)


def test_an_expired_lease_can_be_taken(store: Store) -> None:
    old = store.acquire_lease("worker-a", ttl_s=0.0)
    new = store.acquire_lease("worker-b", ttl_s=30.0)
    assert new != old and not store.renew_lease(old, ttl_s=30.0)


def test_sqlite_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SQLiteStore(path)
    write(first, first.take_partition("local"), [_state("a", 4, 1.0, "local")],
          positions={"p": 9})
    first.close()
    again = open_store(StoreSettings(uri=f"sqlite:///{path}"))
    assert again.get("a") is not None and again.get("a").segment == 4  # type: ignore[union-attr]
    assert again.positions() == {"p": 9}


def test_a_sqlite_file_of_the_previous_layout_moves_into_the_local_partition(
    tmp_path: Path,
) -> None:
    import json
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE customers (customer_id TEXT PRIMARY KEY, segment INTEGER,
                                next_rescore_at REAL, state TEXT NOT NULL);
        CREATE TABLE positions (key TEXT PRIMARY KEY, position INTEGER NOT NULL);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, change TEXT NOT NULL);
    """)
    old = _state("a", 2, 7.0)
    old.partition = None
    data = old.to_dict()
    del data["partition"]
    db.execute("INSERT INTO customers VALUES ('a', 2, 7.0, ?)", (json.dumps(data),))
    db.execute("INSERT INTO positions VALUES ('file:x', 3)")
    db.execute("INSERT INTO outbox VALUES (0, 'change')")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    local = store.read_partition("local")
    assert (local.positions, local.sizes, local.customers, local.outbox) == (
        {"file:x": 3}, {2: 1}, 1, ["change"])
    assert store.get("a").partition == "local"  # type: ignore[union-attr]
    assert store.due_for_rescore("local", 10.0, 5) == ["a"]
    store.close()


def test_unknown_store_scheme_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown store URI"):
        open_store(StoreSettings(uri="postgres://x"))
