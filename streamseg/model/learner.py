"""How a :class:`~streamseg.model.customer_kmeans.CustomerKMeans` learns: its lifecycle.

1. **Warm-up.** The first ``warmup`` distinct customers are buffered (latest vector per
   key) and get no segment.
2. **Seeding.** When the buffer is full (or on ``flush``, if it holds at least
   ``n_clusters`` customers) the best of ``n_init`` k-means++ + Lloyd runs over it gives
   the segments, and every buffered customer gets an assignment. A model that learns
   only part of the customers (several workers) can instead be seeded with centroids
   another one found (:meth:`Learner.adopt`).
3. **Online.** Each update moves the customer in the :class:`~.clustering.Clustering`.
4. **Refinement.** Every ``refine_every`` updates (or when the caller says so),
   :func:`~.refinement.refine` runs over the sample -- this process's rows, and the rows
   of other workers' customers it is given -- and the customers it moved are reported:
   this process's as assignments (applied), the others' as relabels for their owners.

:class:`Learner` holds what changes while the model learns (buffer, clustering, random
generator, counters); :class:`Params` what does not.

>>> params = Params(n_clusters=2, warmup=3, reservoir_size=10, refine_every=0,
...                 lloyd_iterations=10, n_init=1, hysteresis=0.0)
>>> learner = Learner(params, seed=0)
>>> [learner.learn(k, "p", np.array([v]), None, None) for k, v in [("a", 0.0), ("b", 9.0)]]
[[], []]
>>> out = learner.learn("c", "p", np.array([10.0]), None, None)
>>> [(a.key, a.by_model_update) for a in out], learner.version
([('a', True), ('b', True), ('c', False)], 1)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamseg.model.base import Assignment
from streamseg.model.batch import best_kmeans, squared_distances
from streamseg.model.clustering import Clustering
from streamseg.model.refinement import refine
from streamseg.model.sample import UNASSIGNED, Sample
from streamseg.model.stats import ClusterStats, FloatArray

__all__ = ["Learner", "Params", "Refinement", "vector_check"]


@dataclass(frozen=True)
class Params:
    """The model's learning parameters (see ``CustomerKMeans``), checked on creation.

    >>> Params(n_clusters=5, warmup=3, reservoir_size=50, refine_every=0,
    ...        lloyd_iterations=10, n_init=1, hysteresis=0.0)
    Traceback (most recent call last):
    ...
    ValueError: warmup (3) must be >= n_clusters (5)
    """

    n_clusters: int
    warmup: int
    reservoir_size: int
    refine_every: int
    lloyd_iterations: int
    n_init: int
    hysteresis: float

    def __post_init__(self) -> None:
        k = self.n_clusters
        if k < 1:
            raise ValueError(f"n_clusters must be >= 1, got {k}")
        if self.warmup < k:
            raise ValueError(f"warmup ({self.warmup}) must be >= n_clusters ({k})")
        if self.reservoir_size < k:
            raise ValueError(
                f"reservoir_size ({self.reservoir_size}) must be >= n_clusters ({k})"
            )
        if self.refine_every < 0:
            raise ValueError(f"refine_every must be >= 0, got {self.refine_every}")
        if self.lloyd_iterations < 1:
            raise ValueError(f"lloyd_iterations must be >= 1, got {self.lloyd_iterations}")
        if self.n_init < 0:
            raise ValueError(f"n_init must be >= 0, got {self.n_init}")
        if not 0.0 <= self.hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {self.hysteresis}")


@dataclass(slots=True)
class Refinement:
    """What a refinement moved: this process's customers (applied) and the others'."""

    #: This process's sampled customers whose segment changed (``by_model_update``).
    moved: list[Assignment] = field(default_factory=list)
    #: Other workers' sampled customers whose segment should change: key -> (segment,
    #: :func:`vector_check` of the vector the refinement saw).
    relabels: dict[str, tuple[int, int]] = field(default_factory=dict)


def vector_check(vector: FloatArray) -> int:
    """A checksum of a vector, to tell whether a customer moved since a refinement saw it.

    >>> vector_check(np.array([1.0, 2.0])) == vector_check(np.array([1.0, 2.0]))
    True
    """
    return zlib.crc32(np.ascontiguousarray(vector, dtype=np.float64).tobytes())


class Learner:
    """Warm-up buffer, seeding, online updates and the refinement schedule."""

    def __init__(self, params: Params, seed: int) -> None:
        self.params = params
        self.rng = np.random.default_rng(seed)
        #: Warm-up: key -> (partition, latest vector).
        self.buffer: dict[str, tuple[str, FloatArray]] = {}
        #: Partition -> buffered customers whose row changed since the sample's changes
        #: were last taken (a store keeps the buffer with the sample, segment -1).
        self.buffer_changed: dict[str, set[str]] = {}
        #: Refine every ``refine_every`` updates on its own. A model shared by several
        #: workers is refined by the caller instead (:meth:`refine` with ``extra``).
        self.auto_refine = True
        #: A refinement may reorganise the segments on the sample's word, holding the
        #: centroids until the caller placed every customer again (see
        #: :func:`~.refinement.refine`); only for a caller that sweeps (the engine).
        self.reorganise = False
        self.clustering: Clustering | None = None
        #: 0 before seeding; incremented at seeding and at each refinement or re-seed.
        self.version = 0
        self.n_updates = 0
        self.updates_since_refine = 0
        self.refinements = 0

    def learn(
        self,
        key: str,
        partition: str,
        x: FloatArray,
        previous: np.ndarray | None,
        previous_segment: int | None,
    ) -> list[Assignment]:
        """``CustomerKMeans.update_customer`` for a checked vector ``x``."""
        self.n_updates += 1
        if self.clustering is None:
            # Warm-up: customers have no segment yet, so previous values are moot.
            self.buffer[key] = (partition, x.copy())
            self.buffer_changed.setdefault(partition, set()).add(key)
            if self.auto_refine and len(self.buffer) >= self.params.warmup:
                return self.seed(current_key=key)
            return []
        segment = self.clustering.place_one(
            key, partition, x, previous, previous_segment, self.params.hysteresis
        )
        self.updates_since_refine += 1
        return self._refine_if_due([Assignment(key, segment, x, False)])

    def learn_many(
        self,
        keys: Sequence[str],
        partitions: Sequence[str],
        x: FloatArray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
    ) -> list[Assignment] | None:
        """The vectorised mini-batch update of a seeded model (``None``: see
        :meth:`Clustering.place_many`; nothing changed, go one customer at a time)."""
        assert self.clustering is not None
        segments = self.clustering.place_many(
            keys, partitions, x, previous, previous_segments, self.params.hysteresis
        )
        if segments is None:
            return None
        self.n_updates += len(keys)
        self.updates_since_refine += len(keys)
        out = [Assignment(key, int(segments[i]), x[i], False) for i, key in enumerate(keys)]
        return self._refine_if_due(out)

    def replace(self, keys: Sequence[str], partitions: Sequence[str], x: FloatArray,
                segments: Sequence[int]) -> list[Assignment]:
        """``CustomerKMeans.replace``: customers put at their nearest segment again, at
        unchanged vectors; the assignments of those that moved (by model update)."""
        clustering = self.clustering
        assert clustering is not None
        hysteresis = self.params.hysteresis
        placed = clustering.place_many(keys, partitions, x, list(x), list(segments),
                                       hysteresis)
        if placed is None:  # the records disagree with the sums: one at a time
            placed = np.array([clustering.place_one(key, partitions[i], x[i], x[i],
                                                    segments[i], hysteresis)
                               for i, key in enumerate(keys)], dtype=np.int64)
        moved = [Assignment(key, int(placed[i]), x[i], True)
                 for i, key in enumerate(keys) if int(placed[i]) != int(segments[i])]
        # Moves are updates the next refinement should see; customers left in place
        # are not (a sweep that moves nobody must not call for another refinement).
        self.n_updates += len(moved)
        self.updates_since_refine += len(moved)
        return moved

    def flush(self) -> list[Assignment]:
        """``CustomerKMeans.flush``: seed early, or refine with a complete search."""
        if self.clustering is None:
            if len(self.buffer) >= self.params.n_clusters:
                return self.seed(current_key=None)
            return []
        if self.clustering.pinned:
            return []  # the sweep comes first (see ``refine``)
        if self.params.refine_every > 0 and self.updates_since_refine > 0:
            return self.refine(force_restart=False, full_search=True).moved
        return []

    def seed(self, current_key: str | None,
             extra: FloatArray | None = None) -> list[Assignment]:
        """Seed from the buffer, and from ``extra`` vectors (other workers' buffered
        customers: they count in the seeding, their owners assign them when they adopt);
        every buffered customer's assignment (by model update, except ``current_key``'s).
        """
        p = self.params
        keys = list(self.buffer)
        partitions = [self.buffer[key][0] for key in keys]
        if keys:
            x = np.stack([self.buffer[key][1] for key in keys])
        else:  # only other workers' customers (the caller checks there are enough)
            x = np.empty((0, 0 if extra is None else extra.shape[1]))
        everyone = x if extra is None or not len(extra) else np.vstack([x, extra])
        labels, _ = best_kmeans(everyone, p.n_clusters, p.n_init, p.lloyd_iterations,
                                self.rng)
        own = labels[:len(keys)]
        self.clustering = Clustering.seeded(keys, partitions, x, own, p.n_clusters,
                                            p.reservoir_size)
        if len(everyone) > len(keys):
            # The centroids of everyone seeded, not of this process's share alone (they
            # become means of the stored sums as the other owners assign theirs).
            self.clustering.centroids = ClusterStats.of(
                everyone, labels, p.n_clusters).centroids(self.clustering.centroids)
        self._buffer_emptied()
        self.updates_since_refine = 0
        self.version += 1
        return [
            Assignment(key, int(own[i]), x[i], key != current_key) for i, key in enumerate(keys)
        ]

    def _buffer_emptied(self) -> None:
        for key, (partition, _) in self.buffer.items():
            self.buffer_changed.setdefault(partition, set()).add(key)
        self.buffer = {}

    def refine(self, *, force_restart: bool, full_search: bool = False,
               extra: tuple[list[str], FloatArray, np.ndarray] | None = None) -> Refinement:
        """Refine now (see :func:`~.refinement.refine`) over this process's sampled
        customers and ``extra`` = (keys, vectors, segments) of other workers' sampled
        customers; this process's are moved at once, the others' returned as relabels."""
        clustering = self.clustering
        assert clustering is not None
        if clustering.pinned:
            if not force_restart:
                # A reorganisation waits for its sweep (:meth:`unpin`): refining now
                # would judge it with customers not placed yet.
                return Refinement()
            clustering.unpin()
        own_x, own_labels = clustering.sample.rows()
        own_rows = np.flatnonzero(own_labels >= 0)  # warm-up rows count nowhere yet
        x, labels = own_x[own_rows], own_labels[own_rows]
        if extra is not None and len(extra[0]):
            x = np.vstack([x, extra[1]])
            labels = np.concatenate([labels, np.asarray(extra[2], dtype=np.int64)])
        self.refinements += 1
        self.updates_since_refine = 0
        self.version += 1
        if len(x) == 0:
            return Refinement()
        p = self.params
        refined = refine(
            x, labels, clustering.total(), clustering.centroids,
            lloyd_iterations=p.lloyd_iterations, hysteresis=p.hysteresis, n_init=p.n_init,
            rng=self.rng, force_restart=force_restart, full_search=full_search,
            reorganise=self.reorganise,
        )
        new_labels = refined.labels
        if refined.reorganised:
            clustering.pin(refined.centroids)
        out = Refinement()
        keys = clustering.sample.keys
        for row, slot in enumerate(own_rows.tolist()):
            old, new = int(labels[row]), int(new_labels[row])
            if new != old:
                clustering.move(clustering.sample.partitions[slot], x[row], old, new)
                clustering.sample.set_segment(slot, new)
                out.moved.append(Assignment(keys[slot], new, x[row].copy(), True))
        if extra is not None:
            for j, key in enumerate(extra[0]):
                row = len(own_rows) + j
                if new_labels[row] != labels[row]:
                    out.relabels[key] = (int(new_labels[row]), vector_check(x[row]))
        return out

    def unpin(self) -> None:
        """Every customer was placed at the held centroids again: they follow the
        statistics' means from now on (a new version)."""
        assert self.clustering is not None and self.clustering.pinned
        self.clustering.unpin()
        self.version += 1

    def adopt(self, version: int, centroids: FloatArray, rate: float,
              relabels: dict[str, tuple[int, int]],
              pinned: bool = False) -> list[Assignment]:
        """Take another worker's refinement (or seeding) of the shared model: its
        version, its sample rate, and the new segments of this process's sampled
        customers it moved -- those whose vector is still the one it saw; ``pinned``:
        its centroids are held (a reorganisation, see :meth:`Clustering.pin`). A model
        still warming up is seeded with ``centroids`` and assigns its buffer. Returns the
        assignments of the customers moved (all by model update)."""
        out: list[Assignment] = []
        if self.clustering is None:
            k, dim = centroids.shape
            self.clustering = Clustering({}, centroids.copy(),
                                         Sample(self.params.reservoir_size, dim, rate))
            keys = list(self.buffer)
            if keys:
                partitions = [self.buffer[key][0] for key in keys]
                x = np.stack([self.buffer[key][1] for key in keys])
                labels = squared_distances(x, centroids).argmin(axis=1)
                for i, key in enumerate(keys):
                    self.clustering.move(partitions[i], x[i], UNASSIGNED, int(labels[i]))
                    self.clustering.sample.offer(key, partitions[i], x[i], int(labels[i]))
                    out.append(Assignment(key, int(labels[i]), x[i], True))
            self._buffer_emptied()
        clustering = self.clustering
        if pinned:
            clustering.pin(centroids)
        sample = clustering.sample
        for key, (segment, check) in relabels.items():
            slot = sample.index.get(key)
            if slot is None or sample.segments[slot] < 0:
                continue
            x = sample.vectors[slot]
            old = int(sample.segments[slot])
            if old == segment or vector_check(x) != check:
                continue  # moved by its own update since the refinement saw it
            clustering.move(sample.partitions[slot], x, old, segment)
            sample.set_segment(slot, segment)
            out.append(Assignment(key, segment, x.copy(), True))
        if rate < sample.rate:
            sample.thin(rate)
        if clustering.pinned and not pinned:
            clustering.unpin()
        self.version = max(self.version, version)
        return out

    def _refine_if_due(self, out: list[Assignment]) -> list[Assignment]:
        """``out``, then what a due refinement moved; a customer of ``out`` that it moved
        is reported once, with its final segment, as its own update's assignment."""
        p = self.params
        if not (self.auto_refine and p.refine_every > 0
                and self.updates_since_refine >= p.refine_every):
            return out
        position = {a.key: i for i, a in enumerate(out)}
        for moved in self.refine(force_restart=False).moved:
            row = position.get(moved.key)
            if row is None:
                out.append(moved)
            else:
                out[row] = Assignment(moved.key, moved.segment, out[row].vector, False)
        return out
