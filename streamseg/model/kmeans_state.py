"""Persistence of :class:`~streamseg.model.customer_kmeans.CustomerKMeans`.

The state is a JSON-serialisable dict: parameters, counters, the random generator, the
centroids, and -- unless the caller keeps them per data partition (a *light* state,
``with_vectors=False``; see ``CustomerKMeans.partition_stats`` and
``take_sample_changes``) -- the per-segment statistics of the customers the model owns,
the warm-up buffer and the sample. The statistics of other workers' customers are never
in it: they belong to those workers.
Its keys and their order are a stored format, so they change only with
:data:`STATE_FORMAT`.

These functions read and write the model's internals: they are its persistence, kept
apart from the learning code.

>>> import json
>>> from streamseg.model.customer_kmeans import CustomerKMeans
>>> model = CustomerKMeans(n_clusters=2, warmup=2, seed=1)
>>> for key, v in [("a", [0.0]), ("b", [4.0]), ("a", [1.0])]:
...     _ = model.update_customer(key, np.array(v), None, None)
>>> state = json.loads(json.dumps(state_of(model, with_vectors=True)))
>>> list(state)[:4], state["parts"][""]["counts"]
(['kind', 'format', 'params', 'names'], [1, 1])
>>> restore(CustomerKMeans, state).centroids.tolist() == model.centroids.tolist()
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from streamseg.model.clustering import Clustering
from streamseg.model.rng import rng_from_state, rng_to_state
from streamseg.model.sample import Sample
from streamseg.model.stats import ClusterStats

if TYPE_CHECKING:
    from streamseg.model.customer_kmeans import CustomerKMeans

__all__ = ["STATE_FORMAT", "STATE_KIND", "restore", "state_of"]

STATE_KIND = "customer-kmeans"
STATE_FORMAT = 2


def state_of(model: CustomerKMeans, with_vectors: bool) -> dict[str, Any]:
    """The state of ``model``; see ``CustomerKMeans.to_state``."""
    params = model._get_params()
    params["feature_names"] = (
        list(model.feature_names) if model.feature_names is not None else None
    )
    learner = model._learner
    part = learner.clustering
    sample = None if part is None else part.sample
    state = {
        "kind": STATE_KIND,
        "format": STATE_FORMAT,
        "params": params,
        "names": None if model._feature_names is None else list(model._feature_names),
        "dim": model._dim,
        "version": learner.version,
        "n_updates": learner.n_updates,
        "updates_since_refine": learner.updates_since_refine,
        "refinements": learner.refinements,
        "n_anonymous": model._n_anonymous,
        "rng": rng_to_state(learner.rng),
        "buffer": {
            "keys": list(learner.buffer),
            "partitions": [row[0] for row in learner.buffer.values()],
            "vectors": [row[1].tolist() for row in learner.buffer.values()],
        } if with_vectors else None,
        "centroids": None if part is None else part.centroids.tolist(),
        "parts": None if part is None or not with_vectors else {
            name: {"sums": stats.sums.tolist(), "sqsums": stats.sqsums.tolist(),
                   "counts": stats.counts.tolist()}
            for name, stats in part.parts.items()},
        "sample": None if sample is None else {
            "capacity": sample.capacity,
            "rate": sample.rate,
            "rows": [[key, sample.partitions[i], sample.vectors[i].tolist(),
                      int(sample.segments[i])] for i, key in enumerate(sample.keys)]
            if with_vectors else None,
        },
    }
    if part is not None and part.pinned:
        # Only when set, so that the stored format is unchanged otherwise (absent: False).
        state["pinned"] = True
    return state


def restore(cls: type[CustomerKMeans], state: dict[str, Any]) -> CustomerKMeans:
    """A ``cls`` model restored from :func:`state_of` output; see ``from_state``."""
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
    learner = model._learner
    learner.version = int(state["version"])
    learner.n_updates = int(state["n_updates"])
    learner.updates_since_refine = int(state["updates_since_refine"])
    learner.refinements = int(state.get("refinements", 0))
    model._n_anonymous = int(state["n_anonymous"])
    learner.rng = rng_from_state(state["rng"])
    buffer = state["buffer"] or {"keys": [], "partitions": [], "vectors": []}
    learner.buffer = {
        str(k): (str(p), np.asarray(v, dtype=np.float64))
        for k, p, v in zip(buffer["keys"], buffer["partitions"], buffer["vectors"],
                           strict=True)
    }
    if state["centroids"] is not None:
        dim = model._dim or 0
        k = model.n_clusters
        parts = {
            str(name): ClusterStats(
                np.asarray(part["sums"], dtype=np.float64).reshape(k, dim),
                np.asarray(part["sqsums"], dtype=np.float64).reshape(k),
                np.asarray(part["counts"], dtype=np.int64).reshape(k))
            for name, part in (state["parts"] or {}).items()
        }
        centroids = np.asarray(state["centroids"], dtype=np.float64).reshape(k, dim)
        kept = state["sample"]
        sample = Sample(int(kept["capacity"]), dim, float(kept["rate"]))
        for key, partition, vector, segment in kept["rows"] or ():
            sample.load(str(partition), [(str(key), vector, int(segment))])
        learner.clustering = Clustering(parts, centroids, sample)
        learner.clustering.pinned = bool(state.get("pinned", False))
    return model
