"""Clustering quality measures used by tests and benchmarks.

The yardstick for an online model is the k-means objective (inertia) of batch k-means on
the same customers: an online model is good when its inertia is close to it.

>>> import numpy as np
>>> vectors = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0]])
>>> inertia(vectors, np.array([[0.0, 1.0], [10.0, 1.0]]))
4.0
>>> round(batch_kmeans_inertia(vectors, k=2, seed=0), 6)
4.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["batch_kmeans_inertia", "inertia"]


def inertia(vectors: np.ndarray, centroids: np.ndarray) -> float:
    """Sum of squared Euclidean distances from each vector to its nearest centroid.

    Parameters
    ----------
    vectors
        ``(n, d)`` array of points.
    centroids
        ``(k, d)`` array of centroids.

    """
    x = np.asarray(vectors, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    if x.shape[0] == 0:
        return 0.0
    # Direct differences rather than the |x|^2 - 2x.c + |c|^2 expansion: this is a
    # reference measure, so it should not suffer cancellation.
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    return float(d2.min(axis=1).sum())


def batch_kmeans_inertia(vectors: np.ndarray, k: int, seed: int) -> float:
    """Inertia of scikit-learn's batch k-means (k-means++, best of 10 runs) on ``vectors``.

    scikit-learn is imported here, not at module level, because it is a test and
    benchmark dependency only.

    Parameters
    ----------
    vectors
        ``(n, d)`` array of points.
    k
        Number of clusters.
    seed
        ``random_state`` for scikit-learn.

    """
    from sklearn.cluster import KMeans

    x = np.asarray(vectors, dtype=np.float64)
    km = KMeans(n_clusters=k, init="k-means++", n_init=10, random_state=seed).fit(x)
    # Re-measure with our own function so both sides use the same definition.
    return inertia(x, km.cluster_centers_)
