"""A one-page HTML report of the segments, for people who market to them.

:func:`write_report` reads the store once and writes ONE self-contained HTML file
(plotly.js is embedded, so it opens offline, from an e-mail or a shared drive):

* a plain-words description and a table of every segment: size, share and the median
  customer's recency, orders and spend per 90 days, order value and tenure;
* "How the segments differ": one small bar chart per metric, segment medians against the
  median of all customers;
* "Segment sizes over time", from the size history the pipeline records as the stream
  runs (``size_history`` in the store's metadata);
* "Map of customers": a random sample of customers' model-space vectors projected on
  their two principal components (PCA by numpy's SVD), coloured by segment, with the
  segment centres marked.

The figures are stored in the page as JSON (``<script type="application/json"
data-figure="...">``) and drawn by a few lines of script, so tests and other tools can
read the numbers back without a browser.

Cost: one pass over the customers (medians need every value), plus the metadata and the
model checkpoint. Run it offline, not on the request path.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np

from streamseg.config import Settings
from streamseg.core.features import VECTOR_FIELDS
from streamseg.core.profiles import PROFILE_FIELDS, SegmentProfile, profile_segments
from streamseg.store import CustomerState, Store, open_store

__all__ = ["write_report"]

# Colour-blind-safe (Okabe-Ito, without its yellow, which vanishes on white), by segment
# id, so a segment has the same colour in every chart and in the table.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#882255",
            "#44AA99", "#332288", "#999999", "#117733", "#AA4499")

#: Metrics compared across segments, with the words a marketer reads them by.
_METRICS: tuple[tuple[str, str], ...] = (
    ("recency_days", "Days since last purchase"),
    ("orders_90d", "Orders per 90 days"),
    ("spend_90d", "Spend per 90 days"),
    ("avg_order_value", "Average order value"),
    ("tenure_days", "Customer for (days)"),
)
_MONEY = {"spend_90d", "avg_order_value"}

#: Plain words for the model-space coordinates, to label the map's axes (a coordinate
#: not listed is named after its field).
_VECTOR_WORDS = {
    "log_recency_days": "days since last purchase",
    "log_overdue_days": "days overdue",
    "log_orders_90d": "orders/90d",
    "log_spend_90d": "spend/90d",
    "log_avg_order_value": "order value",
    "log_tenure_days": "tenure",
    "refund_share": "refund share",
}
# Coordinates where "more" reads badly ("more days overdue"): "longer"/"shorter" instead.
_DURATION_FIELDS = {"log_recency_days", "log_overdue_days"}

_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def write_report(
    settings: Settings,
    out: Path,
    sample: int = 2000,
    seed: int = 0,
    *,
    store: Store | None = None,
    currency: str = "$",
) -> Path:
    """Write the HTML report of the store ``settings`` names (or ``store``) to ``out``.

    ``sample`` customers (at most) are drawn at random with ``seed`` for the map; the
    table and charts use every customer. A ``store`` passed in is left open.

    >>> import tempfile
    >>> from streamseg.config import load_settings
    >>> from streamseg.store import MemoryStore
    >>> folder = Path(tempfile.mkdtemp())
    >>> page = write_report(load_settings(), folder / "report.html", store=MemoryStore())
    >>> page.name, "No segments yet" in page.read_text()
    ('report.html', True)
    """
    from streamseg.engine import SegmentationEngine  # the model checkpoint, for centres

    owned = store is None
    if store is None:
        store = open_store(settings.store)
    try:
        meta = store.meta()
        engine = SegmentationEngine(settings, store)
        # The clock as the pipeline last wrote it (the metadata is written with every
        # batch; the model checkpoint, which the engine restores, only now and then).
        now = engine.now()
        if settings.pipeline.clock == "event" and meta.get("watermark") is not None:
            now = float(meta["watermark"])
        names = {int(k): v for k, v in engine.segment_names.items()}
        names.update({int(s["segment"]): s["name"] for s in meta.get("segments") or []
                      if s.get("name")})
        scan = _Scan(store.iter_customers(), now, settings.features.half_life_days,
                     sample, seed)
        profiles = profile_segments(scan, now, settings.features.half_life_days, names=names)
        centroids = engine.model.centroids if engine.model.ready else None
        data = _ReportData(
            profiles=sorted(profiles, key=lambda p: (-p.spend_90d, p.segment)),
            names=names,
            population=scan.population_medians(),
            spend_shares=scan.spend_shares(),
            history=list(meta.get("size_history") or []),
            sample_vectors=np.asarray([v for _, v in scan.reservoir], dtype=float),
            sample_segments=[s for s, _ in scan.reservoir],
            sampled_from=scan.seen,
            centroids=None if centroids is None else np.asarray(centroids, dtype=float),
            now=now,
            model_version=engine.model.version,
            store_uri=redact_uri(settings.store.uri),
            currency=currency,
        )
    finally:
        if owned:
            store.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_render(data), encoding="utf-8")
    return out


# -- reading ----------------------------------------------------------------------------
class _Scan:
    """Passes customers through to :func:`profile_segments`, noting on the way what
    the report needs besides profiles: every profiled customer's metrics (for the
    all-customer medians) and a uniform random sample of vectors (reservoir sampling:
    one pass, memory bounded by ``sample``, the same draw for the same seed and store).
    """

    def __init__(self, states: Iterable[CustomerState], now: float, half_life_days: float,
                 sample: int, seed: int) -> None:
        self._states = states
        self._now = now
        self._half_life = half_life_days
        self._sample = max(0, sample)
        self._rng = np.random.default_rng(seed)
        self.rows: list[list[float]] = []
        self.spend: dict[int, float] = {}  # segment -> sum of spend per 90 days
        self.reservoir: list[tuple[int, list[float]]] = []
        self.seen = 0  # customers eligible for the sample

    def __iter__(self) -> Iterator[CustomerState]:
        for state in self._states:
            if state.segment is not None and state.features.has_purchases:
                snap = state.features.snapshot(self._now, half_life_days=self._half_life)
                self.rows.append([getattr(snap, name) for name in PROFILE_FIELDS])
                self.spend[state.segment] = self.spend.get(state.segment, 0.0) + snap.spend_90d
            if state.segment is not None and state.vector is not None:
                self._offer(state.segment, state.vector)
            yield state

    def _offer(self, segment: int, vector: list[float]) -> None:
        self.seen += 1
        if len(self.reservoir) < self._sample:
            self.reservoir.append((segment, vector))
            return
        slot = int(self._rng.integers(0, self.seen))
        if slot < self._sample:
            self.reservoir[slot] = (segment, vector)

    def spend_shares(self) -> dict[int, float]:
        """Each segment's share of the customers' recent (decayed, per 90 days) spend."""
        total = sum(self.spend.values())
        return {k: v / total for k, v in self.spend.items()} if total > 0 else {}

    def population_medians(self) -> dict[str, float]:
        if not self.rows:
            return {}
        medians = np.median(np.asarray(self.rows), axis=0)
        return {name: float(v) for name, v in zip(PROFILE_FIELDS, medians, strict=True)}


@dataclass(slots=True)
class _ReportData:
    profiles: list[SegmentProfile]  # ordered for display: highest spend first
    names: dict[int, str]
    population: dict[str, float]
    spend_shares: dict[int, float]
    history: list[dict[str, Any]]
    sample_vectors: np.ndarray
    sample_segments: list[int]
    sampled_from: int
    centroids: np.ndarray | None
    now: float
    model_version: int
    store_uri: str
    currency: str
    generated: datetime = field(default_factory=lambda: datetime.now(UTC))

    def name(self, segment: int) -> str:
        return self.names.get(segment) or f"Segment {segment}"


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (user info or query string).

    >>> redact_uri("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    >>> redact_uri("rediss://cache:6380/0?password=s3cret&ssl_cert_reqs=none")
    'rediss://cache:6380/0?password=%2A%2A%2A&ssl_cert_reqs=none'
    >>> redact_uri("sqlite:////var/lib/streamseg/state.db")
    'sqlite:////var/lib/streamseg/state.db'
    """
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any("pass" in key.lower() for key, _ in query)
    if parts.password is None and not secret_query:
        return uri  # rebuilt URIs lose sqlite's empty host ("////"): leave as is
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}"
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        text += "?" + urlencode([(k, "***" if "pass" in k.lower() else v) for k, v in query])
    return text


