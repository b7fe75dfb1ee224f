"""Online k-means whose unit is the customer, not the event.

A customer's model-space vector changes each time the customer buys or time passes. An
event-level clusterer would count the same customer once per event; here each customer
counts once, with its *current* vector:

- per-segment sufficient statistics (vector sums, sums of squared norms, counts) are kept,
  and when a customer changes its old vector is taken out of its old segment and the new
  one added to the nearest segment, so every centroid is the exact mean of the customers
  currently in it. The statistics add up, so models of several workers could be merged;
- a uniform reservoir sample of customers, with their current vector and segment, lets
  the model run Lloyd iterations (and k-means++ restarts) every ``refine_every`` updates
  without holding every customer: customers outside the reservoir keep their segment and
  their contribution to the sums is held fixed. When the reservoir holds every customer
  this is exact batch k-means on the current population.

Segment ids keep their meaning: whenever new centroids replace old ones they are matched
to the old ids by the Hungarian algorithm on centroid distances.

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

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from river import base

from streamseg.model.base import Assignment
from streamseg.model.batch import (
    best_kmeans,
    kmeans_plusplus,
    lloyd,
    match_ids,
    squared_distances,
    squared_distances_one,
)
from streamseg.model.hysteresis import keeps_old_segment
from streamseg.model.reservoir import Reservoir, VectorLookup
from streamseg.model.rng import rng_from_state, rng_to_state
from streamseg.model.stats import ClusterStats, FloatArray, IntArray

__all__ = ["CustomerKMeans", "kmeans_plusplus", "lloyd", "match_ids"]

STATE_KIND = "customer-kmeans"
STATE_FORMAT = 1

#: A k-means++ restart found at refinement replaces the current solution only if its
#: inertia is lower by more than this fraction: small gains are not worth renaming the
#: segments of many customers.
RESTART_MIN_GAIN = 0.01

#: Restart candidates are searched on a uniform sample of at most this many reservoir
#: customers, so that a refinement's cost does not grow with ``n_init * reservoir_size``.
RESTART_SAMPLE_SIZE = 2000

#: Prefix of the keys given to anonymous points learnt through River's ``learn_one``.
ANONYMOUS_KEY_PREFIX = "__river_anonymous__:"


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


class CustomerKMeans(base.Clusterer):
    """Online k-means over customers, each counted once with its current vector.

    Lifecycle:

    1. **Warm-up.** The first ``warmup`` distinct customers are buffered (latest vector
       per key) and get no segment: ``update_customer`` returns ``[]``.
    2. **Seeding.** When the buffer holds ``warmup`` distinct customers (or on
       :meth:`flush`, if it holds at least ``n_clusters``), the best of ``n_init``
       k-means++ + Lloyd runs over the buffer gives the centroids, and the call returns an
       assignment for *every* buffered customer (``by_model_update=True`` for all but the
       one whose update triggered seeding).
    3. **Online.** Each update moves the customer's old vector out of its old segment
       and adds the new vector to the nearest segment (subject to ``hysteresis``); the
       centroids stay exact means. Cost: O(k·d).
    4. **Refinement.** Every ``refine_every`` updates, Lloyd iterations run over the
       reservoir with the non-reservoir customers' contribution held fixed, then
       ``n_init`` k-means++ restarts on the reservoir are tried; one is adopted if it
       lowers the k-means objective of the *whole* population by more than 1%
       (:data:`RESTART_MIN_GAIN`). Reservoir customers whose segment changed are
       returned with ``by_model_update=True``.

    About restarts when the reservoir is only a sample: a restart can only re-assign
    reservoir customers; the others keep their segment (matched id) and their fixed
    contribution. Because the model also keeps per-segment sums of squared norms, the
    objective of that constrained solution over *all* customers is computed exactly, and
    a restart is adopted only if it is better by that exact measure. When the reservoir
    holds every customer this is the plain comparison of two batch k-means solutions.

    Parameters
    ----------
    n_clusters
        Number of segments k. Segment ids are ``0 .. n_clusters - 1``.
    warmup
        Number of distinct customers buffered before the model seeds itself. At least
        ``n_clusters``. Larger values give a better start at the cost of a longer period
        without segments.
    reservoir_size
        Maximum number of customers kept (with their current vector and segment) for
        refinement. At least ``n_clusters``. When it is at least the number of customers,
        refinement is exact batch k-means; memory is ``reservoir_size * d`` floats.
    refine_every
        Number of customer updates between two refinements (Lloyd over the reservoir +
        restarts). ``0`` disables periodic refinement. A refinement costs
        ``O(lloyd_iterations * k * d * (reservoir_size + n_init * min(reservoir_size,
        RESTART_SAMPLE_SIZE)))``: about 20-30 ms with the defaults and a full reservoir.
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
        Relative margin in ``[0, 1)``. A customer in segment ``s`` whose new vector is
        nearest to centroid ``b != s`` moves only if
        ``dist(new, c_b) < (1 - hysteresis) * dist(new, c_s)``; this damps customers
        flapping between two segments. New customers always go to the nearest segment.
        Refinement is plain Lloyd and ignores it.
    seed
        Seed of the model's random generator (k-means++ draws, reservoir sampling). The
        model is deterministic for a given input sequence and seed.
    feature_names
        For River's ``learn_one``/``predict_one`` only: the dict keys that map to vector
        positions, in order. When ``None``, the sorted keys of the first dict seen are
        used. Missing features count as ``0.0`` (the standardised mean); unknown ones are
        ignored.

    Attributes
    ----------
    version
        0 before seeding; incremented at seeding and at each refinement or re-seed.

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
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        if warmup < n_clusters:
            raise ValueError(f"warmup ({warmup}) must be >= n_clusters ({n_clusters})")
        if reservoir_size < n_clusters:
            raise ValueError(
                f"reservoir_size ({reservoir_size}) must be >= n_clusters ({n_clusters})"
            )
        if refine_every < 0:
            raise ValueError(f"refine_every must be >= 0, got {refine_every}")
        if lloyd_iterations < 1:
            raise ValueError(f"lloyd_iterations must be >= 1, got {lloyd_iterations}")
        if n_init < 0:
            raise ValueError(f"n_init must be >= 0, got {n_init}")
        if not 0.0 <= hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis}")
        self.n_clusters = n_clusters
        self.warmup = warmup
        self.reservoir_size = reservoir_size
        self.refine_every = refine_every
        self.lloyd_iterations = lloyd_iterations
        self.n_init = n_init
        self._refinements = 0
        self.hysteresis = hysteresis
        self.seed = seed
        self.feature_names = tuple(feature_names) if feature_names is not None else None

        self.version = 0
        self._rng = np.random.default_rng(seed)
        self._feature_names: list[Any] | None = (
            list(self.feature_names) if self.feature_names is not None else None
        )
        self._dim: int | None = (
            len(self._feature_names) if self._feature_names is not None else None
        )
        self._buffer: dict[str, FloatArray] = {}
        self._stats: ClusterStats | None = None
        self._centroids: FloatArray | None = None
        self._reservoir: Reservoir | None = None
        self._updates_since_refine = 0
        self._n_updates = 0
        self._n_anonymous = 0

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"n_clusters": 3, "warmup": 10, "reservoir_size": 50, "refine_every": 20}

    # ---------------------------------------------------------------- read-only views

    @property
    def ready(self) -> bool:
        """Whether the model is seeded (has centroids and assigns customers)."""
        return self._stats is not None

    @property
    def centroids(self) -> FloatArray:
        """``(n_clusters, d)`` centroids (a copy); ``(0, d)`` before seeding."""
        if self._centroids is None:
            return np.empty((0, self._dim or 0))
        return self._centroids.copy()

    @property
    def sizes(self) -> IntArray:
        """Number of customers currently in each segment (zeros before seeding)."""
        if self._stats is None:
            return np.zeros(self.n_clusters, dtype=np.int64)
        return self._stats.counts.copy()

    @property
    def n_buffered(self) -> int:
        """Number of distinct customers waiting in the warm-up buffer."""
        return len(self._buffer)

    @property
    def n_sampled(self) -> int:
        """Number of customers in the reservoir."""
        return 0 if self._reservoir is None else len(self._reservoir)

    def inertia(self) -> float:
        """k-means objective of the current segments: sum over customers of the squared
        distance to their own segment's centroid (0.0 before seeding)."""
        return 0.0 if self._stats is None else self._stats.sse()

    # ------------------------------------------------------------ customer-level API

    def update_customer(
        self,
        key: str,
        vector: np.ndarray,
        previous: np.ndarray | None,
        previous_segment: int | None,
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
            never assigned (which makes it a *new* customer for the reservoir).

        Returns
        -------
        During warm-up ``[]``, except at the call that completes it: one assignment per
        buffered customer. After seeding: first this customer's assignment (always, even
        if its segment did not change), then, when a refinement ran, every other
        reservoir customer whose segment changed (``by_model_update=True``). A key
        appears at most once.

        Notes
        -----
        For a customer in the reservoir the model's own record of its vector and segment
        is used instead of ``previous``/``previous_segment``: it is authoritative, and it
        keeps the sums right even if the caller missed a model-driven reassignment. For
        other customers the caller's values are trusted; if ``previous_segment`` names
        an empty segment they are ignored.

        """
        x = self._as_vector(vector)
        self._n_updates += 1
        if self._stats is None:
            # Warm-up: customers have no segment yet, so previous values are moot.
            self._buffer[key] = x.copy()
            if len(self._buffer) >= self.warmup:
                return self._seed(current_key=key)
            return []
        return self._update_seeded(key, x, previous, previous_segment)

    def update_customers(
        self,
        keys: Sequence[str],
        vectors: np.ndarray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
    ) -> list[Assignment]:
        """:meth:`update_customer` for many distinct customers at once (a mini-batch).

        All rows are assigned against the same centroids (after every row's old vector
        has left its segment), then added together: one vectorised step instead of one
        per customer, which is what makes a batch of a thousand customers cost about as
        much as a handful. The per-segment sums stay exact means of the members. Keys
        must be distinct. Returns one assignment per key (in order), then the other
        customers a refinement moved.
        """
        x = np.asarray(vectors, dtype=np.float64)
        n = len(keys)
        if n == 0:
            return []
        if x.shape[0] != n or not np.isfinite(x).all():
            raise ValueError("vectors must be finite, one row per key")
        stats, centroids, reservoir = self._stats, self._centroids, self._reservoir
        if stats is None or centroids is None or reservoir is None or n == 1:
            return self._update_each(keys, x, previous, previous_segments)
        if self._dim is not None and x.shape[1] != self._dim:
            raise ValueError(f"expected vectors of dimension {self._dim}, got {x.shape[1]}")
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
            # The caller's records disagree with the sums (or keys repeat): take the
            # careful one-by-one path, which tolerates that.
            return self._update_each(keys, x, previous, previous_segments)

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
        if self.hysteresis > 0.0 and has_old.any():
            rows = np.flatnonzero(has_old & (best != old_segments))
            keep = keeps_old_segment(
                d2[rows, best[rows]], d2[rows, old_segments[rows]], self.hysteresis
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
            reservoir.offer(keys[i], x[i], int(best[i]), self._rng)
        self._n_updates += n
        self._updates_since_refine += n
        out = [Assignment(key, int(best[i]), x[i], False) for i, key in enumerate(keys)]
        if self.refine_every > 0 and self._updates_since_refine >= self.refine_every:
            position = {key: i for i, key in enumerate(keys)}
            for moved in self._refine(force_restart=False):
                row = position.get(moved.key)
                if row is None:
                    out.append(moved)
                else:
                    out[row] = Assignment(moved.key, moved.segment, x[row], False)
        return out

    def _update_each(
        self,
        keys: Sequence[str],
        x: np.ndarray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
    ) -> list[Assignment]:
        """One customer at a time (warm-up, single rows, inconsistent input)."""
        latest: dict[str, Assignment] = {}
        for i, key in enumerate(keys):
            # A seeding or refinement earlier in this batch may have (re)assigned this
            # customer, and a newcomer since then may have evicted it from the reservoir:
            # the caller's ``previous`` is then stale (a warm-up customer would even count
            # as new, twice). Pass what the model last reported instead, as the caller
            # would have stored it between two single calls.
            known = latest.get(key)
            prev_x, prev_segment = (
                (previous[i], previous_segments[i]) if known is None
                else (known.vector, known.segment)
            )
            for assignment in self.update_customer(key, x[i], prev_x, prev_segment):
                latest[assignment.key] = assignment
        return list(latest.values())

    def flush(self) -> list[Assignment]:
        """Bring the model up to date at the end of a finite stream (or at shutdown).

        Still warming up with at least ``n_clusters`` buffered customers: seed now and
        return every buffered customer's assignment (all ``by_model_update=True``).
        Already seeded with updates since the last refinement (and ``refine_every > 0``):
        refine now, with a complete restart search (all ``n_init`` candidates at once,
        since a finite stream may end before the spread-out search completes), and
        return the reservoir customers whose segment changed. Otherwise ``[]``.
        """
        if self._stats is None:
            if len(self._buffer) >= self.n_clusters:
                return self._seed(current_key=None)
            return []
        if self.refine_every > 0 and self._updates_since_refine > 0:
            return self._refine(force_restart=False, full_search=True)
        return []

    def reseed(self) -> list[Assignment]:
        """Re-seed now: best of ``max(1, n_init)`` k-means++ + Lloyd runs on the reservoir,
        adopted unconditionally, ids matched to the current ones (Hungarian).

        Returns the reservoir customers whose segment changed. Raises ``RuntimeError``
        before seeding.
        """
        if self._stats is None:
            raise RuntimeError("the model is not seeded yet; see flush()")
        return self._refine(force_restart=True)

    def refine(self) -> list[Assignment]:
        """Run a refinement now (as done every ``refine_every`` updates).

        Returns the reservoir customers whose segment changed. Raises ``RuntimeError``
        before seeding.
        """
        if self._stats is None:
            raise RuntimeError("the model is not seeded yet; see flush()")
        return self._refine(force_restart=False)

    def nearest(self, vector: np.ndarray) -> int:
        """Segment whose centroid is nearest to ``vector``; learns nothing.

        Raises ``RuntimeError`` before seeding.
        """
        if self._centroids is None:
            raise RuntimeError("the model is not seeded yet")
        x = self._as_vector(vector)
        return int(squared_distances_one(x, self._centroids).argmin())

    # ------------------------------------------------------------------- River API

    def learn_one(self, x: dict[Any, Any]) -> None:
        """Learn ``x`` as a new anonymous customer (River's ``Clusterer`` API)."""
        vector = self._dict_to_vector(x, fix_names=True)
        key = f"{ANONYMOUS_KEY_PREFIX}{self._n_anonymous}"
        self._n_anonymous += 1
        self.update_customer(key, vector, None, None)

    def predict_one(self, x: dict[Any, Any]) -> int:
        """Nearest segment to ``x``; 0 before seeding (River's ``Clusterer`` API)."""
        if self._centroids is None:
            return 0
        return self.nearest(self._dict_to_vector(x, fix_names=False))

    # ------------------------------------------------------------------ persistence

    def to_state(self, with_vectors: bool = True) -> dict[str, Any]:
        """JSON-serialisable snapshot: params, statistics, reservoir, buffer, RNG state.

        With ``with_vectors=False`` the reservoir's vectors and segments are left out (a
        light checkpoint, small enough to write with every batch); :meth:`from_state`
        then needs a ``lookup`` that returns them from the caller's store.

        ``CustomerKMeans.from_state(model.to_state())`` behaves exactly like ``model`` on
        any subsequent input (floats survive JSON exactly: Python writes the shortest
        repr that round-trips).
        """
        params = self._get_params()
        params["feature_names"] = (
            list(self.feature_names) if self.feature_names is not None else None
        )
        stats = self._stats
        return {
            "kind": STATE_KIND,
            "format": STATE_FORMAT,
            "params": params,
            "names": None if self._feature_names is None else list(self._feature_names),
            "dim": self._dim,
            "version": self.version,
            "n_updates": self._n_updates,
            "updates_since_refine": self._updates_since_refine,
            "refinements": self._refinements,
            "n_anonymous": self._n_anonymous,
            "rng": rng_to_state(self._rng),
            "buffer": {
                "keys": list(self._buffer),
                "vectors": [v.tolist() for v in self._buffer.values()],
            },
            "centroids": None if self._centroids is None else self._centroids.tolist(),
            "sums": None if stats is None else stats.sums.tolist(),
            "sqsums": None if stats is None else stats.sqsums.tolist(),
            "counts": None if stats is None else stats.counts.tolist(),
            "reservoir": (
                None if self._reservoir is None else self._reservoir.to_state(with_vectors)
            ),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], lookup: VectorLookup | None = None
    ) -> CustomerKMeans:
        """Restore a model from :meth:`to_state` output (``lookup``: see there)."""
        if state.get("kind") != STATE_KIND:
            raise ValueError(f"not a {STATE_KIND} state: kind={state.get('kind')!r}")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported {STATE_KIND} state format {state.get('format')!r}")
        params = dict(state["params"])
        if params.get("feature_names") is not None:
            params["feature_names"] = tuple(params["feature_names"])
        model = cls(**params)
        model._feature_names = None if state["names"] is None else list(state["names"])
        model._dim = None if state["dim"] is None else int(state["dim"])
        model.version = int(state["version"])
        model._n_updates = int(state["n_updates"])
        model._updates_since_refine = int(state["updates_since_refine"])
        model._refinements = int(state.get("refinements", 0))
        model._n_anonymous = int(state["n_anonymous"])
        model._rng = rng_from_state(state["rng"])
        model._buffer = {
            str(k): np.asarray(v, dtype=np.float64)
            for k, v in zip(state["buffer"]["keys"], state["buffer"]["vectors"], strict=True)
        }
        if state["counts"] is not None:
            dim = model._dim or 0
            k = model.n_clusters
            model._stats = ClusterStats(
                np.asarray(state["sums"], dtype=np.float64).reshape(k, dim),
                np.asarray(state["sqsums"], dtype=np.float64).reshape(k),
                np.asarray(state["counts"], dtype=np.int64).reshape(k),
            )
            model._centroids = np.asarray(state["centroids"], dtype=np.float64).reshape(k, dim)
            model._reservoir = Reservoir.from_state(state["reservoir"], dim, lookup)
        return model

    # ------------------------------------------------------------------- internals

    def _as_vector(self, vector: Any) -> FloatArray:
        x = np.asarray(vector, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"a customer vector must be 1-D, got shape {x.shape}")
        if self._dim is None:
            if x.shape[0] == 0:
                raise ValueError("a customer vector must not be empty")
            self._dim = x.shape[0]
        elif x.shape[0] != self._dim:
            raise ValueError(f"expected a vector of dimension {self._dim}, got {x.shape[0]}")
        if not np.isfinite(x).all():
            raise ValueError("a customer vector must be finite (no NaN or inf)")
        return x

    def _dict_to_vector(self, x: dict[Any, Any], *, fix_names: bool) -> FloatArray:
        names = self._feature_names
        if names is None:
            names = sorted(x, key=str)
            if fix_names:
                self._feature_names = names
        return np.array([float(x.get(name, 0.0)) for name in names], dtype=np.float64)

    def _update_seeded(
        self,
        key: str,
        x: FloatArray,
        previous: np.ndarray | None,
        previous_segment: int | None,
    ) -> list[Assignment]:
        stats = self._stats
        centroids = self._centroids
        reservoir = self._reservoir
        assert stats is not None and centroids is not None and reservoir is not None

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
            old_x = self._as_vector(previous)
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
            and keeps_old_segment(d2[best], d2[old_segment], self.hysteresis)
        ):
            segment = old_segment
        self._add(x, segment)

        if slot is not None:
            reservoir.vectors[slot] = x
            reservoir.segments[slot] = segment
        elif is_new:
            reservoir.offer(key, x, segment, self._rng)

        mine = Assignment(key, segment, x, False)
        self._updates_since_refine += 1
        if not (self.refine_every > 0 and self._updates_since_refine >= self.refine_every):
            return [mine]
        changed = self._refine(force_restart=False)
        out = [mine]
        for a in changed:
            if a.key == key:
                # Refinement moved this very customer: report its final segment once.
                out[0] = Assignment(key, a.segment, x, False)
            else:
                out.append(a)
        return out

    def _add(self, x: FloatArray, segment: int) -> None:
        stats = self._stats
        centroids = self._centroids
        assert stats is not None and centroids is not None
        stats.sums[segment] += x
        stats.sqsums[segment] += float(np.dot(x, x))
        stats.counts[segment] += 1
        centroids[segment] = stats.sums[segment] / stats.counts[segment]

    def _remove(self, x: FloatArray, segment: int) -> None:
        stats = self._stats
        centroids = self._centroids
        assert stats is not None and centroids is not None
        stats.counts[segment] -= 1
        if stats.counts[segment] == 0:
            # Exact zeros rather than float residue; the centroid keeps its last
            # position so that it can attract customers again.
            stats.sums[segment] = 0.0
            stats.sqsums[segment] = 0.0
            return
        stats.sums[segment] -= x
        stats.sqsums[segment] -= float(np.dot(x, x))
        centroids[segment] = stats.sums[segment] / stats.counts[segment]

    def _restart_pool(self, x: FloatArray) -> FloatArray:
        """At most RESTART_SAMPLE_SIZE reservoir rows to search restarts on (the runs
        dominate the cost; the Lloyd that judges a candidate uses the whole reservoir)."""
        if len(x) <= RESTART_SAMPLE_SIZE:
            return x
        picked = self._rng.choice(len(x), RESTART_SAMPLE_SIZE, replace=False)
        return x[np.sort(picked)]

    def _search_step(self, x: FloatArray) -> FloatArray:
        """One k-means++ + Lloyd restart candidate, for one refinement.

        Each refinement tries one candidate instead of ``n_init`` at once: a refinement
        stays a few milliseconds instead of ~50, so no batch stalls, and over ``n_init``
        refinements the search is as thorough.
        """
        pool = self._restart_pool(x)
        start = kmeans_plusplus(pool, self.n_clusters, self._rng)
        labels0 = squared_distances(pool, start).argmin(axis=1).astype(np.int64)
        fixed = ClusterStats.zeros(self.n_clusters, x.shape[1])
        return lloyd(pool, labels0, fixed, start, self.lloyd_iterations)[2]

    def _seed(self, current_key: str | None) -> list[Assignment]:
        keys = list(self._buffer)
        x = np.stack(list(self._buffer.values()))
        dim = x.shape[1]
        labels, _ = best_kmeans(x, self.n_clusters, self.n_init, self.lloyd_iterations, self._rng)
        self._stats = ClusterStats.of(x, labels, self.n_clusters)
        self._centroids = self._stats.centroids(np.zeros((self.n_clusters, dim)))
        self._reservoir = Reservoir(self.reservoir_size, dim)
        for i, key in enumerate(keys):
            self._reservoir.offer(key, x[i], int(labels[i]), self._rng)
        self._buffer = {}
        self._updates_since_refine = 0
        self.version += 1
        return [
            Assignment(key, int(labels[i]), x[i], key != current_key) for i, key in enumerate(keys)
        ]

    def _refine(self, *, force_restart: bool, full_search: bool = False) -> list[Assignment]:
        stats = self._stats
        centroids = self._centroids
        reservoir = self._reservoir
        assert stats is not None and centroids is not None and reservoir is not None
        n = len(reservoir)
        x = reservoir.vectors[:n]
        old_labels = reservoir.segments[:n].copy()
        # What the customers outside the reservoir contribute, held fixed.
        fixed = stats - ClusterStats.of(x, old_labels, self.n_clusters)

        if force_restart:
            labels, new_stats, new_centroids = old_labels, stats, centroids
        else:
            labels, new_stats, new_centroids = lloyd(
                x, old_labels, fixed, centroids, self.lloyd_iterations, self.hysteresis
            )
        self._refinements += 1
        candidate: FloatArray | None = None
        if force_restart or (full_search and self.n_init > 0):
            pool = self._restart_pool(x)
            k, runs, iterations = self.n_clusters, self.n_init, self.lloyd_iterations
            candidate = best_kmeans(pool, k, runs, iterations, self._rng)[1]
        elif self.n_init > 0:
            candidate = self._search_step(x)
        if candidate is not None:
            cand_centroids = candidate[match_ids(new_centroids, candidate)]
            cand_labels = squared_distances(x, cand_centroids).argmin(axis=1).astype(np.int64)
            # Judge the restart as it would really be: with the fixed contribution of
            # the non-reservoir customers under the matched ids.
            c_labels, c_stats, c_centroids = lloyd(
                x, cand_labels, fixed, cand_centroids, self.lloyd_iterations
            )
            if force_restart or c_stats.sse() < (1.0 - RESTART_MIN_GAIN) * new_stats.sse():
                labels, new_stats, new_centroids = c_labels, c_stats, c_centroids

        self._stats = new_stats.copy()
        self._centroids = new_centroids.copy()
        reservoir.segments[:n] = labels
        self._updates_since_refine = 0
        self.version += 1
        changed = np.flatnonzero(labels != old_labels)
        return [Assignment(reservoir.keys[i], int(labels[i]), x[i].copy(), True) for i in changed]
