"""Bad input at volume, through the whole service on the real Kafka broker and Redis.

Hypothesis draws ten thousand payload *drafts*; each draft knows by construction what the
service must do with it (apply a purchase, apply a refund, skip a duplicate, or reject it
with a reason), so the expectation never comes from the code under test. The payloads go
to a fresh topic, an :class:`~streamseg.app.Application` consumes them into Redis
with dead letters on ``<topic>.dlq``, and then every record is accounted for: each
rejected one in the dead-letter topic (by its origin, with its reason in the value and
in a header), each valid one in its customer's state in Redis, each duplicate once.

Payloads over the engine's 64 KiB limit are rejected unread ("payload too large"). The
input topic here accepts messages up to 4 MiB and the producer sends them, so five of
the oversized payloads really are 1 MiB messages on the wire; their dead letters keep
the first 64 KiB of the payload and its original size (a dead letter must fit the
dead-letter topic's default 1 MB limit).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

from streamseg.app import Application, RunSummary
from streamseg.config import Settings, load_settings
from streamseg.core.events import MAX_PAYLOAD_BYTES
from streamseg.io.kafka_client import broker_errors
from streamseg.io.kafka_sink import KafkaSink
from streamseg.store.redis import RedisStore

from ._app import AppThread

pytestmark = pytest.mark.integration

N_PAYLOADS = 10_000
MEGABYTE_PAYLOADS = 5  # of the oversized payloads, this many are 1 MiB messages
TOPIC_MAX_BYTES = 4 * 1024 * 1024
DEADLINE_S = 60.0
NOW = datetime.now(UTC)

# -- customers ------------------------------------------------------------------------------

_DECOR = ["", "\u200b", "\u200d", "\ufeff", "\u202e", "\u200f", "\u05d0\u05d1", "\U0001f600",
          "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\x00", "\x01", "e\u0301", "\\", '"',
          " ", "\t", "\n", "\u2028", "\uffff", "\U0010ffff", "\u0000\u0000"]
# Ids that start with NUL or another control byte, hold RTL overrides, zero-width
# characters, emoji, quotes, and one of the maximum length (256 characters).
POOL = [f"{_DECOR[n % len(_DECOR)]}cust-{n}{_DECOR[(n * 7) % len(_DECOR)]}" for n in range(299)]
POOL.append("L" * 256)


# -- drafts ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One payload to produce and what must become of it."""

    value: bytes
    key: bytes | None
    outcome: str  # "purchase" | "refund" | "duplicate" | "reject"
    customer: str | None = None  # of a valid event
    reason: str | None = None  # text the dead letter's reason must contain ("" = any)
    too_large: bool = False


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_PAST = st.datetimes(min_value=datetime(1970, 1, 3, 1), max_value=datetime(2025, 6, 1))
VALID_TIMESTAMPS = st.one_of(
    _PAST.map(datetime.isoformat),  # naive = UTC
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), _PAST, _OFFSETS),
    _PAST.map(lambda d: d.isoformat() + "Z"),
    st.dates(min_value=date(1970, 1, 3), max_value=date(2024, 12, 31)).map(date.isoformat),
    st.integers(3 * 86_400, 1_740_000_000),  # epoch seconds
    st.integers(10**12, 1_740_000_000_000),  # epoch milliseconds (pydantic: > 2e10)
    st.integers(1, 5 * 24).map(lambda h: (NOW + timedelta(hours=h)).isoformat()),  # < 7 days
)
# Each is either unparseable or outside [1970-01-02, now + 7 days]: the reason names it.
INVALID_TIMESTAMPS = st.one_of(
    st.sampled_from([
        "0001-01-01T00:00:00", "0001-01-01T00:00:00+01:00", "0001-01-01",
        "9999-12-31T23:59:59", "9999-12-31T23:59:59-01:00", "9999-12-31",
        "1969-12-31T23:59:59Z", "1970-01-01T23:59:59", "yesterday", "", "2024-02-30",
        "2024-13-01T00:00:00", "24:00", 0, 86_399, -1, -(10**9), True, None,
    ]),
    st.datetimes(max_value=datetime(1970, 1, 1, 23, 59)).map(datetime.isoformat),
    # 30 days to ~7000 years ahead (bounds relative to NOW are kept out of the drawing,
    # so that the same drafts come out on every run)
    st.integers(30 * 86_400, 220_000_000_000).map(
        lambda s: _naive(NOW + timedelta(seconds=s)).isoformat()),
    st.integers(30, 2_900_000).map(lambda d: int((NOW + timedelta(days=d)).timestamp())
                                   if d < 100_000 else (NOW + timedelta(days=d)).isoformat()),
)
AMOUNTS = st.one_of(st.floats(0, 1e12), st.integers(0, 10**12),
                    st.sampled_from([0, 0.0, 1e12, "12.5", "0"]))
