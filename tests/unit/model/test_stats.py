"""Additive cluster statistics (streamseg.model.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.model.stats import ClusterStats


def _points() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 3)), rng.integers(4, size=200)


def test_of_matches_direct_sums_and_sse_the_direct_objective() -> None:
    x, labels = _points()
    s = ClusterStats.of(x, labels, k=5)  # cluster 4 is empty
    assert s.counts.tolist() == np.bincount(labels, minlength=5).tolist()
    for j in range(4):
        np.testing.assert_allclose(s.sums[j], x[labels == j].sum(axis=0))
        np.testing.assert_allclose(s.sqsums[j], (x[labels == j] ** 2).sum())
    centroids = s.centroids(np.full((5, 3), 7.0))
    assert centroids[4].tolist() == [7.0, 7.0, 7.0]  # an empty cluster keeps its fallback
    direct = sum(((x[labels == j] - centroids[j]) ** 2).sum() for j in range(4))
    assert s.sse() == pytest.approx(direct, rel=1e-9)


def test_add_and_subtract_move_points_between_summaries() -> None:
    x, labels = _points()
    whole = ClusterStats.of(x, labels, k=4)
    part = ClusterStats.of(x[:50], labels[:50], k=4)
    rest = whole - part
    expected = ClusterStats.of(x[50:], labels[50:], k=4)
    assert rest.counts.tolist() == expected.counts.tolist()
    np.testing.assert_allclose(rest.sums, expected.sums, atol=1e-12)
    back = rest + part
    assert back.counts.tolist() == whole.counts.tolist()


def test_an_emptied_cluster_is_exactly_zero() -> None:
    x = np.array([[0.1, 0.2], [0.3, 0.7]])
    s = ClusterStats.of(x, np.array([0, 1]), k=2)
    rest = s - ClusterStats.of(x[1:], np.array([1]), k=2)
    assert rest.counts.tolist() == [1, 0]
    assert rest.sums[1].tolist() == [0.0, 0.0] and rest.sqsums[1] == 0.0


def test_copy_is_independent() -> None:
    s = ClusterStats.zeros(2, 2)
    c = s.copy()
    c.sums[0, 0] = 1.0
    c.counts[0] = 3
    assert s.sums[0, 0] == 0.0 and s.counts[0] == 0