# -- words ------------------------------------------------------------------------------
def _colour(segment: int) -> str:
    return _PALETTE[segment % len(_PALETTE)]


def _money(value: float, currency: str) -> str:
    return f"{currency}{value:,.0f}" if abs(value) >= 10 else f"{currency}{value:,.2f}"


def _duration(days: float) -> str:
    """Days in the unit a person would use: "12 days", "5 months", "1.4 years"."""
    if days < 1.5:
        return "1 day" if days >= 0.5 else "less than a day"
    if days < 60:
        return f"{days:.0f} days"
    if days < 365:
        return f"{days / 30.44:.0f} months"
    return f"{days / 365.25:.1f} years"


def _describe(profile: SegmentProfile, name: str, spend_share: float | None,
              currency: str) -> str:
    """One segment in plain words, e.g. for a briefing.

    >>> p = SegmentProfile(0, 193, 0.082, 20, 1.62, 53.8, 30.55, 502, 0.0, name="VIP")
    >>> print(_describe(p, "VIP", 0.52, "$"))  # doctest: +NORMALIZE_WHITESPACE
    VIP: 8% of customers (193), bringing 52% of recent spend. They last bought 20 days
    ago; 1.6 orders and $54 per 90 days; $31 per order; customers for 1.4 years.
    """
    parts = [f"They last bought {_duration(profile.recency_days)} ago"]
    if profile.orders_90d >= 1:
        parts.append(f"{profile.orders_90d:.1f} orders and "
                     f"{_money(profile.spend_90d, currency)} per 90 days")
    elif profile.orders_90d >= 0.05:
        parts.append(f"about one order every {_duration(90 / profile.orders_90d)} "
                     f"({_money(profile.spend_90d, currency)} per 90 days)")
    else:
        parts.append("hardly any recent orders")
    parts.append(f"{_money(profile.avg_order_value, currency)} per order")
    parts.append(f"customers for {_duration(profile.tenure_days)}")
    who = f"{name}: {profile.share:.0%} of customers ({profile.size:,})"
    if spend_share is not None:
        who += f", bringing {spend_share:.0%} of recent spend"
    return f"{who}. " + "; ".join(parts) + "."


