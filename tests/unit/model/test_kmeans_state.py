"""Persistence of CustomerKMeans (streamseg.model.kmeans_state)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from streamseg.model import CustomerKMeans, RiverKMeansModel
from streamseg.model.rng import rng_to_state
from tests.unit.model._streams import blobs, drive, drive_without_flush, replay_pair


@pytest.mark.parametrize("cut", [50, 1500])  # during warm-up, and well after seeding
def test_state_round_trip_behaves_identically(cut: int) -> None:
    events, _ = blobs(seed=7, n_per_blob=100)
    params: dict[str, Any] = {
        "n_clusters": 5,
        "warmup": 120,
        "reservoir_size": 150,
        "refine_every": 90,
    }
    model = CustomerKMeans(**params, seed=9)
    store = drive_without_flush(model, events[:cut])
    state = json.loads(json.dumps(model.to_state()))
    restored = CustomerKMeans.from_state(state)
    assert restored.to_state() == state
    replay_pair(model, restored, events[cut:], store)
    # The same input from scratch gives the same result too (determinism).
    again = CustomerKMeans(**params, seed=9)
    drive(again, events)
    np.testing.assert_array_equal(again.centroids, model.centroids)


def test_state_keeps_the_random_generator() -> None:
    """Without the RNG state, a restored model would search restarts differently."""
    events, _ = blobs(seed=8, n_per_blob=80)
    model = CustomerKMeans(n_clusters=5, warmup=100, reservoir_size=120, refine_every=50)
    drive_without_flush(model, events[:1000])
    state = json.loads(json.dumps(model.to_state()))
    restored = CustomerKMeans.from_state(state)
    assert restored._learner.rng.random() == model._learner.rng.random()
    state["rng"] = rng_to_state(np.random.default_rng(12345))
    tampered = CustomerKMeans.from_state(state)
    assert tampered._learner.rng.random() != model._learner.rng.random()


def test_a_large_sample_grows_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    model = CustomerKMeans(n_clusters=3, warmup=10, reservoir_size=100_000, refine_every=0)
    events = [(f"k{i}", v) for i, v in enumerate(rng.normal(size=(1500, 2)))]
    store = drive_without_flush(model, events)
    assert model.n_sampled == 1500
    restored = CustomerKMeans.from_state(json.loads(json.dumps(model.to_state())))
    assert restored.n_sampled == 1500
    more = [(f"k{i}", np.ones(2) * i) for i in range(0, 1500, 7)] + [("new", np.zeros(2))]
    replay_pair(model, restored, more, store)
    assert restored.n_sampled == 1501


def test_from_state_rejects_other_kinds() -> None:
    with pytest.raises(ValueError, match="customer-kmeans"):
        CustomerKMeans.from_state(RiverKMeansModel().to_state())



STATE_KEYS = [
    "kind", "format", "params", "names", "dim", "version", "n_updates",
    "updates_since_refine", "refinements", "n_anonymous", "rng", "buffer", "centroids",
    "parts", "sample",
]


def test_the_stored_format_keeps_its_keys_and_their_order() -> None:
    """Checkpoints written by earlier runs must load, and the stored bytes stay the same."""
    model = CustomerKMeans(n_clusters=2, warmup=4, seed=0)
    assert list(model.to_state()) == STATE_KEYS
    drive_without_flush(model, [(f"c{i}", np.array([float(i)])) for i in range(6)])
    state = model.to_state()
    assert list(state) == STATE_KEYS
    assert list(state["params"]) == [
        "n_clusters", "warmup", "reservoir_size", "refine_every", "lloyd_iterations",
        "n_init", "hysteresis", "seed", "feature_names",
    ]
    assert list(state["sample"]) == ["capacity", "rate", "rows"]
    assert list(state["buffer"]) == ["keys", "partitions", "vectors"]


def test_without_vectors_statistics_and_sample_are_left_to_the_caller() -> None:
    events, _ = blobs(seed=10, n_per_blob=40)
    model = CustomerKMeans(n_clusters=5, warmup=60, reservoir_size=80, refine_every=50)
    store = drive_without_flush(model, events[:600])
    light = json.loads(json.dumps(model.to_state(with_vectors=False)))
    assert light["sample"]["rows"] is None and light["parts"] is None
    restored = CustomerKMeans.from_state(light)
    assert restored.n_sampled == 0 and restored.partition_stats() == {}
    rows = json.loads(json.dumps(model.to_state()))["sample"]["rows"]
    assert not restored.own("", model.partition_stats()[""],
                            [(key, vector, segment) for key, _, vector, segment in rows])
    assert restored.to_state() == json.loads(json.dumps(model.to_state()))
    replay_pair(model, restored, events[600:], store)
