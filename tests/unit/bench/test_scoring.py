"""The benchmark's scores (numpy/scipy) against scikit-learn's and scipy's own."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import mean_squared_error, roc_auc_score

from streamseg_bench.scoring import (
    auc_difference,
    bootstrap_interval,
    expected_calibration_error,
    rmse,
    roc_auc,
    spearman,
)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_scikit_learn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 8, 60) / 8  # few distinct values: many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_of_one_class_is_undefined() -> None:
    assert roc_auc([0, 0, 0], [0.1, 0.2, 0.3]) is None


@pytest.mark.parametrize("seed", range(5))
def test_calibration_error_matches_scikit_learns_decile_curve(seed: int) -> None:
    # 200 distinct probabilities: scikit-learn's quantile bins hold 20 customers each,
    # as the equal-count deciles do, so the weighted gap is the mean of the ten gaps.
    rng = np.random.default_rng(seed)
    probabilities = rng.uniform(0, 1, 200)
    labels = (rng.uniform(0, 1, 200) < probabilities**1.5).astype(int)
    observed, predicted = calibration_curve(labels, probabilities, n_bins=10,
                                            strategy="quantile")
    assert len(observed) == 10
    expected = float(np.mean(np.abs(observed - predicted)))
    assert expected_calibration_error(labels, probabilities) == pytest.approx(expected)


def test_calibration_error_keeps_ten_groups_when_probabilities_tie() -> None:
    # Half the customers share one probability: still ten groups of equal size.
    probabilities = np.r_[np.full(50, 0.2), np.linspace(0.3, 0.9, 50)]
    labels = np.r_[np.zeros(40), np.ones(10), np.ones(50)]
    gaps = [abs(probabilities[i:i + 10].mean() - labels[i:i + 10].mean())
            for i in range(0, 100, 10)]
    assert expected_calibration_error(labels, probabilities) == pytest.approx(np.mean(gaps))


def test_calibration_error_rejects_values_outside_zero_one() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.5, 1.5])


@pytest.mark.parametrize("seed", range(3))
def test_rmse_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    actual, predicted = rng.gamma(1.0, 30.0, 50), rng.gamma(1.0, 30.0, 50)
    assert rmse(actual, predicted) == pytest.approx(
        math.sqrt(mean_squared_error(actual, predicted)))


@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spend = np.where(rng.uniform(size=80) < 0.7, 0.0, rng.gamma(1.0, 30.0, 80))  # many zeros
    predicted = rng.integers(0, 10, 80) + spend / 10
    assert spearman(spend, predicted) == pytest.approx(spearmanr(spend, predicted).statistic)


def test_spearman_of_a_constant_is_undefined() -> None:
    assert spearman([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) is None


def test_scores_refuse_arrays_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one length"):
        rmse([1.0, 2.0], [1.0])


def test_a_paired_interval_is_narrower_than_the_scores_own_spread() -> None:
    # Two rankings that differ in a few customers only: pairing cancels what the
    # customers share, so the difference's interval is far narrower than either AUC's.
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < 0.2).astype(float)
    a = y + rng.normal(0, 1.0, 2000)
    b = a.copy()
    b[:50] = rng.normal(0, 1.0, 50)
    own = bootstrap_interval(roc_auc, y, a)
    gap = bootstrap_interval(auc_difference, y, a, b)
    assert own is not None and gap is not None
    assert gap["value"] == pytest.approx(roc_auc(y, a) - roc_auc(y, b), abs=1e-4)
    assert (gap["high"] - gap["low"]) < (own["high"] - own["low"]) / 3


def test_an_undefined_statistic_has_no_interval() -> None:
    assert bootstrap_interval(roc_auc, [1.0, 1.0, 1.0], [0.1, 0.2, 0.3]) is None
