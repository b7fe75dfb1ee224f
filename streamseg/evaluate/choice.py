"""Choosing k: batch k-means++ (best of 10, the project's own) for each k on the same
vectors, silhouette and inertia per k, and a recommendation with its reason.

The recommended k is the one with the highest mean silhouette: it weighs how tight the
segments are against how far apart, so unlike inertia it does not simply improve with
every extra segment. The reason names the runner-up and where inertia stops falling
fast (the elbow), so a reader can weigh a k the silhouette does not pick.

>>> rng = np.random.default_rng(0)
>>> centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
>>> x = np.concatenate([c + rng.normal(size=(40, 2)) for c in centres])
>>> points = sweep_k(x, [2, 3, 4], seed=0)
>>> [p.k for p in points], recommend(points)[0]
([2, 3, 4], 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from streamseg.evaluate.metrics import inertia, silhouette
from streamseg.model.batch import best_kmeans

__all__ = ["BATCH_INIT", "BATCH_ITERATIONS", "KPoint", "parse_ks", "recommend", "sweep_k"]

#: k-means++ runs per batch fit (the best is kept), as scikit-learn's ``n_init=10``.
BATCH_INIT = 10
#: Lloyd iterations at most per run (it stops as soon as no label changes).
BATCH_ITERATIONS = 300


@dataclass(slots=True)
class KPoint:
    """One k of the sweep: the batch fit's mean silhouette and inertia."""

    k: int
    silhouette: float
    inertia: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_ks(text: str) -> list[int]:
    """``"2..10"``, ``"3,5,8"`` or ``"4"`` as a sorted list of k (each >= 2).

    >>> parse_ks("2..5"), parse_ks("6,3"), parse_ks("4")
    ([2, 3, 4, 5], [3, 6], [4])
    """
    try:
        if ".." in text:
            low, high = (int(part) for part in text.split("..", 1))
            ks = list(range(low, high + 1))
        else:
            ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(
            f"--k {text!r}: a range LOW..HIGH, a list 3,5,8 or one number") from None
    if not ks or ks[0] < 2:
        raise ValueError(f"--k {text!r}: at least one k, each >= 2")
    return ks


def sweep_k(x: np.ndarray, ks: Sequence[int], seed: int) -> list[KPoint]:
    """Fit each k on ``x`` (batch k-means++, best of :data:`BATCH_INIT`); the k that
    leave fewer than k+1 distinct points are skipped."""
    distinct = len(np.unique(x, axis=0))
    points = []
    for k in ks:
        if k >= distinct:
            continue
        labels, centroids = best_kmeans(x, k, BATCH_INIT, BATCH_ITERATIONS,
                                        np.random.default_rng(seed))
        score = silhouette(x, labels) if len(np.unique(labels)) > 1 else 0.0
        points.append(KPoint(k, score, inertia(x, labels, centroids)))
    return points


def recommend(points: Sequence[KPoint]) -> tuple[int, str]:
    """The recommended k of a sweep and why, in one sentence."""
    if not points:
        raise ValueError("no k could be fitted (too few distinct customers)")
    ranked = sorted(points, key=lambda p: (-p.silhouette, p.k))
    best = ranked[0]
    why = f"highest mean silhouette ({best.silhouette:.3f}"
    if len(ranked) > 1:
        why += f"; next best k={ranked[1].k} with {ranked[1].silhouette:.3f}"
    why += ")"
    by_k = {p.k: p for p in points}
    ks = sorted(by_k)
    i = ks.index(best.k)
    before = f"inertia falls {_drop(by_k[ks[i - 1]], best):.0%} from k={ks[i - 1]}" \
        if i > 0 else None
    after = f"{_drop(best, by_k[ks[i + 1]]):.0%} at k={ks[i + 1]}" \
        if i + 1 < len(ks) else None
    if before and after:
        why += f"; {before}, and only a further {after}"
    elif before:
        why += f"; {before}"
    elif after:
        why += f"; inertia would fall a further {after}"
    return best.k, why


def _drop(before: KPoint, after: KPoint) -> float:
    return (before.inertia - after.inertia) / before.inertia if before.inertia else 0.0
