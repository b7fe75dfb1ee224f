"""Batch k-means building blocks (streamseg.model.batch)."""

from __future__ import annotations

import numpy as np

from streamseg.model.batch import (
    best_kmeans,
    kmeans_plusplus,
    lloyd,
    match_ids,
    squared_distances,
    squared_distances_one,
)
from streamseg.model.stats import ClusterStats


def test_lloyd_refills_an_empty_cluster() -> None:
    x = np.array([[0.0], [0.1], [0.2], [10.0], [10.1]])
    fixed = ClusterStats.zeros(3, 1)
    # Empty clusters' fallback centroids are far away, so only re-seeding can fill them.
    labels, stats, _ = lloyd(x, np.array([0, 0, 0, 0, 0]), fixed, np.full((3, 1), 50.0), 10)
    assert (stats.counts > 0).all()
    assert len(set(labels.tolist())) == 3


def test_lloyd_keeps_the_fixed_contribution() -> None:
    # A fixed customer at 100 in cluster 1 keeps pulling that centroid.
    fixed = ClusterStats.of(np.array([[100.0]]), np.array([1]), k=2)
    x = np.array([[0.0], [1.0], [2.0]])
    labels, stats, c = lloyd(x, np.array([0, 0, 1]), fixed, np.zeros((2, 1)), 10)
    assert labels.tolist() == [0, 0, 0]
    assert stats.counts.tolist() == [3, 1]
    assert c[:, 0].tolist() == [1.0, 100.0]


def test_match_ids_undoes_a_permutation() -> None:
    rng = np.random.default_rng(0)
    old = rng.normal(size=(6, 3)) * 10
    perm = rng.permutation(6)
    new = old[perm] + rng.normal(scale=0.01, size=(6, 3))
    matched = match_ids(old, new)
    np.testing.assert_allclose(new[matched], old, atol=0.1)



def test_one_row_distances_agree_with_the_matrix_form() -> None:
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(20, 4)), rng.normal(size=(3, 4))
    full = squared_distances(x, c)
    for i in range(20):
        np.testing.assert_allclose(squared_distances_one(x[i], c), full[i], atol=1e-12)


def test_kmeans_plusplus_picks_rows_of_x_in_distinct_clusters() -> None:
    rng = np.random.default_rng(2)
    blobs = np.vstack([rng.normal(m, 0.1, size=(30, 2)) for m in (0.0, 10.0, 20.0)])
    centres = kmeans_plusplus(blobs, 3, np.random.default_rng(0))
    assert all((blobs == c).all(axis=1).any() for c in centres)
    assert sorted(np.round(centres[:, 0] / 10).tolist()) == [0.0, 1.0, 2.0]


def test_best_kmeans_keeps_the_lowest_objective_of_its_runs() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    runs = []
    draws = np.random.default_rng(5)
    for _ in range(4):
        labels, _ = best_kmeans(x, 6, 1, 10, draws)
        runs.append(ClusterStats.of(x, labels, 6).sse())
    labels, centroids = best_kmeans(x, 6, 4, 10, np.random.default_rng(5))
    assert ClusterStats.of(x, labels, 6).sse() == min(runs)
    np.testing.assert_allclose(centroids, ClusterStats.of(x, labels, 6).centroids(centroids))
