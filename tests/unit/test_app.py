"""The engine and pipeline on the embedded backends (SQLite, JSON Lines), no servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streamseg.app import Application
from streamseg.config import ConfigError, load_settings
from streamseg.core.events import RiskBandChange, change_json_schema
from streamseg.store import open_store

START = datetime(2024, 1, 1, tzinfo=UTC)


def _settings(tmp: Path, source: Path | str, **overrides: Any) -> Any:
    base: dict[str, Any] = {
        "source": {"uri": str(source), "batch_size": 100},
        "store": {"uri": f"sqlite:///{tmp / 'state.db'}"},
        "sinks": {"changes": str(tmp / "changes.jsonl"),
                  "dead_letter": str(tmp / "dead.jsonl")},
        "model": {"n_clusters": 3, "warmup": 30},
    }
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    return load_settings(overrides=base)


def _event(i: int, customer: str, day: float, amount: float, kind: str = "purchase") -> str:
    return json.dumps({
        "event_id": f"e{i}", "customer_id": customer, "type": kind, "amount": amount,
        "timestamp": (START + timedelta(days=day)).isoformat(),
    })


def _population(customers: int = 60, days: int = 200) -> list[str]:
    """Three kinds of steady customers, buying through the whole period, in time order."""
    rows: list[tuple[float, str, float]] = []
    for c in range(customers):
        gap, amount = [(5, 200.0), (15, 40.0), (30, 10.0)][c % 3]
        offset = (c * 0.37) % gap
        day = offset
        while day < days:
            rows.append((day, f"c{c}", amount + (c % 7)))
            day += gap
    rows.sort()
    return [_event(i, cid, day, amount) for i, (day, cid, amount) in enumerate(rows)]


def _run(settings: Any, **kwargs: Any) -> Any:
    app = Application(settings)
    try:
        return app.run(**kwargs)
    finally:
        app.close()


def _features(settings: Any) -> dict[str, dict[str, Any]]:
    store = open_store(settings.store)
    try:
        return {s.customer_id: s.features.to_dict() for s in store.iter_customers()}
    finally:
        store.close()


def test_bad_input_goes_to_dead_letter_with_reason_and_the_run_goes_on(tmp_path: Path) -> None:
    good = _population(customers=30, days=60)
    bad = [
        "{not json",
        json.dumps({"event_id": "x1", "customer_id": "c1", "timestamp": "2024-01-02"}),
        json.dumps({"event_id": "x2", "customer_id": "c1", "timestamp": "2024-01-02",
                    "amount": -5}),
        '{"event_id": "x3", "customer_id": "c1", "timestamp": "2024-01-02", "amount": NaN}',
        json.dumps({"event_id": "x4", "customer_id": "c1", "timestamp": "soon", "amount": 1}),
        json.dumps({"event_id": "x5", "customer_id": "c1", "timestamp": "2999-01-01",
                    "amount": 1}),
        "[]",
    ]
    lines = good[:50] + bad + good[50:]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")
    summary = _run(_settings(tmp_path, source))
    assert summary.processed == len(good)
    assert summary.rejected == len(bad)
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [letter["payload"] for letter in letters] == bad
    reasons = [letter["reason"] for letter in letters]
    assert reasons[0].startswith("malformed JSON")
    assert "amount: Field required" in reasons[1]
    assert "greater than or equal to 0" in reasons[2]
    assert "amount" in reasons[3]
    assert reasons[4].startswith("timestamp:")
    assert reasons[5].startswith("timestamp out of range")
    assert reasons[6] == "event must be a JSON object"
    assert letters[0]["origin"] == "events.jsonl:51"


def test_restart_resumes_without_losing_or_double_counting(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population()) + "\n")
    clean_dir, resumed_dir = tmp_path / "clean", tmp_path / "resumed"
    clean_dir.mkdir()
    resumed_dir.mkdir()
    clean = _settings(clean_dir, source)
    resumed = _settings(resumed_dir, source)
    _run(clean)
    first = _run(resumed, max_batches=3)
    second = _run(resumed)
    assert first.processed == 300
    assert first.processed + second.processed == _run_count(source)
    assert _features(resumed) == _features(clean)
    a, b = open_store(clean.store), open_store(resumed.store)
    # The model is checkpointed with the batches, so the resumed run ends where the clean
    # run does: the same segment for every customer.
    assert {s.customer_id: s.segment for s in a.iter_customers()} == {
        s.customer_id: s.segment for s in b.iter_customers()
    }


def _run_count(source: Path) -> int:
    return sum(1 for line in source.read_text().splitlines() if line.strip())


def test_same_input_same_segments(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population()) + "\n")
    runs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        settings = _settings(folder, source)
        _run(settings)
        store = open_store(settings.store)
        runs.append({s.customer_id: (s.segment, s.vector) for s in store.iter_customers()})
    assert runs[0] == runs[1]


def test_out_of_order_events_do_not_corrupt_features(tmp_path: Path) -> None:
    ordered = [_event(i, "c1", day, 10.0 + i) for i, day in enumerate([0, 10, 20, 30, 40])]
    shuffled = [ordered[i] for i in (0, 3, 1, 4, 2)]
    results = []
    for name, lines in (("ordered", ordered), ("shuffled", shuffled)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "e.jsonl").write_text("\n".join(lines) + "\n")
        settings = _settings(folder, folder / "e.jsonl", model={"warmup": 2, "n_clusters": 2})
        _run(settings)
        results.append(_features(settings)["c1"])
    assert results[0] == pytest.approx(results[1])
    assert results[1]["reference_time"] == (START + timedelta(days=40)).timestamp()


def test_customer_who_stops_buying_lapses_without_an_event_of_theirs(tmp_path: Path) -> None:
    # A population of steady customers, some of whom stopped long ago (so that a lapsed
    # segment exists), and one regular, "quitter", who buys every 10 days until day 100
    # and then never again while the stream goes on for 150 more days.
    lines = _population(customers=90, days=250)
    lapsed = [_event(100_000 + i, f"gone{c}", day, 50.0)
              for i, (c, day) in enumerate((c, d) for c in range(30) for d in range(0, 60, 12))]
    quitter = [_event(200_000 + i, "quitter", day, 45.0) for i, day in enumerate(range(0, 101, 10))]
    events = sorted(lines + lapsed + quitter, key=lambda line: json.loads(line)["timestamp"])
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(events) + "\n")
    settings = _settings(tmp_path, source, model={"n_clusters": 4, "warmup": 40})
    _run(settings)

    store = open_store(settings.store)
    state = store.get("quitter")
    assert state is not None
    assert state.features.last_purchase == (START + timedelta(days=100)).timestamp()
    assert state.segment_name in {"Lapsed", "At risk", "Lapsed big spenders", "Lapsed one-timers"}
    assert store.get("gone0").segment == state.segment  # type: ignore[union-attr]
    changes = [json.loads(line)["data"] for line in
               (tmp_path / "changes.jsonl").read_text().splitlines()
               if json.loads(line)["type"] == "io.streamseg.segment.changed"]
    mine = [c for c in changes if c["customer_id"] == "quitter"]
    assert mine[-1]["to_segment"] == state.segment
    assert mine[-1]["reason"] == "inactivity"
    assert datetime.fromisoformat(mine[-1]["event_time"]) > START + timedelta(days=110)


def test_change_events_are_valid_cloudevents_and_last_one_matches_store(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population()) + "\n")
    settings = _settings(tmp_path, source)
    _run(settings)
    schema = change_json_schema()
    last: dict[str, int] = {}
    for line in (tmp_path / "changes.jsonl").read_text().splitlines():
        document = json.loads(line)
        jsonschema.validate(document, schema)  # either type: the stream's schema
        if document["type"] == "io.streamseg.risk.changed":
            jsonschema.validate(document, RiskBandChange.model_json_schema())
            continue
        assert document["subject"] == document["data"]["customer_id"]
        last[document["subject"]] = document["data"]["to_segment"]
    store = open_store(settings.store)
    assert last == {s.customer_id: s.segment for s in store.iter_customers()}


def test_pseudonymisation_hides_customer_ids_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamseg.core.privacy import pseudonymise

    monkeypatch.setenv("STREAMSEG_PRIVACY__PSEUDONYMISE_KEY", "k3y")
    lines = _population(customers=30, days=60)
    bad = json.dumps({"event_id": "x", "customer_id": "c7", "timestamp": "2024-01-02",
                      "amount": -1})
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([*lines, bad]) + "\n")
    settings = _settings(tmp_path, source)
    _run(settings)
    hashed = pseudonymise("c7", b"k3y")
    store = open_store(settings.store)
    ids = {s.customer_id for s in store.iter_customers()}
    assert hashed in ids and "c7" not in ids and len(ids) == 30
    written = "".join(p.read_text() for p in tmp_path.glob("*.jsonl") if p != source)
    assert '"c7"' not in written and hashed in written  # changes and dead letters
    assert settings.customer_key("c7") == hashed


def test_reseeding_keeps_every_segment_id_and_its_profile(tmp_path: Path) -> None:
    from streamseg.core.naming import centroid_units
    from streamseg.engine import SegmentationEngine

    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population(customers=90, days=200)) + "\n")
    settings = _settings(tmp_path, source)
    _run(settings)
    engine = SegmentationEngine(settings, open_store(settings.store))
    engine.refresh_segment_names()
    names_before = dict(engine.segment_names)
    before = centroid_units(engine.model.centroids, engine.scaler)
    version = engine.model.version
    engine.model.reseed()  # a fresh k-means++ solution, matched to the old ids
    engine.refresh_segment_names()
    after = centroid_units(engine.model.centroids, engine.scaler)
    assert engine.model.version > version
    assert engine.segment_names == names_before
    for old, new in zip(before, after, strict=True):
        for field in ("orders_90d", "spend_90d", "avg_order_value"):
            assert new[field] == pytest.approx(old[field], rel=0.25), (field, old, new)


def test_garbage_is_frozen_every_second_and_fully_collected_every_ten_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamseg.processing.gc as pipeline

    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population(customers=5, days=20)) + "\n")
    clock = [1000.0]
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: clock[0])
    app = Application(_settings(tmp_path, source))
    calls: list[str] = []
    monkeypatch.setattr(pipeline.gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(pipeline.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(pipeline.gc, "unfreeze", lambda: calls.append("unfreeze"))
    try:
        app.gc_policy.tick()
        assert calls == []  # start-up has just frozen
        clock[0] += 1.0
        app.gc_policy.tick()
        assert calls == ["collect", "freeze"]
        clock[0] += 0.5
        app.gc_policy.tick()
        assert calls == ["collect", "freeze"]
        calls.clear()
        clock[0] += 600.0
        app.gc_policy.tick()
        assert calls == ["unfreeze", "collect", "freeze"]
    finally:
        app.close()


def _stored(settings: Any) -> dict[str, tuple[Any, ...]]:
    store = open_store(settings.store)
    try:
        return {s.customer_id: (s.segment, s.vector, s.updated_at, s.features.to_dict(),
                                s.applied, s.next_rescore_at)
                for s in store.iter_customers()}
    finally:
        store.close()


@pytest.mark.parametrize("cache_size", [50, 200_000])
def test_the_state_cache_changes_nothing_but_speed(tmp_path: Path, cache_size: int) -> None:
    """States kept between batches (all of them, or only 50 with evictions) give the
    same stored states, model and changes as reading every state back from the store."""
    source = tmp_path / "events.jsonl"
    # Enough customers that a batch re-scores only some of them: re-scoring everyone
    # rebuilds the standardiser from scratch, which would hide a wrong cached value.
    source.write_text("\n".join(_population(customers=600, days=60)) + "\n")
    runs = {}
    for size in (0, cache_size):
        folder = tmp_path / f"cache-{size}"
        folder.mkdir()
        settings = _settings(folder, source, pipeline={"state_cache_size": size})
        # Stopped mid-stream: at the end of a stream every customer is re-scored.
        summary = _run(settings, max_batches=20)
        store = open_store(settings.store)
        model = store.load_model()
        store.close()
        runs[size] = (summary.changes, summary.rescored, _stored(settings), model)
    assert runs[0][2], "nothing stored"
    assert runs[cache_size] == runs[0]


def test_a_rebalance_drops_the_cached_states(tmp_path: Path) -> None:
    from streamseg.io.source import AssignmentChange

    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population(customers=10, days=40)) + "\n")
    app = Application(_settings(tmp_path, source))
    try:
        assert app.source.shared is False  # a file: this worker reads all of it
        app.run(max_batches=1)
        assert len(app.engine.cache), "the first batch's states are cached"
        app.ownership.follow(app.engine, [])
        assert len(app.engine.cache), "no rebalance: the cache stays"
        # What the Kafka source reports after a rebalance that gave the partition back.
        app.source.assignment_changes = lambda: AssignmentChange(  # type: ignore[method-assign]
            assigned=["local"], revoked=["local"])
        app.ownership.follow(app.engine, [])
        assert not len(app.engine.cache)
    finally:
        app.close()


def test_a_finished_run_is_a_fixed_point(tmp_path: Path) -> None:
    """With no new events and no time passed, running again changes nothing."""
    settings = load_settings(overrides={
        "store": {"uri": f"sqlite:///{tmp_path / 'state.db'}"},
        "sinks": {"changes": str(tmp_path / "changes.jsonl"),
                  "dead_letter": str(tmp_path / "dead.jsonl")},
    })
    first = _run(settings)
    stored = _stored(settings)
    again = _run(settings)
    assert first.processed == 6919
    assert (again.processed, again.changes, again.rescored) == (0, 0, 0)
    assert _stored(settings) == stored


def test_settings_that_shape_stored_data_cannot_change_on_an_existing_store(
    tmp_path: Path,
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population(customers=60, days=60)) + "\n")
    settings = _settings(tmp_path, source)
    _run(settings)
    store = open_store(settings.store)
    checkpoint, stored = store.load_model(), _stored(settings)
    store.close()
    for section, values, named in [
        ("model", {"n_clusters": 4}, "model.n_clusters is 3"),
        ("model", {"kind": "river-kmeans"}, "model.kind is 'customer-kmeans'"),
        ("features", {"half_life_days": 30}, "features.half_life_days is 90.0"),
    ]:
        with pytest.raises(ConfigError, match=named):
            Application(_settings(tmp_path, source, **{section: values}))
    store = open_store(settings.store)
    assert store.load_model() == checkpoint, "a refused run must not write the model"
    store.close()
    assert _stored(settings) == stored


def test_settings_that_may_change_are_applied_to_the_restored_model(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population(customers=60, days=60)) + "\n")
    _run(_settings(tmp_path, source))
    app = Application(_settings(tmp_path, source, model={"hysteresis": 0.05,
                                                         "refine_every": 7}))
    try:
        params = app.engine.model._learner.params  # type: ignore[attr-defined]
        assert (params.hysteresis, params.refine_every) == (0.05, 7)  # what it learns by
        assert app.engine.model.to_state()["params"]["hysteresis"] == 0.05
    finally:
        app.close()


def test_a_failed_start_closes_what_it_opened(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import streamseg.app as app_module

    opened: list[str] = []
    closed: list[str] = []
    real_open_store = app_module.open_store

    def open_store_noting_close(*args: Any, **kwargs: Any) -> Any:
        store = real_open_store(*args, **kwargs)
        opened.append("store")
        close = store.close
        store.close = lambda: (closed.append("store"), close())[1]  # type: ignore[method-assign]
        return store

    monkeypatch.setattr(app_module, "open_store", open_store_noting_close)
    with pytest.raises(FileNotFoundError):
        Application(_settings(tmp_path, tmp_path / "missing.jsonl"))
    assert opened and closed == opened  # the store, and the lease's own connection
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population(customers=5, days=10)) + "\n")
    Application(_settings(tmp_path, source)).close()  # the lease was given up too


def test_with_a_key_no_dead_letter_holds_a_clear_customer_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMSEG_PRIVACY__PSEUDONYMISE_KEY", "k3y")
    clear = "bob@example.com"
    bad = [
        '{"event_id":"2","customer_id":"' + clear + '","timestamp":"2024-01-0',  # cut off
        json.dumps({"event_id": f"{clear}-3", "customer_id": clear, "amount": -1,
                    "timestamp": "2024-01-02"}),  # the id inside the event id too
        json.dumps({"event_id": "4", "customer_id": {"email": clear}, "amount": 1,
                    "timestamp": "2024-01-02"}),  # not a string
        json.dumps({"event_id": "5", "customer_id": clear, "amount": 1,
                    "timestamp": "2024-01-02", "pad": "x" * 70_000}),  # over 64 KiB
        json.dumps([clear, 1]),  # not an object
    ]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([*_population(customers=30, days=60), *bad]) + "\n")
    csv_source = tmp_path / "events.csv"
    csv_source.write_text(f"customer_id,timestamp,amount\n{clear},2024-01-02,-5\n"
                          f"{clear},not a time,5\n{clear},2024-01-02\n")
    for folder, path in (("json", source), ("csv", csv_source)):
        (tmp_path / folder).mkdir()
        summary = _run(_settings(tmp_path / folder, path))
        letters = (tmp_path / folder / "dead.jsonl").read_text()
        assert summary.rejected == (len(bad) if folder == "json" else 3)
        assert clear not in letters and "bob" not in letters, letters[:300]
        assert clear not in (tmp_path / folder / "changes.jsonl").read_text()
    withheld = [json.loads(line) for line in (tmp_path / "json" / "dead.jsonl").read_text()
                .splitlines()]
    assert [letter["payload"] is None for letter in withheld] == [True, False, False, True,
                                                                  True]
    assert withheld[0]["payload_withheld"]["bytes"] == len(bad[0].encode())


def test_a_failed_start_closes_the_source_and_the_store_opened_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink that cannot be opened (after the store, the lease and the source were):
    the source (a Kafka consumer in production, which would stay in its group) and the
    store are closed before the error goes up."""
    import streamseg.app as app_module

    closed: list[str] = []
    real_open_source, real_open_store = app_module.open_source, app_module.open_store

    def noting(name: str, real: Any) -> Any:
        def open_noting(*args: Any, **kwargs: Any) -> Any:
            opened = real(*args, **kwargs)
            close = opened.close
            opened.close = lambda: (closed.append(name), close())[1]
            return opened
        return open_noting

    monkeypatch.setattr(app_module, "open_source", noting("source", real_open_source))
    monkeypatch.setattr(app_module, "open_store", noting("store", real_open_store))
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(_population(customers=5, days=10)) + "\n")
    (tmp_path / "not-a-folder").write_text("")
    settings = _settings(tmp_path, source).model_copy(deep=True)
    settings.sinks.changes = str(tmp_path / "not-a-folder" / "changes.jsonl")
    with pytest.raises(OSError):
        Application(settings)
    assert "source" in closed and "store" in closed
    assert closed.index("source") < closed.index("store")
