"""The report's charts as plain plotly figure dicts (JSON-ready, no plotly objects).

* :func:`profiles_figure`: per metric, each segment's median against all customers';
* :func:`sizes_figure`: segment sizes over event time, from the stored size history;
* :func:`map_figure`: a sample of customers on the two principal axes of model space,
  coloured by segment, with the segment centres named (:func:`centre_labels`).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streamseg.report.scan import ReportData
from streamseg.report.words import METRICS, MONEY_METRICS, axis_words, colour, metric_text


def sizes_figure(data: ReportData) -> dict[str, Any]:
    """Segment sizes over (event) time, one line per segment, labelled by today's name."""
    points = sorted(data.history, key=lambda p: p["time"])
    recorded = {int(k) for p in points for k in p.get("sizes", {})}
    # The table's order (highest spend first), then segments no longer profiled.
    shown = [p.segment for p in data.profiles if p.segment in recorded]
    segments = shown + sorted(recorded - set(shown))
    traces = []
    for segment in segments:
        key = str(segment)
        rows = [p for p in points if key in p.get("sizes", {})]
        name = data.names.get(segment) or (rows[-1].get("names", {}).get(key) if rows else None)
        traces.append({
            "type": "scatter", "mode": "lines+markers",
            "name": name or f"Segment {segment}",
            "x": [_iso(p["time"]) for p in rows],
            "y": [int(p["sizes"][key]) for p in rows],
            # The name a segment had at each point: names follow the centres as they move.
            "customdata": [p.get("names", {}).get(key) or f"Segment {segment}" for p in rows],
            "hovertemplate": "%{x|%d %b %Y}: %{y:,} customers<br>named %{customdata} "
                             "then<extra>%{fullData.name}</extra>",
            "line": {"color": colour(segment), "width": 2.5},
            "marker": {"size": 5},
        })
    layout = _layout(420, {
        "xaxis": {"title": {"text": "Event time"}, "type": "date"},
        "yaxis": {"title": {"text": "Customers"}, "rangemode": "tozero"},
        "hovermode": "x unified",
    })
    if not traces:
        layout["annotations"] = [_note("No size history recorded yet.")]
    return {"data": traces, "layout": layout}


