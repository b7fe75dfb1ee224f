"""Measures of a segmentation, in numpy: silhouette, Davies-Bouldin, Calinski-Harabasz,
inertia, and the adjusted Rand index between two labelings.

The definitions are scikit-learn's (``sklearn.metrics``), so that figures compare with
what analysts compute; tests check the values against scikit-learn to 1e-6. Labels are
any integers; only the labels present count as clusters.

>>> x = np.array([[0.0, 0.0], [0.0, 1.0], [4.0, 0.0], [4.0, 1.0]])
>>> labels = np.array([0, 0, 1, 1])
>>> round(silhouette(x, labels), 6)
0.753789
>>> round(davies_bouldin(x, labels), 6), round(calinski_harabasz(x, labels), 6)
(0.25, 32.0)
>>> inertia(x, labels), adjusted_rand(labels, np.array([5, 5, 7, 7]))
(1.0, 1.0)
"""

from __future__ import annotations

import numpy as np

__all__ = ["adjusted_rand", "calinski_harabasz", "davies_bouldin", "inertia", "silhouette"]

#: Rows of the distance matrix computed at once: memory stays ~chunk x n floats.
_CHUNK = 1024


def _clusters(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 0..k-1 (in sorted order of the originals) and the cluster sizes."""
    _, codes, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    return codes.ravel(), counts


def _check(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"need (n, d) points and n labels, got {x.shape} and {len(labels)}")
    codes, counts = _clusters(labels)
    if not 2 <= len(counts) <= len(x) - 1:
        raise ValueError(f"need 2 to n-1 clusters, got {len(counts)} for {len(x)} points")
    return x, codes, counts


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient over all points (Euclidean distances; a point alone
    in its cluster scores 0), in O(n^2) time and O(n) memory per chunk of rows."""
    x, codes, counts = _check(x, labels)
    k = len(counts)
    n = len(x)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), codes] = 1.0
    sq = np.einsum("nd,nd->n", x, x)
    scores = np.empty(n)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(n, start + _CHUNK))
        d2 = sq[rows, None] - 2.0 * (x[rows] @ x.T) + sq[None, :]
        np.maximum(d2, 0.0, out=d2)
        distances = np.sqrt(d2)
        # Each point's own distance is 0 (exactly: set it, rounding could leave 1e-8).
        distances[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = 0.0
        sums = distances @ onehot  # (rows, k): summed distance to each cluster
        own = codes[rows]
        own_size = counts[own]
        a = sums[np.arange(len(own)), own] / np.maximum(own_size - 1, 1)
        means = sums / counts[None, :]
        means[np.arange(len(own)), own] = np.inf
        b = means.min(axis=1)
        score = (b - a) / np.maximum(a, b)
        score[own_size == 1] = 0.0
        scores[rows] = np.nan_to_num(score)
    return float(scores.mean())


def _centroids(x: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, codes, x)
    out: np.ndarray = sums / counts[:, None]
    return out


def davies_bouldin(x: np.ndarray, labels: np.ndarray) -> float:
    """Davies-Bouldin index: the mean over clusters of the worst ratio (spread of i +
    spread of j) / distance between centroids i and j. Lower is better; 0 is best."""
    x, codes, counts = _check(x, labels)
    centroids = _centroids(x, codes, counts)
    spread = np.zeros(len(counts))
    np.add.at(spread, codes, np.linalg.norm(x - centroids[codes], axis=1))
    spread /= counts
    gaps = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=2)
    if np.allclose(spread, 0.0) or np.allclose(gaps, 0.0):
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (spread[:, None] + spread[None, :]) / gaps
    ratio[np.isinf(ratio) | np.isnan(ratio)] = 0.0
    np.fill_diagonal(ratio, 0.0)
    return float(ratio.max(axis=1).mean())


def calinski_harabasz(x: np.ndarray, labels: np.ndarray) -> float:
    """Calinski-Harabasz index: between-cluster over within-cluster dispersion, each per
    degree of freedom. Higher is better."""
    x, codes, counts = _check(x, labels)
    n, k = len(x), len(counts)
    centroids = _centroids(x, codes, counts)
    between = float((counts * ((centroids - x.mean(axis=0)) ** 2).sum(axis=1)).sum())
    within = float(((x - centroids[codes]) ** 2).sum())
    return 1.0 if within == 0.0 else between * (n - k) / (within * (k - 1))


def inertia(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray | None = None) -> float:
    """Sum of squared distances of each point to its cluster's centroid: ``centroids``
    indexed by label when given (a model's), else the clusters' own means."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if centroids is None:
        codes, counts = _clusters(labels)
        centres = _centroids(x, codes, counts)[codes]
    else:
        centres = np.asarray(centroids, dtype=np.float64)[labels]
    return float(((x - centres) ** 2).sum())


def _pairs(values: np.ndarray) -> float:
    return float((values * (values - 1) / 2.0).sum())


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same points: 1 for the same partition
    (whatever the ids), about 0 for unrelated ones."""
    if len(a) != len(b):
        raise ValueError(f"labelings of different lengths: {len(a)} and {len(b)}")
    codes_a, sizes_a = _clusters(np.asarray(a))
    codes_b, sizes_b = _clusters(np.asarray(b))
    table = np.zeros((len(sizes_a), len(sizes_b)))
    np.add.at(table, (codes_a, codes_b), 1.0)
    index = _pairs(table)
    rows, cols = _pairs(sizes_a.astype(float)), _pairs(sizes_b.astype(float))
    total = _pairs(np.array([float(len(a))]))
    expected = rows * cols / total if total else 0.0
    best = (rows + cols) / 2.0
    if best == expected:  # both labelings trivial (one cluster each, or all singletons)
        return 1.0
    return (index - expected) / (best - expected)
