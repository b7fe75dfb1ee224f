"""The read API, over real HTTP against a store the real pipeline wrote."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from streamseg.app import Application
from streamseg.config import Settings, StoreSettings, load_settings
from streamseg.serve.api import create_app, start_api_in_thread
from streamseg.store import CustomerState, MemoryStore, open_store
from streamseg_bench.simulate import write_stream


def _settings(folder: Path, **extra: Any) -> Settings:
    events = folder / "e.jsonl"
    if not events.exists():
        write_stream(events, customers=300, seed=1)
    return load_settings(overrides={
        "store": {"uri": f"sqlite:///{folder}/s.db"},
        "sinks": {"changes": str(folder / "changes.jsonl"),
                  "dead_letter": str(folder / "dead.jsonl")},
        "source": {"uri": str(events)},
        "model": {"warmup": 100},
        **extra,
    })


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store written by the pipeline from 300 simulated customers."""
    folder = tmp_path_factory.mktemp("api")
    application = Application(_settings(folder))
    try:
        application.run()
    finally:
        application.close()
    return folder


@pytest.fixture(scope="module")
def base_url(folder: Path) -> Iterator[str]:
    # No store passed: the app opens (and on shutdown closes) its own connection, as
    # `streamseg api` will. No metadata caching, so each request sees the store as is.
    app = create_app(_settings(folder), meta_ttl_seconds=0.0)
    handle = start_api_in_thread(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{handle.port}"
    handle.close()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["content-type"].startswith("application/json")
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        assert error.headers["content-type"].startswith("application/json")
        return error.code, json.load(error)


def _states(folder: Path) -> list[CustomerState]:
    store = open_store(StoreSettings(uri=f"sqlite:///{folder}/s.db"))
    try:
        return list(store.iter_customers())
    finally:
        store.close()


def test_customer_matches_the_store(folder: Path, base_url: str) -> None:
    states = [s for s in _states(folder) if s.segment is not None]
    assert len(states) > 100  # the model was seeded and assigned most customers
    store = open_store(StoreSettings(uri=f"sqlite:///{folder}/s.db"))
    meta = store.meta()
    store.close()
    names = {s["segment"]: s["name"] for s in meta["segments"]}
    for state in states[::37]:
        status, body = _get(f"{base_url}/customers/{state.customer_id}")
        assert status == 200
        assert body["customer_id"] == state.customer_id
        assert body["segment"] == state.segment
        assert body["segment_name"] == names[state.segment]
        centre = next(s for s in meta["segments"] if s["segment"] == state.segment)["centre"]
        assert body["segment_profile"]["segment"] == state.segment
        assert body["segment_profile"]["profile"] == pytest.approx(centre)
        assert body["model_version"] == state.model_version
        assert state.updated_at is not None
        assert datetime.fromisoformat(body["updated_at"]).timestamp() == state.updated_at
        # Features are a snapshot at the service clock: the watermark in the store.
        assert datetime.fromisoformat(body["as_of"]).timestamp() == meta["watermark"]
        expected = state.features.snapshot(meta["watermark"], half_life_days=90.0)
        assert body["features"]["orders"] == expected.orders
        assert body["features"]["recency_days"] == pytest.approx(expected.recency_days)
        assert body["features"]["spend_90d"] == pytest.approx(expected.spend_90d)


def test_unknown_customer_is_a_404_with_a_clear_body(base_url: str) -> None:
    status, body = _get(f"{base_url}/customers/nobody-here")
    assert status == 404
    assert body == {"detail": "customer 'nobody-here' not found"}
    # An id with a slash (URL-encoded) reaches the handler rather than a routing 404.
    status, body = _get(f"{base_url}/customers/a%2Fb")
    assert (status, body) == (404, {"detail": "customer 'a/b' not found"})


def test_segments_sizes_add_up_to_segmented_customers(folder: Path, base_url: str) -> None:
    states = _states(folder)
    sizes: dict[int, int] = {}
    for state in states:
        if state.segment is not None:
            sizes[state.segment] = sizes.get(state.segment, 0) + 1
    status, body = _get(f"{base_url}/segments")
    assert status == 200
    assert {s["segment"]: s["size"] for s in body["segments"]} == sizes
    assert body["customers"] == sum(sizes.values())
    assert sum(s["share"] for s in body["segments"]) == pytest.approx(1.0, abs=1e-3)
    names = [s["name"] for s in body["segments"]]
    assert all(names) and len(set(names)) == len(names)
    # Profiles are the centres the pipeline recorded, in original units (O(k) to serve).
    store = open_store(StoreSettings(uri=f"sqlite:///{folder}/s.db"))
    centres = {s["segment"]: s["centre"] for s in store.meta()["segments"]}
    store.close()
    for segment in body["segments"]:
        assert segment["profile"] == pytest.approx(centres[segment["segment"]])
        assert {"orders_90d", "spend_90d", "avg_order_value", "tenure_days"} <= set(
            segment["profile"])


def test_openapi_documents_paths_and_bodies(base_url: str) -> None:
    status, spec = _get(f"{base_url}/openapi.json")
    assert status == 200
    assert set(spec["paths"]) == {"/customers/{customer_id}", "/segments", "/healthz",
                                  "/readyz"}
    customer = spec["paths"]["/customers/{customer_id}"]["get"]["responses"]
    assert customer["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CustomerResponse")
    assert customer["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody")
    assert "features" in spec["components"]["schemas"]["CustomerResponse"]["properties"]


def test_health_and_readiness(base_url: str) -> None:
    assert _get(f"{base_url}/healthz") == (200, {"status": "ok"})
    assert _get(f"{base_url}/readyz") == (200, {"status": "ready"})


class _BrokenStore(MemoryStore):
    """A store whose backend has gone away."""

    def ping(self) -> bool:
        raise ConnectionError("connection refused")

    def get_many(self, customer_ids: Any) -> dict[str, CustomerState]:
        raise ConnectionError("connection refused")


def test_store_down_means_not_ready_and_503() -> None:
    with start_api_in_thread(create_app(load_settings(), _BrokenStore())) as api:
        base = f"http://127.0.0.1:{api.port}"
        assert _get(f"{base}/readyz") == (503, {"status": "not ready"})
        assert _get(f"{base}/healthz") == (200, {"status": "ok"})  # alive all the same
        status, body = _get(f"{base}/customers/c1")
        assert status == 503
        assert body["detail"].startswith("store unavailable")


def test_wall_clock_setting_snapshots_features_at_wall_time(folder: Path) -> None:
    state = next(s for s in _states(folder) if s.features.last_purchase is not None)
    later = state.features.last_purchase + 10 * 86_400.0  # type: ignore[operator]
    settings = _settings(folder, pipeline={"clock": "wall"})
    app = create_app(settings, wall_clock=lambda: later)
    with start_api_in_thread(app) as api:
        status, body = _get(f"http://127.0.0.1:{api.port}/customers/{state.customer_id}")
    assert status == 200
    assert body["features"]["recency_days"] == pytest.approx(10.0)


def test_closed_server_stops_listening() -> None:
    api = start_api_in_thread(create_app(load_settings(), MemoryStore()))
    url = f"http://127.0.0.1:{api.port}/healthz"
    assert _get(url)[0] == 200
    api.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_pseudonymised_store_is_read_by_clear_id(tmp_path: Path) -> None:
    settings = _settings(tmp_path, privacy={"pseudonymise_key": "api-key"})
    application = Application(settings)
    try:
        application.run()
    finally:
        application.close()
    stored = {state.customer_id for state in _states(tmp_path)}
    assert "cust-000001" not in stored and settings.customer_key("cust-000001") in stored
    handle = start_api_in_thread(create_app(settings, meta_ttl_seconds=0.0), "127.0.0.1", 0)
    try:
        status, body = _get(f"http://127.0.0.1:{handle.port}/customers/cust-000001")
        assert status == 200 and body["customer_id"] == "cust-000001"
        assert body["segment"] is not None
    finally:
        handle.close()
