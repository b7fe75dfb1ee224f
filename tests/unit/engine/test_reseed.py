"""streamseg reseed: re-segment stored customers into another k, without a replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamseg.app import Application
from streamseg.config import ConfigError
from streamseg.engine.reseed import reseed
from streamseg.store import BatchWrite, open_store
from streamseg_bench.measures import batch_kmeans_inertia, inertia
from tests.unit.test_app import _population, _run, _settings


def _stored(settings: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    store = open_store(settings.store)
    try:
        states = {s.customer_id: s for s in store.iter_customers()}
        return states, store.meta(), store.load_model()
    finally:
        store.close()


def _shared_sums(settings: Any) -> tuple[list[int], np.ndarray]:
    """The model's counts and sums per segment: the sum of the partitions' shares."""
    store = open_store(settings.store)
    try:
        shares = [p.model["stats"] for p in store.read_partitions().values()]
    finally:
        store.close()
    counts = np.sum([share["counts"] for share in shares], axis=0)
    return counts.tolist(), np.sum([share["sums"] for share in shares], axis=0)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(_population(customers=90, days=90)) + "\n")
    return path


def test_reseed_moves_every_customer_to_the_new_k_and_the_store_agrees(
    tmp_path: Path, source: Path
) -> None:
    settings = _settings(tmp_path, source)
    _run(settings)
    before, _, _ = _stored(settings)
    summary = reseed(settings, 4)
    states, meta, checkpoint = _stored(settings)
    segments = [s.segment for s in states.values() if s.features.has_purchases]
    assert set(segments) == {0, 1, 2, 3}
    assert summary.customers == len(segments) == len(before)
    assert meta["settings"]["model.n_clusters"] == 4 and not meta.get("reseed")
    counts, sums = _shared_sums(settings)
    assert counts == [segments.count(k) for k in range(4)], "model and store disagree"
    for k in range(4):
        vectors = [s.vector for s in states.values() if s.segment == k]
        np.testing.assert_allclose(sums[k], np.sum(vectors, axis=0), atol=1e-9)
    changes = [json.loads(line)["data"] for line in
               (tmp_path / "changes.jsonl").read_text().splitlines()]
    assert summary.changes > 0
    moved = changes[-summary.changes:]  # the reseed's, after the run's own
    assert {c["reason"] for c in moved} == {"model_update"}
    for change in moved:
        assert states[change["customer_id"]].segment == change["to_segment"]


def test_after_a_reseed_the_new_k_runs_and_the_old_one_is_refused(
    tmp_path: Path, source: Path
) -> None:
    _run(_settings(tmp_path, source))
    reseed(_settings(tmp_path, source), 4)
    with pytest.raises(ConfigError, match="model.n_clusters is 4"):
        Application(_settings(tmp_path, source))
    again = _run(_settings(tmp_path, source, model={"n_clusters": 4}))
    assert (again.processed, again.changes) == (0, 0)


def test_reseeded_segments_are_as_good_as_batch_kmeans(tmp_path: Path, source: Path) -> None:
    settings = _settings(tmp_path, source)
    _run(settings)
    reseed(settings, 3)
    states, _, checkpoint = _stored(settings)
    x = np.array([s.vector for s in states.values() if s.vector is not None])
    centroids = np.array(checkpoint["model"]["centroids"])
    assert inertia(x, centroids) <= 1.02 * batch_kmeans_inertia(x, 3, seed=0)


def test_an_interrupted_reseed_stops_the_service_until_it_is_finished(
    tmp_path: Path, source: Path
) -> None:
    settings = _settings(tmp_path, source)
    _run(settings)
    store = open_store(settings.store)
    store.write_batch(BatchWrite(meta={"reseed": {"k": 4}}))  # as a reseed's first write
    store.close()
    with pytest.raises(ConfigError, match="reseed --k 4"):
        Application(settings)
    reseed(settings, 4)
    Application(_settings(tmp_path, source, model={"n_clusters": 4})).close()


def test_reseed_refuses_other_changed_settings(tmp_path: Path, source: Path) -> None:
    _run(_settings(tmp_path, source))
    with pytest.raises(ConfigError, match="features.half_life_days"):
        reseed(_settings(tmp_path, source, features={"half_life_days": 10}), 4)
