"""The measures agree with scikit-learn's (a test dependency only) to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from streamseg.evaluate.metrics import (
    adjusted_rand,
    calinski_harabasz,
    davies_bouldin,
    inertia,
    silhouette,
)


def _blobs(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, 6))
    labels = rng.integers(0, k, n)
    return centres[labels] + rng.normal(size=(n, 6)), labels


@pytest.mark.parametrize(("n", "k", "seed"), [(40, 2, 0), (500, 5, 1), (2500, 7, 2)])
def test_measures_agree_with_scikit_learn(n: int, k: int, seed: int) -> None:
    x, labels = _blobs(n, k, seed)
    noisy = labels.copy()
    noisy[: n // 5] = np.random.default_rng(seed + 9).integers(0, k, n // 5)
    for y in (labels, noisy, labels * 3 + 10):  # any integer ids
        assert silhouette(x, y) == pytest.approx(sk.silhouette_score(x, y), abs=1e-6)
        assert davies_bouldin(x, y) == pytest.approx(sk.davies_bouldin_score(x, y), abs=1e-6)
        assert calinski_harabasz(x, y) == pytest.approx(
            sk.calinski_harabasz_score(x, y), rel=1e-9, abs=1e-6)
    assert adjusted_rand(labels, noisy) == pytest.approx(
        sk.adjusted_rand_score(labels, noisy), abs=1e-6)
    assert adjusted_rand(labels, labels[::-1]) == pytest.approx(
        sk.adjusted_rand_score(labels, labels[::-1]), abs=1e-6)


def test_silhouette_of_singletons_and_duplicates_agrees_with_scikit_learn() -> None:
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [5.0, 6.0], [9.0, 9.0]])
    y = np.array([0, 0, 0, 1, 1, 2])  # segment 2 is one customer: silhouette 0 for it
    assert silhouette(x, y) == pytest.approx(sk.silhouette_score(x, y), abs=1e-6)
    assert davies_bouldin(x, y) == pytest.approx(sk.davies_bouldin_score(x, y), abs=1e-6)


def test_inertia_is_to_the_given_centroids_or_to_the_means() -> None:
    x, labels = _blobs(300, 4, 3)
    means = np.array([x[labels == j].mean(axis=0) for j in range(4)])
    expected = sum(((x[labels == j] - means[j]) ** 2).sum() for j in range(4))
    assert inertia(x, labels) == pytest.approx(expected)
    assert inertia(x, labels, means + 1.0) == pytest.approx(expected + 300 * 6)


def test_one_cluster_is_refused() -> None:
    with pytest.raises(ValueError, match="2 to n-1 clusters"):
        silhouette(np.zeros((5, 2)), np.zeros(5, dtype=int))
