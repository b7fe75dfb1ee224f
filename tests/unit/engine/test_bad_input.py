"""Fuzzing the input boundary without servers: ``parse_event`` and ``SegmentationEngine``.

Whatever arrives -- text, bytes, any JSON value, event-shaped objects with hostile
fields -- ``parse_event`` either returns a :class:`TransactionEvent` or raises
:class:`InvalidEvent` with a non-empty reason, and the engine never raises: every record
of a batch is applied, rejected or skipped as a duplicate, exactly once.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamseg.config import load_settings
from streamseg.core.events import (
    MAX_PAYLOAD_BYTES,
    DeadLetter,
    InvalidEvent,
    RawRecord,
    TransactionEvent,
    parse_event,
)
from streamseg.engine import MIN_EVENT_TIME, SegmentationEngine
from streamseg.store import MemoryStore

# -- strategies ----------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
ODD = st.sampled_from([
    "\u200b", "\u200d", "\ufeff",  # zero-width space / joiner, BOM
    "\u202e", "\u200f", "\u05d0",  # RTL override, RTL mark, Hebrew alef
    "\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # emoji, ZWJ family
    "\x00", "\x1f", "\x7f", "\n", "\\", '"', "\u2028",
])
# Any code point, lone surrogates included (st.text() alone never makes those).
ANY_TEXT = st.lists(st.one_of(st.characters(codec=None), ODD, SURROGATES), max_size=40).map(
    "".join)
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)

NOW = datetime.now(UTC)
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda t: t.isoformat()),
    st.sampled_from([
        "0001-01-01T00:00:00+01:00",  # year 1 in a zone east of UTC: below datetime.min
        "9999-12-31T23:59:59-01:00",  # year 9999 west of UTC: above datetime.max
        "0001-01-01", "9999-12-31T23:59:59", "1970-01-01T00:00:00Z", "yesterday", "",
    ]),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just((NOW + timedelta(days=30)).isoformat()),
)
AMOUNTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(),
    st.sampled_from([0, 1e12, 1e308, -0.0, 10**400, "12.5", "ten", True, None]),
)
FIELD_TEXT = st.one_of(ANY_TEXT, st.integers(), st.none(), st.just(""), st.just("x" * 300))


@st.composite
def event_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Event-shaped objects whose fields are each drawn from good and bad values."""
    fields: dict[str, Any] = {
        "event_id": draw(FIELD_TEXT),
        "customer_id": draw(FIELD_TEXT),
        "timestamp": draw(TIMESTAMPS),
        "amount": draw(AMOUNTS),
        "type": draw(st.sampled_from(["purchase", "refund", "gift", "", None, 1])),
        "quantity": draw(st.one_of(st.integers(), st.floats(), st.none(), ANY_TEXT)),
        "category": draw(FIELD_TEXT),
    }
    dropped = draw(st.sets(st.sampled_from(sorted(fields)), max_size=3))
    return {name: value for name, value in fields.items() if name not in dropped}


def _dumps(value: Any) -> str:
    # allow_nan: NaN / Infinity / -Infinity come out as the (non-standard) JSON tokens;
    # ensure_ascii=False keeps lone surrogates as characters, True writes them as \\udXXX.
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


@st.composite
def mutated_event(draw: st.DrawFn) -> str:
    """A valid event's JSON with a few characters inserted, deleted or replaced."""
    text = json.dumps({"event_id": "e1", "customer_id": "c1",
                       "timestamp": "2024-05-01T10:00:00", "amount": 12.5})
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        insert = draw(st.one_of(ODD, SURROGATES, st.sampled_from(list('{}[]",:0-eE\\'))))
        cut = draw(st.integers(0, 2))
        text = text[:at] + insert + text[at + cut:]
    return text


PAYLOADS: st.SearchStrategy[str | bytes] = st.one_of(
    ANY_TEXT,
    st.binary(max_size=200),
    JSON_VALUES.map(_dumps),
    JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)),  # surrogates as \\udXXX escapes
    event_objects().map(_dumps),
    event_objects().map(lambda v: json.dumps(v, allow_nan=True)),
    event_objects().map(lambda v: _dumps(v).encode("utf-8", "surrogatepass")),  # CESU-ish
    mutated_event(),
    st.integers(0, 3).map(lambda n: "[" * (10_000 * n) + "]" * (10_000 * n)),
    st.sampled_from(["x" * (MAX_PAYLOAD_BYTES + 1), "\U0001f600" * (MAX_PAYLOAD_BYTES // 4 + 1),
                     b"\xff" * (MAX_PAYLOAD_BYTES + 1)]),
)


def _check(payload: str | bytes) -> TransactionEvent | None:
    """The parse contract: an event, or InvalidEvent with a usable reason; None if invalid."""
    try:
        event = parse_event(payload)
    except InvalidEvent as error:
        assert isinstance(error.reason, str) and error.reason.strip()
        error.reason.encode("utf-8")  # travels in a Kafka header and a JSON document
        return None
    assert isinstance(event, TransactionEvent)
    # What the engine and the stores rely on for an accepted event.
    event.event_id.encode("utf-8")
    event.customer_id.encode("utf-8")
    assert event.timestamp.utcoffset() == timedelta(0)
    assert math.isfinite(event.epoch) and math.isfinite(event.amount)
    assert 0 <= event.amount <= 1e12
    return event


