"""The report's HTML page: the words, the table, the charts and the page around them.

:func:`write_report` reads the store (:mod:`streamseg.report.scan`) and writes one
self-contained file: plotly.js is embedded, and each chart's figure is stored as JSON
in a ``<script type="application/json" data-figure="...">`` drawn by one loader script.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamseg.config import Settings
from streamseg.report.figures import map_figure, profiles_figure, sizes_figure
from streamseg.report.quality import quality_figure, quality_text
from streamseg.report.scan import ReportData, read_report_data
from streamseg.report.words import colour, describe, money
from streamseg.store import ReadOnlyStore, Store, open_reader

if TYPE_CHECKING:
    from streamseg.read.view import ReadView

__all__ = ["render_page", "write_report"]

_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def write_report(
    settings: Settings,
    out: Path,
    sample: int = 2000,
    seed: int = 0,
    *,
    store: Store | None = None,
    view: ReadView | None = None,
    currency: str = "$",
) -> Path:
    """Write the HTML report of the store ``settings`` names (or ``store``, or the
    read-only ``view`` of one) to ``out``; nothing is written to the store.

    ``sample`` customers (at most) are drawn at random with ``seed`` for the map; the
    table and charts use every customer. A ``store`` or ``view`` passed in is left open.

    >>> import tempfile
    >>> from streamseg.config import load_settings
    >>> from streamseg.store import MemoryStore
    >>> folder = Path(tempfile.mkdtemp())
    >>> page = write_report(load_settings(), folder / "report.html", store=MemoryStore())
    >>> page.name, "No segments yet" in page.read_text()
    ('report.html', True)
    """
    from streamseg.read.view import ReadView

    owned = view is None and store is None
    if view is None:
        reader = open_reader(settings.store) if store is None else ReadOnlyStore(store)
        try:
            view = ReadView(settings, reader)
        except BaseException:
            if owned:
                reader.close()
            raise
    try:
        data = read_report_data(settings, view, sample, seed, currency)
    finally:
        if owned:
            view.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(data), encoding="utf-8")
    return out


def figure_block(key: str, figure: dict[str, Any]) -> str:
    """A chart's div and its JSON, drawn by the page's one loader script."""
    from plotly.utils import PlotlyJSONEncoder

    # "</" would end the <script> element early if a segment name contained it.
    payload = json.dumps(figure, cls=PlotlyJSONEncoder).replace("</", "<\\/")
    return (f'<div class="chart" id="chart-{key}"></div>\n'
            f'<script type="application/json" data-figure="{key}">{payload}</script>')


def segment_table(data: ReportData) -> str:
    """Every segment's size, shares and medians, then all customers' medians."""
    currency = data.currency
    head = ("<tr><th>Segment</th><th>Customers</th><th>Share</th><th>Share of recent spend"
            "</th><th>Last bought (days ago)</th><th>Orders / 90 days</th>"
            "<th>Spend / 90 days</th><th>Avg order value</th><th>Customer for (days)</th>"
            "<th>Likely to buy</th><th>Expected spend</th></tr>")
    rows = []
    for p in data.profiles:
        rows.append(
            f'<tr><td><span class="swatch" style="background:{colour(p.segment)}"></span>'
            f"{html.escape(data.name(p.segment))}</td><td>{p.size:,}</td>"
            f"<td>{p.share:.1%}</td><td>{_percent(data.spend_shares.get(p.segment))}</td>"
            f"<td>{p.recency_days:,.0f}</td><td>{p.orders_90d:.2f}</td>"
            f"<td>{money(p.spend_90d, currency)}</td>"
            f"<td>{money(p.avg_order_value, currency)}</td><td>{p.tenure_days:,.0f}</td>"
            + (f"<td>{p.traits['purchase_probability']:.0%} in {p.traits['horizon_days']:g} d"
               f"</td><td>{money(p.traits['expected_spend'], currency)} in "
               f"{p.traits['horizon_days']:g} d</td></tr>"
               if p.traits else "<td>&ndash;</td><td>&ndash;</td></tr>")
        )
    pop = data.population
    if pop:
        total = sum(p.size for p in data.profiles)
        rows.append(
            f'<tr class="all"><td>All customers (median)</td><td>{total:,}</td><td>100%</td>'
            f"<td>{'100%' if data.spend_shares else '&ndash;'}</td>"
            f"<td>{pop['recency_days']:,.0f}</td><td>{pop['orders_90d']:.2f}</td>"
            f"<td>{money(pop['spend_90d'], currency)}</td>"
            f"<td>{money(pop['avg_order_value'], currency)}</td>"
            f"<td>{pop['tenure_days']:,.0f}</td><td>&ndash;</td><td>&ndash;</td></tr>"
        )
    return f'<table class="segments"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _percent(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.1%}"


def render_page(data: ReportData) -> str:
    """The whole HTML document."""
    from plotly.offline import get_plotlyjs

    as_of = (datetime.fromtimestamp(data.now, tz=UTC).strftime("%d %B %Y")
             if data.now else "unknown")
    customers = sum(p.size for p in data.profiles)
    descriptions = "".join(
        f'<li><span class="swatch" style="background:{colour(p.segment)}"></span>'
        + html.escape(describe(p, data.name(p.segment), data.spend_shares.get(p.segment),
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
  {segment_table(data)}
  <p class="hint">Figures are medians: half the segment's customers are above, half
  below. Orders and spend per 90 days weigh recent purchases more (half-life decay),
  so they fall while a customer is inactive.</p>
</section>
<section>
  <h2>How the segments differ</h2>
  <p class="hint">Each bar is the median customer of a segment; the dashed line is the
  median of all customers.</p>
  {figure_block("profiles", profiles_figure(data))}
</section>
<section>
  <h2>Segment sizes over time</h2>
  <p class="hint">Customers in each segment as the stream ran (event time). Lines carry
  today's names; hover to see what a segment was called at each point.</p>
  {figure_block("sizes", sizes_figure(data))}
</section>
<section>
  <h2>Map of customers</h2>
  <p class="hint">Each dot is a customer ({sampled:,} drawn at random from
  {data.sampled_from:,}); customers close together behave alike. The crosses are the
  segment centres. The axes are the two directions along which customers differ most.</p>
  {figure_block("map", map_figure(data))}
</section>
<section>
  <h2>How good are the segments</h2>
  {quality_text(data)}
  <p class="hint">Silhouette runs from -1 to 1: near 1, customers sit much closer to their
  own segment than to the next one. The curve fits batch k-means++ for each number of
  segments on the same customers; inertia always falls as k grows, the silhouette does
  not. <code>streamseg evaluate --k 2..10</code> prints the same figures.</p>
  {figure_block("quality", quality_figure(data))}
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
