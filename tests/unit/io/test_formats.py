"""How a segment change and a dead letter become the record a sink writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from streamseg.core.events import (
    CHANGE_EVENT_TYPE,
    DeadLetter,
    SegmentChange,
    SegmentChangeData,
)
from streamseg.io.formats import MAX_REASON_HEADER_BYTES, change_record, dead_letter_record


def _change(customer: str = "c-1") -> SegmentChange:
    return SegmentChange.create(SegmentChangeData(
        customer_id=customer, from_segment=1, from_name="Loyal", to_segment=2,
        to_name="Lapsed", reason="inactivity", event_time=datetime(2024, 5, 1, tzinfo=UTC),
        model_version=7,
    ))


def test_a_change_is_its_cloudevent_keyed_by_customer() -> None:
    change = _change("kunde-ü")
    record = change_record(change)
    assert record.text == change.to_json()
    assert json.loads(record.text)["subject"] == "kunde-ü"
    assert record.key == "kunde-ü".encode()
    # Structured mode: content-type alone. A ``ce_*`` header would say binary mode
    # (CloudEvents Kafka protocol binding, 3.2), so there is none.
    assert record.headers == [("content-type", b"application/cloudevents+json")]


def test_the_cloudevents_sdk_auto_detects_a_change_as_structured() -> None:
    """The SDK's mode-detecting reader, as a consumer that does not know the mode uses
    it, gets the event back whole (it reads any ``ce_*`` header as binary mode)."""
    from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event
    from cloudevents.core.v1.event import CloudEvent

    change = _change("kunde-ü")
    record = change_record(change)
    event = from_kafka_event(KafkaMessage(headers=dict(record.headers), key=record.key,
                                          value=record.text.encode("utf-8")))
    assert isinstance(event, CloudEvent)
    assert (event.get_id(), event.get_source(), event.get_type(), event.get_subject()) == (
        change.id, "streamseg", CHANGE_EVENT_TYPE, "kunde-ü")
    assert event.get_extension("partitionkey") == "kunde-ü"  # the Kafka key
    assert event.get_data() == json.loads(change.to_json())["data"]


def test_a_dead_letter_is_unkeyed_with_reason_and_origin_headers() -> None:
    letter = DeadLetter(payload="{oops", reason="malformed JSON", origin="kafka:t/0@5",
                        rejected_at="2024-05-01T00:00:00+00:00", truncated_from=70_000)
    record = dead_letter_record(letter)
    assert record.text == letter.to_json()
    assert json.loads(record.text)["payload_truncated_from_bytes"] == 70_000
    assert record.key is None
    assert record.headers == [("reason", b"malformed JSON"), ("origin", b"kafka:t/0@5")]


def test_a_long_reason_header_is_cut_on_a_character_boundary() -> None:
    reason = "é" * 600  # 1,200 bytes in UTF-8
    record = dead_letter_record(DeadLetter(payload="", reason=reason, origin="o"))
    header = dict(record.headers)["reason"]
    assert len(header) <= MAX_REASON_HEADER_BYTES
    assert header.decode("utf-8") == "é" * (MAX_REASON_HEADER_BYTES // 2)
    assert json.loads(record.text)["reason"] == reason  # the value keeps it all


def test_a_reason_of_exactly_the_limit_is_kept_whole() -> None:
    reason = "r" * MAX_REASON_HEADER_BYTES
    record = dead_letter_record(DeadLetter(payload="", reason=reason, origin="o"))
    assert dict(record.headers)["reason"] == reason.encode()
    longer = dead_letter_record(DeadLetter(payload="", reason=reason + "s", origin="o"))
    assert dict(longer.headers)["reason"] == reason.encode()
