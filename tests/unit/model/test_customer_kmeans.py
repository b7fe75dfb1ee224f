"""CustomerKMeans as the engine and River see it: input checks, River API and checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from river import checks, datasets
from river.checks import common

from streamseg.model import CustomerKMeans


def test_invalid_vectors_are_rejected() -> None:
    model = CustomerKMeans(n_clusters=2, warmup=2)
    model.update_customer("a", np.array([0.0, 1.0]), None, None)
    with pytest.raises(ValueError, match="dimension"):
        model.update_customer("b", np.array([0.0, 1.0, 2.0]), None, None)
    with pytest.raises(ValueError, match="finite"):
        model.update_customer("b", np.array([np.nan, 1.0]), None, None)
    with pytest.raises(ValueError):
        CustomerKMeans(n_clusters=5, warmup=3)
    with pytest.raises(ValueError):
        CustomerKMeans(hysteresis=1.0)


def test_river_clusterer_api_and_checks() -> None:
    from river import checks

    model = CustomerKMeans(n_clusters=2, warmup=6, seed=0)
    points = [{"b": 0.0, "a": 0.0}, {"a": 0.2, "b": 0.1}, {"a": 0.1}]
    points += [{"a": 9.0, "b": 9.0}, {"a": 9.2, "b": 9.1}, {"a": 9.1, "b": 8.9, "z": 3.0}]
    for x in points:
        model.learn_one(x)
    assert model.ready
    assert model.predict_one({"a": 0.0, "b": 0.0}) != model.predict_one({"a": 9.0, "b": 9.0})
    assert model.centroids.shape == (2, 2)  # "z" came later and is ignored
    clone = model.clone()
    assert not clone.ready and clone.n_clusters == 2
    for check in checks.yield_checks(model):
        check(model.clone())



@pytest.mark.parametrize(
    "params",
    [{}, *CustomerKMeans._unit_test_params(), {"n_clusters": 2, "warmup": 6, "hysteresis": 0.3}],
)
def test_river_check_estimator_passes(params: dict[str, Any]) -> None:
    """River's own conformance checks. For a Clusterer, River has no dataset to feed, so
    ``check_estimator`` runs its general checks only (repr, clone, pickling, params...)."""
    checks.check_estimator(CustomerKMeans(**params))


@pytest.mark.parametrize(
    "check",
    [
        common.check_learn_one,
        common.check_pickling,
        common.check_shuffle_features_no_impact,
        common.check_emerging_features,
        common.check_disappearing_features,
        common.check_radically_disappearing_features,
        common.check_predict_one_pure,
        common.check_predict_one_before_any_learn,
        common.check_no_state_aliasing_with_input,
        common.check_clone_is_independent,
        common.check_seeding_is_idempotent,
    ],
    ids=lambda c: c.__name__,
)
def test_river_dataset_checks_pass(check: Any) -> None:
    """River's dataset-driven checks, which ``check_estimator`` skips for clusterers, run
    on the features of one of River's bundled datasets (memory growth is left out: it is
    a noisy measurement)."""
    for params in CustomerKMeans._unit_test_params():
        check(CustomerKMeans(**params), dataset=list(datasets.TrumpApproval().take(200)))
