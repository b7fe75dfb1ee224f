"""``streamseg evaluate``: how good the live segmentation is, measured on a sample.

Which vectors: every sampled customer's vector is recomputed from their stored features
at the service clock with the current standardiser (:meth:`ReadView.vectors`), so all
are in one space (stored vectors may be days old and from older standardisers). Which
labels: the live assignment, each customer's stored segment. The measures are exact on a
uniform random sample of up to ``evaluate.sample`` customers (all of them in a smaller
store), and the output says so.

Against what: the project's own batch k-means++ (best of 10, :func:`~streamseg.model.
batch.best_kmeans`) on the same vectors: its inertia is the yardstick of the live
inertia, and the adjusted Rand index between the live segments and that fresh fit is the
*stability* (1: a batch fit today would draw the same segments).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamseg.core.state import CustomerState
from streamseg.evaluate.choice import BATCH_INIT, BATCH_ITERATIONS, KPoint, recommend, sweep_k
from streamseg.evaluate.metrics import (
    adjusted_rand,
    calinski_harabasz,
    davies_bouldin,
    inertia,
    silhouette,
)
from streamseg.model.batch import best_kmeans
from streamseg.read.view import ReadError, ReadView

__all__ = ["CustomerSample", "Evaluation", "Reservoir", "draw_sample", "evaluate",
           "format_evaluation"]


@dataclass(slots=True)
class CustomerSample:
    """The customers measured: ids, recomputed vectors and live segments."""

    ids: list[str]
    vectors: np.ndarray
    segments: np.ndarray
    population: int  # customers with a segment and purchases, of which these were drawn
    clock: float

    @property
    def exact(self) -> bool:
        """Whether the sample is every customer."""
        return len(self.ids) == self.population


class Reservoir:
    """A uniform sample of ``size`` of the segmented customers with purchases offered
    to it (one pass, memory bounded by ``size``, the same draw for the same seed).

    >>> from streamseg.core.features import CustomerFeatures
    >>> f = CustomerFeatures.empty()
    >>> f.apply(0.0, 5.0, "purchase", half_life_days=90.0)
    >>> draw = Reservoir(10, seed=1)
    >>> for i in range(100):
    ...     draw.offer(CustomerState(str(i), f, segment=i % 2))
    >>> len(draw.states()), draw.seen, len({s.customer_id for s in draw.states()})
    (10, 100, 10)
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._chosen: list[CustomerState] = []

    def offer(self, state: CustomerState) -> None:
        if state.segment is None or not state.features.has_purchases:
            return
        self.seen += 1
        if len(self._chosen) < self.size:
            self._chosen.append(state)
            return
        slot = int(self._rng.integers(0, self.seen))
        if slot < self.size:
            self._chosen[slot] = state

    def states(self) -> list[CustomerState]:
        """The draw, by customer id."""
        return sorted(self._chosen, key=lambda s: s.customer_id)


def draw_sample(view: ReadView, size: int, seed: int) -> CustomerSample:
    """Up to ``size`` customers drawn uniformly from the whole store (one scan)."""
    draw = Reservoir(size, seed)
    for state in view.customers():
        draw.offer(state)
    return sample_of(view, draw.states(), draw.seen)


def sample_of(view: ReadView, states: Sequence[CustomerState], population: int
              ) -> CustomerSample:
    """``states`` as a sample: their recomputed vectors and live segments."""
    vectors = view.vectors(states) if states else np.empty((0, 0))
    return CustomerSample([s.customer_id for s in states], vectors,
                          np.array([int(s.segment) for s in states  # type: ignore[arg-type]
                                    ], dtype=np.int64), population, view.now())


@dataclass(slots=True)
class Evaluation:
    """The measures of the live segmentation and of a batch fit on the same sample."""

    k: int
    sample: int
    population: int
    exact: bool
    clock: float
    model_version: int
    live: dict[str, float | None]
    batch: dict[str, float | None]
    inertia_ratio: float | None
    stability_ari: float
    sweep: list[KPoint] = field(default_factory=list)
    recommended_k: int | None = None
    why: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k, "model_version": self.model_version,
            "sample": {"customers": self.sample, "of": self.population,
                       "exact": self.exact,
                       "vectors": "recomputed from stored features at the service clock "
                                  "with the current standardiser"},
            "clock": self.clock, "live": self.live, "batch_kmeans": self.batch,
            "inertia_ratio": self.inertia_ratio, "stability_ari": self.stability_ari,
            "k_sweep": [p.to_dict() for p in self.sweep] or None,
            "recommended_k": self.recommended_k, "why": self.why,
        }