FREE_TEXT = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(_DECOR)

# field -> values the schema refuses (lax mode accepts True for a number and "2" for an
# int, so those are not here).
WRONG_VALUES: dict[str, list[Any]] = {
    "event_id": [1, 1.5, None, [], {}, True, "", "e" * 257],
    "customer_id": [7, None, [], {"a": 1}, False, "", "c" * 257],
    "amount": ["ten", [], {}, None, "", -0.01, -1e308, 1e12 + 1, "1,5"],
    "type": ["gift", "", 1, None, "Purchase", "REFUND"],
    "quantity": [0, -1, 1.5, "many", 10**7, [], {}],
    "category": [1, [], {}, "x" * 257],
    "currency": ["EURO-DOLLAR-YEN-X", 5],
}
# JSON literals written into the text as they are (NaN and Infinity are not JSON, but
# common; 10**400 does not fit a float).
NON_FINITE = ["NaN", "Infinity", "-Infinity"]
HUGE = ["1e308", "-1e308", "1e309", str(10**400), "-" + str(10**400), "1" + "0" * 5000]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
            b"\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"]
SURROGATE_ESCAPES = ["\\ud800", "\\udfff", "\\udc00x", "\\ud800\\u0041", "\\ud83d"]


@st.composite
def valid_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Everything of a valid event but its id, customer and type."""
    fields: dict[str, Any] = {"timestamp": draw(VALID_TIMESTAMPS), "amount": draw(AMOUNTS)}
    if draw(st.booleans()):
        fields["quantity"] = draw(st.integers(1, 1_000_000))
    if draw(st.booleans()):
        fields["category"] = draw(FREE_TEXT)
    if draw(st.booleans()):
        fields["channel"] = draw(FREE_TEXT)
    if draw(st.booleans()):
        fields["currency"] = draw(st.sampled_from(["EUR", "USD", "\u20ac", ""]))
    if draw(st.integers(0, 9)) == 0:  # unknown fields are ignored, whatever they hold
        fields["note"] = draw(st.sampled_from([float("nan"), float("inf"), [1, {"x": None}],
                                               "\U0001f600" * 10]))
    return fields


_LAYOUT = st.sampled_from(["compact", "ascii", "indent"])


def _text(document: dict[str, Any], layout: str) -> str:
    if layout == "indent":
        return json.dumps(document, indent=2, ensure_ascii=False)
    return json.dumps(document, ensure_ascii=layout == "ascii",
                      separators=(",", ":") if layout == "compact" else None)


_VALID_EVENT = st.tuples(st.integers(0, len(POOL) - 1), valid_fields(), _LAYOUT,
                         st.integers(0, 24))
# kind of draft -> (weight, what the draft holds besides its kind)
KINDS: dict[str, tuple[int, st.SearchStrategy[Any]]] = {
    # valid events, the most common
    "purchase": (40, _VALID_EVENT),
    "refund": (5, _VALID_EVENT),
    "ghost_refund": (3, _VALID_EVENT),  # a refund for a customer never seen before
    # the same payload twice in a row: valid -> applied once; invalid -> rejected twice
    "twice": (4, st.tuples(st.integers(0, len(POOL) - 1), valid_fields(),
                           st.sampled_from(["purchase", "refund", "invalid"]))),
    # rejects
    "truncated": (4, st.tuples(valid_fields(), st.floats(0.01, 0.99))),
    "garbage": (3, st.tuples(st.text(max_size=40))),
    "garbage_bytes": (3, st.tuples(st.binary(max_size=40))),
    "not_object": (3, st.tuples(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3), max_leaves=5))),
    "missing": (4, st.tuples(valid_fields(),
                             st.sampled_from(["event_id", "customer_id", "timestamp", "amount"]))),
    "wrong": (6, st.tuples(valid_fields(), st.sampled_from(sorted(WRONG_VALUES)).flatmap(
        lambda f: st.tuples(st.just(f), st.sampled_from(WRONG_VALUES[f]))))),
    "literal": (4, st.tuples(valid_fields(), st.sampled_from(["amount", "quantity", "timestamp"]),
                             st.sampled_from(NON_FINITE + HUGE))),
    "bad_timestamp": (6, st.tuples(valid_fields(), INVALID_TIMESTAMPS)),
    "bad_utf8": (3, st.tuples(valid_fields(), st.sampled_from(BAD_UTF8))),
    "surrogate": (3, st.tuples(valid_fields(), st.sampled_from(SURROGATE_ESCAPES),
                               st.sampled_from(["event_id", "customer_id"]))),
    "bom": (1, st.tuples(valid_fields())),
    "too_large": (1, st.tuples(valid_fields(), st.integers(MAX_PAYLOAD_BYTES + 1, 100_000))),
}
DRAFTS = st.sampled_from([kind for kind, (weight, _) in KINDS.items() for _ in range(weight)]
                         ).flatmap(lambda kind: KINDS[kind][1].map(lambda rest: (kind, *rest)))
# Drafts are drawn in runs of DRAFTS_PER_EXAMPLE: far fewer examples, far faster.
DRAFTS_PER_EXAMPLE = 1


def _draw_drafts(count: int) -> list[Any]:
    """``count`` drafts, the same on every run (derandomized, no example database)."""
    drafts: list[Any] = []

    @settings(max_examples=count // DRAFTS_PER_EXAMPLE + 50, derandomize=True, database=None,
              deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(DRAFTS, min_size=DRAFTS_PER_EXAMPLE, max_size=DRAFTS_PER_EXAMPLE))
    def collect(run: list[Any]) -> None:
        drafts.extend(run)

    collect()
    return drafts


class _Builder:
    """Turns drafts into payloads with unique event ids, and counts the large ones."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.sequence = 0
        self.megabytes = 0

    def event(self, fields: dict[str, Any], customer: str, kind: str = "purchase",
              decor: int = 0) -> dict[str, Any]:
        self.sequence += 1
        event_id = f"{_DECOR[decor % len(_DECOR)]}ev-{self.sequence}"
        document = {"event_id": event_id, "customer_id": customer, **fields}
        if kind == "refund" or self.sequence % 3:  # "purchase" is the default type
            document["type"] = kind
        return document

    def add(self, value: bytes, key: str | None, outcome: str, customer: str | None = None,
            reason: str | None = None, too_large: bool = False) -> None:
        self.items.append(Item(value, None if key is None else key.encode(), outcome,
                               customer, reason, too_large))

    def build(self, draft: Any) -> None:
        kind = draft[0]
        if kind in ("purchase", "refund", "ghost_refund"):
            _, who, fields, layout, decor = draft
            customer = POOL[who] if kind != "ghost_refund" else f"ghost-{self.sequence}"
            event_kind = "purchase" if kind == "purchase" else "refund"
            document = self.event(fields, customer, event_kind, decor)
            self.add(_text(document, layout).encode(), customer, event_kind, customer)
        elif kind == "truncated":
            text = json.dumps(self.event(draft[1], "cust-t"))
            cut = max(1, min(len(text) - 1, int(len(text) * draft[2])))
            self.add(text[:cut].encode(), "cust-t", "reject", reason="malformed JSON")
        elif kind == "garbage":  # 40 characters cannot hold a valid event: some reason
            self.add(draft[1].encode("utf-8", "surrogatepass"), None, "reject", reason="")
        elif kind == "garbage_bytes":
            self.add(draft[1], None, "reject", reason="")
        elif kind == "not_object":
            self.add(json.dumps(draft[1]).encode(), None, "reject",
                     reason="event must be a JSON object")
        elif kind == "missing":
            document = self.event(draft[1], "cust-m")
            del document[draft[2]]
            self.add(json.dumps(document).encode(), document.get("customer_id"), "reject",
                     reason=f"{draft[2]}: Field required")
        elif kind == "wrong":
            field, value = draft[2]
            document = {**self.event(draft[1], "cust-w"), field: value}
            self.add(json.dumps(document).encode(), None, "reject", reason=f"{field}:")
        elif kind == "literal":
            _, fields, field, literal = draft
            text = json.dumps({**self.event(fields, "cust-l"), field: "@LITERAL@"})
            # jiter refuses integers of over 4300 digits (Python's int limit) as JSON
            reason = "number out of range" if len(literal) > 4300 else field
            self.add(text.replace('"@LITERAL@"', literal).encode(), "cust-l", "reject",
                     reason=reason)
        elif kind == "bad_timestamp":
            document = {**self.event(draft[1], "cust-ts"), "timestamp": draft[2]}
            self.add(json.dumps(document).encode(), "cust-ts", "reject", reason="timestamp")
        elif kind == "bad_utf8":
            text = json.dumps(self.event(draft[1], "cust-@BYTES@-u"))
            self.add(text.encode().replace(b"@BYTES@", draft[2]), None, "reject",
                     reason="malformed JSON")
        elif kind == "surrogate":
            _, fields, escape, field = draft
            document = self.event(fields, "cust-s")
            document[field] = "@ESCAPE@"
            text = json.dumps(document).replace("@ESCAPE@", escape)
            self.add(text.encode(), None, "reject", reason="malformed JSON")
        elif kind == "bom":
            text = json.dumps(self.event(draft[1], "cust-b"))
            self.add(b"\xef\xbb\xbf" + text.encode(), "cust-b", "reject", reason="malformed JSON")
        elif kind == "too_large":
            size = draft[2]
            if self.megabytes < MEGABYTE_PAYLOADS:
                self.megabytes += 1
                size = 1024 * 1024
            document = {**self.event(draft[1], "cust-big"), "category": "x" * size}
            self.add(json.dumps(document).encode(), "cust-big", "reject",
                     reason="payload too large", too_large=True)
        elif kind == "twice":
            _, who, fields, what = draft
            if what == "invalid":
                document = {**self.event(fields, POOL[who]), "amount": -1}
                for _ in range(2):
                    self.add(json.dumps(document).encode(), POOL[who], "reject",
                             reason="amount:")
            else:
                value = json.dumps(self.event(fields, POOL[who], what)).encode()
                self.add(value, POOL[who], what, POOL[who])
                self.add(value, POOL[who], "duplicate", POOL[who])
        else:  # pragma: no cover
            raise AssertionError(kind)


