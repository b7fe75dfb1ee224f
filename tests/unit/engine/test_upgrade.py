"""A store written before the model was kept per partition is upgraded in place.

The fixture is a real store of the previous version (``data/README.md``): its model was
one checkpoint. Opening it now rebuilds each partition's share from its customers
(:mod:`streamseg.engine.upgrade`); no customer changes segment, and the model then
counts every stored customer exactly once, as a store written by this version does.
"""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamseg.app import Application
from streamseg.config import SAMPLE_CSV, SAMPLE_PATH, load_settings
from streamseg.engine import SegmentationEngine
from streamseg.store import open_store
from streamseg_bench.measures import batch_kmeans_inertia, inertia

FIXTURE = Path(__file__).parent / "data" / "store_before_shares.sqlite.gz"
FIXTURE_EVENTS = 800  # the sample's first rows, which the fixture's store holds


def _settings(tmp: Path, source: Path) -> Any:
    return load_settings(overrides={
        "source": {"uri": str(source), "csv": SAMPLE_CSV.model_dump()},
        "store": {"uri": f"sqlite:///{tmp / 'state.db'}"},
        "sinks": {"changes": str(tmp / "changes.jsonl"),
                  "dead_letter": str(tmp / "dead.jsonl")},
    })


def _legacy(tmp: Path, rows: int) -> tuple[Any, Path]:
    """The fixture's store in ``tmp``, and the sample's first ``rows`` rows as its file."""
    (tmp / "state.db").write_bytes(gzip.decompress(FIXTURE.read_bytes()))
    source = tmp / "cdnow.csv"
    lines = SAMPLE_PATH.read_text().splitlines(keepends=True)
    source.write_text("".join(lines[: rows + 1]))
    # The stored position names the file the fixture was written from: point it here.
    with sqlite3.connect(tmp / "state.db") as db:
        db.execute("UPDATE partitions SET positions = ?",
                   (json.dumps({f"file:{source}": FIXTURE_EVENTS}),))
    return _settings(tmp, source), source


def _run(settings: Any) -> Any:
    app = Application(settings)
    try:
        return app.run()
    finally:
        app.close()


def _assert_model_counts_the_stored_customers(settings: Any) -> None:
    store = open_store(settings.store)
    try:
        states = list(store.iter_customers())
        engine = SegmentationEngine(settings, store)
        shares = [p.model for p in store.read_partitions().values()]
    finally:
        store.close()
    stored = Counter(s.segment for s in states if s.segment is not None)
    assert {k: int(n) for k, n in enumerate(engine.model.sizes) if n} == dict(stored)
    assert all(share is not None and share["stats"] is not None for share in shares)
    sums = np.sum([share["stats"]["sums"] for share in shares], axis=0)  # type: ignore[index]
    for k in range(settings.model.n_clusters):
        vectors = [s.vector for s in states if s.segment == k]
        np.testing.assert_allclose(sums[k], np.sum(vectors, axis=0), atol=1e-9)
    raws = np.array([settings.features.snapshot(s.features, s.updated_at).raw_vector()
                     for s in states if s.updated_at is not None and s.features.has_purchases])
    assert engine.scaler.n == len(raws)
    np.testing.assert_allclose(engine.scaler.mean, raws.mean(axis=0), rtol=1e-9)


def test_the_fixture_is_a_store_of_the_previous_version(tmp_path: Path) -> None:
    """Guard against a fixture rewritten by the new code: no shares, a format-less model."""
    copy = tmp_path / "fixture.db"
    copy.write_bytes(gzip.decompress(FIXTURE.read_bytes()))
    with sqlite3.connect(copy) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(partitions)")}
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        (state,) = db.execute("SELECT state FROM model").fetchone()
    assert "model" not in columns and "sample" not in tables
    assert "format" not in json.loads(state)


def test_opening_it_keeps_every_segment_and_the_model_counts_every_customer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, _ = _legacy(tmp_path, FIXTURE_EVENTS)
    store = open_store(settings.store)
    before = {s.customer_id: (s.segment, s.model_version) for s in store.iter_customers()}
    version = store.meta()["model_version"]
    store.close()
    with caplog.at_level(logging.WARNING):
        summary = _run(settings)  # nothing new to read: only the upgrade happens
    assert summary.processed == 0
    assert any("upgraded" in r.getMessage() for r in caplog.records)
    store = open_store(settings.store)
    after = {s.customer_id: (s.segment, s.model_version) for s in store.iter_customers()}
    assert store.meta()["model_version"] == version
    sample = store.read_sample(["local"]).get("local", {})
    store.close()
    assert after == before and len(after) == 704
    # Every customer is in the sample (704 < model.reservoir_size), stored with the
    # partition so that a restart reads it back.
    assert {cid: segment for cid, (segment, _) in sample.items()} == \
        {cid: segment for cid, (segment, _) in after.items()}
    _assert_model_counts_the_stored_customers(settings)


def test_the_upgraded_store_goes_on_with_the_rest_of_the_stream(tmp_path: Path) -> None:
    settings, _ = _legacy(tmp_path, rows=10**6)  # the whole sample
    summary = _run(settings)
    total = len(SAMPLE_PATH.read_text().splitlines()) - 1
    assert summary.processed == total - FIXTURE_EVENTS
    _assert_model_counts_the_stored_customers(settings)
    store = open_store(settings.store)
    try:
        states = list(store.iter_customers())
        centroids = np.asarray((store.load_model() or {})["model"]["centroids"])
    finally:
        store.close()
    x = np.array([s.vector for s in states if s.vector is not None])
    assert inertia(x, centroids) / batch_kmeans_inertia(x, k=5, seed=0) <= 1.03
