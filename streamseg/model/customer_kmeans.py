"""Online k-means whose unit is the customer, not the event.

A customer's model-space vector changes each time the customer buys or time passes. An
event-level clusterer would count the same customer once per event; here each customer
counts once, with its *current* vector:

- per-segment sufficient statistics (vector sums, sums of squared norms, counts) are kept,
  and when a customer changes its old vector is taken out of its old segment and the new
  one added to the nearest segment, so every centroid is the exact mean of the customers
  currently in it. The statistics add up, so models of several workers could be merged;
- a uniform sample of customers (chosen by a hash of their id), with their current
  vector and segment, lets the model run Lloyd iterations (and k-means++ restarts) every
  ``refine_every`` updates without holding every customer: customers outside the sample
  keep their segment and their contribution to the sums is held fixed. When the sample
  holds every customer this is exact batch k-means on the current population.

Several workers can share one model: each learns the customers of the data partitions
it owns (``partitions`` in the updates), and is given the statistics of the others'
(:meth:`CustomerKMeans.set_others`), so that every centroid is the mean of all
customers. One of them refines, over its sample and the others' sampled customers
(:meth:`CustomerKMeans.refine_shared`); the others adopt what it found
(:meth:`CustomerKMeans.adopt`).

Segment ids keep their meaning: whenever new centroids replace old ones they are matched
to the old ids by the Hungarian algorithm on centroid distances.

Where each job lives: :mod:`~streamseg.model.learner` (the lifecycle: warm-up, seeding,
online updates, refinement schedule), :mod:`~streamseg.model.clustering` (the online
update), :mod:`~streamseg.model.hysteresis` (when a customer keeps its segment),
:mod:`~streamseg.model.refinement`, :mod:`~streamseg.model.batch` (k-means++, Lloyd, id
matching), :mod:`~streamseg.model.stats`, :mod:`~streamseg.model.sample`,
:mod:`~streamseg.model.rng` and :mod:`~streamseg.model.kmeans_state` (persistence). This
module holds the model's parameters and its public and River APIs.

>>> import numpy as np
>>> model = CustomerKMeans(n_clusters=2, warmup=4, seed=1)
>>> people = {"a": [0.0, 0.0], "b": [0.0, 1.0], "c": [9.0, 9.0], "d": [9.0, 10.0]}
>>> for key, vector in people.items():
...     out = model.update_customer(key, np.array(vector), None, None)

The fourth distinct customer completes the warm-up: the model seeds itself and returns an
assignment for every buffered customer.

>>> model.ready, len(out)
(True, 4)
>>> [(a.key, a.by_model_update) for a in out]
[('a', True), ('b', True), ('c', True), ('d', False)]
>>> seg = {a.key: a.segment for a in out}
>>> seg["a"] == seg["b"] != seg["c"] == seg["d"]
True

When "b" changes, its old vector leaves its old segment before the new one is placed:

>>> [a] = model.update_customer("b", np.array([9.0, 9.5]), np.array([0.0, 1.0]), seg["b"])
>>> a.segment == seg["c"]
True
>>> model.centroids[seg["c"]].tolist(), model.sizes[seg["a"]].item()
([9.0, 9.5], 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from river import base

from streamseg.model import kmeans_state
from streamseg.model.base import Assignment
from streamseg.model.batch import squared_distances_one
from streamseg.model.clustering import as_vector
from streamseg.model.learner import Learner, Params
from streamseg.model.sharing import SharedModel
from streamseg.model.stats import ClusterStats, FloatArray, IntArray

__all__ = ["ANONYMOUS_KEY_PREFIX", "DEFAULT_PARTITION", "CustomerKMeans"]

#: The data partition of customers updated without one (a model on its own).
DEFAULT_PARTITION = ""

#: Prefix of the keys given to anonymous points learnt through River's ``learn_one``.
ANONYMOUS_KEY_PREFIX = "__river_anonymous__:"


class CustomerKMeans(SharedModel, base.Clusterer):
    """Online k-means over customers, each counted once with its current vector.

    Its lifecycle (warm-up, seeding, online updates, refinement) is described in
    :mod:`~streamseg.model.learner`.

    Parameters
    ----------
    n_clusters
        Number of segments k. Segment ids are ``0 .. n_clusters - 1``.
    warmup
        Number of distinct customers buffered before the model seeds itself. At least
        ``n_clusters``. Larger values give a better start at the cost of a longer period
        without segments.
    reservoir_size
        Most customers kept in the sample (with their current vector and segment) for
        refinement. At least ``n_clusters``. When it is at least the number of customers,
        refinement is exact batch k-means; memory is ``reservoir_size * d`` floats.
    refine_every
        Number of customer updates between two refinements (Lloyd over the reservoir +
        restarts; its cost: :mod:`~streamseg.model.refinement`). ``0`` disables periodic
        refinement.
    lloyd_iterations
        Maximum number of Lloyd iterations per run (seeding runs, refinement, restarts);
        runs stop earlier when no assignment changes.
    n_init
        Number of k-means++ + Lloyd runs at seeding and at :meth:`flush` / :meth:`reseed`
        (best one kept). Between those, each refinement tries one restart candidate and
        adopts it if it is better by more than 1%: the search is spread out so that no
        refinement stalls a batch. ``0`` disables restarts at refinement (seeding then
        does one run).
    hysteresis
        Relative margin in ``[0, 1)``: a customer in segment ``s`` moves to a nearer
        segment ``b`` only if ``dist(new, c_b) < (1 - hysteresis) * dist(new, c_s)``
        (:mod:`~streamseg.model.hysteresis`), which damps customers flapping between two
        segments. New customers always go to the nearest segment. Refinement's Lloyd
        iterations keep the same margin; restart candidates ignore it.
    seed
        Seed of the model's random generator (k-means++ draws, restart pools). The model
        is deterministic for a given input sequence and seed.
    feature_names
        For River's ``learn_one``/``predict_one`` only: the dict keys that map to vector
        positions, in order. When ``None``, the sorted keys of the first dict seen are
        used. Missing features count as ``0.0`` (the standardised mean); unknown ones are
        ignored.

    Examples
    --------

    River-style use, one anonymous point per call:

    >>> model = CustomerKMeans(n_clusters=2, warmup=4, seed=7)
    >>> for x in [{"f": 0.0}, {"f": 0.2}, {"f": 5.0}, {"f": 5.2}]:
    ...     model.learn_one(x)
    >>> model.predict_one({"f": 0.1}) != model.predict_one({"f": 5.1})
    True

    """

    def __init__(
        self,
        n_clusters: int = 5,
        warmup: int = 500,
        reservoir_size: int = 5000,
        refine_every: int = 1000,
        lloyd_iterations: int = 10,
        n_init: int = 10,
        hysteresis: float = 0.0,
        seed: int = 42,
        feature_names: tuple[Any, ...] | None = None,
    ) -> None:
        params = Params(
            n_clusters, warmup, reservoir_size, refine_every, lloyd_iterations, n_init,
            hysteresis,
        )
        # River reads the parameters back from attributes named as in the signature.
        self.n_clusters = n_clusters
        self.warmup = warmup
        self.reservoir_size = reservoir_size
        self.refine_every = refine_every
        self.lloyd_iterations = lloyd_iterations
        self.n_init = n_init
        self.hysteresis = hysteresis
        self.seed = seed
        self.feature_names = tuple(feature_names) if feature_names is not None else None

        self._learner = Learner(params, seed)
        self._feature_names: list[Any] | None = (
            list(self.feature_names) if self.feature_names is not None else None
        )
        self._dim: int | None = (
            len(self._feature_names) if self._feature_names is not None else None
        )
        self._n_anonymous = 0

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"n_clusters": 3, "warmup": 10, "reservoir_size": 50, "refine_every": 20}

    # ---------------------------------------------------------------- read-only views

    @property
    def version(self) -> int:
        """0 before seeding; incremented at seeding and at each refinement or re-seed."""
        return self._learner.version

    @property
    def ready(self) -> bool:
        """Whether the model is seeded (has centroids and assigns customers)."""
        return self._learner.clustering is not None

    @property
    def centroids(self) -> FloatArray:
        """``(n_clusters, d)`` centroids (a copy); ``(0, d)`` before seeding."""
        part = self._learner.clustering
        return np.empty((0, self._dim or 0)) if part is None else part.centroids.copy()

    @property
    def sizes(self) -> IntArray:
        """Number of customers currently in each segment, every worker's (zeros before
        seeding)."""
        part = self._learner.clustering
        if part is None:
            return np.zeros(self.n_clusters, dtype=np.int64)
        return part.total().counts.copy()

    @property
    def n_buffered(self) -> int:
        """Number of distinct customers waiting in the warm-up buffer."""
        return len(self._learner.buffer)

    def buffered_in(self, partition: str) -> int:
        """Customers of ``partition`` waiting in the warm-up buffer."""
        return sum(1 for row in self._learner.buffer.values() if row[0] == partition)

    def empty_stats(self) -> ClusterStats:
        """Statistics of no customer, shaped as this model's (zeros)."""
        return ClusterStats.zeros(self.n_clusters, self._dim or 0)

    @property
    def n_sampled(self) -> int:
        """Number of customers in the sample (of this process's partitions)."""
        part = self._learner.clustering
        return 0 if part is None else len(part.sample)

    def inertia(self) -> float:
        """k-means objective of the current segments: sum over customers of the squared
        distance to their own segment's centroid (0.0 before seeding)."""
        part = self._learner.clustering
        return 0.0 if part is None else part.total().sse()

    # ------------------------------------------------------------ customer-level API

    def update_customer(
        self,
        key: str,
        vector: np.ndarray,
        previous: np.ndarray | None,
        previous_segment: int | None,
        partition: str = DEFAULT_PARTITION,
    ) -> list[Assignment]:
        """Learn a customer's new vector and return the assignments to store.

        Parameters
        ----------
        key
            The customer's key.
        vector
            Its new model-space vector, shape ``(d,)``.
        previous
            The vector stored from the customer's last :class:`Assignment`, or ``None``.
        previous_segment
            The segment stored from that assignment, or ``None`` for a customer the model
            never assigned (which makes it a *new* customer for the sample).
        partition
            The data partition of the customer (several workers sharing the model).

        Returns
        -------
        During warm-up ``[]``, except at the call that completes it: one assignment per
        buffered customer. After seeding: first this customer's assignment (always, even
        if its segment did not change), then, when a refinement ran, every other
        reservoir customer whose segment changed (``by_model_update=True``). A key
        appears at most once.

        Notes
        -----
        For a sampled customer the model's own record is used instead of
        ``previous``/``previous_segment``; see :meth:`Clustering.place_one`.

        """
        x = self._as_vector(vector)
        return self._learner.learn(key, partition, x, previous, previous_segment)

    def update_customers(
        self,
        keys: Sequence[str],
        vectors: np.ndarray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
        partitions: Sequence[str] | None = None,
    ) -> list[Assignment]:
        """:meth:`update_customer` for many distinct customers at once (a mini-batch).

        All rows are assigned against the same centroids (after every row's old vector
        has left its segment), then added together in one vectorised step
        (:meth:`Clustering.place_many`). The per-segment sums stay exact means of the
        members. Keys must be distinct. Returns one assignment per key (in order), then
        the other customers a refinement moved.
        """
        partitions = list(partitions) if partitions is not None else (
            [DEFAULT_PARTITION] * len(keys))
        x = np.asarray(vectors, dtype=np.float64)
        n = len(keys)
        if n == 0:
            return []
        if x.shape[0] != n or not np.isfinite(x).all():
            raise ValueError("vectors must be finite, one row per key")
        if self._learner.clustering is None or n == 1:
            return _one_by_one(self, keys, x, previous, previous_segments, partitions)
        if self._dim is not None and x.shape[1] != self._dim:
            raise ValueError(f"expected vectors of dimension {self._dim}, got {x.shape[1]}")
        out = self._learner.learn_many(keys, partitions, x, previous, previous_segments)
        if out is None:
            # The caller's records disagree with the sums (or keys repeat): take the
            # careful one-by-one path, which tolerates that.
            return _one_by_one(self, keys, x, previous, previous_segments, partitions)
        return out

    def replace(self, keys: Sequence[str], vectors: np.ndarray, segments: Sequence[int],
                partitions: Sequence[str] | None = None) -> list[Assignment]:
        """Put customers at their nearest segment again, at their unchanged ``vectors``
        (stored with ``segments``), with the hysteresis rule: the re-assignment sweep
        after a refinement, for customers outside the sample. Returns the assignments
        of those that moved (``by_model_update=True``); keys must be distinct. Raises
        ``RuntimeError`` before seeding.

        >>> model = CustomerKMeans(n_clusters=2, warmup=4, seed=1)
        >>> for key, v in [("a", 0.0), ("b", 1.0), ("c", 9.0), ("d", 10.0)]:
        ...     _ = model.update_customer(key, np.array([v]), None, None)
        >>> model.replace(["a"], np.array([[0.0]]), [model.nearest(np.array([0.0]))])
        []
        """
        if self._learner.clustering is None:
            raise RuntimeError("the model is not seeded yet")
        x = np.asarray(vectors, dtype=np.float64)
        names = list(partitions) if partitions is not None else [DEFAULT_PARTITION] * len(keys)
        if not len(keys):
            return []
        return self._learner.replace(list(keys), names, x, [int(s) for s in segments])

    #: Parameters :meth:`adjust` may change on a model that has learnt: they set how it
    #: learns from now on, not what it has learnt.
    ADJUSTABLE = ("warmup", "refine_every", "lloyd_iterations", "n_init", "hysteresis")

    def adjust(self, **params: Any) -> None:
        """Change learning parameters of a live model (those in :data:`ADJUSTABLE`).

        Checked as at construction; raises ``ValueError`` for a bad value or another
        parameter.

        >>> model = CustomerKMeans(n_clusters=2, warmup=4, hysteresis=0.2)
        >>> model.adjust(hysteresis=0.1, refine_every=50)
        >>> model.hysteresis, model.to_state()["params"]["refine_every"]
        (0.1, 50)
        """
        unknown = sorted(set(params) - set(self.ADJUSTABLE))
        if unknown:
            raise ValueError(f"cannot adjust {unknown} on a live model; "
                             f"adjustable: {list(self.ADJUSTABLE)}")
        current = self._learner.params
        new = Params(**{**dataclasses.asdict(current), **params})
        self._learner.params = new
        for name, value in params.items():
            setattr(self, name, value)

    def flush(self) -> list[Assignment]:
        """Bring the model up to date at the end of a finite stream (or at shutdown).

        Still warming up with at least ``n_clusters`` buffered customers: seed now and
        return every buffered customer's assignment (all ``by_model_update=True``).
        Already seeded with updates since the last refinement (and ``refine_every > 0``):
        refine now, with a complete restart search (all ``n_init`` candidates at once,
        since a finite stream may end before the spread-out search completes), and
        return the reservoir customers whose segment changed. Otherwise ``[]``.
        """
        return self._learner.flush()

    def reseed(self) -> list[Assignment]:
        """Re-seed now: best of ``max(1, n_init)`` k-means++ + Lloyd runs on the reservoir,
        adopted unconditionally, ids matched to the current ones (Hungarian).

        Returns the reservoir customers whose segment changed. Raises ``RuntimeError``
        before seeding.
        """
        if self._learner.clustering is None:
            raise RuntimeError("the model is not seeded yet; see flush()")
        return self._learner.refine(force_restart=True).moved

    def refine(self) -> list[Assignment]:
        """Run a refinement now (as done every ``refine_every`` updates).

        Returns the reservoir customers whose segment changed. Raises ``RuntimeError``
        before seeding.
        """
        if self._learner.clustering is None:
            raise RuntimeError("the model is not seeded yet; see flush()")
        return self._learner.refine(force_restart=False).moved

    def nearest(self, vector: np.ndarray) -> int:
        """Segment whose centroid is nearest to ``vector``; learns nothing.

        Raises ``RuntimeError`` before seeding.
        """
        part = self._learner.clustering
        if part is None:
            raise RuntimeError("the model is not seeded yet")
        return int(squared_distances_one(self._as_vector(vector), part.centroids).argmin())

    # ------------------------------------------------------------------- River API

    def learn_one(self, x: dict[Any, Any]) -> None:
        """Learn ``x`` as a new anonymous customer (River's ``Clusterer`` API)."""
        vector = self._dict_to_vector(x, fix_names=True)
        key = f"{ANONYMOUS_KEY_PREFIX}{self._n_anonymous}"
        self._n_anonymous += 1
        self.update_customer(key, vector, None, None)

    def predict_one(self, x: dict[Any, Any]) -> int:
        """Nearest segment to ``x``; 0 before seeding (River's ``Clusterer`` API)."""
        if self._learner.clustering is None:
            return 0
        return self.nearest(self._dict_to_vector(x, fix_names=False))

    # ------------------------------------------------------------------ persistence

    def to_state(self, with_vectors: bool = True) -> dict[str, Any]:
        """JSON-serialisable snapshot: params, statistics, sample, buffer, RNG state.

        ``CustomerKMeans.from_state(model.to_state())`` behaves exactly like ``model`` on
        any subsequent input (floats survive JSON exactly: Python writes the shortest
        repr that round-trips). With ``with_vectors=False`` the statistics, the warm-up
        buffer and the sample are left out: the caller keeps them per data partition (a
        store writes them with each partition, see :meth:`partition_stats` and
        :meth:`take_sample_changes`) and gives them back with :meth:`own`.
        """
        return kmeans_state.state_of(self, with_vectors)

    @classmethod
    def from_state(cls, state: dict[str, Any], lookup: Any = None) -> CustomerKMeans:
        """Restore a model from :meth:`to_state` output."""
        return kmeans_state.restore(cls, state)

    # ------------------------------------------------------------------- internals

    def _as_vector(self, vector: Any) -> FloatArray:
        x = np.asarray(vector, dtype=np.float64)
        if self._dim is None and x.ndim == 1:
            if x.shape[0] == 0:
                raise ValueError("a customer vector must not be empty")
            self._dim = x.shape[0]
        return as_vector(x, self._dim)

    def _dict_to_vector(self, x: dict[Any, Any], *, fix_names: bool) -> FloatArray:
        names = self._feature_names
        if names is None:
            names = sorted(x, key=str)
            if fix_names:
                self._feature_names = names
        return np.array([float(x.get(name, 0.0)) for name in names], dtype=np.float64)


def _one_by_one(
    model: CustomerKMeans,
    keys: Sequence[str],
    x: np.ndarray,
    previous: Sequence[np.ndarray | None],
    previous_segments: Sequence[int | None],
    partitions: Sequence[str],
) -> list[Assignment]:
    """``update_customers`` one customer at a time (warm-up, single rows, inconsistent
    input), through ``update_customer`` only."""
    latest: dict[str, Assignment] = {}
    for i, key in enumerate(keys):
        # A seeding or refinement earlier in this batch may have (re)assigned this
        # customer, and the sample may have dropped it since (thinned):
        # the caller's ``previous`` is then stale (a warm-up customer would even count
        # as new, twice). Pass what the model last reported instead, as the caller
        # would have stored it between two single calls.
        known = latest.get(key)
        prev_x, prev_segment = (
            (previous[i], previous_segments[i]) if known is None
            else (known.vector, known.segment)
        )
        for assignment in model.update_customer(key, x[i], prev_x, prev_segment,
                                                partitions[i]):
            latest[assignment.key] = assignment
    return list(latest.values())