def generate(count: int) -> list[Item]:
    builder = _Builder()
    for draft in _draw_drafts(count):
        builder.build(draft)
        if len(builder.items) >= count:
            break
    assert len(builder.items) >= count, "hypothesis drew too few drafts"
    return builder.items


# -- running the service --------------------------------------------------------------------



def _end_offsets(servers: str, topic: str) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return {f"kafka:{tp.topic}:{tp.partition}": offset for tp, offset in ends.items()
            if offset > 0}


def _consume_all(run: AppThread, store: RedisStore, ends: dict[str, int]) -> RunSummary:
    """Wait until the stored positions reach the topic's end offsets, then stop."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and run.alive():
        positions = store.positions()
        if all(positions.get(key, 0) >= end for key, end in ends.items()):
            break
        time.sleep(0.2)
    summary = run.stop()  # raises whatever ended the application early
    positions = store.positions()
    assert {key: positions.get(key, 0) for key in ends} == ends, "not all records consumed"
    return summary


def _read_topic(servers: str, topic: str, expected: int) -> list[Any]:
    """The topic's records: ``expected`` of them, and any extra that follows within 1 s."""
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                             group_id=None, enable_auto_commit=False,
                             fetch_max_bytes=64 * 1024 * 1024)
    messages: list[Any] = []
    deadline = time.monotonic() + DEADLINE_S
    quiet_until = float("inf")
    while time.monotonic() < min(deadline, quiet_until):
        for batch in consumer.poll(timeout_ms=200).values():
            messages += batch
        if len(messages) >= expected and quiet_until == float("inf"):
            quiet_until = time.monotonic() + 1.0
    consumer.close()
    return messages


