"""The HTML report: one self-contained page whose charts hold the store's data."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from streamseg.app import Application
from streamseg.config import Settings, StoreSettings, load_settings
from streamseg.report import redact_uri, write_report
from streamseg.store import CustomerState, open_store
from streamseg_bench.simulate import write_stream

SAMPLE = 150  # fewer than the customers, so the map really samples


def _settings(folder: Path) -> Settings:
    return load_settings(overrides={
        "store": {"uri": f"sqlite:///{folder}/s.db"},
        "sinks": {"changes": str(folder / "changes.jsonl"),
                  "dead_letter": str(folder / "dead.jsonl")},
        "source": {"uri": str(folder / "e.jsonl")},
        "model": {"warmup": 100},
    })


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store written by the pipeline from 300 simulated customers."""
    folder = tmp_path_factory.mktemp("report")
    write_stream(folder / "e.jsonl", customers=300, seed=1)
    application = Application(_settings(folder))
    try:
        application.run()
    finally:
        application.close()
    return folder


@pytest.fixture(scope="module")
def page(folder: Path) -> str:
    out = write_report(_settings(folder), folder / "out" / "report.html", sample=SAMPLE, seed=0)
    assert out == folder / "out" / "report.html"
    return out.read_text(encoding="utf-8")


def _figures(page: str) -> dict[str, dict[str, Any]]:
    """The plotly figures embedded in the page, by key."""
    found = re.findall(
        r'<script type="application/json" data-figure="(\w+)">(.*?)</script>', page, re.S
    )
    return {key: json.loads(payload) for key, payload in found}


def _states(folder: Path) -> tuple[list[CustomerState], dict[str, Any]]:
    store = open_store(StoreSettings(uri=f"sqlite:///{folder}/s.db"))
    try:
        return list(store.iter_customers()), store.meta()
    finally:
        store.close()


def _names(folder: Path) -> dict[int, str]:
    _, meta = _states(folder)
    return {s["segment"]: s["name"] for s in meta["segments"]}


def test_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<script src" not in page and "<link" not in page  # nothing fetched to view it
    assert page.count("Plotly.newPlot") == 1  # one loader for all charts
    assert len(re.findall(r"<script type=\"text/javascript\">", page)) == 2  # plotly + loader
    assert "plotly.js" in page[:200_000].lower()  # the library itself is embedded
    assert set(_figures(page)) == {"sizes", "profiles", "map", "quality"}


def test_sizes_over_time_has_one_line_per_segment(folder: Path, page: str) -> None:
    names = _names(folder)
    figure = _figures(page)["sizes"]
    assert len(figure["data"]) == len(names)
    assert {t["name"] for t in figure["data"]} == set(names.values())
    _, meta = _states(folder)
    points = len(meta["size_history"])
    assert points >= 2
    for trace in figure["data"]:
        assert len(trace["x"]) == len(trace["y"]) == points
        assert all(isinstance(y, int) and y >= 0 for y in trace["y"])
    # The last point is the current size of each segment.
    final = {t["name"]: t["y"][-1] for t in figure["data"]}
    assert final == {names[s["segment"]]: s["size"] for s in meta["segments"]}


def test_profile_comparison_has_every_segment_per_metric(folder: Path, page: str) -> None:
    names = set(_names(folder).values())
    figure = _figures(page)["profiles"]
    assert [t["name"] for t in figure["data"]] == [
        "Days since last purchase", "Orders per 90 days", "Spend per 90 days",
        "Average order value", "Customer for (days)",
    ]
    for trace in figure["data"]:
        assert set(trace["y"]) == names
        assert len(trace["x"]) == len(names)
        assert all(value >= 0 for value in trace["x"])
    # One dashed reference line (all customers' median) per metric.
    assert len(figure["layout"]["shapes"]) == len(figure["data"])


def test_projection_plots_the_sample_and_the_centres(folder: Path, page: str) -> None:
    states, _ = _states(folder)
    eligible = [s for s in states if s.segment is not None and s.vector is not None]
    assert len(eligible) > SAMPLE
    names = _names(folder)
    figure = _figures(page)["map"]
    *customers, centres = figure["data"]
    assert len(customers) == len(names)
    assert {t["name"] for t in customers} == set(names.values())
    assert sum(len(t["x"]) for t in customers) == SAMPLE
    for trace in customers:
        assert len(trace["x"]) == len(trace["y"])
    assert centres["name"] == "Segment centres"
    assert len(centres["x"]) == len(centres["y"]) == len(names)
    assert sorted(centres["text"]) == sorted(names.values())
    # Points are spread over two real axes, not collapsed onto a line or a point.
    xs = [x for t in customers for x in t["x"]]
    ys = [y for t in customers for y in t["y"]]
    assert len(set(xs)) > 10 and len(set(ys)) > 10


def test_sample_depends_on_the_seed_only(folder: Path, tmp_path: Path, page: str) -> None:
    again = write_report(_settings(folder), tmp_path / "a.html", sample=SAMPLE, seed=0)
    other = write_report(_settings(folder), tmp_path / "b.html", sample=SAMPLE, seed=1)

    def points(text: str) -> list[list[float]]:
        return [t["x"] for t in _figures(text)["map"]["data"]]

    assert points(again.read_text()) == points(page)
    assert points(other.read_text()) != points(page)


class _Cells(HTMLParser):
    """Text of every table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td":
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data


def test_table_and_descriptions_name_every_segment(folder: Path, page: str) -> None:
    parser = _Cells()
    parser.feed(page)
    for name in _names(folder).values():
        assert name in parser.cells
        assert re.search(rf"<li>.*?{re.escape(name)}: \d+% of customers", page)
    assert "All customers (median)" in parser.cells


def test_header_names_the_store_without_secrets(folder: Path, page: str) -> None:
    assert f"sqlite:///{folder}/s.db" in page
    assert redact_uri("redis://app:hunter2@cache:6379/0") == "redis://app:***@cache:6379/0"
    assert "hunter2" not in redact_uri("rediss://cache/0?password=hunter2")


def test_quality_shows_the_live_silhouette_and_the_curve_per_k(folder: Path, page: str) -> None:
    from streamseg.evaluate import draw_sample, evaluate
    from streamseg.read import open_view

    figure = _figures(page)["quality"]
    curve = {trace["name"]: trace for trace in figure["data"]}
    assert curve["silhouette (batch fit)"]["x"] == list(range(2, 11))
    assert len(curve["inertia (batch fit)"]["y"]) == 9
    inertias = curve["inertia (batch fit)"]["y"]
    assert inertias == sorted(inertias, reverse=True)  # more segments, less inertia
    # The same figures as `streamseg evaluate` on the same store (all 300 customers).
    view = open_view(_settings(folder))
    try:
        expected = evaluate(view, draw_sample(view, 2000, 0), 0, list(range(2, 11)))
    finally:
        view.close()
    assert curve["live segments"]["y"] == [round(expected.live["silhouette"], 4)]
    assert curve["silhouette (batch fit)"]["y"] == [round(p.silhouette, 4)
                                                    for p in expected.sweep]
    assert f"recommended k={expected.recommended_k}" in json.dumps(figure["layout"])
    assert f"silhouette <b>{expected.live['silhouette']:.3f}</b>" in page
    assert "all 300 customers" in page
