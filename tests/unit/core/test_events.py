"""The event schema and its error messages."""

from __future__ import annotations

import json
from datetime import UTC

import pytest

from streamseg.core.events import (
    MAX_PAYLOAD_BYTES,
    InvalidEvent,
    SegmentChange,
    SegmentChangeData,
    change_json_schema,
    parse_event,
)

GOOD = {"event_id": "e1", "customer_id": "c1", "timestamp": "2024-01-01T00:00:00", "amount": 3}


def test_naive_timestamp_is_utc_and_zones_are_normalised() -> None:
    assert parse_event(json.dumps(GOOD)).timestamp.tzinfo == UTC
    event = parse_event(json.dumps({**GOOD, "timestamp": "2024-01-01T02:00:00+02:00"}))
    assert event.timestamp.hour == 0 and event.timestamp.tzinfo == UTC


def test_optional_fields_and_unknown_fields() -> None:
    event = parse_event(json.dumps({**GOOD, "type": "refund", "quantity": 2, "whatever": [1]}))
    assert event.type == "refund" and event.quantity == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "event must be a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "amount"}), "amount: Field required"),
        (json.dumps({**GOOD, "amount": -1}), "amount: Input should be greater than or equal to 0"),
        (json.dumps({**GOOD, "amount": "ten"}), "amount: Input should be a valid number"),
        ('{"event_id":"e","customer_id":"c","timestamp":"2024-01-01","amount":NaN}', "amount"),
        (json.dumps({**GOOD, "timestamp": "yesterday"}), "timestamp: Input should be a valid"),
        (json.dumps({**GOOD, "type": "gift"}), "type: Input should be 'purchase' or 'refund'"),
        (json.dumps({**GOOD, "customer_id": ""}), "customer_id: String should have at least"),
        (json.dumps({**GOOD, "quantity": 0}), "quantity: Input should be greater than or equal"),
        ("x" * (MAX_PAYLOAD_BYTES + 1), "payload too large"),
    ],
)
def test_invalid_payloads_have_clear_reasons(payload: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(payload)
    assert reason in caught.value.reason


def test_change_event_is_a_cloudevent_with_stable_id() -> None:
    from datetime import datetime

    import jsonschema

    data = SegmentChangeData(
        customer_id="c1", from_segment=None, from_name=None, to_segment=2, to_name="VIP",
        reason="first_assignment", event_time=datetime(2024, 1, 1, tzinfo=UTC), model_version=1,
    )
    a, b = SegmentChange.create(data), SegmentChange.create(data)
    assert a.id == b.id
    document = json.loads(a.to_json())
    assert document["specversion"] == "1.0" and document["subject"] == "c1"
    jsonschema.validate(document, change_json_schema())


def test_the_change_schema_takes_both_types_the_stream_carries_and_nothing_else() -> None:
    from datetime import datetime

    import jsonschema

    from streamseg.core.events import RiskBandChange, RiskBandChangeData

    risk = RiskBandChange.create(RiskBandChangeData(
        customer_id="c1", from_band="active", to_band="at_risk", purchase_probability=0.12,
        expected_spend=4.0, horizon_days=90.0, event_time=datetime(2024, 1, 1, tzinfo=UTC)))
    document = json.loads(risk.to_json())
    jsonschema.validate(document, change_json_schema())
    # a risk change's data under the segment-change type is neither
    wrong = {**document, "type": "io.streamseg.segment.changed"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, change_json_schema())
