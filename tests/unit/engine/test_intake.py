"""The input boundary: events or dead letters, pseudonymised ids, the time range."""

from __future__ import annotations

import json

from streamseg.core.events import RawRecord
from streamseg.core.privacy import pseudonymise
from streamseg.engine.intake import MAX_FUTURE_SECONDS, Intake

NOW = 1_700_000_000.0


def _record(customer: str = "bob", at: float = NOW) -> RawRecord:
    return RawRecord(json.dumps({"event_id": "1", "customer_id": customer, "amount": 1.0,
                                 "timestamp": at}), "t:1")


def test_events_beyond_the_future_horizon_are_rejected() -> None:
    events, rejected = Intake(None).parse(
        [_record(at=NOW + MAX_FUTURE_SECONDS + 1), _record(at=NOW)], now=NOW, wall=0.0)
    assert len(events) == 1
    assert rejected[0].reason.startswith("timestamp out of range")


def test_a_key_hashes_the_customer_id_of_events_and_dead_letters() -> None:
    key = b"k"
    events, _ = Intake(key).parse([_record("bob")], now=NOW, wall=NOW)
    assert events[0][0].customer_id == pseudonymise("bob", key)
    letter = Intake(key).reject(_record("bob"), "some reason")
    assert "bob" not in letter.payload and pseudonymise("bob", key) in letter.payload


def test_a_record_the_source_could_not_decode_is_rejected_with_its_reason() -> None:
    record = RawRecord("a,b", "f.csv:2", error="CSV row has 2 fields, header has 4")
    _, rejected = Intake(None).parse([record], now=NOW, wall=NOW)
    assert rejected[0].reason == "CSV row has 2 fields, header has 4"
