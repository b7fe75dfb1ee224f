"""The report's "How good are the segments" section: the live segments' silhouette and
the other measures against a batch fit, and the curve of silhouette and inertia per k
(:mod:`streamseg.evaluate`), with the model's k and the recommended k marked.
"""

from __future__ import annotations

import html
from typing import Any

from streamseg.report.figures import _layout, _note
from streamseg.report.scan import ReportData

__all__ = ["quality_figure", "quality_text"]


def quality_figure(data: ReportData) -> dict[str, Any]:
    """Silhouette (left axis) and inertia (right axis) of a batch fit per k."""
    q = data.quality
    if q is None or not q.sweep:
        return {"data": [], "layout": _layout(300, {"annotations": [_note(
            "No measures yet: the model is still warming up.")]})}
    ks = [p.k for p in q.sweep]
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines+markers", "name": "silhouette (batch fit)",
         "x": ks, "y": [round(p.silhouette, 4) for p in q.sweep], "yaxis": "y"},
        {"type": "scatter", "mode": "lines+markers", "name": "inertia (batch fit)",
         "x": ks, "y": [round(p.inertia, 3) for p in q.sweep], "yaxis": "y2",
         "line": {"dash": "dot"}},
    ]
    if q.live["silhouette"] is not None:
        traces.append({"type": "scatter", "mode": "markers", "name": "live segments",
                       "x": [q.k], "y": [round(q.live["silhouette"], 4)], "yaxis": "y",
                       "marker": {"size": 13, "symbol": "diamond"}})
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": q.recommended_k,
               "x1": q.recommended_k, "y0": 0, "y1": 1,
               "line": {"color": "#2a9d8f", "dash": "dash"}}]
    layout = _layout(360, {
        "xaxis": {"title": {"text": "number of segments k"}, "dtick": 1},
        "yaxis": {"title": {"text": "mean silhouette (higher: better separated)"}},
        "yaxis2": {"title": {"text": "inertia"}, "overlaying": "y", "side": "right",
                   "showgrid": False},
        "margin": {"r": 70},
        "shapes": shapes,
        "annotations": [{"x": q.recommended_k, "y": 1.02, "xref": "x", "yref": "paper",
                         "text": f"recommended k={q.recommended_k}", "showarrow": False}],
    })
    return {"data": traces, "layout": layout, "config": {"displayModeBar": False}}


def quality_text(data: ReportData) -> str:
    """The sentence above the curve: the live measures, on how many customers."""
    q = data.quality
    if q is None:
        return "<p>No measures yet: the model is still warming up.</p>"
    scope = (f"all {q.sample:,} customers" if q.exact
             else f"{q.sample:,} customers drawn at random of {q.population:,}")
    live = q.live
    parts = [f"silhouette <b>{live['silhouette']:.3f}</b>" if live["silhouette"] is not None
             else "silhouette &ndash;"]
    if live["davies_bouldin"] is not None:
        parts.append(f"Davies-Bouldin {live['davies_bouldin']:.3f}")
    if q.inertia_ratio is not None:
        parts.append(f"inertia {q.inertia_ratio:.3f}&times; batch k-means++")
    parts.append(f"stability (ARI with a fresh batch fit) {q.stability_ari:.3f}")
    text = (f"<p>The {q.k} live segments, measured on {scope} (vectors recomputed at the "
            f"service clock): {', '.join(parts)}.</p>")
    if q.recommended_k is not None:
        text += (f"<p>Recommended k: <b>{q.recommended_k}</b> &ndash; "
                 f"{html.escape(q.why or '')}.</p>")
    return text
