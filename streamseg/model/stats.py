"""Additive sufficient statistics of k clusters, and the array types the model uses.

A cluster is summarised by the sum of its vectors, the sum of their squared norms and
their count. Those three add up and subtract, so a customer can leave one cluster and
join another in O(d), the centroid is always the exact mean, and the k-means objective
follows without the vectors themselves (``ClusterStats.sse``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "ClusterStats", "FloatArray", "IntArray"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class ClusterStats:
    """Additive sufficient statistics of k clusters: sums, sums of squared norms, counts.

    The k-means objective of a partition follows from them alone (``sse``), which is what
    lets refinement compare solutions over customers whose vectors it does not hold.

    >>> x = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    >>> s = ClusterStats.of(x, np.array([0, 0, 1]), k=2)
    >>> s.counts.tolist(), s.centroids(np.zeros((2, 2))).tolist(), s.sse()
    ([2, 1], [[1.0, 0.0], [5.0, 5.0]], 2.0)

    Statistics add and subtract; a cluster emptied by subtraction is exactly zero:

    >>> rest = s - ClusterStats.of(x[2:], np.array([1]), k=2)
    >>> rest.counts.tolist(), rest.sums[1].tolist(), (rest + s).counts.tolist()
    ([2, 0], [0.0, 0.0], [4, 1])
    """

    sums: FloatArray
    sqsums: FloatArray
    counts: IntArray

    @classmethod
    def zeros(cls, k: int, dim: int) -> ClusterStats:
        return cls(np.zeros((k, dim)), np.zeros(k), np.zeros(k, dtype=np.int64))

    @classmethod
    def of(
        cls, x: FloatArray, labels: IntArray, k: int, x_sqnorms: FloatArray | None = None
    ) -> ClusterStats:
        """Statistics of points ``x`` labelled ``labels`` (``x_sqnorms``: ``|x|^2`` if known)."""
        xx = np.einsum("nd,nd->n", x, x) if x_sqnorms is None else x_sqnorms
        # bincount sums sequentially, so the result is deterministic.
        sums = np.empty((k, x.shape[1]))
        for j in range(x.shape[1]):
            sums[:, j] = np.bincount(labels, weights=x[:, j], minlength=k)
        sqsums = np.bincount(labels, weights=xx, minlength=k)
        counts = np.bincount(labels, minlength=k).astype(np.int64)
        return cls(sums, sqsums.astype(np.float64), counts)

    def copy(self) -> ClusterStats:
        return ClusterStats(self.sums.copy(), self.sqsums.copy(), self.counts.copy())

    def __add__(self, other: ClusterStats) -> ClusterStats:
        return ClusterStats(
            self.sums + other.sums, self.sqsums + other.sqsums, self.counts + other.counts
        )

    def __sub__(self, other: ClusterStats) -> ClusterStats:
        counts = np.maximum(self.counts - other.counts, 0)
        sums = self.sums - other.sums
        sqsums = self.sqsums - other.sqsums
        # An emptied cluster's sums are zero by definition; clearing them drops the
        # floating-point residue that subtraction leaves behind.
        empty = counts == 0
        sums[empty] = 0.0
        sqsums[empty] = 0.0
        return ClusterStats(sums, sqsums, counts)

    def centroids(self, fallback: FloatArray) -> FloatArray:
        """Cluster means; an empty cluster keeps its row of ``fallback``."""
        out = fallback.copy()
        nonempty = self.counts > 0
        out[nonempty] = self.sums[nonempty] / self.counts[nonempty, None]
        return out

    def sse(self) -> float:
        """Sum of squared distances of the points to their own cluster's mean."""
        nz = self.counts > 0
        per_cluster = (
            self.sqsums[nz]
            - np.einsum("kd,kd->k", self.sums[nz], self.sums[nz]) / (self.counts[nz])
        )
        return float(np.maximum(per_cluster, 0.0).sum())
