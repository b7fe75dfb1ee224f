"""The report's HTML: the table, the embedded figures and the page around them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streamseg.config import load_settings
from streamseg.report import page
from streamseg.report.page import figure_block, render_page, segment_table, write_report
from streamseg.store import MemoryStore, ReadOnlyStore

from ._data import profile, report_data


def test_figure_block_cannot_end_its_script_early() -> None:
    block = figure_block("map", {"data": [{"name": "</script><b>x"}], "layout": {}})
    assert block.count("</script>") == 1
    payload = re.search(r'data-figure="map">(.*)</script>', block, re.S)
    assert payload is not None
    assert json.loads(payload.group(1))["data"][0]["name"] == "</script><b>x"
    assert block.startswith('<div class="chart" id="chart-map"></div>')


def test_segment_table_escapes_names_and_marks_unknown_shares() -> None:
    data = report_data(profiles=[profile(0), profile(1)], names={0: "<Top> & co"},
                       spend_shares={0: 0.75})
    table = segment_table(data)
    assert "&lt;Top&gt; &amp; co" in table and "<Top>" not in table
    assert "<td>75.0%</td>" in table
    assert "<td>&ndash;</td>" in table  # segment 1's share of spend is unknown
    assert "All customers (median)" not in table  # no population medians: no such row


def test_segment_table_ends_with_all_customers() -> None:
    data = report_data(profiles=[profile(0), profile(1)], spend_shares={},
                       population={"recency_days": 12.0, "orders_90d": 1.5, "spend_90d": 8.0,
                                   "avg_order_value": 30.0, "tenure_days": 1200.0})
    row = segment_table(data).rsplit('<tr class="all">', 1)[1]
    assert row.startswith("<td>All customers (median)</td><td>20</td><td>100%</td>")
    assert "<td>&ndash;</td><td>12</td><td>1.50</td><td>$8.00</td><td>$30</td>" in row
    assert "<td>1,200</td>" in row


def test_page_of_no_segments() -> None:
    text = render_page(report_data(store_uri="redis://app:***@cache/0 <x>"))
    assert "<title>Customer segments &ndash; as of unknown</title>" in text
    assert "No segments yet: the model is still warming up." in text
    assert "<code>redis://app:***@cache/0 &lt;x&gt;</code>" in text
    assert text.rstrip().endswith("</html>")


class _Recording(MemoryStore):
    closed = 0

    def close(self) -> None:
        self.closed += 1


def test_write_report_creates_the_folder_and_closes_only_its_own_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned = _Recording()
    monkeypatch.setattr(page, "open_reader", lambda settings: ReadOnlyStore(owned))
    out = write_report(load_settings(), tmp_path / "a" / "b" / "report.html")
    assert out == tmp_path / "a" / "b" / "report.html"
    assert "No segments yet" in out.read_text(encoding="utf-8")
    assert owned.closed == 1
    given = _Recording()
    write_report(load_settings(), tmp_path / "again.html", store=given)
    assert given.closed == 0
