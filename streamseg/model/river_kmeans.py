"""River's incremental k-means behind the customer-level interface: the baseline.

``river.cluster.KMeans`` starts from random centres drawn from N(mu, sigma) and moves the
nearest centre a fixed fraction (``halflife``) towards each point. It cannot remove a
customer's old vector, so every update counts as a new point: this adapter exists to
compare :class:`~streamseg.model.customer_kmeans.CustomerKMeans` against it and as a
fallback, not as a recommended model.

>>> import numpy as np
>>> model = RiverKMeansModel(n_clusters=2, seed=3)
>>> model.ready
False
>>> [a] = model.update_customer("c1", np.array([0.0, 1.0]), None, None)
>>> model.ready, a.key, a.segment in (0, 1), a.by_model_update
(True, 'c1', True, False)
>>> model.centroids.shape, int(model.sizes.sum())
((2, 2), 1)
>>> restored = RiverKMeansModel.from_state(model.to_state())
>>> restored.nearest(np.array([0.0, 1.0])) == model.nearest(np.array([0.0, 1.0]))
True
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import cluster

from streamseg.model.base import Assignment

__all__ = ["RiverKMeansModel"]

STATE_KIND = "river-kmeans"
STATE_FORMAT = 1


class RiverKMeansModel:
    """Adapter of ``river.cluster.KMeans`` to the :class:`~streamseg.model.base.SegmentModel`
    interface.

    Each ``update_customer`` call runs ``learn_one`` on the new vector (no removal of the
    old one: River cannot) and then ``predict_one``. The model is ready after its first
    update, has no warm-up and never re-seeds, so ``version`` stays 0 and ``flush()``
    returns ``[]``. ``sizes`` counts customers by the segment last returned for them,
    using the caller's ``previous_segment`` to take them out of their old segment.

    Parameters
    ----------
    n_clusters
        Number of segments.
    seed
        Seed of River's random initial centres.
    halflife
        River's step size: the fraction of the way the nearest centre moves towards each
        new vector.

    """

    def __init__(self, n_clusters: int = 5, seed: int = 42, halflife: float = 0.5) -> None:
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        self.n_clusters = n_clusters
        self.seed = seed
        self.halflife = halflife
        self.version = 0
        self._model = cluster.KMeans(n_clusters=n_clusters, halflife=halflife, seed=seed)
        self._dim: int | None = None
        self._n_learnt = 0
        self._sizes = np.zeros(n_clusters, dtype=np.int64)

    @property
    def ready(self) -> bool:
        """True once at least one vector has been learnt."""
        return self._n_learnt > 0

    @property
    def centroids(self) -> np.ndarray:
        """``(n_clusters, d)`` centres; ``(0, d)`` before the first update."""
        if self._dim is None or not self.ready:
            return np.empty((0, self._dim or 0))
        # River's centres are defaultdicts that draw a random coordinate when a missing
        # one is read; ``.get`` reads without drawing (and so without moving the RNG).
        return np.array(
            [
                [self._model.centers[c].get(j, np.nan) for j in range(self._dim)]
                for c in range(self.n_clusters)
            ],
            dtype=np.float64,
        )

    @property
    def sizes(self) -> np.ndarray:
        """Customers per segment, by the segment last returned for each."""
        return self._sizes.copy()

    def update_customers(
        self,
        keys: Sequence[str],
        vectors: np.ndarray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
    ) -> list[Assignment]:
        """One River ``learn_one``/``predict_one`` per customer (River has no batch)."""
        out: list[Assignment] = []
        for i, key in enumerate(keys):
            out.extend(self.update_customer(key, np.asarray(vectors[i]), previous[i],
                                            previous_segments[i]))
        return out

    def update_customer(
        self,
        key: str,
        vector: np.ndarray,
        previous: np.ndarray | None,
        previous_segment: int | None,
    ) -> list[Assignment]:
        """Learn ``vector`` as a new point and return this customer's assignment.

        ``previous`` is ignored (River cannot unlearn a point); ``previous_segment`` only
        keeps :attr:`sizes` right.
        """
        x = self._as_dict(vector)
        self._model.learn_one(x)
        self._n_learnt += 1
        segment = int(self._model.predict_one(x))
        if (
            previous_segment is not None
            and 0 <= previous_segment < self.n_clusters
            and self._sizes[previous_segment] > 0
        ):
            self._sizes[previous_segment] -= 1
        self._sizes[segment] += 1
        return [Assignment(key, segment, np.asarray(vector, dtype=np.float64), False)]

    def flush(self) -> list[Assignment]:
        """Nothing to finish: River's model is always up to date."""
        return []

    def nearest(self, vector: np.ndarray) -> int:
        """River's ``predict_one``; raises ``RuntimeError`` before the first update."""
        if not self.ready:
            raise RuntimeError("the model has not learnt anything yet")
        return int(self._model.predict_one(self._as_dict(vector)))

    def to_state(self, with_vectors: bool = True) -> dict[str, Any]:
        """JSON-serialisable state; River's model is pickled and base64-encoded.

        Only restore states you wrote yourself: unpickling runs arbitrary code.
        """
        return {
            "kind": STATE_KIND,
            "format": STATE_FORMAT,
            "params": {"n_clusters": self.n_clusters, "seed": self.seed, "halflife": self.halflife},
            "version": self.version,
            "dim": self._dim,
            "n_learnt": self._n_learnt,
            "sizes": self._sizes.tolist(),
            "model": base64.b64encode(pickle.dumps(self._model)).decode("ascii"),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], lookup: Any = None
    ) -> RiverKMeansModel:
        """Restore a model from :meth:`to_state` output."""
        if state.get("kind") != STATE_KIND:
            raise ValueError(f"not a {STATE_KIND} state: kind={state.get('kind')!r}")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported {STATE_KIND} state format {state.get('format')!r}")
        model = cls(**state["params"])
        model.version = int(state["version"])
        model._dim = None if state["dim"] is None else int(state["dim"])
        model._n_learnt = int(state["n_learnt"])
        model._sizes = np.asarray(state["sizes"], dtype=np.int64)
        model._model = pickle.loads(base64.b64decode(state["model"]))  # trusted: our own state
        return model

    def _as_dict(self, vector: np.ndarray) -> dict[int, float]:
        x = np.asarray(vector, dtype=np.float64)
        if x.ndim != 1 or x.shape[0] == 0:
            raise ValueError(f"a customer vector must be 1-D and non-empty, got {x.shape}")
        if self._dim is None:
            self._dim = x.shape[0]
        elif x.shape[0] != self._dim:
            raise ValueError(f"expected a vector of dimension {self._dim}, got {x.shape[0]}")
        if not np.isfinite(x).all():
            raise ValueError("a customer vector must be finite (no NaN or inf)")
        return dict(enumerate(x.tolist()))
