"""How a :class:`~streamseg.model.customer_kmeans.CustomerKMeans` learns: its lifecycle.

1. **Warm-up.** The first ``warmup`` distinct customers are buffered (latest vector per
   key) and get no segment.
2. **Seeding.** When the buffer is full (or on ``flush``, if it holds at least
   ``n_clusters`` customers) the best of ``n_init`` k-means++ + Lloyd runs over it gives
   the segments, and every buffered customer gets an assignment.
3. **Online.** Each update moves the customer in the :class:`~.partition.Partition`.
4. **Refinement.** Every ``refine_every`` updates, :func:`~.refinement.refine` runs and
   the reservoir customers it moved are reported too.

:class:`Learner` holds what changes while the model learns (buffer, partition, random
generator, counters); :class:`Params` what does not.

>>> params = Params(n_clusters=2, warmup=3, reservoir_size=10, refine_every=0,
...                 lloyd_iterations=10, n_init=1, hysteresis=0.0)
>>> learner = Learner(params, seed=0)
>>> [learner.learn(k, np.array([v]), None, None) for k, v in [("a", 0.0), ("b", 9.0)]]
[[], []]
>>> out = learner.learn("c", np.array([10.0]), None, None)
>>> [(a.key, a.by_model_update) for a in out], learner.version
([('a', True), ('b', True), ('c', False)], 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamseg.model.base import Assignment
from streamseg.model.batch import best_kmeans
from streamseg.model.partition import Partition
from streamseg.model.refinement import refine
from streamseg.model.stats import FloatArray

__all__ = ["Learner", "Params"]


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


class Learner:
    """Warm-up buffer, seeding, online updates and the refinement schedule."""

    def __init__(self, params: Params, seed: int) -> None:
        self.params = params
        self.rng = np.random.default_rng(seed)
        self.buffer: dict[str, FloatArray] = {}
        self.partition: Partition | None = None
        #: 0 before seeding; incremented at seeding and at each refinement or re-seed.
        self.version = 0
        self.n_updates = 0
        self.updates_since_refine = 0
        self.refinements = 0

    def learn(
        self,
        key: str,
        x: FloatArray,
        previous: np.ndarray | None,
        previous_segment: int | None,
    ) -> list[Assignment]:
        """``CustomerKMeans.update_customer`` for a checked vector ``x``."""
        self.n_updates += 1
        if self.partition is None:
            # Warm-up: customers have no segment yet, so previous values are moot.
            self.buffer[key] = x.copy()
            if len(self.buffer) >= self.params.warmup:
                return self.seed(current_key=key)
            return []
        segment = self.partition.place_one(
            key, x, previous, previous_segment, self.params.hysteresis, self.rng
        )
        self.updates_since_refine += 1
        return self._refine_if_due([Assignment(key, segment, x, False)])

    def learn_many(
        self,
        keys: Sequence[str],
        x: FloatArray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
    ) -> list[Assignment] | None:
        """The vectorised mini-batch update of a seeded model (``None``: see
        :meth:`Partition.place_many`; nothing changed, go one customer at a time)."""
        assert self.partition is not None
        segments = self.partition.place_many(
            keys, x, previous, previous_segments, self.params.hysteresis, self.rng
        )
        if segments is None:
            return None
        self.n_updates += len(keys)
        self.updates_since_refine += len(keys)
        out = [Assignment(key, int(segments[i]), x[i], False) for i, key in enumerate(keys)]
        return self._refine_if_due(out)

    def flush(self) -> list[Assignment]:
        """``CustomerKMeans.flush``: seed early, or refine with a complete search."""
        if self.partition is None:
            if len(self.buffer) >= self.params.n_clusters:
                return self.seed(current_key=None)
            return []
        if self.params.refine_every > 0 and self.updates_since_refine > 0:
            return self.refine(force_restart=False, full_search=True)
        return []

    def seed(self, current_key: str | None) -> list[Assignment]:
        """Seed from the buffer; every buffered customer's assignment (by model update,
        except ``current_key``'s)."""
        p = self.params
        keys = list(self.buffer)
        x = np.stack(list(self.buffer.values()))
        labels, _ = best_kmeans(x, p.n_clusters, p.n_init, p.lloyd_iterations, self.rng)
        self.partition = Partition.seeded(keys, x, labels, p.n_clusters, p.reservoir_size,
                                          self.rng)
        self.buffer = {}
        self.updates_since_refine = 0
        self.version += 1
        return [
            Assignment(key, int(labels[i]), x[i], key != current_key) for i, key in enumerate(keys)
        ]

    def refine(self, *, force_restart: bool, full_search: bool = False) -> list[Assignment]:
        """Refine now (see :func:`~.refinement.refine`); the reservoir customers it moved."""
        part = self.partition
        assert part is not None
        x, old_labels = part.sample()
        self.refinements += 1
        p = self.params
        labels, stats, centroids = refine(
            x, old_labels, part.stats, part.centroids,
            lloyd_iterations=p.lloyd_iterations, hysteresis=p.hysteresis, n_init=p.n_init,
            rng=self.rng, force_restart=force_restart, full_search=full_search,
        )
        part.adopt(labels, stats, centroids)
        self.updates_since_refine = 0
        self.version += 1
        changed = np.flatnonzero(labels != old_labels)
        keys = part.reservoir.keys
        return [Assignment(keys[i], int(labels[i]), x[i].copy(), True) for i in changed]

    def _refine_if_due(self, out: list[Assignment]) -> list[Assignment]:
        """``out``, then what a due refinement moved; a customer of ``out`` that it moved
        is reported once, with its final segment, as its own update's assignment."""
        p = self.params
        if not (p.refine_every > 0 and self.updates_since_refine >= p.refine_every):
            return out
        position = {a.key: i for i, a in enumerate(out)}
        for moved in self.refine(force_restart=False):
            row = position.get(moved.key)
            if row is None:
                out.append(moved)
            else:
                out[row] = Assignment(moved.key, moved.segment, out[row].vector, False)
        return out