def _rejected_total(app: Application) -> float:
    return sum(sample.value for metric in app.metrics.registry.collect()
               if metric.name == "streamseg_events_rejected"
               for sample in metric.samples if sample.name.endswith("_total"))


def _counter(app: Application, name: str) -> float:
    value = app.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


@pytest.fixture
def dlq_of(kafka_admin: Any) -> Iterator[Callable[[str], str]]:
    """Creates ``<topic>.dlq`` (the default dead-letter topic) and deletes it afterwards."""
    created: list[str] = []

    def make(topic: str) -> str:
        name = f"{topic}.dlq"
        kafka_admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}},
                                  wait_for_metadata=True)
        created.append(name)
        return name

    yield make
    if created:
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics(created)


def _settings(servers: str, topic: str, changes: str, redis_url: str, prefix: str,
              **source: Any) -> Settings:
    return load_settings(overrides={
        "source": {"uri": f"kafka://{servers}/{topic}", "batch_size": 500,
                   "poll_timeout_s": 0.2, **source},
        "kafka": {"bootstrap_servers": servers, "group_id": f"it-bad-{uuid.uuid4().hex[:8]}"},
        "store": {"uri": redis_url, "redis_prefix": prefix, "redis_buckets": 64},
        "sinks": {"changes": f"kafka://{servers}/{changes}"},
        "model": {"warmup": 100, "n_clusters": 4},
    })


