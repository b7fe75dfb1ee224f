"""The silhouette gauge: measured in the background on the model's sample, exported by
the worker that holds the model lease only."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamseg.app import Application
from streamseg.config import Settings, load_settings
from streamseg.model.sample import hash_of
from streamseg.processing.silhouette import SilhouetteGauge, measure_silhouette
from streamseg.store import open_reader
from streamseg_bench.simulate import write_stream


def _settings(folder: Path, **metrics: object) -> Settings:
    return load_settings(overrides={
        "source": {"uri": str(folder / "events.jsonl")},
        "store": {"uri": f"sqlite:///{folder / 'state.db'}"},
        "sinks": {"changes": str(folder / "changes.jsonl"),
                  "dead_letter": str(folder / "dead.jsonl")},
        "model": {"reservoir_size": 300},  # fewer than the customers: a real sample
        "metrics": {"enabled": True, "port": 0, **metrics},
    })


def test_the_gauge_is_exported_only_while_this_worker_refines() -> None:
    registry = CollectorRegistry()
    refines = [False]
    gauge = SilhouetteGauge(registry, lambda: refines[0])
    gauge.value = 0.42
    assert registry.get_sample_value("streamseg_silhouette") is None
    refines[0] = True
    assert registry.get_sample_value("streamseg_silhouette") == 0.42
    refines[0] = False  # the lease went to another worker: its series, not this one's
    assert registry.get_sample_value("streamseg_silhouette") is None


def test_a_running_worker_exports_the_silhouette_of_its_sample(tmp_path: Path) -> None:
    from sklearn.metrics import silhouette_score

    from streamseg.evaluate.evaluation import sample_of
    from streamseg.read import ReadView

    write_stream(tmp_path / "events.jsonl", 800, 2)
    settings = _settings(tmp_path, silhouette_sample=200, silhouette_interval_s=0.05)
    application = Application(settings)
    try:
        application.run()
        assert application.silhouette is not None
        done = application.silhouette.refreshes
        deadline = time.monotonic() + 60
        while application.silhouette.refreshes < done + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # a refresh that started after the run's last write
        assert application.silhouette.refreshes >= done + 2
        port = application.metrics_server.port  # type: ignore[union-attr]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        lines = [line for line in text.splitlines() if line.startswith("streamseg_silhouette ")]
        assert len(lines) == 1
        exported = float(lines[0].split()[1])
    finally:
        application.close()
    # The same number from the 200 sampled customers with the lowest hashes, their
    # vectors recomputed at the service clock, their stored segments: scikit-learn's.
    store = open_reader(settings.store)
    try:
        rows = store.read_sample(store.partition_names())
        ids = sorted({cid for part in rows.values() for cid in part}, key=hash_of)[:200]
        assert len(ids) == 200
        view = ReadView(settings, store)
        states = store.get_many(ids)
        sample = sample_of(view, [states[cid] for cid in ids], 200)
        assert measure_silhouette(settings, store, 200) == pytest.approx(exported)
    finally:
        store.close()
    assert exported == pytest.approx(silhouette_score(sample.vectors, sample.segments),
                                     abs=1e-6)
    assert 0.2 < exported <= 1.0


def test_no_thread_without_metrics_or_with_a_sample_of_zero(tmp_path: Path) -> None:
    write_stream(tmp_path / "events.jsonl", 10, 2)
    without_metrics = load_settings(overrides={
        "store": {"uri": "memory://"}, "source": {"uri": str(tmp_path / "events.jsonl")},
        "sinks": {"changes": str(tmp_path / "c.jsonl"), "dead_letter": str(tmp_path / "d.jsonl")}})
    for settings in (_settings(tmp_path, silhouette_sample=0), without_metrics):
        application = Application(settings)
        try:
            assert application.silhouette is None
        finally:
            application.close()
