"""Traits through the pipeline: learned once across restarts, shown where segments are."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streamseg.app import Application
from streamseg.config import load_settings
from streamseg.engine.stored_settings import StoredSettingsMismatch
from streamseg.serve.api import create_app, start_api_in_thread
from streamseg.store import open_store
from streamseg.traits.bands import RiskBands
from streamseg.traits.learner import TraitShare
from streamseg_bench.simulate import write_stream

KEYS = {"purchase_probability", "expected_spend", "horizon_days"}


def _settings(folder: Path, events: Path, **extra: Any) -> Any:
    return load_settings(overrides={
        "store": {"uri": f"sqlite:///{folder}/s.db"},
        "sinks": {"changes": str(folder / "changes.jsonl"),
                  "dead_letter": str(folder / "dead.jsonl")},
        "source": {"uri": str(events), "batch_size": 200},
        "model": {"warmup": 100},
        **extra,
    })


def _run(settings: Any, **kwargs: Any) -> Any:
    app = Application(settings)
    try:
        return app.run(**kwargs)
    finally:
        app.close()


def _learned(settings: Any) -> tuple[TraitShare, dict[str, Any]]:
    """The store's trait model (sum over partitions) and every customer's snapshots."""
    store = open_store(settings.store)
    try:
        total = TraitShare()
        for part in store.read_partitions().values():
            total.add(TraitShare.from_json((part.model or {}).get("traits")))
        # The stored traits are as of each customer's last scoring, which a restart may
        # move (it re-scores idle customers on its own schedule): what waits is compared.
        states = {s.customer_id: s.snapshots for s in store.iter_customers()}
        return total, states
    finally:
        store.close()


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traits") / "e.jsonl"
    write_stream(path, customers=300, seed=3)
    return path


def test_a_restart_in_the_middle_learns_nothing_twice(tmp_path: Path, events: Path) -> None:
    clean_dir, resumed_dir = tmp_path / "clean", tmp_path / "resumed"
    clean_dir.mkdir()
    resumed_dir.mkdir()
    _run(_settings(clean_dir, events))
    resumed = _settings(resumed_dir, events)
    for _ in range(4):  # stopped after a few batches, four times, then to the end
        _run(resumed, max_batches=3)
    _run(resumed)
    clean_model, clean_states = _learned(_settings(clean_dir, events))
    resumed_model, resumed_states = _learned(resumed)
    assert clean_model.quality.examples > 300  # labels matured and were learned
    assert resumed_model.quality.examples == clean_model.quality.examples
    assert (resumed_model.stats.sums == clean_model.stats.sums).all()
    assert resumed_states == clean_states  # the same snapshots wait for their labels
    assert sum(map(len, clean_states.values())) > 0  # some were stored (a purchase followed)


def test_changing_the_horizon_of_a_store_is_refused(tmp_path: Path, events: Path) -> None:
    _run(_settings(tmp_path, events), max_batches=1)
    with pytest.raises(StoredSettingsMismatch, match="traits.horizon_days is 90.0"):
        _run(_settings(tmp_path, events, traits={"horizon_days": 60}))


def _cli(args: list[str], settings_dir: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "streamseg.cli", *args,
                             "--store", f"sqlite:///{settings_dir}/s.db"],
                            capture_output=True, text=True, timeout=300, cwd=settings_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_traits_in_get_export_segments_and_the_api(tmp_path: Path, events: Path) -> None:
    settings = _settings(tmp_path, events)
    _run(settings)
    _cli(["export", "--out", "customers.jsonl"], tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "customers.jsonl").read_text().splitlines()]
    assert lines and all(set(line["traits"]) == KEYS for line in lines)
    assert all(0 <= x["traits"]["purchase_probability"] <= 1 and x["traits"]["expected_spend"] >= 0
               and x["traits"]["horizon_days"] == 90 for x in lines)
    probabilities = {x["traits"]["purchase_probability"] for x in lines}
    assert len(probabilities) > 10  # a prediction per customer, not one constant
    one = lines[0]
    got = json.loads(_cli(["get", one["customer_id"]], tmp_path))
    assert got["traits"] == one["traits"]
    segments = json.loads(_cli(["segments", "--json"], tmp_path))
    assert all(set(s["traits"]) == KEYS | {"model_quality"} for s in segments)
    quality = segments[0]["traits"].pop("model_quality")
    assert quality["examples"] > 300 and 0.5 < quality["auc"] <= 1
    assert 0 <= quality["calibration_error"] < 0.5 and quality["spend_rmse"] > 0
    for s in segments[1:]:
        s["traits"].pop("model_quality")
    table = _cli(["segments"], tmp_path)
    assert "% likely to buy in 90 days, $" in table
    _cli(["report", "--out", "report.html"], tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<th>Likely to buy</th>" in page and "% in 90 d</td>" in page

    with start_api_in_thread(create_app(settings, meta_ttl_seconds=0.0), "127.0.0.1", 0) as api:
        base = f"http://127.0.0.1:{api.port}"
        with urllib.request.urlopen(f"{base}/customers/{one['customer_id']}") as response:
            body = json.load(response)
        with urllib.request.urlopen(f"{base}/segments") as response:
            listed = json.load(response)
    assert body["traits"] == one["traits"]  # the same model, the same service clock
    assert all(set(s["traits"]) == KEYS for s in listed["segments"])
    means = {s["segment"]: s["traits"] for s in segments}
    assert {s["segment"]: s["traits"] for s in listed["segments"]} == means


def _risk_events(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if e["type"] == "io.streamseg.risk.changed"]


def test_a_risk_band_change_is_published_once(tmp_path: Path, events: Path) -> None:
    settings = _settings(tmp_path, events, traits={"risk_min_examples": 50})
    for _ in range(3):  # restarts in the middle republish the last outbox
        _run(settings, max_batches=4)
    _run(settings)
    published = _risk_events(tmp_path / "changes.jsonl")
    assert published, "customers' bands moved as they lapsed"
    unique: dict[str, dict[str, Any]] = {}
    for event in published:  # a republished copy has the same id
        unique.setdefault(event["id"], event)
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for event in unique.values():
        by_customer.setdefault(event["subject"], []).append(event["data"])
    store = open_store(settings.store)
    try:
        states = {s.customer_id: s for s in store.iter_customers()}
    finally:
        store.close()
    names = list(settings.traits.risk_bands)
    for customer, changes in by_customer.items():
        # Once each: every change starts where the previous one ended (no change twice,
        # none lost), and the last one names the band stored.
        for before, after in zip(changes, changes[1:], strict=False):
            assert after["from_band"] == before["to_band"], customer
        assert all(d["from_band"] != d["to_band"] for d in changes)
        state = states[customer]
        band = RiskBands(settings.traits.risk_bands, 0.05).current(state.risk_band, state.traits)
        assert band is not None and changes[-1]["to_band"] == names[band]
    # Segment changes are counted apart from risk-band changes.
    segment_changes = [json.loads(line) for line in
                       (tmp_path / "changes.jsonl").read_text().splitlines()]
    assert {e["type"] for e in segment_changes} == {"io.streamseg.segment.changed",
                                                    "io.streamseg.risk.changed"}
