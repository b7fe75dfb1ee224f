"""SegmentationEngine on an in-memory store: one batch at a time, no servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamseg.config import load_settings
from streamseg.core.events import RawRecord
from streamseg.engine import SegmentationEngine
from streamseg.model import CustomerKMeans
from streamseg.store import BatchWrite, MemoryStore, PartitionWrite

START = datetime(2024, 1, 1, tzinfo=UTC)


def _record(i: int, customer: str, day: float, amount: float = 20.0, *,
            stream: str = "s", event_id: str | None = None) -> RawRecord:
    payload = json.dumps({"event_id": event_id or f"e{i}", "customer_id": customer,
                          "amount": amount,
                          "timestamp": (START + timedelta(days=day)).isoformat()})
    return RawRecord(payload, f"test:{i}", stream, i)


def _engine(store: MemoryStore | None = None, **model: Any) -> SegmentationEngine:
    settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4, **model}})
    store = store or MemoryStore()
    engine = SegmentationEngine(settings, store)
    engine.own(store.take_partition("local"))
    return engine


def _write(engine: SegmentationEngine, store: MemoryStore, outcome: Any) -> None:
    partition = engine.partitions["local"]
    store.write_batch(BatchWrite([PartitionWrite(partition, outcome.states)],
                                 model_checkpoint=engine.model_checkpoint()))


def test_a_redelivered_record_changes_nothing() -> None:
    store = MemoryStore()
    engine = _engine(store)
    first = engine.process([_record(0, "a", 0), _record(1, "a", 1)])
    _write(engine, store, first)
    again = engine.process([_record(1, "a", 1)])
    assert (first.applied, again.applied, again.duplicates) == (2, 0, 1)
    assert again.states == []


def test_the_same_event_id_twice_is_applied_once() -> None:
    engine = _engine()
    outcome = engine.process([_record(0, "a", 0, event_id="x"), _record(1, "a", 1, event_id="x")])
    assert (outcome.applied, outcome.duplicates) == (1, 1)
    assert outcome.states[0].features.orders == 1


def test_rejects_come_back_as_dead_letters_in_record_order() -> None:
    engine = _engine()
    outcome = engine.process([RawRecord("{", "r:0"), _record(1, "a", 0), RawRecord("[]", "r:2")])
    assert [letter.origin for letter in outcome.rejected] == ["r:0", "r:2"]
    assert outcome.applied == 1


def test_the_watermark_is_the_latest_event_time_and_the_clock_follows_it() -> None:
    engine = _engine()
    engine.process([_record(0, "a", 5), _record(1, "b", 2)])
    assert engine.watermark == (START + timedelta(days=5)).timestamp()
    assert engine.now() == engine.watermark


def test_every_customer_gets_one_first_assignment_once_the_model_is_seeded() -> None:
    engine = _engine()
    outcome = engine.process([_record(i, f"c{i}", i, 10.0 + 100 * (i % 2)) for i in range(6)])
    firsts = [c.data.customer_id for c in outcome.changes if c.data.reason == "first_assignment"]
    assert sorted(firsts) == [f"c{i}" for i in range(6)]
    assert all(state.segment is not None for state in outcome.states)


def test_the_model_checkpoint_restores_the_same_engine() -> None:
    store = MemoryStore()
    engine = _engine(store)
    _write(engine, store, engine.process(
        [_record(i, f"c{i}", i, 10.0 + 100 * (i % 2)) for i in range(8)]))
    again = SegmentationEngine(engine.settings, store)
    assert again.model_checkpoint() == engine.model_checkpoint()
    assert again.segment_names == engine.segment_names


@pytest.mark.parametrize("clock", ["event", "wall"])
def test_the_clock_setting(clock: str) -> None:
    settings = load_settings(overrides={"pipeline": {"clock": clock}})
    engine = SegmentationEngine(settings, MemoryStore(), wall_clock=lambda: 123.0)
    assert engine.now() == (123.0 if clock == "wall" else 0.0)


def test_partition_sizes_and_counts_follow_every_written_customer() -> None:
    store = MemoryStore()
    engine = _engine(store)
    for start in (0, 8):  # two batches: the second moves some customers
        outcome = engine.process([_record(start + i, f"c{i}", start + i, 10.0 + 100 * (i % 2))
                                  for i in range(8)])
        _write(engine, store, outcome)
    stored = [s for s in store.iter_customers() if s.segment is not None]
    expected: dict[int, int] = {}
    for state in stored:
        expected[state.segment] = expected.get(state.segment, 0) + 1  # type: ignore[index]
    local = engine.partitions["local"]
    assert local.sizes == expected and local.customers == 8
    assert store.segment_sizes() == expected and store.count() == 8


def test_records_of_a_partition_this_worker_does_not_own_are_left_alone() -> None:
    engine = _engine()
    foreign = _record(0, "a", 0)
    foreign.partition = "kafka:t:3"
    outcome = engine.process([foreign, _record(1, "b", 0)])
    assert (outcome.applied, outcome.foreign) == (1, 1)
    assert [s.customer_id for s in outcome.states] == ["b"]


@pytest.mark.parametrize("partitions", [["local"], ["kafka:t:0", "kafka:t:1"]])
def test_a_restarted_worker_that_takes_every_partition_counts_each_customer_once(
    partitions: list[str],
) -> None:
    """At start the engine reads every stored share as another worker's; taking them all
    must leave nothing counted twice (once as "others", once as its own)."""
    store = MemoryStore()
    settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4}})
    first = SegmentationEngine(settings, store)
    for name in partitions:
        first.own(store.take_partition(name))
    records = []
    for i in range(12):
        records.append(_record(i, f"c{i}", i, 10.0 + 100 * (i % 2)))
        records[-1].partition = partitions[i % len(partitions)]
    outcome = first.process(records)
    store.write_batch(BatchWrite(
        [PartitionWrite(first.partitions[name],
                        [s for s in outcome.states if s.partition == name])
         for name in partitions], model_checkpoint=first.model_checkpoint()))
    again = SegmentationEngine(settings, store)
    for name in partitions:
        again.own(store.take_partition(name))
    assert list(again.model.sizes) == list(first.model.sizes)
    assert sum(again.model.sizes) == 12


def test_a_follower_uses_the_published_hysteresis_and_its_own_once_it_refines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Workers sharing a model never mix two hysteresis values: the refiner's win."""
    store = MemoryStore()
    refiner = _engine(store, hysteresis=0.2)
    _write(refiner, store, refiner.process(
        [_record(i, f"c{i}", i, 10.0 + 100 * (i % 2)) for i in range(8)]))
    mine = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4,
                                              "hysteresis": 0.05}})
    with caplog.at_level("WARNING"):
        follower = SegmentationEngine(mine, store, shared=True)
    assert follower.model.hysteresis == 0.2
    assert "model.hysteresis is 0.05 here, 0.2 in the model" in caplog.text
    follower.lead()
    assert follower.model.hysteresis == 0.05


