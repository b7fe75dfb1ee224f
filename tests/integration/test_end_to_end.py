"""The whole service on real Kafka and Redis: events in, segments in Redis, changes and
dead letters out, and a restart that carries on exactly where the last run stopped."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from streamseg.config import load_settings
from streamseg.store.redis import RedisStore, SegmentReader
from streamseg_bench.simulate import simulate_stream

from ._app import AppThread

pytestmark = pytest.mark.integration

DEADLINE_S = 90.0

MALFORMED = [
    "this is not json",
    "",
    "[1, 2, 3]",
    '{"event_id": "m1", "customer_id": "x"',
    '{"event_id": "m2", "customer_id": "x", "timestamp": "2024-01-01", "amount": -5}',
    '{"event_id": "m3", "customer_id": "x", "timestamp": "yesterday", "amount": 5}',
    '{"customer_id": "x", "timestamp": "2024-01-01", "amount": 5}',
    '{"event_id": "m4", "customer_id": "x", "timestamp": "1900-01-01", "amount": 5}',
    '{"event_id": "m5", "customer_id": "", "timestamp": "2024-01-01", "amount": 5}',
    '{"event_id": "m6", "customer_id": "x", "timestamp": "2024-01-01", "amount": 5, '
    '"type": "gift"}',
]




def _wait_until(condition: Callable[[], bool], run: AppThread, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        if not run.alive():
            run.stop()  # raises the application's error
            pytest.fail(f"the application stopped before {what}")
        time.sleep(0.2)
    run.stop()
    pytest.fail(f"timed out waiting for {what}")


def _scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(port: int) -> dict[str, list[Any]]:
    families = text_string_to_metric_families(_scrape(port)[1])
    return {family.name: family.samples for family in families}


def _check_metrics(run: AppThread, processed: int, rejected: int, customers: int) -> None:
    """What ops see while the service runs: counters, gauges, health."""
    server = run.app.metrics_server
    assert server is not None
    port = server.port
    assert _scrape(port, "/healthz")[0] == 200
    assert _scrape(port, "/readyz")[0] == 200

    def settled() -> bool:
        metrics = _samples(port)
        sizes = sum(s.value for s in metrics["streamseg_segment_size_customers"])
        lag = metrics["streamseg_consumer_lag_records"]
        return sizes == customers and bool(lag) and sum(s.value for s in lag) == 0

    _wait_until(settled, run, "the gauges caught up")  # gauges refresh every few seconds
    metrics = _samples(port)

    def total(name: str) -> float:
        return sum(s.value for s in metrics[name] if s.name.endswith("_total"))

    assert total("streamseg_events_processed") == processed
    assert total("streamseg_events_rejected") == rejected
    assert {s.labels["reason"] for s in metrics["streamseg_events_rejected"]
            if s.name.endswith("_total")} >= {"malformed_json", "invalid_field"}
    assert total("streamseg_events_consumed") == processed + rejected
    changes = [s for s in metrics["streamseg_segment_changes"] if s.name.endswith("_total")]
    assert sum(s.value for s in changes if s.labels["reason"] == "first_assignment") == customers
    assert {s.labels["partition"] for s in metrics["streamseg_consumer_lag_records"]} == {
        "0", "1", "2", "3"}
    latency = [s for s in metrics["streamseg_end_to_end_latency_seconds"]
               if s.name.endswith("_count")]
    assert latency[0].value == processed + rejected
    assert [s.value for s in metrics["streamseg_ready"]] == [1.0]


def _read_all(servers: str, topic: str) -> list[Any]:
    """Every message of a topic, in offset order per partition."""
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                             group_id=None, enable_auto_commit=False)
    messages: list[Any] = []
    quiet_until = time.monotonic() + 3.0
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < min(quiet_until, deadline):
        batches = consumer.poll(timeout_ms=200)
        for batch in batches.values():
            messages += batch
            quiet_until = time.monotonic() + 1.5
    consumer.close()
    return messages


def _send(producer: Any, topic: str, events: list[dict[str, Any]]) -> None:
    for event in events:
        producer.send(topic, key=event["customer_id"].encode(), value=json.dumps(event).encode())
    producer.flush()


def test_kafka_to_redis_end_to_end_and_exact_resume(
    kafka_servers: str, redis_url: str, redis_prefix: str,
    new_topic: Callable[..., str], producer: Any,
) -> None:
    events_topic, changes_topic, dlq_topic = new_topic("events"), new_topic("chg"), new_topic("dlq")
    events, _ = simulate_stream(customers=110, seed=11)
    customers = {event["customer_id"] for event in events}
    assert len(events) >= 1800

    # Valid events keyed by customer, with the malformed payloads spread among them.
    step = len(events) // len(MALFORMED)
    for index, event in enumerate(events):
        producer.send(events_topic, key=event["customer_id"].encode(),
                      value=json.dumps(event).encode())
        if index % step == 0 and index // step < len(MALFORMED):
            producer.send(events_topic, key=f"bad-{index}".encode(),
                          value=MALFORMED[index // step].encode())
    producer.flush()
    produced = len(events) + len(MALFORMED)

    settings = load_settings(overrides={
        "source": {"uri": f"kafka://{kafka_servers}/{events_topic}", "batch_size": 250,
                   "poll_timeout_s": 0.2},
        "kafka": {"bootstrap_servers": kafka_servers, "group_id": f"it-{uuid.uuid4().hex[:8]}"},
        "store": {"uri": redis_url, "redis_prefix": redis_prefix},
        "sinks": {"changes": f"kafka://{kafka_servers}/{changes_topic}",
                  "dead_letter": f"kafka://{kafka_servers}/{dlq_topic}"},
        "model": {"warmup": 50, "n_clusters": 3},
        "metrics": {"enabled": True, "port": 0},  # an ephemeral port on loopback
    })
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)

    def consumed(total: int) -> Callable[[], bool]:
        return lambda: sum(store.positions().values()) >= total

    # -- first run: everything ---------------------------------------------------------
    run = AppThread(settings)
    _wait_until(consumed(produced), run, f"all {produced} records were processed")
    _check_metrics(run, processed=len(events), rejected=len(MALFORMED), customers=len(customers))
    first = run.stop()
    assert first.processed == len(events) and first.rejected == len(MALFORMED)
    assert first.duplicates == 0

    states = {state.customer_id: state for state in store.iter_customers()}
    assert set(states) == customers and store.count() == len(customers)
    assert all(state.segment in range(3) for state in states.values())
    reader = SegmentReader(redis_url, prefix=redis_prefix)
    sizes: dict[int, int] = {}
    for state in states.values():
        assert state.segment is not None
        sizes[state.segment] = sizes.get(state.segment, 0) + 1
    assert reader.sizes() == store.segment_sizes() == sizes
    some = next(iter(states.values()))
    assert reader.segment_of(some.customer_id)["segment"] == some.segment  # type: ignore[index]

    # every malformed payload is in the dead-letter topic, with its reason
    letters = _read_all(kafka_servers, dlq_topic)
    assert len(letters) == len(MALFORMED)
    assert sorted(json.loads(m.value)["payload"] for m in letters) == sorted(MALFORMED)
    for message in letters:
        headers = dict(message.headers)
        assert headers["reason"] and headers["reason"].decode() == json.loads(message.value)[
            "reason"][:1024]
        assert headers["origin"].decode().startswith(f"kafka:{events_topic}/")

    # the last change of every customer names the segment stored in Redis
    last_change: dict[str, dict[str, Any]] = {}
    for message in _read_all(kafka_servers, changes_topic):  # one customer, one partition
        change = json.loads(message.value)
        assert message.key.decode() == change["subject"] == change["data"]["customer_id"]
        if change["type"] == "io.streamseg.segment.changed":  # not a risk band's change
            last_change[change["subject"]] = change["data"]
    assert set(last_change) == customers
    assert {cid: data["to_segment"] for cid, data in last_change.items()} == {
        cid: state.segment for cid, state in states.items()}

    # -- second run: same topic, group and store; only the new events ------------------
    later = datetime(2025, 1, 2, tzinfo=UTC)
    ordered = sorted(customers)
    extra = [
        {"event_id": f"extra-{i}", "customer_id": ordered[i % len(ordered)],
         "timestamp": (later + timedelta(hours=i)).isoformat(), "amount": 10.0 + i,
         "type": "purchase"}
        for i in range(100)
    ]
    run = AppThread(settings)
    _send(producer, events_topic, extra)
    _wait_until(consumed(produced + len(extra)), run, "the 100 new events were processed")
    second = run.stop()
    assert (second.processed, second.rejected, second.duplicates) == (100, 0, 0)

    purchases = sum(1 for event in events + extra if event.get("type", "purchase") == "purchase")
    assert sum(state.features.orders for state in store.iter_customers()) == purchases
    assert store.count() == len(customers)
    reader.close()
    store.close()
