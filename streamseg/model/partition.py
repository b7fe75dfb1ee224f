"""The seeded model's partition of customers, and how an update moves a customer.

:class:`Partition` holds the per-segment statistics, the centroids (always the exact
means of those statistics) and the reservoir sample. An update takes the customer's old
vector out of its old segment first (leave-one-out: the customer must not pull its old
centroid towards itself), then places the new vector in the nearest segment unless the
hysteresis rule (:mod:`streamseg.model.hysteresis`) keeps it where it was.

Two paths do this with the same rule: :meth:`Partition.place_one`, one customer at a
time, and :meth:`Partition.place_many`, a mini-batch of distinct customers assigned
against the same centroids in one vectorised step.

>>> rng = np.random.default_rng(0)
>>> x = np.array([[0.0], [1.0], [9.0], [10.0]])
>>> part = Partition.seeded(["a", "b", "c", "d"], x, np.array([0, 0, 1, 1]), 2, 10, rng)
>>> part.centroids[:, 0].tolist()
[0.5, 9.5]

"b" moves to 8.0: its old vector leaves segment 0, then the new one joins segment 1.

>>> part.place_one("b", np.array([8.0]), None, None, hysteresis=0.0, rng=rng)
1
>>> part.centroids[:, 0].tolist(), part.stats.counts.tolist()
([0.0, 9.0], [1, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamseg.model.batch import squared_distances, squared_distances_one
from streamseg.model.hysteresis import keeps_old_segment
from streamseg.model.reservoir import Reservoir
from streamseg.model.stats import ClusterStats, FloatArray, IntArray

__all__ = ["Partition", "as_vector"]


def as_vector(vector: Any, dim: int | None) -> FloatArray:
    """``vector`` as a finite 1-D float array of dimension ``dim`` (any, if ``None``).

    >>> as_vector([1, 2], 2).tolist()
    [1.0, 2.0]
    >>> as_vector([1.0, float("nan")], 2)
    Traceback (most recent call last):
    ...
    ValueError: a customer vector must be finite (no NaN or inf)
    """
    x = np.asarray(vector, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"a customer vector must be 1-D, got shape {x.shape}")
    if dim is not None and x.shape[0] != dim:
        raise ValueError(f"expected a vector of dimension {dim}, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("a customer vector must be finite (no NaN or inf)")
    return x


class Partition:
    """Statistics, centroids and reservoir of a seeded model; the online update."""

    def __init__(self, stats: ClusterStats, centroids: FloatArray, reservoir: Reservoir) -> None:
        self.stats = stats
        self.centroids = centroids
        self.reservoir = reservoir

    @classmethod
    def seeded(
        cls,
        keys: Sequence[str],
        x: FloatArray,
        labels: IntArray,
        k: int,
        reservoir_size: int,
        rng: np.random.Generator,
    ) -> Partition:
        """The partition of customers ``keys`` (vectors ``x``) into segments ``labels``."""
        stats = ClusterStats.of(x, labels, k)
        centroids = stats.centroids(np.zeros((k, x.shape[1])))
        reservoir = Reservoir(reservoir_size, x.shape[1])
        for i, key in enumerate(keys):
            reservoir.offer(key, x[i], int(labels[i]), rng)
        return cls(stats, centroids, reservoir)

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    def sample(self) -> tuple[FloatArray, IntArray]:
        """The reservoir's vectors (a view) and segments (a copy), for refinement."""
        n = len(self.reservoir)
        return self.reservoir.vectors[:n], self.reservoir.segments[:n].copy()

    def adopt(self, labels: IntArray, stats: ClusterStats, centroids: FloatArray) -> None:
        """Take a refinement's result: new statistics, centroids and sample segments."""
        self.stats = stats.copy()
        self.centroids = centroids.copy()
        self.reservoir.segments[: len(labels)] = labels

    def place_one(
        self,
        key: str,
        x: FloatArray,
        previous: np.ndarray | None,
        previous_segment: int | None,
        hysteresis: float,
        rng: np.random.Generator,
    ) -> int:
        """Move one customer to its new vector ``x``; return its segment.

        The reservoir's record of a sampled customer is authoritative: it keeps the sums
        right even if the caller missed a model-driven reassignment. For others the
        caller's ``previous``/``previous_segment`` are trusted (ignored if that segment
        is empty), and ``previous_segment is None`` makes a new customer, offered to the
        reservoir.
        """
        stats, centroids, reservoir = self.stats, self.centroids, self.reservoir
        slot = reservoir.index.get(key)
        old_segment: int | None = None
        old_x: FloatArray | None = None
        if slot is not None:
            old_segment = int(reservoir.segments[slot])
            old_x = reservoir.vectors[slot]
        elif previous is not None and previous_segment is not None:
            old_segment = int(previous_segment)
            if not 0 <= old_segment < self.n_clusters:
                raise ValueError(
                    f"previous_segment {previous_segment} is not in range({self.n_clusters})"
                )
            old_x = as_vector(previous, centroids.shape[1])
        is_new = slot is None and previous_segment is None

        # Take the old vector out first, so the customer does not pull its old centroid
        # towards itself when we compare distances (leave-one-out).
        if old_segment is not None and old_x is not None and stats.counts[old_segment] > 0:
            self._remove(old_x, old_segment)
        else:
            old_segment = None

        d2 = squared_distances_one(x, centroids)
        best = int(d2.argmin())
        segment = best
        if (
            old_segment is not None
            and best != old_segment
            and keeps_old_segment(d2[best], d2[old_segment], hysteresis)
        ):
            segment = old_segment
        self._add(x, segment)

        if slot is not None:
            reservoir.vectors[slot] = x
            reservoir.segments[slot] = segment
        elif is_new:
            reservoir.offer(key, x, segment, rng)
        return segment

    def place_many(
        self,
        keys: Sequence[str],
        x: FloatArray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
        hysteresis: float,
        rng: np.random.Generator,
    ) -> IntArray | None:
        """:meth:`place_one` for distinct customers at once; their segments, in order.

        Every row's old vector leaves its segment before any row is compared, then all
        rows are assigned against the same centroids and added together: the per-row
        Python overhead is paid once per batch instead of once per customer. Returns
        ``None``, having changed nothing, when the keys repeat or the caller's records
        disagree with the sums: the caller should then go one customer at a time.
        """
        stats, centroids, reservoir = self.stats, self.centroids, self.reservoir
        n = len(keys)
        k = self.n_clusters
        old_segments = np.full(n, -1, dtype=np.int64)
        old_x = np.zeros_like(x)
        slots = np.full(n, -1, dtype=np.int64)
        is_new = np.zeros(n, dtype=bool)
        for i, key in enumerate(keys):
            slot = reservoir.index.get(key)
            if slot is not None:
                slots[i] = slot
                old_segments[i] = reservoir.segments[slot]
                old_x[i] = reservoir.vectors[slot]
            elif previous[i] is not None and previous_segments[i] is not None:
                segment = int(previous_segments[i])  # type: ignore[arg-type]
                if not 0 <= segment < k:
                    raise ValueError(f"previous_segment {segment} is not in range({k})")
                old_segments[i] = segment
                old_x[i] = np.asarray(previous[i], dtype=np.float64)
            else:
                is_new[i] = previous_segments[i] is None
        has_old = old_segments >= 0
        removed = np.bincount(old_segments[has_old], minlength=k)
        if (removed > stats.counts).any() or len(set(keys)) != n:
            return None

        # Leave-one-out: every old vector leaves its segment before anyone is compared.
        if has_old.any():
            segs, xs = old_segments[has_old], old_x[has_old]
            np.subtract.at(stats.sums, segs, xs)
            np.subtract.at(stats.sqsums, segs, np.einsum("nd,nd->n", xs, xs))
            stats.counts -= removed
            emptied = stats.counts == 0
            stats.sums[emptied] = 0.0
            stats.sqsums[emptied] = 0.0
        live = stats.counts > 0
        centroids[live] = stats.sums[live] / stats.counts[live, None]

        d2 = squared_distances(x, centroids)
        best = d2.argmin(axis=1).astype(np.int64)
        if hysteresis > 0.0 and has_old.any():
            rows = np.flatnonzero(has_old & (best != old_segments))
            keep = keeps_old_segment(
                d2[rows, best[rows]], d2[rows, old_segments[rows]], hysteresis
            )
            best[rows[keep]] = old_segments[rows[keep]]
        np.add.at(stats.sums, best, x)
        np.add.at(stats.sqsums, best, np.einsum("nd,nd->n", x, x))
        stats.counts += np.bincount(best, minlength=k)
        live = stats.counts > 0
        centroids[live] = stats.sums[live] / stats.counts[live, None]

        # Update the sampled rows first, then offer the new customers. Interleaved, a new
        # customer could evict a slot that a later row of this batch still held in
        # ``slots``; that row would then overwrite the newcomer's slot with its own vector
        # and segment, so the reservoir described the newcomer wrongly and the sums drifted
        # from the callers' records at the next update or refinement.
        sampled = slots >= 0
        reservoir.vectors[slots[sampled]] = x[sampled]
        reservoir.segments[slots[sampled]] = best[sampled]
        for i in np.flatnonzero(is_new).tolist():
            reservoir.offer(keys[i], x[i], int(best[i]), rng)
        return best

    def _add(self, x: FloatArray, segment: int) -> None:
        stats = self.stats
        stats.sums[segment] += x
        stats.sqsums[segment] += float(np.dot(x, x))
        stats.counts[segment] += 1
        self.centroids[segment] = stats.sums[segment] / stats.counts[segment]

    def _remove(self, x: FloatArray, segment: int) -> None:
        stats = self.stats
        stats.counts[segment] -= 1
        if stats.counts[segment] == 0:
            # Exact zeros rather than float residue; the centroid keeps its last
            # position so that it can attract customers again.
            stats.sums[segment] = 0.0
            stats.sqsums[segment] = 0.0
            return
        stats.sums[segment] -= x
        stats.sqsums[segment] -= float(np.dot(x, x))
        self.centroids[segment] = stats.sums[segment] / stats.counts[segment]