def test_a_reorganisation_is_released_once_the_sweep_placed_every_customer() -> None:
    """Held (pinned) centroids: the sweep places every stored customer at them, records
    the version it swept at in the partition's share, and then they are released."""
    store = MemoryStore()
    engine = _engine(store, sweep_page=3)
    _write(engine, store, engine.process(
        [_record(i, f"c{i}", i, 10.0 + 100 * (i % 2)) for i in range(10)]))
    model = engine.model
    assert isinstance(model, CustomerKMeans) and model.reorganise
    before = {s.customer_id: s.segment for s in store.iter_customers()}
    held = model.centroids[::-1].copy()  # the segments swap places
    model._learner.clustering.pin(held)  # type: ignore[union-attr]
    version = model.version
    steps = 0
    while engine.reorganising:
        outcome = engine.sweep_batch(3)
        _write(engine, store, outcome)
        steps += 1
        assert steps < 10
        if engine.reorganising:
            assert model.centroids.tolist() == held.tolist()
    assert steps == 4  # ten customers, three a page
    assert model.version == version + 1 and not model.pinned
    share = store.read_partitions(["local"])["local"].model
    assert share is not None and share["swept"] == version
    # every customer moved with the swap, and the centroids are their means again
    states = list(store.iter_customers())
    assert {s.customer_id: s.segment for s in states} == {
        cid: 1 - segment for cid, segment in before.items()}  # type: ignore[operator]
    assert sorted(model.sizes.tolist()) == sorted(
        [sum(s.segment == k for s in states) for k in (0, 1)])
