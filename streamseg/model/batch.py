"""Batch k-means building blocks: distances, k-means++, Lloyd, id matching.

They are vectorised over all the points they get and run at seeding and refinement
only; the per-customer online update needs just :func:`squared_distances_one`.

>>> x = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 10.0]])
>>> labels, centroids = best_kmeans(x, 2, 3, 10, np.random.default_rng(0))
>>> sorted(centroids.tolist())
[[0.0, 0.5], [9.0, 9.5]]
>>> labels.tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
True
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamseg.model.hysteresis import keeps_old_segment
from streamseg.model.stats import ClusterStats, FloatArray, IntArray

__all__ = [
    "best_kmeans",
    "kmeans_plusplus",
    "lloyd",
    "match_ids",
    "squared_distances",
    "squared_distances_one",
]


def squared_distances(
    x: FloatArray, c: FloatArray, x_sqnorms: FloatArray | None = None
) -> FloatArray:
    """``(n, k)`` squared Euclidean distances between rows of ``x`` and of ``c``.

    Uses ``|x|^2 - 2 x.c + |c|^2`` (one matrix product) because batch steps are dominated
    by this call; the rounding it adds only matters for near-ties, which are arbitrary
    anyway. ``x_sqnorms`` may pass precomputed ``|x|^2``.

    >>> squared_distances(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 1.0]])).tolist()
    [[1.0], [1.0]]
    """
    xx = np.einsum("nd,nd->n", x, x) if x_sqnorms is None else x_sqnorms
    out: FloatArray = xx[:, None] - 2.0 * (x @ c.T) + np.einsum("kd,kd->k", c, c)[None, :]
    np.maximum(out, 0.0, out=out)
    return out


def squared_distances_one(x: FloatArray, c: FloatArray) -> FloatArray:
    """``(k,)`` squared distances from one vector to each row of ``c``, by direct
    differences: exact, and cheaper than a matrix product for a single row.

    >>> squared_distances_one(np.array([1.0, 1.0]), np.array([[0.0, 1.0], [4.0, 5.0]])).tolist()
    [1.0, 25.0]
    """
    diff = c - x
    diff *= diff
    out: FloatArray = diff.sum(axis=1)
    return out


def kmeans_plusplus(x: FloatArray, k: int, rng: np.random.Generator) -> FloatArray:
    """Greedy k-means++ seeding (as in scikit-learn): ``k`` rows of ``x`` as centres.

    Each new centre is the best, by resulting potential, of ``2 + ln k`` candidates drawn
    with probability proportional to the squared distance to the nearest centre so far.

    >>> x = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> sorted((kmeans_plusplus(x, 2, np.random.default_rng(0))[:, 0] // 5).tolist())
    [0.0, 2.0]
    """
    n, dim = x.shape
    xx = np.einsum("nd,nd->n", x, x)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, dim))
    first = int(rng.integers(n))
    centres[0] = x[first]
    closest = squared_distances_one(x[first], x)
    potential = float(closest.sum())
    for c in range(1, k):
        if potential <= 0.0:
            # Fewer distinct points than clusters: any point will do.
            centres[c] = x[int(rng.integers(n))]
            continue
        draws = rng.random(trials) * potential
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        cand_d2 = squared_distances(x, x[candidates], xx).T  # (trials, n)
        np.minimum(cand_d2, closest[None, :], out=cand_d2)
        potentials = cand_d2.sum(axis=1)
        best = int(potentials.argmin())
        closest = cand_d2[best]
        potential = float(potentials[best])
        centres[c] = x[candidates[best]]
    return centres


def _fill_empty(
    x: FloatArray,
    labels: IntArray,
    stats: ClusterStats,
    centroids: FloatArray,
) -> tuple[IntArray, ClusterStats, FloatArray]:
    """Give each empty cluster the point of ``x`` farthest from its own centroid.

    Only points whose cluster keeps at least one other member may move, so filling one
    cluster never empties another. Returns possibly new (labels, stats, centroids).
    """
    empty = np.flatnonzero(stats.counts == 0)
    if empty.size == 0 or x.shape[0] == 0:
        return labels, stats, centroids
    labels = labels.copy()
    stats = stats.copy()
    centroids = centroids.copy()
    for j in empty:
        own = np.einsum("nd,nd->n", x - centroids[labels], x - centroids[labels])
        movable = stats.counts[labels] > 1
        if not movable.any():
            break
        i = int(np.where(movable, own, -1.0).argmax())
        old = int(labels[i])
        sq = float(x[i] @ x[i])
        stats.sums[old] -= x[i]
        stats.sqsums[old] -= sq
        stats.counts[old] -= 1
        stats.sums[j] = x[i]
        stats.sqsums[j] = sq
        stats.counts[j] = 1
        labels[i] = j
        centroids[old] = stats.sums[old] / stats.counts[old]
        centroids[j] = x[i]
    return labels, stats, centroids


def lloyd(
    x: FloatArray,
    labels: IntArray,
    fixed: ClusterStats,
    centroids: FloatArray,
    iterations: int,
    hysteresis: float = 0.0,
) -> tuple[IntArray, ClusterStats, FloatArray]:
    """Lloyd iterations over ``x`` while the points summarised by ``fixed`` stay put.

    With ``hysteresis`` > 0 a row keeps its starting label unless another centroid is
    closer by that relative margin (:func:`~streamseg.model.hysteresis.keeps_old_segment`,
    the rule customers obey between refinements), so that a refinement does not flip
    customers who sit on a border.

    Each iteration re-assigns every row of ``x`` to its nearest centroid and sets each
    centroid to ``(fixed sum + sum of its rows of x) / (fixed count + its rows)``. With
    ``fixed`` all zeros this is plain Lloyd. It stops early when no label changes. An
    empty cluster is re-seeded at the row farthest from its centroid.

    Returns the final labels, the total statistics (fixed + x) and the centroids, which
    are the exact means of those statistics (``centroids`` fills in for a cluster that
    stays empty).

    >>> x = np.array([[0.0], [1.0], [9.0], [10.0]])
    >>> fixed = ClusterStats.zeros(2, 1)
    >>> labels, stats, c = lloyd(x, np.array([0, 1, 1, 1]), fixed, np.zeros((2, 1)), 10)
    >>> labels.tolist(), c[:, 0].tolist(), stats.sse()
    ([0, 0, 1, 1], [0.5, 9.5], 1.0)
    """
    k = fixed.counts.shape[0]
    xx = np.einsum("nd,nd->n", x, x)
    stats = fixed + ClusterStats.of(x, labels, k, xx)
    centroids = stats.centroids(centroids)
    labels, stats, centroids = _fill_empty(x, labels, stats, centroids)
    anchor = labels.copy()
    rows = np.arange(len(x))
    for _ in range(iterations):
        d2 = squared_distances(x, centroids, xx)
        new_labels = d2.argmin(axis=1).astype(np.int64)
        if hysteresis > 0.0:
            keep = keeps_old_segment(d2[rows, new_labels], d2[rows, anchor], hysteresis)
            new_labels[keep] = anchor[keep]
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        stats = fixed + ClusterStats.of(x, labels, k, xx)
        centroids = stats.centroids(centroids)
        labels, stats, centroids = _fill_empty(x, labels, stats, centroids)
    return labels, stats, centroids


def best_kmeans(
    x: FloatArray, k: int, n_init: int, iterations: int, rng: np.random.Generator
) -> tuple[IntArray, FloatArray]:
    """Labels and centroids of the best (lowest objective) of ``max(1, n_init)``
    k-means++ + Lloyd runs on ``x``, each of at most ``iterations`` Lloyd iterations."""
    fixed = ClusterStats.zeros(k, x.shape[1])
    best: tuple[float, IntArray, FloatArray] | None = None
    for _ in range(max(1, n_init)):
        start = kmeans_plusplus(x, k, rng)
        labels0 = squared_distances(x, start).argmin(axis=1).astype(np.int64)
        labels, stats, centroids = lloyd(x, labels0, fixed, start, iterations)
        sse = stats.sse()
        if best is None or sse < best[0]:
            best = (sse, labels, centroids)
    assert best is not None
    return best[1], best[2]


def match_ids(old: FloatArray, new: FloatArray) -> IntArray:
    """Hungarian matching of new centroids to old ids, by squared centroid distance.

    Returns ``perm`` such that ``new[perm[i]]`` takes over id ``i``.

    >>> old = np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]])
    >>> match_ids(old, old[[2, 0, 1]] + 0.1).tolist()
    [1, 2, 0]
    """
    rows, cols = linear_sum_assignment(squared_distances(old, new))
    perm = np.empty(old.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm
