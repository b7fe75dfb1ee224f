"""Clustering quality of a run (``streamseg bench quality``).

The README's quality figures come from :func:`quality`: the inertia of each model's
stored vectors against batch k-means on the bundled CDNOW sample, and how well the
segments recover the archetypes of a simulated stream (adjusted Rand index). The
measures themselves are in :mod:`streamseg.bench.measures`; scikit-learn is needed
(``pip install -e ".[test]"``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.bench.common import run_file, stored_vectors
from streamseg.bench.measures import batch_kmeans_inertia, inertia
from streamseg.bench.simulate import read_truth, write_stream
from streamseg.config import SAMPLE_URI, Settings

#: The model kinds every quality figure is measured for.
MODEL_KINDS = ("customer-kmeans", "river-kmeans")


def inertia_ratio(settings: Settings, seed: int = 0) -> dict[str, float]:
    """Online inertia (exported vectors to final centroids) over batch k-means inertia."""
    vectors, _, centroids = stored_vectors(settings)
    x = np.array(list(vectors.values()))
    online = inertia(x, centroids)
    batch = batch_kmeans_inertia(x, k=settings.model.n_clusters, seed=seed)
    return {"customers": len(x), "online_inertia": round(online, 3),
            "batch_inertia": round(batch, 3), "ratio": round(online / batch, 4)}


def adjusted_rand(settings: Settings, truth: dict[str, str]) -> float:
    """Adjusted Rand index of the stored segments against the ground truth.

    A customer in the truth but not stored counts as segment -1.
    """
    from sklearn.metrics import adjusted_rand_score  # a test and benchmark dependency

    _, segments, _ = stored_vectors(settings)
    ids = sorted(truth)
    return float(adjusted_rand_score([truth[i] for i in ids], [segments.get(i, -1) for i in ids]))


def quality(customers: int = 2000, seed: int = 1) -> dict[str, Any]:
    """CDNOW inertia ratio for both models, then ARI and inertia on a simulated stream."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in MODEL_KINDS:
            folder = Path(tmp) / kind
            folder.mkdir()
            _, settings = run_file(SAMPLE_URI, folder, {"model": {"kind": kind}})
            results[f"cdnow_{kind}"] = inertia_ratio(settings)
        events = Path(tmp) / "simulated.jsonl"
        _, truth_path = write_stream(events, customers=customers, seed=seed)
        truth = read_truth(truth_path)
        for kind in MODEL_KINDS:
            folder = Path(tmp) / f"sim-{kind}"
            folder.mkdir()
            _, settings = run_file(str(events), folder, {"model": {"kind": kind}})
            results[f"simulated_{kind}"] = {
                "customers": customers,
                "adjusted_rand": round(adjusted_rand(settings, truth), 4),
                **inertia_ratio(settings),
            }
    return results
