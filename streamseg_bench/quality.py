"""Clustering quality of a run (``streamseg bench quality``).

The README's quality figures come from :func:`quality`: the inertia of each model's
stored vectors against batch k-means on the bundled CDNOW sample, and how well the
segments recover the archetypes of a simulated stream (adjusted Rand index). The
measures themselves are in :mod:`streamseg_bench.measures`; scikit-learn is needed
(``pip install -e ".[test]"``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.config import SAMPLE_URI, Settings
from streamseg_bench.common import run_file, stored_vectors
from streamseg_bench.measures import batch_kmeans_inertia, inertia
from streamseg_bench.simulate import read_truth, write_stream

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


def replicate_cdnow(copies: int, out: Path, seed: int = 5) -> int:
    """Write the bundled CDNOW sample ``copies`` times larger to ``out`` (same columns):
    each customer ``copies`` times (ids ``<id>-<copy>``), each copy's dates shifted by
    0-6 days (capped at the sample's last day) and its amounts by +-20%, sorted by date.
    A larger population of the same kind, to see quality as it outgrows the sample.
    Returns the number of rows."""
    import csv
    import random
    from datetime import datetime, timedelta

    from streamseg.config import SAMPLE_PATH

    rng = random.Random(seed)
    with open(SAMPLE_PATH, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    last = datetime(1998, 6, 30)
    shift: dict[str, int] = {}
    out_rows = []
    for copy in range(copies):
        for row in rows:
            cid = f"{row['customer_id']}-{copy}"
            day = datetime.strptime(row["date"], "%Y%m%d") + timedelta(
                days=shift.setdefault(cid, rng.randint(0, 6)))
            out_rows.append((min(day, last).strftime("%Y%m%d"), cid, row["quantity"],
                             round(float(row["amount"]) * rng.uniform(0.8, 1.2), 2)))
    out_rows.sort(key=lambda r: r[0])
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "date", "quantity", "amount"])
        writer.writerows([cid, day, quantity, amount] for day, cid, quantity, amount in out_rows)
    return len(out_rows)


def quality(customers: int = 2000, seed: int = 1, cdnow_copies: int = 1,
            kinds: tuple[str, ...] = MODEL_KINDS, archetypes: str = "default",
            model: dict[str, Any] | None = None) -> dict[str, Any]:
    """CDNOW inertia ratio for each model kind (on the sample made ``cdnow_copies``
    times larger, see :func:`replicate_cdnow`), then ARI and inertia on a simulated
    stream of ``customers`` drawn from ``archetypes``; ``model``: settings over the
    defaults (e.g. a smaller ``reservoir_size``)."""
    from streamseg.config import SAMPLE_CSV

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source, csv_mapping = SAMPLE_URI, None
        if cdnow_copies > 1:
            source = str(Path(tmp) / f"cdnow_x{cdnow_copies}.csv")
            replicate_cdnow(cdnow_copies, Path(source))
            csv_mapping = SAMPLE_CSV.model_dump()
        name = "cdnow" if cdnow_copies == 1 else f"cdnow_x{cdnow_copies}"
        for kind in kinds:
            folder = Path(tmp) / kind
            folder.mkdir()
            overrides: dict[str, Any] = {"model": {**(model or {}), "kind": kind}}
            if csv_mapping is not None:
                overrides["source"] = {"csv": csv_mapping}
            _, settings = run_file(source, folder, overrides)
            results[f"{name}_{kind}"] = inertia_ratio(settings)
        events = Path(tmp) / "simulated.jsonl"
        _, truth_path = write_stream(events, customers=customers, seed=seed,
                                     archetypes=archetypes)
        truth = read_truth(truth_path)
        for kind in kinds:
            folder = Path(tmp) / f"sim-{kind}"
            folder.mkdir()
            _, settings = run_file(str(events), folder,
                                   {"model": {**(model or {}), "kind": kind}})
            results[f"simulated_{kind}"] = {
                "customers": customers,
                "adjusted_rand": round(adjusted_rand(settings, truth), 4),
                **inertia_ratio(settings),
            }
    return results