def _axis_words(loadings: np.ndarray) -> str:
    """What moving right (or up) on a principal axis means, from its two main loadings."""
    order = np.argsort(-np.abs(loadings))[:2]
    words = []
    for index in order:
        if abs(loadings[index]) < 1e-9:
            continue
        name = VECTOR_FIELDS[index] if index < len(VECTOR_FIELDS) else f"coordinate {index}"
        if name in _DURATION_FIELDS:
            direction = "longer" if loadings[index] > 0 else "shorter"
        elif name.startswith("log_orders"):  # a count: "fewer", not "less"
            direction = "more" if loadings[index] > 0 else "fewer"
        else:
            direction = "more" if loadings[index] > 0 else "less"
        word = _VECTOR_WORDS.get(name) or name.removeprefix("log_").replace("_", " ")
        words.append(f"{direction} {word}")
    return ", ".join(words)


# -- figures (plain plotly JSON dicts) --------------------------------------------------
def _sizes_figure(data: _ReportData) -> dict[str, Any]:
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
            "line": {"color": _colour(segment), "width": 2.5},
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


def _profiles_figure(data: _ReportData) -> dict[str, Any]:
    """Small multiples: per metric, each segment's median against all customers'."""
    profiles = data.profiles
    names = [data.name(p.segment) for p in profiles]
    columns = len(_METRICS)
    gap = 0.035
    width = (1 - gap * (columns - 1)) / columns
    traces: list[dict[str, Any]] = []
    layout = _layout(max(260, 110 + 46 * len(profiles)), {"showlegend": False,
                                                          "bargap": 0.3})
    annotations: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    for column, (metric, title) in enumerate(_METRICS):
        suffix = "" if column == 0 else str(column + 1)
        start = column * (width + gap)
        values = [float(getattr(p, metric)) for p in profiles]
        money = metric in _MONEY
        traces.append({
            "type": "bar", "orientation": "h", "name": title,
            "x": values, "y": names,
            "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
            "marker": {"color": [_colour(p.segment) for p in profiles]},
            "text": [_metric_text(v, metric, data.currency) for v in values],
            # Inside at the bar's base when it fits (clear of the reference line near
            # the bar's end), else just outside.
            "textposition": "auto", "insidetextanchor": "start", "cliponaxis": False,
            "hovertemplate": "%{y}: %{text}<extra>" + title + "</extra>",
        })
        layout[f"xaxis{suffix}"] = {"domain": [start, start + width], "anchor": f"y{suffix}",
                                    "rangemode": "tozero", "showgrid": True,
                                    "tickprefix": data.currency if money else ""}
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


