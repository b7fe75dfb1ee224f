"""What every benchmark does: run the pipeline on a file, read back what it stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamseg.app import Application, RunSummary
from streamseg.config import Settings, deep_merge, load_settings
from streamseg.engine import SegmentationEngine
from streamseg.store import open_store


def run_file(
    source: str, folder: Path, overrides: dict[str, Any] | None = None
) -> tuple[RunSummary, Settings]:
    """Run the pipeline on ``source`` into a fresh SQLite store inside ``folder``.

    ``overrides`` are nested settings merged over the store and sink paths in ``folder``.
    """
    base: dict[str, Any] = {
        "source": {"uri": source},
        "store": {"uri": f"sqlite:///{folder / 'state.db'}"},
        "sinks": {"changes": str(folder / "changes.jsonl"),
                  "dead_letter": str(folder / "dead-letter.jsonl")},
    }
    settings = load_settings(overrides=deep_merge(base, overrides or {}))
    application = Application(settings)
    try:
        summary = application.run()
    finally:
        application.close()
    return summary, settings


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
