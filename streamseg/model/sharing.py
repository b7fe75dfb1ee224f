"""What a customer-kmeans model needs to be shared by several workers.

Each worker learns the customers of the data partitions it owns and is given the
statistics of the others' (:meth:`SharedModel.set_others`); it takes a partition over
with its stored statistics and sample rows (:meth:`~SharedModel.own`), lets it go
(:meth:`~SharedModel.disown`) and hands the store each partition's changed sample rows
(:meth:`~SharedModel.take_sample_changes`). One worker seeds and refines for everyone
(:meth:`~SharedModel.seed_shared`, :meth:`~SharedModel.refine_shared`); the others take
what it found (:meth:`~SharedModel.adopt`). :class:`~streamseg.model.CustomerKMeans`
has these methods through this mixin; the protocol between workers is in
:mod:`streamseg.engine.refiner`.
"""

from __future__ import annotations

import numpy as np

from streamseg.model.base import Assignment
from streamseg.model.learner import Learner, Refinement
from streamseg.model.stats import ClusterStats, FloatArray

__all__ = ["SharedModel"]


class SharedModel:
    """The sharing methods of :class:`~streamseg.model.CustomerKMeans` (a mixin over
    its learner)."""

    _learner: Learner
    _dim: int | None
    n_clusters: int

    @property
    def sample_rate(self) -> float:
        """The share of customers in the sample (by the hash of their id)."""
        part = self._learner.clustering
        return 1.0 if part is None else part.sample.rate

    def set_others(self, others: ClusterStats) -> None:
        """The statistics of the customers this process does not own (other workers'),
        as last read; counted in the centroids, never changed here."""
        if self._learner.clustering is not None:
            self._learner.clustering.set_others(others)

    @property
    def auto_refine(self) -> bool:
        """Whether the model refines itself every ``refine_every`` updates and seeds
        itself when its warm-up buffer is full (True). A model shared by several workers
        leaves both to the caller (:meth:`seed_shared`, :meth:`refine_shared`)."""
        return self._learner.auto_refine

    @auto_refine.setter
    def auto_refine(self, value: bool) -> None:
        self._learner.auto_refine = bool(value)

    @property
    def reorganise(self) -> bool:
        """Whether a refinement may reorganise the segments on the sample's word and
        hold the centroids until every customer was placed again (False: only when the
        exact objective over every customer improves). Set by a caller that sweeps: see
        :func:`~streamseg.model.refinement.refine`."""
        return self._learner.reorganise

    @reorganise.setter
    def reorganise(self, value: bool) -> None:
        self._learner.reorganise = bool(value)

    @property
    def pinned(self) -> bool:
        """Whether the centroids are held where a reorganisation put them (until
        :meth:`unpin`), instead of being the means of the statistics."""
        part = self._learner.clustering
        return part is not None and part.pinned

    def unpin(self) -> None:
        """Every customer was placed again since the reorganisation (the caller's sweep
        is over): the centroids follow the means again, as a new version."""
        self._learner.unpin()

    def partition_stats(self) -> dict[str, ClusterStats]:
        """Per data partition this process owns, its customers' statistics (what the
        partition's owner stores with it)."""
        part = self._learner.clustering
        return {} if part is None else {name: s.copy() for name, s in part.parts.items()}

    def own(self, partition: str, stats: ClusterStats | None,
            rows: list[tuple[str, list[float], int]]) -> list[Assignment]:
        """A data partition this process now owns, as stored: its statistics and its
        sampled customers (segment -1: still in the warm-up buffer).

        Buffered customers of a model seeded meanwhile (their owner stopped before it
        adopted the seeding) are assigned now: their assignments are returned.
        """
        learner = self._learner
        waiting = [(key, np.asarray(v, dtype=np.float64)) for key, v, seg in rows if seg < 0]
        assigned = [(key, v, seg) for key, v, seg in rows if seg >= 0]
        part = learner.clustering
        if part is None:
            for key, x in waiting:
                learner.buffer[key] = (partition, x)
                if self._dim is None:
                    self._dim = int(x.shape[0])
            return []
        if stats is not None:
            part.set_part(partition, stats)
        part.sample.load(partition, assigned)
        out = []
        for key, x in waiting:
            segment = part.place_one(key, partition, x, None, None, hysteresis=0.0)
            learner.buffer_changed.setdefault(partition, set()).add(key)
            out.append(Assignment(key, segment, x, True))
        return out

    def disown(self, partition: str) -> None:
        """Forget a data partition another worker owns now (its statistics, its sampled
        and its warm-up customers)."""
        learner = self._learner
        if learner.clustering is not None:
            learner.clustering.drop_part(partition)
        learner.buffer = {key: row for key, row in learner.buffer.items()
                          if row[0] != partition}
        learner.buffer_changed.pop(partition, None)

    def take_sample_changes(self) -> dict[str, dict[str, tuple[int, list[float]] | None]]:
        """Per partition, the sample rows changed since the last call: key -> (segment,
        vector), None for a customer that left the sample; warm-up customers are rows
        with segment -1. What a store keeps with each partition."""
        learner = self._learner
        part = learner.clustering
        changes = {} if part is None else part.sample.take_changes()
        for partition, keys in learner.buffer_changed.items():
            rows = changes.setdefault(partition, {})
            for key in keys:
                if key in rows:
                    continue
                if key in learner.buffer:
                    rows[key] = (-1, learner.buffer[key][1].tolist())
                elif part is not None and key in part.sample.index:
                    slot = part.sample.index[key]
                    rows[key] = (int(part.sample.segments[slot]),
                                 part.sample.vectors[slot].tolist())
                else:
                    rows[key] = None
        learner.buffer_changed = {}
        return changes

    def seed_shared(self, others: FloatArray) -> list[Assignment]:
        """Seed over this process's buffered customers and ``others`` (the vectors other
        workers hold in their buffers): the buffered customers' assignments. Their
        owners assign theirs when they adopt the centroids (:meth:`adopt`)."""
        if self._learner.clustering is not None:
            raise RuntimeError("the model is seeded already")
        if len(self._learner.buffer) + len(others) < self.n_clusters:
            raise ValueError(f"seeding needs at least {self.n_clusters} customers")
        if self._dim is None and len(others):
            self._dim = int(others.shape[1])
        return self._learner.seed(current_key=None, extra=others)

    def refine_shared(self, others: tuple[list[str], FloatArray, np.ndarray] | None = None,
                      *, full_search: bool = False) -> Refinement:
        """Refine over this process's sampled customers and the other workers' ``others``
        = (keys, vectors, segments): this process's are moved at once, the others' come
        back as relabels for their owners (see :meth:`adopt`). Raises ``RuntimeError``
        before seeding."""
        if self._learner.clustering is None:
            raise RuntimeError("the model is not seeded yet")
        return self._learner.refine(force_restart=False, full_search=full_search,
                                    extra=others)

    def adopt(self, version: int, centroids: FloatArray, rate: float,
              relabels: dict[str, tuple[int, int]], pinned: bool = False) -> list[Assignment]:
        """Take another worker's refinement or seeding (see ``Learner.adopt``)."""
        self._dim = self._dim or int(np.asarray(centroids).shape[1])
        return self._learner.adopt(version, np.asarray(centroids, dtype=np.float64), rate,
                                   relabels, pinned)