def _metric_text(value: float, metric: str, currency: str) -> str:
    if metric in _MONEY:
        return _money(value, currency)
    if metric.endswith("_days"):
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _projection(vectors: np.ndarray, centroids: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """2-D PCA of ``vectors`` (rows); returns points, centres, components, variance share.

    Signs are fixed (largest loading positive) so the same data always gives the same
    picture, not a mirror image.

    >>> pts, _, comps, share = _projection(np.array([[0., 0], [1, 1], [2, 3]]), None)
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


def _map_figure(data: _ReportData) -> dict[str, Any]:
    """The customer map: sample on two principal axes, one trace per segment + centres."""
    points, centres, components, share = _projection(data.sample_vectors, data.centroids)
    segments = np.asarray(data.sample_segments, dtype=int)
    traces: list[dict[str, Any]] = []
    for profile in data.profiles:
        mask = segments == profile.segment
        name = data.name(profile.segment)
        traces.append({
            "type": "scatter", "mode": "markers", "name": name,
            "x": _rounded(points[mask, 0]), "y": _rounded(points[mask, 1]),
            "marker": {"color": _colour(profile.segment), "size": 6, "opacity": 0.55,
                       "line": {"width": 0}},
            "hovertemplate": f"{html.escape(name)}<extra></extra>",
        })
    if centres is not None:
        ids = [p.segment for p in data.profiles if p.segment < len(centres)]
        traces.append({
            "type": "scatter", "mode": "markers", "name": "Segment centres",
            "x": _rounded(centres[ids, 0]), "y": _rounded(centres[ids, 1]),
            "text": [data.name(s) for s in ids],
            "marker": {"symbol": "x", "size": 16, "color": [_colour(s) for s in ids],
                       "line": {"width": 2, "color": "#111"}},
            "hovertemplate": "centre of %{text}<extra></extra>",
        })

    def title(axis: int, arrow: str) -> str:
        words = _axis_words(components[axis])
        return f"{arrow} {words} ({share[axis]:.0%} of the variation)" if words else ""

    layout = _layout(620, {
        "xaxis": {"title": {"text": title(0, "→")}, "zeroline": False},
        "yaxis": {"title": {"text": title(1, "↑")}, "zeroline": False},
        "legend": {"itemsizing": "constant"},
    })
    if centres is not None:
        layout["annotations"] = _centre_labels(data, centres, points)
    return {"data": traces, "layout": layout}


def _centre_labels(data: _ReportData, centres: np.ndarray, points: np.ndarray
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
            "bgcolor": "rgba(255,255,255,0.9)", "bordercolor": _colour(segment),
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


# -- the page ---------------------------------------------------------------------------
def _figure_block(key: str, figure: dict[str, Any]) -> str:
    """A chart's div and its JSON, drawn by the page's one loader script."""
    from plotly.utils import PlotlyJSONEncoder

    # "</" would end the <script> element early if a segment name contained it.
    payload = json.dumps(figure, cls=PlotlyJSONEncoder).replace("</", "<\\/")
    return (f'<div class="chart" id="chart-{key}"></div>\n'
            f'<script type="application/json" data-figure="{key}">{payload}</script>')


def _table(data: _ReportData) -> str:
    currency = data.currency
    head = ("<tr><th>Segment</th><th>Customers</th><th>Share</th><th>Share of recent spend"
            "</th><th>Last bought (days ago)</th><th>Orders / 90 days</th>"
            "<th>Spend / 90 days</th><th>Avg order value</th><th>Customer for (days)</th></tr>")
    rows = []
    for p in data.profiles:
        rows.append(
            f'<tr><td><span class="swatch" style="background:{_colour(p.segment)}"></span>'
            f"{html.escape(data.name(p.segment))}</td><td>{p.size:,}</td>"
            f"<td>{p.share:.1%}</td><td>{_percent(data.spend_shares.get(p.segment))}</td>"
            f"<td>{p.recency_days:,.0f}</td><td>{p.orders_90d:.2f}</td>"
            f"<td>{_money(p.spend_90d, currency)}</td>"
            f"<td>{_money(p.avg_order_value, currency)}</td><td>{p.tenure_days:,.0f}</td></tr>"
        )
    pop = data.population
    if pop:
        total = sum(p.size for p in data.profiles)
        rows.append(
            f'<tr class="all"><td>All customers (median)</td><td>{total:,}</td><td>100%</td>'
            f"<td>{'100%' if data.spend_shares else '&ndash;'}</td>"
            f"<td>{pop['recency_days']:,.0f}</td><td>{pop['orders_90d']:.2f}</td>"
            f"<td>{_money(pop['spend_90d'], currency)}</td>"
            f"<td>{_money(pop['avg_order_value'], currency)}</td>"
            f"<td>{pop['tenure_days']:,.0f}</td></tr>"
        )
    return f'<table class="segments"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _percent(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.1%}"


def _render(data: _ReportData) -> str:
    from plotly.offline import get_plotlyjs

    as_of = (datetime.fromtimestamp(data.now, tz=UTC).strftime("%d %B %Y")
             if data.now else "unknown")
    customers = sum(p.size for p in data.profiles)
    descriptions = "".join(
        f'<li><span class="swatch" style="background:{_colour(p.segment)}"></span>'
        + html.escape(_describe(p, data.name(p.segment), data.spend_shares.get(p.segment),
                                data.currency))
        + "</li>"
        for p in data.profiles
    ) or "<li>No segments yet: the model is still warming up.</li>"
    sampled = len(data.sample_segments)
    body = f"""
<header>
  <h1>Customer segments</h1>
  <p class="meta">Data as of <b>{as_of}</b> &middot; {customers:,} customers in
  {len(data.profiles)} segments &middot; model version {data.model_version}<br>
  Generated {data.generated.strftime("%Y-%m-%d %H:%M UTC")} by streamseg from
  <code>{html.escape(data.store_uri)}</code></p>
</header>
<section>
  <h2>The segments at a glance</h2>
  <ul class="descriptions">{descriptions}</ul>
  {_table(data)}
  <p class="hint">Figures are medians: half the segment's customers are above, half
  below. Orders and spend per 90 days weigh recent purchases more (half-life decay),
  so they fall while a customer is inactive.</p>
</section>
<section>
  <h2>How the segments differ</h2>
  <p class="hint">Each bar is the median customer of a segment; the dashed line is the
  median of all customers.</p>
  {_figure_block("profiles", _profiles_figure(data))}
</section>
<section>
  <h2>Segment sizes over time</h2>
  <p class="hint">Customers in each segment as the stream ran (event time). Lines carry
  today's names; hover to see what a segment was called at each point.</p>
  {_figure_block("sizes", _sizes_figure(data))}
</section>
<section>
  <h2>Map of customers</h2>
  <p class="hint">Each dot is a customer ({sampled:,} drawn at random from
  {data.sampled_from:,}); customers close together behave alike. The crosses are the
  segment centres. The axes are the two directions along which customers differ most.</p>
  {_figure_block("map", _map_figure(data))}
</section>
"""
    loader = ("const config = " + json.dumps(_PLOTLY_CONFIG) + ";\n"
              "document.querySelectorAll('script[data-figure]').forEach(function (el) {\n"
              "  const figure = JSON.parse(el.textContent);\n"
              "  Plotly.newPlot('chart-' + el.dataset.figure, figure.data, figure.layout,"
              " Object.assign({}, config, figure.config || {}));\n});")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="streamseg">
<title>Customer segments &ndash; as of {as_of}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<main>{body}</main>
<script type="text/javascript">{loader}</script>
</body>
</html>
"""


_CSS = """
body { margin: 0; background: #f5f6f8; color: #1d2330;
       font: 15px/1.5 "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 28px 40px; }
header h1 { margin: 0 0 4px; font-size: 28px; }
.meta { margin: 0; color: #555; font-size: 14px; }
.meta code { font-size: 13px; background: #e9ebef; padding: 1px 5px; border-radius: 3px; }
section { background: #fff; border-radius: 8px; padding: 14px 20px 16px; margin-top: 18px;
          box-shadow: 0 1px 3px rgba(0, 0, 0, 0.08); }
h2 { margin: 0 0 6px; font-size: 20px; }
.hint { color: #5b6270; font-size: 13.5px; margin: 4px 0 8px; }
.descriptions { list-style: none; padding: 0; margin: 6px 0 14px; }
.descriptions li { margin: 5px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px;
          margin-right: 8px; vertical-align: -1px; }
table.segments { border-collapse: collapse; width: 100%; font-size: 14px; }
table.segments th { text-align: right; font-weight: 600; color: #444;
                    border-bottom: 2px solid #d5d9e0; padding: 6px 10px; }
table.segments td { text-align: right; padding: 6px 10px; border-bottom: 1px solid #eceef2;
                    font-variant-numeric: tabular-nums; }
table.segments th:first-child, table.segments td:first-child { text-align: left; }
table.segments tr.all td { font-style: italic; color: #444; border-top: 2px solid #d5d9e0; }
.chart { width: 100%; }
"""
