"""Two workers, one trait model: each learns its own partitions' labels, once, and both
predict with the sum (the shares add up)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from streamseg.config import load_settings
from streamseg.core.events import RawRecord
from streamseg.engine import SegmentationEngine
from streamseg.store import BatchWrite, MemoryStore, PartitionWrite
from streamseg.traits.learner import TraitShare

START = datetime(2024, 1, 1, tzinfo=UTC)
PARTITIONS = ["kafka:t:0", "kafka:t:1"]
SETTINGS = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4}})


def _records() -> list[RawRecord]:
    """40 customers over 500 days, some steady, some lapsing, in time order."""
    rng = np.random.default_rng(4)
    rows = []
    for c in range(40):
        day, gap, stop = float(rng.uniform(0, 30)), float(rng.uniform(10, 80)), \
            float(rng.uniform(100, 500))
        while day < stop:
            rows.append((day, c))
            day += gap * float(rng.uniform(0.5, 1.5))
    rows.sort()
    out = []
    for i, (day, c) in enumerate(rows):
        payload = json.dumps({"event_id": f"e{i}", "customer_id": f"c{c}", "amount": 20 + c,
                              "timestamp": (START + timedelta(days=day)).isoformat()})
        record = RawRecord(payload, f"t:{i}", f"kafka:t:{c % 2}", i)
        record.partition = PARTITIONS[c % 2]
        out.append(record)
    return out


def _write(engine: SegmentationEngine, store: MemoryStore, states: list) -> None:
    store.write_batch(BatchWrite([
        PartitionWrite(engine.partitions[name], [s for s in states if s.partition == name])
        for name in engine.partitions]))


def _final_visit(engine: SegmentationEngine, store: MemoryStore, at: float) -> None:
    """Every stored customer of the engine's partitions visited at ``at`` (what the timer
    does in time): the labels matured by then are learned."""
    assert engine.traits is not None
    states = [s for s in store.iter_customers() if s.partition in engine.partitions]
    for state in states:
        engine.traits.at_clock(state, at)


def _total(store: MemoryStore) -> TraitShare:
    total = TraitShare()
    for part in store.read_partitions().values():
        total.add(TraitShare.from_json((part.model or {}).get("traits")))
    return total


def test_two_workers_learn_what_one_learns_once_and_predict_alike() -> None:
    records = _records()
    batches = [records[i:i + 25] for i in range(0, len(records), 25)]
    final = (START + timedelta(days=700)).timestamp()

    one_store = MemoryStore()
    one = SegmentationEngine(SETTINGS, one_store)
    for name in PARTITIONS:
        one.own(one_store.take_partition(name))
    for batch in batches:
        _write(one, one_store, one.process(batch).states)
    _final_visit(one, one_store, final)
    learned_one = one.traits.total() if one.traits else None

    store = MemoryStore()
    workers = [SegmentationEngine(SETTINGS, store, shared=True) for _ in PARTITIONS]
    for worker, name in zip(workers, PARTITIONS, strict=True):
        worker.own(store.take_partition(name))
    for batch in batches:
        for worker in workers:  # each gets the whole poll, applies its partition's records
            outcome = worker.process(batch)
            _write(worker, store, outcome.states)
        for worker in workers:
            worker.refresh_view()
    for worker in workers:
        _final_visit(worker, store, final)
    assert learned_one is not None and learned_one.quality.examples > 100
    both = TraitShare()
    for worker in workers:
        assert worker.traits is not None
        both.add(worker.traits.own_shares[PARTITIONS[workers.index(worker)]])
    # Each label learned once, by its partition's owner: the same counts as one worker.
    assert both.quality.examples == learned_one.quality.examples
    assert np.array_equal(both.stats.sums[:, :2], learned_one.stats.sums[:, :2])
    # The buyers of the spend curve too (their rates depend on the snapshot alone).
    assert learned_one.stats.curve.buyers > 0
    assert np.array_equal(both.stats.curve.sums[:, 0], learned_one.stats.curve.sums[:, 0])
    assert np.allclose(both.stats.curve.sums[:, 1], learned_one.stats.curve.sums[:, 1])
    # Each worker predicts with its own share and the other's as stored (the final
    # visits were not written): the same model once both shares are the stored ones.
    for index, worker in enumerate(workers):
        worker.refresh_view()
        assert worker.traits is not None
        other = store.read_partition(PARTITIONS[1 - index]).model or {}
        expected = (worker.traits.own_shares[PARTITIONS[index]].quality.examples
                    + TraitShare.from_json(other.get("traits")).quality.examples)
        assert worker.traits.total().quality.examples == expected
    for index, worker in enumerate(workers):  # back to the stored shares
        assert worker.traits is not None
        worker.traits.own(PARTITIONS[index], (store.read_partition(PARTITIONS[index]).model
                                              or {}).get("traits"))
        worker.refresh_view()
    customer = next(iter(store.iter_customers()))
    a, b = (w.traits.predict(customer.features, final) for w in workers if w.traits)
    assert a == b  # one model for all
