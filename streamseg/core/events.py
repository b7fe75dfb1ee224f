"""Event schemas: what comes in, what goes out, and what is rejected.

* :class:`TransactionEvent` -- one customer transaction, one JSON object per line
  (or per Kafka message).
* :class:`RawRecord` -- an input payload before parsing, with where it came from.
* :class:`DeadLetter` -- a payload that could not be used, with the reason (a payload
  over 64 KiB keeps its first 64 KiB).
* :class:`SegmentChange` -- a customer's segment changed; published as a
  CloudEvents 1.0 structured JSON envelope (:meth:`SegmentChange.to_json`).

>>> event = parse_event('{"event_id": "e1", "customer_id": "c1", '
...                     '"timestamp": "2024-05-01T10:00:00", "amount": 12.5}')
>>> event.timestamp.tzinfo is not None, event.type, event.amount
(True, 'purchase', 12.5)
>>> try:
...     parse_event('{"event_id": "e2", "customer_id": "c1", "timestamp": "x", "amount": -1}')
... except InvalidEvent as error:
...     for reason in error.reason.split("; "):
...         print(reason)
timestamp: Input should be a valid datetime or date, input is too short
amount: Input should be greater than or equal to 0
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

#: Reasons a customer's segment changes; they travel in every change event.
ChangeReason = Literal["first_assignment", "behaviour", "inactivity", "model_update"]

# Payloads above this size are rejected before JSON parsing: a single huge message must
# not stall the worker or blow its memory.
MAX_PAYLOAD_BYTES = 64 * 1024


class TransactionEvent(BaseModel):
    """A customer transaction.

    Producers must key Kafka messages by ``customer_id`` so that one customer's events
    stay in one partition, in order.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    event_id: str = Field(min_length=1, max_length=256, description="Unique per event.")
    customer_id: str = Field(min_length=1, max_length=256)
    timestamp: datetime = Field(description="ISO 8601; a timestamp without a zone is UTC.")
    amount: float = Field(ge=0, le=1e12, description="Order value (or refunded value), >= 0.")
    type: Literal["purchase", "refund"] = "purchase"
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    category: str | None = Field(default=None, max_length=256)
    channel: str | None = Field(default=None, max_length=256)
    currency: str | None = Field(default=None, max_length=16)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # Naive timestamps are UTC by contract; aware ones are normalised to UTC so that
        # event times compare correctly whatever zone the producer wrote.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before datetime.min in UTC
            raise ValueError("out of the range of datetime in UTC") from None

    @cached_property
    def epoch(self) -> float:
        """Event time in seconds since the Unix epoch (computed once: it is read often)."""
        return self.timestamp.timestamp()


class InvalidEvent(ValueError):
    """A payload that is not a valid :class:`TransactionEvent`; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in item["loc"]) or "event"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def parse_event(payload: str | bytes) -> TransactionEvent:
    """Parse one JSON payload, raising :class:`InvalidEvent` with a readable reason."""
    # Text is measured in UTF-8 bytes, so that a payload gets the same verdict whether a
    # source hands it over as text (files) or as bytes (Kafka).
    size = len(payload if isinstance(payload, bytes)
               else payload.encode("utf-8", "surrogatepass"))
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidEvent(f"payload too large: {size} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return TransactionEvent.model_validate_json(payload)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise InvalidEvent("malformed JSON: " + error.errors()[0]["msg"]) from None
        if any(item["type"] == "model_type" for item in error.errors()):
            raise InvalidEvent("event must be a JSON object") from None
        raise InvalidEvent(_describe(error)) from None


def validate_event(fields: dict[str, Any]) -> TransactionEvent:
    """Validate an already-decoded mapping (e.g. a CSV row)."""
    try:
        return TransactionEvent.model_validate(fields)
    except ValidationError as error:
        raise InvalidEvent(_describe(error)) from None


@dataclass(slots=True)
class RawRecord:
    """An input payload as read from a source, before parsing.

    ``origin`` names where it came from for humans (``file.jsonl:12``,
    ``kafka:events/0@1234``); ``stream`` and ``offset`` locate it, so that the engine
    can tell a redelivered record from a new one. ``event`` is set when the source
    already decoded the record (CSV).
    """

    payload: str | bytes
    origin: str
    stream: str = ""  # position key, e.g. "file:/abs/path" or "kafka:topic:3"; "" = none
    offset: int = 0  # position within the stream; increases by record
    produced_at: float | None = None  # broker timestamp, seconds, for latency metrics
    event: TransactionEvent | None = None
    error: str | None = None  # set when the source itself could not decode the record
    #: The partition that owns the record's customer (see streamseg.store.base): the
    #: stream itself for Kafka, "local" for a source one worker reads whole.
    partition: str = "local"


@dataclass(slots=True)
class DeadLetter:
    """A rejected payload with its reason and where it came from."""

    payload: str
    reason: str
    origin: str
    rejected_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    #: Size of the original payload in bytes when ``payload`` holds only its beginning.
    truncated_from: int | None = None
    #: When the payload is withheld (it may hold a clear customer id, see
    #: :func:`streamseg.core.privacy.scrub_payload`): its keyed digest and its size in
    #: bytes; ``payload`` is then empty.
    withheld: tuple[str, int] | None = None

    @classmethod
    def from_record(cls, record: RawRecord, reason: str) -> DeadLetter:
        """A dead letter for ``record``; the payload as UTF-8 text, at most 64 KiB of it.

        A payload over :data:`MAX_PAYLOAD_BYTES` (rejected unread as too large) keeps
        only its first 64 KiB: the whole of it might not fit in a dead-letter message
        (Kafka's default limit is 1 MB), and a letter that cannot be published would
        stop the stream. Undecodable bytes (and lone surrogates) become U+FFFD.
        """
        payload = record.payload
        data = payload if isinstance(payload, bytes) else payload.encode("utf-8",
                                                                          "surrogatepass")
        truncated_from = len(data) if len(data) > MAX_PAYLOAD_BYTES else None
        text = data[:MAX_PAYLOAD_BYTES].decode("utf-8", errors="replace")
        return cls(payload=text, reason=reason, origin=record.origin,
                   truncated_from=truncated_from)

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "reason": self.reason,
            "origin": self.origin,
            "rejected_at": self.rejected_at,
            "payload": self.payload if self.withheld is None else None,
        }
        if self.truncated_from is not None:
            document["payload_truncated_from_bytes"] = self.truncated_from
        if self.withheld is not None:
            digest, size = self.withheld
            document["payload_withheld"] = {"hmac_sha256": digest, "bytes": size}
        return json.dumps(document, ensure_ascii=False)


#: CloudEvents ``type`` of a segment change.
CHANGE_EVENT_TYPE: Final = "io.streamseg.segment.changed"
# A fixed namespace so that the same change always gets the same CloudEvents id: a
# consumer can de-duplicate changes that are re-published after a crash.
_CHANGE_ID_NAMESPACE = uuid.UUID("6f1a3c1e-7f61-4d5e-9a55-3c9a0f1e2b7d")


class SegmentChangeData(BaseModel):
    """The ``data`` of a segment-change CloudEvent."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    from_segment: int | None = Field(description="Previous segment id; null on first assignment.")
    from_name: str | None
    to_segment: int
    to_name: str | None
    reason: ChangeReason
    event_time: datetime = Field(description="Event time (the service clock) of the change.")
    model_version: int


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 envelope (structured JSON) of the change stream's events; each
    type fixes ``type`` and ``data``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="Derived from what changed: a redelivered change has the same id.")
    source: str
    type: str
    time: datetime
    subject: str = Field(description="The customer id.")
    datacontenttype: Literal["application/json"] = "application/json"

    @staticmethod
    def id_of(key: str) -> str:
        """The event id of a change described by ``key`` (a UUID 5: the same change, the
        same id, so consumers can drop a redelivered one)."""
        return str(uuid.uuid5(_CHANGE_ID_NAMESPACE, key))

    def to_json(self) -> str:
        return self.model_dump_json()


