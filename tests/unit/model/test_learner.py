"""The lifecycle (streamseg.model.learner): warm-up, seeding, flush, what an update returns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamseg.model import CustomerKMeans
from streamseg.model.learner import Learner, Params
from tests.unit.model._streams import Store, blobs


def test_warmup_buffers_distinct_customers_then_seeds_all() -> None:
    model = CustomerKMeans(n_clusters=2, warmup=4, seed=0)
    assert model.update_customer("a", np.array([0.0, 0.0]), None, None) == []
    assert model.update_customer("a", np.array([0.0, 0.5]), None, None) == []  # same key
    assert model.update_customer("b", np.array([0.0, 1.0]), None, None) == []
    assert model.update_customer("c", np.array([9.0, 9.0]), None, None) == []
    assert not model.ready and model.version == 0 and model.n_buffered == 3
    assert model.predict_one({"x": 1.0, "y": 2.0}) == 0
    with pytest.raises(RuntimeError):
        model.nearest(np.array([0.0, 0.0]))
    out = model.update_customer("d", np.array([9.0, 10.0]), None, None)
    assert model.ready and model.version == 1
    assert [a.key for a in out] == ["a", "b", "c", "d"]
    assert [a.by_model_update for a in out] == [True, True, True, False]
    by_key = {a.key: a for a in out}
    np.testing.assert_array_equal(by_key["a"].vector, [0.0, 0.5])  # latest vector kept
    assert by_key["a"].segment == by_key["b"].segment != by_key["c"].segment
    assert model.sizes.sum() == 4


def test_flush_seeds_early_only_with_enough_customers() -> None:
    model = CustomerKMeans(n_clusters=3, warmup=100)
    model.update_customer("a", np.array([0.0]), None, None)
    model.update_customer("b", np.array([5.0]), None, None)
    assert model.flush() == [] and not model.ready
    model.update_customer("c", np.array([10.0]), None, None)
    out = model.flush()
    assert model.ready and sorted(a.key for a in out) == ["a", "b", "c"]
    assert all(a.by_model_update for a in out)
    assert sorted(a.segment for a in out) == [0, 1, 2]
    assert model.flush() == []  # nothing happened since


def test_own_assignment_is_always_returned_first() -> None:
    events, _ = blobs(seed=5, n_per_blob=40)
    model = CustomerKMeans(n_clusters=5, warmup=50, refine_every=7)
    store: Store = {}
    for key, vector in events:
        prev = store.get(key)
        was_ready = model.ready
        out = model.update_customer(
            key, vector, None if prev is None else prev[0], None if prev is None else prev[1]
        )
        if was_ready:
            assert out[0].key == key and out[0].by_model_update is False
            assert all(a.by_model_update for a in out[1:])
        for a in out:
            store[a.key] = (a.vector, a.segment)



def _params(**changes: Any) -> Params:
    base: dict[str, Any] = {
        "n_clusters": 3, "warmup": 10, "reservoir_size": 50, "refine_every": 20,
        "lloyd_iterations": 10, "n_init": 2, "hysteresis": 0.0,
    }
    return Params(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_clusters": 0, "warmup": 0, "reservoir_size": 0}, "n_clusters must be >= 1, got 0"),
        ({"warmup": 2}, r"warmup \(2\) must be >= n_clusters \(3\)"),
        ({"reservoir_size": 2}, r"reservoir_size \(2\) must be >= n_clusters \(3\)"),
        ({"refine_every": -1}, "refine_every must be >= 0, got -1"),
        ({"lloyd_iterations": 0}, "lloyd_iterations must be >= 1, got 0"),
        ({"n_init": -1}, "n_init must be >= 0, got -1"),
        ({"hysteresis": 1.0}, r"hysteresis must be in \[0, 1\), got 1.0"),
        ({"hysteresis": -0.1}, r"hysteresis must be in \[0, 1\), got -0.1"),
    ],
)
def test_params_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _params(**changes)
    with pytest.raises(ValueError, match=message):
        CustomerKMeans(**{"n_clusters": 3, "warmup": 10, "reservoir_size": 50, **changes})


def test_refinement_runs_every_refine_every_updates() -> None:
    learner = Learner(_params(refine_every=5), seed=0)
    rng = np.random.default_rng(0)
    for i in range(10):
        learner.learn(f"w{i}", "p", rng.normal(size=2), None, None)
    assert learner.version == 1 and learner.refinements == 0
    for i in range(14):
        learner.learn(f"n{i}", "p", rng.normal(size=2), None, None)
    assert learner.refinements == 2 and learner.updates_since_refine == 4
    assert learner.version == 3 and learner.n_updates == 24