def profiles_figure(data: ReportData) -> dict[str, Any]:
    """Small multiples: per metric, each segment's median against all customers'."""
    profiles = data.profiles
    names = [data.name(p.segment) for p in profiles]
    columns = len(METRICS)
    gap = 0.035
    width = (1 - gap * (columns - 1)) / columns
    traces: list[dict[str, Any]] = []
    layout = _layout(max(260, 110 + 46 * len(profiles)), {"showlegend": False,
                                                          "bargap": 0.3})
    annotations: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    for column, (metric, title) in enumerate(METRICS):
        suffix = "" if column == 0 else str(column + 1)
        start = column * (width + gap)
        values = [float(getattr(p, metric)) for p in profiles]
        is_money = metric in MONEY_METRICS
        traces.append({
            "type": "bar", "orientation": "h", "name": title,
            "x": values, "y": names,
            "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
            "marker": {"color": [colour(p.segment) for p in profiles]},
            "text": [metric_text(v, metric, data.currency) for v in values],
            # Inside at the bar's base when it fits (clear of the reference line near
            # the bar's end), else just outside.
            "textposition": "auto", "insidetextanchor": "start", "cliponaxis": False,
            "hovertemplate": "%{y}: %{text}<extra>" + title + "</extra>",
        })
        layout[f"xaxis{suffix}"] = {"domain": [start, start + width], "anchor": f"y{suffix}",
                                    "rangemode": "tozero", "showgrid": True,
                                    "tickprefix": data.currency if is_money else ""}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", "autorange": "reversed",
                                    "showticklabels": column == 0,
                                    **({"matches": "y"} if column else {})}
        annotations.append({"text": f"<b>{title}</b>", "x": start + width / 2, "y": 1.0,
                            "xref": "paper", "yref": "paper", "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 13}})
        reference = data.population.get(metric)
        if reference is not None:
            # Dashed line: the median of all customers, the "typical customer".
            shapes.append({"type": "line", "xref": f"x{suffix}", "yref": f"y{suffix} domain",
                           "x0": reference, "x1": reference, "y0": 0, "y1": 1,
                           "line": {"color": "#333", "width": 1.5, "dash": "dash"},
                           "layer": "below"})  # shows between the bars, never over text
    layout["annotations"] = annotations
    layout["shapes"] = shapes
    layout["margin"] = {"l": 10, "r": 20, "t": 40, "b": 30}
    layout["yaxis"]["automargin"] = True
    if not profiles:
        layout["annotations"].append(_note("No segments yet."))
    # No tool bar: it would cover the last chart's title, and there is nothing to zoom.
    return {"data": traces, "layout": layout, "config": {"displayModeBar": False}}


def projection(vectors: np.ndarray, centroids: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """2-D PCA of ``vectors`` (rows); returns points, centres, components, variance share.

    Signs are fixed (largest loading positive) so the same data always gives the same
    picture, not a mirror image.

    >>> pts, _, comps, share = projection(np.array([[0., 0], [1, 1], [2, 3]]), None)
    >>> pts.shape, round(float(share[0]), 2), comps[0].round(1).tolist()
    ((3, 2), 0.99, [0.5, 0.8])
    """
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    components = np.zeros((2, dim))
    share = np.zeros(2)
    if len(vectors) == 0:
        return np.zeros((0, 2)), None if centroids is None else np.zeros((len(centroids), 2)), \
            components, share
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    take = min(2, len(vt))
    components[:take] = vt[:take]
    for row in components:
        if np.any(row):
            row *= np.sign(row[np.argmax(np.abs(row))])
    total = float(np.sum(singular**2))
    if total > 0:
        share[:take] = singular[:take] ** 2 / total
    points = centred @ components.T
    centres = None if centroids is None else (centroids - mean) @ components.T
    return points, centres, components, share


def map_figure(data: ReportData) -> dict[str, Any]:
    """The customer map: sample on two principal axes, one trace per segment + centres."""
    points, centres, components, share = projection(data.sample_vectors, data.centroids)
    segments = np.asarray(data.sample_segments, dtype=int)
    traces: list[dict[str, Any]] = []
    for profile in data.profiles:
        mask = segments == profile.segment
        name = data.name(profile.segment)
        traces.append({
            "type": "scatter", "mode": "markers", "name": name,
            "x": _rounded(points[mask, 0]), "y": _rounded(points[mask, 1]),
            "marker": {"color": colour(profile.segment), "size": 6, "opacity": 0.55,
                       "line": {"width": 0}},
            "hovertemplate": f"{html.escape(name)}<extra></extra>",
        })
    if centres is not None:
        ids = [p.segment for p in data.profiles if p.segment < len(centres)]
        traces.append({
            "type": "scatter", "mode": "markers", "name": "Segment centres",
            "x": _rounded(centres[ids, 0]), "y": _rounded(centres[ids, 1]),
            "text": [data.name(s) for s in ids],
            "marker": {"symbol": "x", "size": 16, "color": [colour(s) for s in ids],
                       "line": {"width": 2, "color": "#111"}},
            "hovertemplate": "centre of %{text}<extra></extra>",
        })

    def title(axis: int, arrow: str) -> str:
        words = axis_words(components[axis])
        return f"{arrow} {words} ({share[axis]:.0%} of the variation)" if words else ""

    layout = _layout(620, {
        "xaxis": {"title": {"text": title(0, "→")}, "zeroline": False},
        "yaxis": {"title": {"text": title(1, "↑")}, "zeroline": False},
        "legend": {"itemsizing": "constant"},
    })
    if centres is not None:
        layout["annotations"] = centre_labels(data, centres, points)
    return {"data": traces, "layout": layout}


def centre_labels(data: ReportData, centres: np.ndarray, points: np.ndarray
                  ) -> list[dict[str, Any]]:
    """Name labels for the centres, on a white box with a leader line to the centre.

    Centres of similar segments sit close together, so each label takes the first of a
    few offsets (above, below, further out, to the side) where its box overlaps no
    label placed before it and no other centre. Positions are estimated in pixels from
    the data range and the chart's usual size; an estimate is enough to keep labels apart.
    """
    ids = [p.segment for p in data.profiles if p.segment < len(centres)]
    every = np.vstack([points, centres[ids]]) if len(points) else centres[ids]
    low, high = every.min(axis=0), every.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    width, height = 1100.0, 460.0  # plot area of the 620 px high map at the page's width

    def pixels(segment: int) -> tuple[float, float]:
        x, y = (centres[segment][:2] - low[:2]) / span[:2]
        return float(x) * width, (1.0 - float(y)) * height

    taken: list[tuple[float, float, float, float]] = []  # boxes: x0, y0, x1, y1
    for segment in ids:  # centre markers: a label must not hide another centre
        cx, cy = pixels(segment)
        taken.append((cx - 10, cy - 10, cx + 10, cy + 10))
    labels = []
    for segment in sorted(ids, key=lambda s: float(centres[s, 0])):
        name = data.name(segment)
        box_w, box_h = 7.5 * len(name) + 14, 22.0
        cx, cy = pixels(segment)
        candidates = [(0.0, dy) for dy in (-34.0, 34.0, -62.0, 62.0, -90.0, 90.0)]
        candidates += [(dx, dy) for dy in (-34.0, 34.0) for dx in (-box_w / 2 - 14,
                                                                    box_w / 2 + 14)]
        chosen = candidates[0]
        for dx, dy in candidates:
            box = (cx + dx - box_w / 2, cy + dy - box_h / 2, cx + dx + box_w / 2,
                   cy + dy + box_h / 2)
            own = (cx - 10, cy - 10, cx + 10, cy + 10)
            if not any(_overlap(box, other) for other in taken if other != own):
                chosen = (dx, dy)
                taken.append(box)
                break
        labels.append({
            "x": round(float(centres[segment, 0]), 3), "y": round(float(centres[segment, 1]), 3),
            "text": f"<b>{html.escape(name)}</b>",
            "showarrow": True, "arrowhead": 0, "arrowwidth": 1.2, "arrowcolor": "#333",
            "ax": round(chosen[0]), "ay": round(chosen[1]),
            "bgcolor": "rgba(255,255,255,0.9)", "bordercolor": colour(segment),
            "borderwidth": 1.5, "borderpad": 3, "font": {"size": 12, "color": "#111"},
        })
    return labels


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
             ) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _rounded(values: np.ndarray) -> list[float]:
    # Three decimals are more than a screen can show and keep the page small.
    return [round(float(v), 3) for v in values]


def _layout(height: int, extra: dict[str, Any]) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height, "template": "plotly_white",
        "font": {"family": "Segoe UI, Helvetica, Arial, sans-serif", "size": 13},
        "margin": {"l": 70, "r": 20, "t": 20, "b": 60},
        "legend": {"orientation": "h", "y": -0.18},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _note(text: str) -> dict[str, Any]:
    return {"text": text, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
            "showarrow": False, "font": {"size": 16, "color": "#666"}}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