def measures(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray | None
             ) -> dict[str, float | None]:
    """Silhouette, Davies-Bouldin, Calinski-Harabasz (None with fewer than 2 clusters)
    and inertia (to ``centroids`` by label, else to the clusters' means)."""
    several = 2 <= len(np.unique(labels)) <= len(x) - 1
    return {
        "silhouette": silhouette(x, labels) if several else None,
        "davies_bouldin": davies_bouldin(x, labels) if several else None,
        "calinski_harabasz": calinski_harabasz(x, labels) if several else None,
        "inertia": inertia(x, labels, centroids),
    }


def evaluate(view: ReadView, sample: CustomerSample, seed: int,
             ks: Sequence[int] = ()) -> Evaluation:
    """Measure the live segments of ``sample`` against a batch fit (and sweep ``ks``)."""
    centroids = view.centroids
    if centroids is None:
        raise ReadError(f"{view.where}: the model is not seeded yet (fewer than "
                        f"model.warmup customers so far): nothing to evaluate")
    k = len(centroids)
    if len(sample.ids) <= k:
        raise ReadError(f"{view.where}: {len(sample.ids)} customers with a segment, "
                        f"too few to evaluate {k} segments")
    outside = sorted({int(s) for s in sample.segments if not 0 <= s < k})
    if outside:
        raise ReadError(
            f"{view.where}: customers are stored in segment(s) {outside} but the model has "
            f"{k} segments (0..{k - 1}): store and model disagree; if a reseed was stopped, "
            "run `streamseg reseed --k N` again, else let the service's sweep re-place them")
    x, live_labels = sample.vectors, sample.segments
    batch_labels, batch_centroids = best_kmeans(x, k, BATCH_INIT, BATCH_ITERATIONS,
                                                np.random.default_rng(seed))
    live = measures(x, live_labels, centroids)
    batch = measures(x, batch_labels, batch_centroids)
    live_inertia, batch_inertia = live["inertia"], batch["inertia"]
    ratio = (live_inertia / batch_inertia if live_inertia is not None and batch_inertia
             else None)
    evaluation = Evaluation(
        k=k, sample=len(sample.ids), population=sample.population, exact=sample.exact,
        clock=sample.clock, model_version=int(view.model.version), live=live, batch=batch,
        inertia_ratio=ratio, stability_ari=adjusted_rand(live_labels, batch_labels))
    if ks:
        evaluation.sweep = sweep_k(x, ks, seed)
        evaluation.recommended_k, evaluation.why = recommend(evaluation.sweep)
    return evaluation


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_evaluation(e: Evaluation) -> str:
    """The human table: live vs batch k-means++, then the k sweep if any."""
    scope = (f"all {e.sample:,} customers" if e.exact else
             f"a uniform random sample of {e.sample:,} of {e.population:,} customers")
    lines = [
        f"k={e.k}, model version {e.model_version}; measures exact on {scope}; vectors "
        "recomputed from stored features at the service clock with the current "
        "standardiser",
        "",
        f"{'measure':<26}{'live segments':>16}{'batch k-means++':>18}  better",
        "-" * 66,
    ]
    for key, label, better, digits in (
            ("silhouette", "silhouette", "higher", 3),
            ("davies_bouldin", "Davies-Bouldin", "lower", 3),
            ("calinski_harabasz", "Calinski-Harabasz", "higher", 1),
            ("inertia", "inertia", "lower", 1)):
        lines.append(f"{label:<26}{_num(e.live[key], digits):>16}"
                     f"{_num(e.batch[key], digits):>18}  {better}")
    lines.append(f"{'inertia live / batch':<26}{_num(e.inertia_ratio):>16}"
                 f"{'':>18}  1.0 is best")
    lines.append(f"{'stability (ARI live-batch)':<26}{_num(e.stability_ari):>16}"
                 f"{'':>18}  1.0 is best")
    if e.sweep:
        lines += ["", f"{'k':>3}{'silhouette':>12}{'inertia':>14}", "-" * 29]
        for point in e.sweep:
            mark = "  <- recommended" if point.k == e.recommended_k else ""
            lines.append(f"{point.k:>3}{point.silhouette:>12.3f}{point.inertia:>14,.1f}{mark}")
        lines += ["", f"recommended k={e.recommended_k}: {e.why}"]
        if e.recommended_k is not None and e.recommended_k != e.k:
            lines.append(f"to move this store to k={e.recommended_k}: stop the service, run "
                         f"`streamseg reseed --k {e.recommended_k}`, then set "
                         f"model.n_clusters: {e.recommended_k}")
    return "\n".join(lines)
