"""Refinement: Lloyd over the reservoir with the other customers held fixed, and restarts.

Customers outside the reservoir keep their segment; what they contribute to the
per-segment statistics is the model's statistics minus the reservoir's, and it is held
fixed while Lloyd iterations re-assign the reservoir customers.

A k-means++ + Lloyd restart candidate is then tried. A restart can only re-assign
reservoir customers; the others keep their segment (matched id) and their fixed
contribution. Because the statistics include sums of squared norms, the objective of
that constrained solution over *all* customers is computed exactly, and the candidate
is adopted only if it is better by that exact measure (by more than
:data:`RESTART_MIN_GAIN`). When the reservoir holds every customer this is the plain
comparison of two batch k-means solutions.

That exact measure is unfair to a candidate that reorganises the segments: the
customers outside the reservoir are counted at their old segments, where they fit the
old solution and not the new one. When the caller can place every customer again (its
re-assignment sweep; ``reorganise=True``), both solutions are judged as the reservoir --
a uniform sample of the customers -- sees them instead: Lloyd over the reservoir alone
from each one's centroids. A candidate better by that measure is returned with
``reorganised`` set and the reservoir's centroids, which the caller holds (pins) while
it places the other customers again.

A refinement costs ``O(lloyd_iterations * k * d * (reservoir_size + runs *
min(reservoir_size, RESTART_SAMPLE_SIZE)))``, where ``runs`` is 1 between flushes and
``n_init`` at ``flush`` and ``reseed``.

>>> rng = np.random.default_rng(0)
>>> x = np.array([[0.0], [1.0], [9.0], [10.0]])
>>> labels = np.array([0, 1, 1, 1])
>>> stats = ClusterStats.of(x, labels, 2)
>>> refined = refine(
...     x, labels, stats, stats.centroids(np.zeros((2, 1))),
...     lloyd_iterations=10, hysteresis=0.0, n_init=0, rng=rng)
>>> refined.labels.tolist(), refined.centroids[:, 0].tolist(), refined.reorganised
([0, 0, 1, 1], [0.5, 9.5], False)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from streamseg.model.batch import best_kmeans, lloyd, match_ids, squared_distances
from streamseg.model.stats import ClusterStats, FloatArray, IntArray

__all__ = ["RESTART_MIN_GAIN", "RESTART_SAMPLE_SIZE", "Refined", "refine", "restart_pool"]

#: A k-means++ restart found at refinement replaces the current solution only if its
#: inertia is lower by more than this fraction: small gains are not worth renaming the
#: segments of many customers.
RESTART_MIN_GAIN = 0.01

#: Restart candidates are searched on a uniform sample of at most this many reservoir
#: customers, so that a refinement's cost does not grow with ``n_init * reservoir_size``.
RESTART_SAMPLE_SIZE = 2000


class Refined(NamedTuple):
    """What :func:`refine` found."""

    #: The reservoir's new labels.
    labels: IntArray
    #: The whole population's statistics (customers outside the reservoir in their
    #: segments as they were).
    stats: ClusterStats
    #: The new centroids: the means of ``stats``, or with ``reorganised`` the means of
    #: the reservoir's customers alone.
    centroids: FloatArray
    #: A restart judged on the reservoir alone won: hold ``centroids`` until every
    #: customer outside the reservoir was placed again.
    reorganised: bool = False


def _reservoir_lloyd(x: FloatArray, centroids: FloatArray,
                     lloyd_iterations: int) -> tuple[IntArray, ClusterStats, FloatArray]:
    """Lloyd over the rows ``x`` alone, from every row at its nearest of ``centroids``."""
    k = centroids.shape[0]
    labels = squared_distances(x, centroids).argmin(axis=1).astype(np.int64)
    return lloyd(x, labels, ClusterStats.zeros(k, x.shape[1]), centroids, lloyd_iterations)


def restart_pool(x: FloatArray, rng: np.random.Generator) -> FloatArray:
    """At most :data:`RESTART_SAMPLE_SIZE` rows of ``x`` to search restarts on (the runs
    dominate the cost; the Lloyd that judges a candidate uses all of ``x``)."""
    if len(x) <= RESTART_SAMPLE_SIZE:
        return x
    picked = rng.choice(len(x), RESTART_SAMPLE_SIZE, replace=False)
    return x[np.sort(picked)]


def refine(
    x: FloatArray,
    labels: IntArray,
    stats: ClusterStats,
    centroids: FloatArray,
    *,
    lloyd_iterations: int,
    hysteresis: float,
    n_init: int,
    rng: np.random.Generator,
    force_restart: bool = False,
    full_search: bool = False,
    reorganise: bool = False,
) -> Refined:
    """Refine the partition whose reservoir rows ``x`` are in segments ``labels``.

    ``stats`` and ``centroids`` describe the whole population. Returns the reservoir's
    new labels, and the new statistics and centroids of the whole population.

    Without ``force_restart``: Lloyd iterations (with ``hysteresis``), then one restart
    candidate (``n_init`` of them with ``full_search``; none if ``n_init`` is 0), adopted
    only if it lowers the objective by more than :data:`RESTART_MIN_GAIN` (judged on
    the reservoir alone with ``reorganise`` when customers are outside it: see the
    module docstring). With ``force_restart``: the best of ``max(1, n_init)`` restarts,
    adopted unconditionally. Restart ids are matched to the current ones (Hungarian), so
    ids keep their meaning.
    """
    k = stats.counts.shape[0]
    # What the customers outside the reservoir contribute, held fixed.
    fixed = stats - ClusterStats.of(x, labels, k)

    if force_restart:
        new_labels, new_stats, new_centroids = labels, stats, centroids
    else:
        new_labels, new_stats, new_centroids = lloyd(
            x, labels, fixed, centroids, lloyd_iterations, hysteresis
        )
    candidate: FloatArray | None = None
    if force_restart or (full_search and n_init > 0):
        candidate = best_kmeans(restart_pool(x, rng), k, n_init, lloyd_iterations, rng)[1]
    elif n_init > 0:
        # One candidate per refinement instead of n_init at once: a refinement then costs
        # one run, so no batch stalls behind it, and over n_init refinements the search
        # is as thorough.
        candidate = best_kmeans(restart_pool(x, rng), k, 1, lloyd_iterations, rng)[1]
    if candidate is not None:
        cand_centroids = candidate[match_ids(new_centroids, candidate)]
        if reorganise and not force_restart and fixed.counts.sum() > 0:
            # Both solutions as the reservoir sees them (module docstring).
            current = _reservoir_lloyd(x, new_centroids, lloyd_iterations)[1].sse()
            c_labels, c_sample, c_centroids = _reservoir_lloyd(x, cand_centroids,
                                                               lloyd_iterations)
            if c_sample.sse() < (1.0 - RESTART_MIN_GAIN) * current:
                return Refined(c_labels, fixed + c_sample, c_centroids, reorganised=True)
            return Refined(new_labels, new_stats, new_centroids)
        cand_labels = squared_distances(x, cand_centroids).argmin(axis=1).astype(np.int64)
        # Judge the restart as it would really be: with the fixed contribution of
        # the non-reservoir customers under the matched ids.
        c_labels, c_stats, c_centroids = lloyd(
            x, cand_labels, fixed, cand_centroids, lloyd_iterations
        )
        if force_restart or c_stats.sse() < (1.0 - RESTART_MIN_GAIN) * new_stats.sse():
            new_labels, new_stats, new_centroids = c_labels, c_stats, c_centroids
    return Refined(new_labels, new_stats, new_centroids)