# -- the tests ------------------------------------------------------------------------------

def test_ten_thousand_bad_and_good_payloads_are_each_accounted_for(
    kafka_servers: str, redis_url: str, redis_prefix: str,
    new_topic: Callable[..., str], dlq_of: Callable[[str], str],
) -> None:
    items = generate(N_PAYLOADS)
    outcomes = Counter(item.outcome for item in items)
    assert outcomes["reject"] >= 2000 and outcomes["duplicate"] >= 100
    assert outcomes["purchase"] >= 3000 and outcomes["refund"] >= 300
    assert sum(len(item.value) > 1024 * 1024 for item in items) == MEGABYTE_PAYLOADS

    topic = new_topic("bad", configs={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    changes_topic, dlq_topic = new_topic("bad-chg"), dlq_of(topic)

    producer = KafkaProducer(bootstrap_servers=kafka_servers, acks="all", linger_ms=20,
                             max_request_size=TOPIC_MAX_BYTES)
    futures = [producer.send(topic, key=item.key, value=item.value) for item in items]
    producer.flush()
    by_origin: dict[str, Item] = {}
    for item, future in zip(items, futures, strict=True):
        meta = future.get(timeout=30)
        by_origin[f"kafka:{meta.topic}/{meta.partition}@{meta.offset}"] = item
    producer.close()
    assert len(by_origin) == len(items)

    settings = _settings(kafka_servers, topic, changes_topic, redis_url, redis_prefix)
    assert settings.resolved_dead_letter() == f"kafka://{kafka_servers}/{dlq_topic}"
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    started = time.monotonic()
    run = AppThread(settings)
    summary = _consume_all(run, store, _end_offsets(kafka_servers, topic))
    elapsed = time.monotonic() - started

    # No crash: the loop never failed a batch (a failure would have been retried quietly).
    app = run.app
    assert _counter(app, "streamseg_broker_errors_total") == 0
    assert _counter(app, "streamseg_store_errors_total") == 0

    rejected = [origin for origin, item in by_origin.items() if item.outcome == "reject"]
    applied = outcomes["purchase"] + outcomes["refund"]
    assert (summary.processed, summary.rejected, summary.duplicates) == (
        applied, len(rejected), outcomes["duplicate"])
    assert _rejected_total(app) == len(rejected)
    assert _counter(app, "streamseg_events_duplicate_total") == outcomes["duplicate"]

    # Every rejected payload is in the dead-letter topic, once, with its reason.
    letters = _read_topic(kafka_servers, dlq_topic, len(rejected))
    assert len(letters) == len(rejected)
    seen: set[str] = set()
    for message in letters:
        letter = json.loads(message.value)
        origin = letter["origin"]
        assert origin not in seen and origin in by_origin, origin
        seen.add(origin)
        item = by_origin[origin]
        assert item.outcome == "reject", (origin, letter["reason"])
        assert item.reason is not None and item.reason in letter["reason"], (
            item.value[:200], letter["reason"])
        assert letter["reason"].strip()
        headers = dict(message.headers)
        assert headers["origin"].decode() == origin
        assert headers["reason"] and letter["reason"].encode().startswith(headers["reason"])
        original = item.value.decode("utf-8", errors="replace")
        if item.too_large:
            assert letter["payload_truncated_from_bytes"] == len(item.value)
            assert len(letter["payload"].encode()) <= MAX_PAYLOAD_BYTES
            assert original.startswith(letter["payload"].removesuffix("\ufffd"))
        else:
            assert letter["payload"] == original
            assert "payload_truncated_from_bytes" not in letter
    assert seen == set(rejected)

    # Every valid event is applied to its customer, a duplicate only once.
    orders: Counter[str] = Counter()
    refunds: Counter[str] = Counter()
    for item in items:
        if item.outcome == "purchase":
            orders[item.customer or ""] += 1
        elif item.outcome == "refund":
            refunds[item.customer or ""] += 1
    states = {state.customer_id: state for state in store.iter_customers()}
    assert set(states) == set(orders) | set(refunds)
    assert store.count() == len(states)
    assert sum(state.features.orders for state in states.values()) == sum(orders.values())
    assert {cid: s.features.orders for cid, s in states.items() if s.features.orders} == orders
    assert {cid: s.features.refunds for cid, s in states.items() if s.features.refunds} == refunds
    for cid, state in states.items():
        if not orders[cid]:  # refunds only (e.g. for an unknown customer): no segment
            assert state.segment is None and state.vector is None, cid
        else:
            assert state.segment is not None, cid

    # Segment changes only ever name customers who bought something.
    changes = _read_topic(kafka_servers, changes_topic,
                          summary.changes + summary.risk_changes)
    assert len(changes) == summary.changes + summary.risk_changes
    assert sum(json.loads(m.value)["type"] == "io.streamseg.segment.changed"
               for m in changes) == summary.changes > 0
    assert {json.loads(m.value)["subject"] for m in changes} <= set(orders)
    store.close()

    print(f"\n{len(items)} payloads: {outcomes['purchase']} purchases, "
          f"{outcomes['refund']} refunds, {outcomes['duplicate']} duplicates, "
          f"{len(rejected)} rejected ({MEGABYTE_PAYLOADS} of 1 MiB); "
          f"{len(states)} customers; consumed in {elapsed:.1f}s")


def test_a_failed_dead_letter_publish_loses_nothing(
    kafka_servers: str, redis_url: str, redis_prefix: str,
    new_topic: Callable[..., str], dlq_of: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first batch's dead letters fail to go out: the batch is read again, in full.

    Nothing is stored yet when the first batch fails, so the source must rewind to the
    first offset it handed out -- not carry on from where its consumer had got to.
    """
    items = generate(300)
    rejected = sum(item.outcome == "reject" for item in items)
    topic = new_topic("bad-once", partitions=1,
                      configs={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    changes_topic, dlq_topic = new_topic("bad-once-chg"), dlq_of(topic)
    producer = KafkaProducer(bootstrap_servers=kafka_servers, acks="all",
                             max_request_size=TOPIC_MAX_BYTES)
    for item in items:
        producer.send(topic, key=item.key, value=item.value)
    producer.flush()
    producer.close()

    publish = KafkaSink.publish
    failures: list[int] = []

    def publish_failing_once(self: KafkaSink[Any], letters: Any) -> None:
        if self.topic == dlq_topic and letters and not failures:
            failures.append(len(letters))
            # As kafka-python fails a send, inside the sink, which makes it a BrokerError.
            with broker_errors("injected"):
                raise KafkaTimeoutError("injected: the dead-letter topic is unreachable")
        publish(self, letters)

    monkeypatch.setattr(KafkaSink, "publish", publish_failing_once)
    settings = _settings(kafka_servers, topic, changes_topic, redis_url, redis_prefix,
                         batch_size=1000)
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    run = AppThread(settings)
    summary = _consume_all(run, store, _end_offsets(kafka_servers, topic))
    assert failures and _counter(run.app, "streamseg_broker_errors_total") == 1
    assert summary.rejected == rejected
    letters = _read_topic(kafka_servers, dlq_topic, rejected)
    assert len(letters) == rejected
    purchases = sum(item.outcome == "purchase" for item in items)
    assert sum(state.features.orders for state in store.iter_customers()) == purchases
    store.close()
