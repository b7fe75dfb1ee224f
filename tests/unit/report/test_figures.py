"""The report's plotly figures, built from ReportData without a store."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamseg.report.figures import (
    centre_labels,
    map_figure,
    profiles_figure,
    projection,
    sizes_figure,
)

from ._data import profile, report_data

DAY = 86_400.0


def test_projection_is_a_fixed_orientation_pca() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 3)) * [5.0, 1.0, 0.1]
    points, centres, components, share = projection(vectors, vectors[:2])
    assert points.shape == (50, 2) and components.shape == (2, 3)
    assert np.allclose(components @ components.T, np.eye(2))
    assert share[0] > share[1] > 0 and share.sum() <= 1.0
    assert centres is not None and np.allclose(centres, points[:2])
    # A mirror image of the data gives the same axes, not mirrored ones.
    for row in components:
        assert row[np.argmax(np.abs(row))] > 0
    assert np.allclose(projection(-vectors, None)[2], components)


def test_projection_of_no_customers() -> None:
    points, centres, components, share = projection(np.zeros((0, 4)), np.ones((3, 4)))
    assert points.shape == (0, 2)
    assert centres is not None and centres.shape == (3, 2) and not centres.any()
    assert components.shape == (2, 4) and not share.any()
    assert projection(np.zeros((0, 4)), None)[1] is None


def test_sizes_figure_orders_by_the_table_then_segments_no_longer_profiled() -> None:
    history = [
        {"time": 2 * DAY, "sizes": {"0": 5, "1": 3, "2": 1}, "names": {"2": "Gone"}},
        {"time": 1 * DAY, "sizes": {"0": 4, "1": 2}},
    ]
    data = report_data(profiles=[profile(1, spend=90.0), profile(0, spend=10.0)],
                       names={1: "VIP"}, history=history)
    traces = sizes_figure(data)["data"]
    assert [t["name"] for t in traces] == ["VIP", "Segment 0", "Gone"]
    assert traces[0]["x"] == ["1970-01-02T00:00:00Z", "1970-01-03T00:00:00Z"]  # by time
    assert traces[0]["y"] == [2, 3]
    assert traces[2]["customdata"] == ["Gone"]
    assert traces[1]["customdata"] == ["Segment 0", "Segment 0"]


def _annotation_texts(figure: dict[str, Any]) -> list[str]:
    return [a["text"] for a in figure["layout"].get("annotations", [])]


def test_empty_figures_say_why() -> None:
    data = report_data()
    assert "No size history recorded yet." in _annotation_texts(sizes_figure(data))
    profiles = profiles_figure(data)
    assert "No segments yet." in _annotation_texts(profiles)
    assert profiles["layout"]["shapes"] == []  # no population median: no reference lines
    assert map_figure(data)["data"] == []


def test_profiles_figure_has_one_bar_chart_per_metric_and_money_axes() -> None:
    data = report_data(profiles=[profile(0, name="A"), profile(1)], names={0: "A"},
                       population={"recency_days": 30.0, "spend_90d": 40.0}, currency="€")
    figure = profiles_figure(data)
    assert len(figure["data"]) == 5
    assert all(t["y"] == ["A", "Segment 1"] for t in figure["data"])
    spend = next(t for t in figure["data"] if t["name"] == "Spend per 90 days")
    assert spend["text"] == ["€50", "€50"]
    axes = {t["name"]: figure["layout"][t["xaxis"].replace("x", "xaxis")]
            for t in figure["data"]}
    assert axes["Spend per 90 days"]["tickprefix"] == "€"
    assert axes["Orders per 90 days"]["tickprefix"] == ""
    assert [s["x0"] for s in figure["layout"]["shapes"]] == [30.0, 40.0]


def test_map_without_a_model_has_no_centres() -> None:
    data = report_data(profiles=[profile(0)], sample_vectors=np.eye(3),
                       sample_segments=[0, 0, 0], sampled_from=3)
    figure = map_figure(data)
    assert [t["name"] for t in figure["data"]] == ["Segment 0"]
    assert "annotations" not in figure["layout"]


def test_centre_labels_of_close_centres_do_not_overlap() -> None:
    centres = np.array([[0.0, 0.0], [0.01, 0.0], [0.02, 0.0], [10.0, 5.0]])
    names = {0: "Alpha <1>", 1: "Beta", 2: "Gamma", 3: "Delta"}
    data = report_data(profiles=[profile(s) for s in names], names=names)
    labels = centre_labels(data, centres, np.zeros((0, 2)))
    assert sorted(label["text"] for label in labels) == [
        "<b>Alpha &lt;1&gt;</b>", "<b>Beta</b>", "<b>Delta</b>", "<b>Gamma</b>"]
    close = [(label["ax"], label["ay"]) for label in labels if label["x"] < 1]
    assert len(set(close)) == 3  # three centres on one spot: three different offsets
