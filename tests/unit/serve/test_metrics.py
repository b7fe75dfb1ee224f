"""Metrics: bounded labels, a batch counted once, health endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest

from streamseg.core.events import DeadLetter, SegmentChange, SegmentChangeData
from streamseg.engine import BatchOutcome
from streamseg.serve.metrics import Metrics, MetricsServer, reason_category


@pytest.mark.parametrize(("reason", "category"), [
    ("payload too large: 70000 bytes > 65536", "too_large"),
    ("event must be a JSON object", "not_an_object"),
    ("timestamp out of range: 1900-01-01", "timestamp_out_of_range"),
    ("CSV row has 2 fields, header has 3", "csv"),
    ("customer_id: Field required", "invalid_field"),
])
def test_reasons_fall_into_a_few_categories(reason: str, category: str) -> None:
    assert reason_category(reason) == category


def test_a_batch_is_counted_by_outcome() -> None:
    metrics = Metrics()
    change = SegmentChange.create(SegmentChangeData(
        customer_id="c", from_segment=None, from_name=None, to_segment=1, to_name=None,
        reason="first_assignment", event_time="2024-01-01T00:00:00Z", model_version=1))
    metrics.count_batch(BatchOutcome(changes=[change], applied=3, duplicates=1,
                                     rejected=[DeadLetter("x", "malformed JSON: x", "t")]))
    text = generate_latest(metrics.registry).decode()
    assert "streamseg_events_processed_total 3.0" in text
    assert "streamseg_events_duplicate_total 1.0" in text
    assert 'streamseg_events_rejected_total{reason="malformed_json"} 1.0' in text
    assert ('streamseg_segment_changes_total{from_segment="none",reason="first_assignment",'
            'to_segment="1"} 1.0') in text


def test_readyz_answers_503_while_not_ready() -> None:
    server = MetricsServer(Metrics(), lambda: False, host="127.0.0.1", port=0)
    try:
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz")
        assert error.value.code == 503
        assert urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz").status == 200
    finally:
        server.close()
