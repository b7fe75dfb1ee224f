"""Scores of predictions against outcomes, for ``streamseg bench traits``.

numpy and scipy only, so that the benchmark needs no scikit-learn; the unit tests check
each one against scikit-learn or scipy on small examples. Every score is ``None`` when it
is undefined (e.g. AUC with one class only, Spearman of a constant): a benchmark table
shows "n/a" rather than a number that means nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata


def _pair(first: ArrayLike, second: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two 1-d arrays of one length, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores need finite values")
    return a, b


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2.

    The Mann-Whitney U statistic over average ranks; ``None`` with a single class.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([1, 1], [0.2, 0.3]) is None
    True
    """
    y, s = _pair(labels, scores)
    positive = y > 0
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)  # ties get their average rank: a tie counts one half
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def expected_calibration_error(
    labels: ArrayLike, probabilities: ArrayLike, bins: int = 10
) -> float | None:
    """Expected calibration error over ``bins`` equal-count bins (deciles by default).

    Customers are sorted by predicted probability (stably, so ties keep their order) and
    cut into ``bins`` groups of equal size (sizes differ by at most one); the error is
    the size-weighted mean of |mean predicted - observed rate| over the groups. Equal
    counts rather than quantile edges, so that many equal probabilities (every
    one-purchase customer of one age under BG/NBD) still make ``bins`` groups.

    >>> expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], bins=2)
    0.0
    >>> expected_calibration_error([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.8], bins=2)
    0.25
    """
    y, p = _pair(labels, probabilities)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if len(y) == 0:
        return None
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    error = 0.0
    for group in np.array_split(order, min(bins, len(y))):
        error += len(group) * abs(float(p[group].mean()) - float(y[group].mean()))
    return round(error / len(y), 12)


def rmse(actual: ArrayLike, predicted: ArrayLike) -> float | None:
    """Root mean squared error; ``None`` for no values.

    >>> rmse([0.0, 10.0], [0.0, 7.0]) == math.sqrt(4.5)
    True
    """
    a, b = _pair(actual, predicted)
    if len(a) == 0:
        return None
    return float(np.sqrt(np.mean((a - b) ** 2)))


def spearman(first: ArrayLike, second: ArrayLike) -> float | None:
    """Spearman's rank correlation (average ranks for ties); ``None`` if either is constant.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
    0.8
    >>> spearman([1, 2, 3], [5, 5, 5]) is None
    True
    """
    a, b = _pair(first, second)
    if len(a) < 2:
        return None
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    norm = math.sqrt(float((ra**2).sum()) * float((rb**2).sum()))
    if norm == 0:
        return None
    return round(float((ra * rb).sum()) / norm, 12)


def bootstrap_interval(
    statistic: Callable[..., float | None], *arrays: ArrayLike,
    resamples: int = 1000, level: float = 0.95, seed: int = 0,
) -> dict[str, float] | None:
    """``statistic(*arrays)`` and its percentile bootstrap interval: the customers (the
    arrays' rows) drawn with replacement, one draw for all the arrays -- so that the
    difference of two methods' scores is *paired* (a customer hard for one is hard for
    the other). ``None`` where the statistic is undefined on the data. A difference
    whose interval holds 0 is one this sample cannot tell from chance.

    >>> rng = np.random.default_rng(1)
    >>> y = rng.normal(size=400)
    >>> close = bootstrap_interval(rmse_difference, y, y + rng.normal(0, 1.0, 400),
    ...                            y + rng.normal(0, 1.01, 400))
    >>> close["low"] < 0 < close["high"]
    True
    >>> far = bootstrap_interval(rmse_difference, y, y + rng.normal(0, 0.5, 400),
    ...                          y + rng.normal(0, 2.0, 400))
    >>> far["high"] < 0
    True
    """
    data = [np.asarray(a, dtype=float) for a in arrays]
    point = statistic(*data)
    if point is None:
        return None
    rng = np.random.default_rng(seed)
    rows = len(data[0])
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, rows, rows)
        value = statistic(*(a[pick] for a in data))
        if value is not None:
            draws.append(value)
    if not draws:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return {"value": round(point, 4), "low": round(float(low), 4),
            "high": round(float(high), 4)}


def auc_difference(outcome: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> float | None:
    """AUC of ``ours`` minus AUC of ``theirs`` (for :func:`bootstrap_interval`)."""
    mine, other = roc_auc(outcome, ours), roc_auc(outcome, theirs)
    return None if mine is None or other is None else mine - other


def rmse_difference(outcome: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> float | None:
    """RMSE of ``ours`` minus RMSE of ``theirs`` (for :func:`bootstrap_interval`)."""
    mine, other = rmse(outcome, ours), rmse(outcome, theirs)
    return None if mine is None or other is None else mine - other
