"""Benchmarks and quality measurements behind the figures in the README.

Every figure the README states comes from one of these functions, run by
``streamseg bench quality|flapping|throughput|kafka``. They print what they measure;
nothing here is asserted on wall-clock time (tests assert only quality, never speed).
scikit-learn is needed for the quality figures (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.app import Application, RunSummary
from streamseg.bench.simulate import ARCHETYPES, Archetype, simulate_stream, write_stream
from streamseg.config import SAMPLE_URI, Settings, load_settings
from streamseg.engine import SegmentationEngine
from streamseg.store import open_store


def run_file(
    source: str, folder: Path, overrides: dict[str, Any] | None = None
) -> tuple[RunSummary, Settings]:
    """Run the pipeline on ``source`` into a fresh SQLite store inside ``folder``."""
    base: dict[str, Any] = {
        "source": {"uri": source},
        "store": {"uri": f"sqlite:///{folder / 'state.db'}"},
        "sinks": {"changes": str(folder / "changes.jsonl"),
                  "dead_letter": str(folder / "dead-letter.jsonl")},
    }
    settings = load_settings(overrides=_merge(base, overrides or {}))
    application = Application(settings)
    try:
        summary = application.run()
    finally:
        application.close()
    return summary, settings


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def stored_vectors(settings: Settings) -> tuple[dict[str, np.ndarray], dict[str, int], np.ndarray]:
    """Every customer's last assigned vector and segment, and the final centroids."""
    engine = SegmentationEngine(settings, open_store(settings.store))
    vectors: dict[str, np.ndarray] = {}
    segments: dict[str, int] = {}
    for state in engine.store.iter_customers():
        if state.vector is not None and state.segment is not None:
            vectors[state.customer_id] = np.asarray(state.vector)
            segments[state.customer_id] = state.segment
    centroids = engine.model.centroids
    engine.store.close()
    return vectors, segments, centroids


def inertia_ratio(settings: Settings, seed: int = 0) -> dict[str, float]:
    """Online inertia (exported vectors to final centroids) over batch k-means inertia."""
    from streamseg.bench.measures import batch_kmeans_inertia, inertia

    vectors, _, centroids = stored_vectors(settings)
    x = np.array(list(vectors.values()))
    online = inertia(x, centroids)
    batch = batch_kmeans_inertia(x, k=settings.model.n_clusters, seed=seed)
    return {"customers": len(x), "online_inertia": round(online, 3),
            "batch_inertia": round(batch, 3), "ratio": round(online / batch, 4)}


def adjusted_rand(settings: Settings, truth: dict[str, str]) -> float:
    """Adjusted Rand index of the stored segments against the ground truth."""
    from sklearn.metrics import adjusted_rand_score

    _, segments, _ = stored_vectors(settings)
    ids = sorted(truth)
    return float(adjusted_rand_score([truth[i] for i in ids], [segments.get(i, -1) for i in ids]))


def quality(customers: int = 2000, seed: int = 1) -> dict[str, Any]:
    """Issue figures: CDNOW inertia ratio for both models, simulated ARI."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("customer-kmeans", "river-kmeans"):
            folder = Path(tmp) / kind
            folder.mkdir()
            _, settings = run_file(SAMPLE_URI, folder, {"model": {"kind": kind}})
            results[f"cdnow_{kind}"] = inertia_ratio(settings)
        events = Path(tmp) / "simulated.jsonl"
        _, truth_path = write_stream(events, customers=customers, seed=seed)
        from streamseg.bench.simulate import read_truth

        truth = read_truth(truth_path)
        for kind in ("customer-kmeans", "river-kmeans"):
            folder = Path(tmp) / f"sim-{kind}"
            folder.mkdir()
            _, settings = run_file(str(events), folder, {"model": {"kind": kind}})
            results[f"simulated_{kind}"] = {
                "customers": customers,
                "adjusted_rand": round(adjusted_rand(settings, truth), 4),
                **inertia_ratio(settings),
            }
    return results


#: Archetypes whose behaviour does not change over the stream: nobody starts or stops.
STATIONARY: dict[str, Archetype] = {
    name: Archetype(kind.days_between_orders, kind.order_value, (360, 365), (0, 0),
                    kind.refund_rate)
    for name, kind in ARCHETYPES.items() if name in ("vip", "regular", "bargain")
} | {
    "occasional": Archetype(45, 30.0, (360, 365), (0, 0)),
    "big_ticket": Archetype(60, 400.0, (360, 365), (0, 0)),
}


def flapping_share(changes_path: Path, midpoint: float) -> dict[str, Any]:
    """Share of customers with more than two changes after ``midpoint`` (epoch seconds)."""
    per_customer: Counter[str] = Counter()
    customers: set[str] = set()
    reasons: Counter[str] = Counter()
    from datetime import datetime

    for line in changes_path.read_text().splitlines():
        data = json.loads(line)["data"]
        customers.add(data["customer_id"])
        if data["reason"] == "first_assignment":
            continue
        if datetime.fromisoformat(data["event_time"]).timestamp() >= midpoint:
            per_customer[data["customer_id"]] += 1
            reasons[data["reason"]] += 1
    flapping = sum(1 for n in per_customer.values() if n > 2)
    return {
        "customers": len(customers),
        "changes_second_half": sum(per_customer.values()),
        "customers_over_two_changes": flapping,
        "share_over_two_changes": round(flapping / max(1, len(customers)), 4),
        "by_reason": dict(reasons),
    }


def flapping(customers: int = 2000, seed: int = 3,
             hysteresis: Iterable[float] = (0.0, 0.1, 0.2)) -> dict[str, Any]:
    """Flapping on a stationary simulated stream, with and without hysteresis."""
    from datetime import timedelta

    from streamseg.bench.simulate import STREAM_END

    events, _ = simulate_stream(customers=customers, seed=seed, archetypes=STATIONARY)
    midpoint = (STREAM_END - timedelta(days=182)).timestamp()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "stationary.jsonl"
        source.write_text("".join(json.dumps(e) + "\n" for e in events))
        for margin in hysteresis:
            folder = Path(tmp) / f"h{margin}"
            folder.mkdir()
            run_file(str(source), folder, {"model": {"hysteresis": margin}})
            results[f"hysteresis_{margin}"] = flapping_share(folder / "changes.jsonl", midpoint)
    return results


def throughput(repeat: int = 3, simulated_customers: int = 5000) -> dict[str, Any]:
    """Events/s of the pipeline on the embedded default and on a larger simulated file."""
    results: dict[str, Any] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "simulated.jsonl"
        count, _ = write_stream(events, customers=simulated_customers, seed=7)
        for attempt in range(repeat):
            for label, source in (("embedded_default_cdnow", SAMPLE_URI),
                                  (f"simulated_{count}_events", str(events))):
                folder = Path(tmp) / f"{label}-{attempt}"
                folder.mkdir()
                summary, _ = run_file(source, folder)
                results[label].append(round(summary.events_per_second))
    return {label: {"events_per_second_runs": runs, "best": max(runs)}
            for label, runs in results.items()}
