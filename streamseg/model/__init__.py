"""Segmentation models: online clustering whose unit is the customer.

Two kinds share the :class:`SegmentModel` interface:

- ``"customer-kmeans"``: :class:`CustomerKMeans`, exact per-customer means, reservoir
  refinement and k-means++ restarts with stable ids (the default);
- ``"river-kmeans"``: :class:`RiverKMeansModel`, River's incremental k-means (baseline).

>>> model = build_model("customer-kmeans", n_clusters=3, warmup=10)
>>> type(model).__name__, model.ready
('CustomerKMeans', False)
>>> type(model_from_state(model.to_state())).__name__
'CustomerKMeans'
>>> build_model("kmeans")
Traceback (most recent call last):
...
ValueError: unknown model kind 'kmeans'; valid kinds: customer-kmeans, river-kmeans
"""

from __future__ import annotations

import inspect
from typing import Any

from streamseg.model.base import Assignment, SegmentModel
from streamseg.model.customer_kmeans import CustomerKMeans
from streamseg.model.river_kmeans import RiverKMeansModel

__all__ = [
    "MODEL_KINDS",
    "Assignment",
    "CustomerKMeans",
    "RiverKMeansModel",
    "SegmentModel",
    "build_model",
    "model_from_state",
]

#: Model kind name -> class. Each class's ``to_state()`` records its kind under "kind".
MODEL_KINDS: dict[str, type[CustomerKMeans] | type[RiverKMeansModel]] = {
    "customer-kmeans": CustomerKMeans,
    "river-kmeans": RiverKMeansModel,
}


def _lookup(kind: str) -> type[CustomerKMeans] | type[RiverKMeansModel]:
    try:
        return MODEL_KINDS[kind]
    except KeyError:
        valid = ", ".join(sorted(MODEL_KINDS))
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {valid}") from None


def _accepted(cls: type) -> set[str]:
    return set(inspect.signature(cls).parameters)


def build_model(kind: str, **params: Any) -> SegmentModel:
    """Build a model of the given kind; ``params`` go to its constructor.

    One settings section can serve every kind: a parameter that some *other* kind takes
    (e.g. ``warmup`` for ``"river-kmeans"``) is dropped. A parameter no kind takes raises
    ``TypeError``; an unknown kind raises ``ValueError``.

    >>> build_model("river-kmeans", n_clusters=4, warmup=100).n_clusters
    4
    """
    cls = _lookup(kind)
    known = set().union(*(_accepted(c) for c in MODEL_KINDS.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(f"unknown model parameter(s) {unknown} for kind {kind!r}")
    mine = _accepted(cls)
    return cls(**{name: value for name, value in params.items() if name in mine})


def model_from_state(state: dict[str, Any]) -> SegmentModel:
    """Restore a model of whichever kind wrote ``state`` (its ``"kind"`` field)."""
    return _lookup(str(state.get("kind"))).from_state(state)