class SegmentChange(CloudEvent):
    """A segment-change event in the CloudEvents 1.0 structured JSON format."""

    type: Literal["io.streamseg.segment.changed"] = CHANGE_EVENT_TYPE
    data: SegmentChangeData

    @classmethod
    def create(cls, data: SegmentChangeData, source: str = "streamseg") -> SegmentChange:
        key = (
            f"{data.customer_id}|{data.from_segment}|{data.to_segment}|"
            f"{data.event_time.isoformat()}|{data.model_version}"
        )
        return cls(id=cls.id_of(key), source=source, time=data.event_time,
                   subject=data.customer_id, data=data)


#: CloudEvents ``type`` of a risk-band change (see streamseg.traits.bands).
RISK_EVENT_TYPE: Final = "io.streamseg.risk.changed"


class RiskBandChangeData(BaseModel):
    """The ``data`` of a risk-band-change CloudEvent: the customer's predicted purchase
    probability crossed into another band (``traits.risk_bands``)."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    from_band: str = Field(description="The band the customer was in.")
    to_band: str = Field(description="The band the customer is in now.")
    purchase_probability: float = Field(
        description="Probability of a purchase within the next horizon_days, now.")
    expected_spend: float = Field(description="Expected spend within the horizon, now.")
    horizon_days: float
    event_time: datetime = Field(description="Event time (the service clock) of the change.")


class RiskBandChange(CloudEvent):
    """A risk-band-change event in the CloudEvents 1.0 structured JSON format, on the
    change stream next to segment changes (same key, same delivery guarantees)."""

    type: Literal["io.streamseg.risk.changed"] = RISK_EVENT_TYPE
    data: RiskBandChangeData

    @classmethod
    def create(cls, data: RiskBandChangeData, source: str = "streamseg") -> RiskBandChange:
        key = (f"risk|{data.customer_id}|{data.from_band}|{data.to_band}|"
               f"{data.event_time.isoformat()}")
        return cls(id=cls.id_of(key), source=source, time=data.event_time,
                   subject=data.customer_id, data=data)


#: What the change stream carries.
ChangeEvent = SegmentChange | RiskBandChange


def parse_change(text: str) -> ChangeEvent:
    """A change event of either type from its JSON (an outbox item)."""
    if f'"type":"{RISK_EVENT_TYPE}"' in text:
        return RiskBandChange.model_validate_json(text)
    return SegmentChange.model_validate_json(text)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of :class:`TransactionEvent` (``streamseg schema``)."""
    return TransactionEvent.model_json_schema()


def change_json_schema() -> dict[str, Any]:
    """JSON Schema of what the change stream carries (``streamseg schema --changes``):
    a :class:`SegmentChange` or a :class:`RiskBandChange`, told apart by ``type``.

    >>> schema = change_json_schema()
    >>> sorted(schema["discriminator"]["mapping"])
    ['io.streamseg.risk.changed', 'io.streamseg.segment.changed']
    """
    return _CHANGE_ADAPTER.json_schema()


_CHANGE_ADAPTER: TypeAdapter[ChangeEvent] = TypeAdapter(
    Annotated[ChangeEvent, Field(discriminator="type")])
