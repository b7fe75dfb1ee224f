"""The seeded model's clustering of customers, and how an update moves a customer.

:class:`Clustering` holds the per-segment statistics of the customers this process
owns, per data partition (:attr:`Clustering.parts`: what each partition's owner stores
with it), those of the customers other workers own (:attr:`Clustering.others`, held
fixed between refreshes), the centroids -- the exact means of all of them, except
while a reorganisation holds them (:meth:`Clustering.pin`) -- and the sample. An
update takes the customer's old vector out of its old segment first (leave-one-out:
the customer must not pull its old centroid towards itself), then places the new
vector in the nearest segment unless the hysteresis rule
(:mod:`streamseg.model.hysteresis`) keeps it where it was.

Two paths do this with the same rule: :meth:`Clustering.place_one`, one customer at a
time, and :meth:`Clustering.place_many`, a mini-batch of distinct customers assigned
against the same centroids in one vectorised step.

>>> x = np.array([[0.0], [1.0], [9.0], [10.0]])
>>> clustering = Clustering.seeded(["a", "b", "c", "d"], ["p"] * 4, x, np.array([0, 0, 1, 1]),
...                                2, 10)
>>> clustering.centroids[:, 0].tolist()
[0.5, 9.5]

"b" moves to 8.0: its old vector leaves segment 0, then the new one joins segment 1.

>>> clustering.place_one("b", "p", np.array([8.0]), None, None, hysteresis=0.0)
1
>>> clustering.centroids[:, 0].tolist(), clustering.stats.counts.tolist()
([0.0, 9.0], [1, 3])

Customers of another worker count in the centroids, not in this process's statistics:

>>> others = ClusterStats.of(np.array([[2.0]]), np.array([0]), 2)
>>> clustering.set_others(others)
>>> clustering.centroids[:, 0].tolist(), clustering.stats.counts.tolist()
([1.0, 9.0], [1, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamseg.model.batch import squared_distances, squared_distances_one
from streamseg.model.hysteresis import keeps_old_segment
from streamseg.model.sample import Sample
from streamseg.model.stats import ClusterStats, FloatArray, IntArray

__all__ = ["Clustering", "as_vector"]


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


class Clustering:
    """Statistics (own, per data partition, and others'), centroids and sample of a
    seeded model."""

    def __init__(self, parts: dict[str, ClusterStats] | ClusterStats, centroids: FloatArray,
                 sample: Sample, others: ClusterStats | None = None) -> None:
        #: Data partition -> statistics of this process's customers in it.
        self.parts = parts if isinstance(parts, dict) else {"": parts}
        self.others = others if others is not None else ClusterStats.zeros(*centroids.shape)
        self.centroids = centroids
        self.sample = sample
        #: Centroids held where a reorganisation put them (:meth:`pin`) instead of
        #: following the means of the statistics, until every customer was placed again.
        self.pinned = False

    @classmethod
    def seeded(
        cls,
        keys: Sequence[str],
        partitions: Sequence[str],
        x: FloatArray,
        labels: IntArray,
        k: int,
        sample_size: int,
    ) -> Clustering:
        """The clustering of customers ``keys`` (vectors ``x``) into segments ``labels``."""
        names = np.asarray(partitions, dtype=object)
        parts = {str(name): ClusterStats.of(x[names == name], labels[names == name], k)
                 for name in dict.fromkeys(partitions)}
        sample = Sample(sample_size, x.shape[1])
        clustering = cls(parts, np.zeros((k, x.shape[1])), sample)
        clustering._recentre()
        for i, key in enumerate(keys):
            sample.offer(key, partitions[i], x[i], int(labels[i]))
        return clustering

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def stats(self) -> ClusterStats:
        """This process's customers' statistics: the sum over its partitions."""
        parts = iter(self.parts.values())
        total = next(parts, None)
        if total is None:
            return ClusterStats.zeros(*self.centroids.shape)
        for part in parts:
            total = total + part
        return total

    def total(self) -> ClusterStats:
        """Every customer's statistics: this process's and the others'."""
        return self.stats + self.others

    def set_others(self, others: ClusterStats) -> None:
        """The statistics of the customers other workers own, as last read."""
        self.others = others
        self._recentre()

    def set_part(self, partition: str, stats: ClusterStats) -> None:
        """The statistics of a data partition this process now owns, as stored."""
        self.parts[partition] = stats
        self._recentre()

    def drop_part(self, partition: str) -> None:
        """A data partition another worker owns now: its customers leave this process."""
        self.parts.pop(partition, None)
        self.sample.drop_partition(partition)
        self._recentre()

    def _part(self, partition: str) -> ClusterStats:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = ClusterStats.zeros(*self.centroids.shape)
        return part

    def pin(self, centroids: FloatArray) -> None:
        """Hold the centroids at ``centroids`` whatever the statistics say.

        A reorganisation found on the sample (a better restart) re-assigns the sampled
        customers only; the others keep their old segments until the re-assignment sweep
        places them again. Centroids that followed the means meanwhile would be pulled
        straight back to the old solution by those customers, so they are held until the
        sweep is over (:meth:`unpin`).
        """
        self.centroids = np.array(centroids, dtype=np.float64)
        self.pinned = True

    def unpin(self) -> None:
        """The centroids are the means of the statistics again."""
        self.pinned = False
        self._recentre()

    def _recentre(self) -> None:
        """Centroids = means of the total; an empty segment keeps its centroid."""
        if not self.pinned:
            self.centroids = self.total().centroids(self.centroids)

    # -- updates ----------------------------------------------------------------------
    def place_one(
        self,
        key: str,
        partition: str,
        x: FloatArray,
        previous: np.ndarray | None,
        previous_segment: int | None,
        hysteresis: float,
    ) -> int:
        """Move one customer to its new vector ``x``; return its segment.

        The sample's record of a sampled customer is authoritative: it keeps the sums
        right even if the caller missed a model-driven reassignment. For others the
        caller's ``previous``/``previous_segment`` are trusted (ignored if that segment
        is empty), and ``previous_segment is None`` makes a new customer, offered to the
        sample.
        """
        stats, sample = self._part(partition), self.sample
        slot = sample.index.get(key)
        old_segment: int | None = None
        old_x: FloatArray | None = None
        if slot is not None and sample.segments[slot] >= 0:
            old_segment = int(sample.segments[slot])
            old_x = sample.vectors[slot]
        elif previous is not None and previous_segment is not None:
            old_segment = int(previous_segment)
            if not 0 <= old_segment < self.n_clusters:
                raise ValueError(
                    f"previous_segment {previous_segment} is not in range({self.n_clusters})"
                )
            old_x = as_vector(previous, self.centroids.shape[1])
        is_new = slot is None and previous_segment is None

        # Take the old vector out first, so the customer does not pull its old centroid
        # towards itself when we compare distances (leave-one-out).
        if old_segment is not None and old_x is not None and stats.counts[old_segment] > 0:
            self._remove(partition, old_x, old_segment)
        else:
            old_segment = None

        d2 = squared_distances_one(x, self.centroids)
        best = int(d2.argmin())
        segment = best
        if (
            old_segment is not None
            and best != old_segment
            and keeps_old_segment(d2[best], d2[old_segment], hysteresis)
        ):
            segment = old_segment
        self._add(partition, x, segment)

        if slot is not None:
            sample.update(slot, x, segment)
        elif is_new:
            sample.offer(key, partition, x, segment)
        return segment

    def place_many(
        self,
        keys: Sequence[str],
        partitions: Sequence[str],
        x: FloatArray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
        hysteresis: float,
    ) -> IntArray | None:
        """:meth:`place_one` for distinct customers at once; their segments, in order.

        Every row's old vector leaves its segment before any row is compared, then all
        rows are assigned against the same centroids and added together: the per-row
        Python overhead is paid once per batch instead of once per customer. Returns
        ``None``, having changed nothing, when the keys repeat or the caller's records
        disagree with the sums: the caller should then go one customer at a time.
        """
        sample = self.sample
        n = len(keys)
        k = self.n_clusters
        old_segments = np.full(n, -1, dtype=np.int64)
        old_x = np.zeros_like(x)
        slots = np.full(n, -1, dtype=np.int64)
        is_new = np.zeros(n, dtype=bool)
        for i, key in enumerate(keys):
            slot = sample.index.get(key)
            if slot is not None:
                slots[i] = slot
            if slot is not None and sample.segments[slot] >= 0:
                old_segments[i] = sample.segments[slot]
                old_x[i] = sample.vectors[slot]
            elif previous[i] is not None and previous_segments[i] is not None:
                segment = int(previous_segments[i])  # type: ignore[arg-type]
                if not 0 <= segment < k:
                    raise ValueError(f"previous_segment {segment} is not in range({k})")
                old_segments[i] = segment
                old_x[i] = np.asarray(previous[i], dtype=np.float64)
            else:
                is_new[i] = slot is None and previous_segments[i] is None
        has_old = old_segments >= 0
        names = np.asarray(partitions, dtype=object)
        groups = {str(name): names == name for name in dict.fromkeys(partitions)}
        for name, rows in groups.items():
            removed = np.bincount(old_segments[has_old & rows], minlength=k)
            if (removed > self._part(name).counts).any():
                return None
        if len(set(keys)) != n:
            return None

        # Leave-one-out: every old vector leaves its segment before anyone is compared.
        for name, rows in groups.items():
            chosen = has_old & rows
            if not chosen.any():
                continue
            stats = self.parts[name]
            segs, xs = old_segments[chosen], old_x[chosen]
            np.subtract.at(stats.sums, segs, xs)
            np.subtract.at(stats.sqsums, segs, np.einsum("nd,nd->n", xs, xs))
            stats.counts -= np.bincount(segs, minlength=k)
            emptied = stats.counts == 0
            stats.sums[emptied] = 0.0
            stats.sqsums[emptied] = 0.0
        self._recentre()

        d2 = squared_distances(x, self.centroids)
        best = d2.argmin(axis=1).astype(np.int64)
        if hysteresis > 0.0 and has_old.any():
            rows = np.flatnonzero(has_old & (best != old_segments))
            keep = keeps_old_segment(
                d2[rows, best[rows]], d2[rows, old_segments[rows]], hysteresis
            )
            best[rows[keep]] = old_segments[rows[keep]]
        for name, rows in groups.items():
            stats = self.parts[name]
            np.add.at(stats.sums, best[rows], x[rows])
            np.add.at(stats.sqsums, best[rows], np.einsum("nd,nd->n", x[rows], x[rows]))
            stats.counts += np.bincount(best[rows], minlength=k)
        self._recentre()

        sampled = slots >= 0
        if sampled.any():
            sample.update_many(slots[sampled], x[sampled], best[sampled])
        for i in np.flatnonzero(is_new).tolist():
            sample.offer(keys[i], partitions[i], x[i], int(best[i]))
        return best

    def move(self, partition: str, x: FloatArray, old_segment: int, new_segment: int) -> None:
        """A customer of this process with vector ``x`` moves segment (a refinement)."""
        if old_segment == new_segment:
            return
        if old_segment >= 0 and self._part(partition).counts[old_segment] > 0:
            self._remove(partition, x, old_segment)
        self._add(partition, x, new_segment)

    def _add(self, partition: str, x: FloatArray, segment: int) -> None:
        stats = self._part(partition)
        stats.sums[segment] += x
        stats.sqsums[segment] += float(np.dot(x, x))
        stats.counts[segment] += 1
        self._recentre_one(segment)

    def _remove(self, partition: str, x: FloatArray, segment: int) -> None:
        stats = self._part(partition)
        stats.counts[segment] -= 1
        if stats.counts[segment] == 0:
            # Exact zeros rather than float residue.
            stats.sums[segment] = 0.0
            stats.sqsums[segment] = 0.0
        else:
            stats.sums[segment] -= x
            stats.sqsums[segment] -= float(np.dot(x, x))
        self._recentre_one(segment)

    def _recentre_one(self, segment: int) -> None:
        if self.pinned:
            return
        count = int(self.others.counts[segment])
        sums = self.others.sums[segment].copy()
        for part in self.parts.values():
            count += int(part.counts[segment])
            sums += part.sums[segment]
        if count > 0:
            # The centroid of an emptied segment keeps its last position, so that it
            # can attract customers again.
            self.centroids[segment] = sums / count