# -- parse_event -----------------------------------------------------------------------------

@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS)
def test_parse_event_returns_an_event_or_invalid_event(payload: str | bytes) -> None:
    _check(payload)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS)
def test_text_and_its_utf8_bytes_are_judged_alike(payload: str | bytes) -> None:
    """A file source hands over text, Kafka hands over bytes: same payload, same verdict."""
    if isinstance(payload, bytes):
        return
    try:
        encoded = payload.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates: there are no such bytes
    assert _check(payload) == _check(encoded)


@pytest.mark.parametrize("timestamp", [
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+00:45", "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:00:00-23:59",
])
def test_timestamps_beyond_datetime_range_in_utc_are_invalid(timestamp: str) -> None:
    with pytest.raises(InvalidEvent, match="timestamp"):
        parse_event(json.dumps({"event_id": "e", "customer_id": "c", "timestamp": timestamp,
                                "amount": 1}))


def test_payload_limit_counts_utf8_bytes_for_text_too() -> None:
    # 16,385 emoji: 16,385 characters but 65,540 bytes, over the 64 KiB limit.
    text = '"' + "\U0001f600" * (MAX_PAYLOAD_BYTES // 4 + 1) + '"'
    for payload in (text, text.encode()):
        with pytest.raises(InvalidEvent, match="payload too large"):
            parse_event(payload)


# -- dead letters ------------------------------------------------------------------------------

# What a dead letter may take at most, whatever the payload: 64 KiB of control characters,
# each escaped to 6 bytes in JSON, plus the reason and the rest. The default Kafka message
# limit is 1 MB; the letter of an oversized payload must still fit it.
MAX_LETTER_BYTES = 6 * MAX_PAYLOAD_BYTES + 4096


def _check_letter(payload: str | bytes) -> None:
    letter = DeadLetter.from_record(RawRecord(payload, "fuzz"), "some reason")
    value = letter.to_json().encode("utf-8")  # what the Kafka sink sends: must encode
    assert len(value) <= MAX_LETTER_BYTES
    document = json.loads(value)
    data = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    if len(data) > MAX_PAYLOAD_BYTES:
        assert document["payload_truncated_from_bytes"] == len(data)
        assert data[:MAX_PAYLOAD_BYTES].decode("utf-8", "replace") == document["payload"]
    else:
        assert "payload_truncated_from_bytes" not in document
        assert document["payload"] == data.decode("utf-8", "replace")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS)
def test_dead_letters_are_utf8_and_bounded(payload: str | bytes) -> None:
    _check_letter(payload)


@pytest.mark.parametrize("payload", [
    "\x00" * 1_000_000, b"\xff" * 1_000_000, "\ud800" * 100_000, "\U0001f600" * 300_000,
    "x" * MAX_PAYLOAD_BYTES, "x" * (MAX_PAYLOAD_BYTES + 1),
])
def test_dead_letters_of_huge_payloads_fit_a_kafka_message(payload: str | bytes) -> None:
    _check_letter(payload)


# -- the engine --------------------------------------------------------------------------------

VALID_TIMES = st.datetimes(
    min_value=datetime.fromtimestamp(MIN_EVENT_TIME + 86_400, UTC).replace(tzinfo=None),
    max_value=(NOW + timedelta(days=6)).replace(tzinfo=None),
    timezones=st.just(UTC),
)


@st.composite
def valid_events(draw: st.DrawFn, ids: st.SearchStrategy[str]) -> str:
    return _dumps({
        "event_id": draw(ids),
        "customer_id": draw(st.sampled_from(["c1", "c2", "\x00c", "\u202ec", "\U0001f600"])),
        "timestamp": draw(VALID_TIMES).isoformat(),
        "amount": draw(st.one_of(st.floats(0, 1e12), st.sampled_from([0, 1e12]))),
        "type": draw(st.sampled_from(["purchase", "purchase", "refund"])),
    })


@st.composite
def raw_records(draw: st.DrawFn) -> RawRecord:
    payload = draw(st.one_of(PAYLOADS, valid_events(st.sampled_from(["a", "b", "c", "d"]))))
    stream = draw(st.sampled_from(["", "kafka:t:0", "kafka:t:1"]))
    return RawRecord(
        payload=payload, origin="fuzz", stream=stream,
        offset=draw(st.integers(0, 20)),  # repeats: redeliveries of an applied offset
        error=draw(st.none() | st.just("source could not decode the record")),
    )


def _engine() -> SegmentationEngine:
    configured = load_settings(overrides={
        "store": {"uri": "memory://"},
        "model": {"n_clusters": 2, "warmup": 3, "refine_every": 5, "n_init": 2},
    })
    store = MemoryStore()
    engine = SegmentationEngine(configured, store)
    engine.own(store.take_partition("local"))
    return engine


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.lists(raw_records(), max_size=40), min_size=1, max_size=4))
def test_engine_accounts_for_every_record_and_never_raises(
    batches: list[list[RawRecord]],
) -> None:
    engine = _engine()
    for records in batches:
        outcome = engine.process(records)
        assert outcome.applied + len(outcome.rejected) + outcome.duplicates == len(records)
        assert all(letter.reason for letter in outcome.rejected)
        for letter in outcome.rejected:
            assert len(letter.to_json().encode("utf-8")) <= MAX_LETTER_BYTES
    engine.finish()
