"""End-to-end benchmark on real Kafka and Redis (``streamseg bench kafka``).

In one run, on the same machine and the same topic:

a. the *ceiling*: a bare kafka-python consumer reads the topic and decodes the JSON,
   nothing else;
b. the *service*: the full pipeline (parse, features, model, Redis write, change events
   to Kafka, offset commits) on the same topic.

It prints events/s of both and the ratio b/a (timings on a shared machine vary; the
ratio within one run is the comparable figure), then the latency from produce to
Redis write at a fixed offered rate, and the Redis memory per customer of the run.
It also measures (c) the *I/O floor* on the same topic: the service's consumer,
schema, Redis transaction and change sends with none of its per-event work between
them (:func:`io_floor`), to show how much of the gap to the ceiling is I/O.

Events carry the current time as their timestamp, as live traffic does: replaying a
year of history in a minute would add inactivity re-scoring work that live traffic
spreads over the year.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from streamseg.app import Application
from streamseg.config import load_settings


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def _events(count: int, customers: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: customers with lognormal order values, ids shuffled."""
    rng = np.random.default_rng(seed)
    who = rng.integers(customers, size=count)
    amounts = np.round(rng.lognormal(3.5, 0.8, size=count), 2)
    now = time.time()
    pairs = []
    for i in range(count):
        customer = f"c{int(who[i]):07d}"
        stamp = now + i * 1e-4  # increasing, within seconds of now
        value = json.dumps({
            "event_id": f"e{i}", "customer_id": customer, "amount": float(amounts[i]),
            "timestamp": stamp,
        }).encode()
        pairs.append((customer.encode(), value))
    return pairs


def _create_topics(servers: str, names: list[str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        admin.close()


def _produce(servers: str, topic: str, pairs: list[tuple[bytes, bytes]],
             rate: float | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=servers, linger_ms=5, acks=1,
                             batch_size=256 * 1024)
    started = time.perf_counter()
    for index, (key, value) in enumerate(pairs):
        if rate is not None:
            # Paced: each event leaves at its slot, so the service sees a steady load.
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            value = _stamp(value)
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _stamp(value: bytes) -> bytes:
    # Latency is measured from the broker's CreateTime (set by the producer at send);
    # the event time is refreshed too so that paced events look live.
    event = json.loads(value)
    event["timestamp"] = time.time()
    return json.dumps(event).encode()


def ceiling(servers: str, topic: str, count: int) -> float:
    """Events/s of a bare consumer that only decodes the JSON."""
    consumer = KafkaConsumer(topic, bootstrap_servers=servers,
                             group_id=f"ceiling-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", enable_auto_commit=False)
    seen = 0
    started = time.perf_counter()
    deadline = started + 600
    while seen < count and time.perf_counter() < deadline:
        for records in consumer.poll(timeout_ms=500, max_records=2000).values():
            for record in records:
                json.loads(record.value)
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def io_floor(servers: str, topic: str, count: int, redis_url: str, prefix: str,
             changes_topic: str, change_rate: float) -> float:
    """Events/s of the service's I/O alone: no features, no model, no codec.

    Consume, validate each event with the service's schema, write one 110-byte field
    per customer per batch to Redis in a transaction, and send a 440-byte keyed record
    for ``change_rate`` of the events (the service's own rate of segment changes),
    flushed per batch. What is left between this and the service is streamseg's own
    Python work per event (features, scoring, state codec, change events).
    """
    from streamseg.core.events import TransactionEvent

    consumer = KafkaConsumer(topic, bootstrap_servers=servers,
                             group_id=f"floor-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", enable_auto_commit=False)
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=0,
                             batch_size=256 * 1024)
    client = redis.Redis.from_url(redis_url)
    value, record = b"x" * 110, b"x" * 440
    every = max(1, round(1 / change_rate)) if change_rate > 0 else 0
    seen = 0
    started = time.perf_counter()
    deadline = started + 600
    while seen < count and time.perf_counter() < deadline:
        records = [message for batch in consumer.poll(timeout_ms=500,
                                                        max_records=10_000).values()
                   for message in batch]
        if not records:
            continue
        events = [TransactionEvent.model_validate_json(message.value) for message in records]
        seen += len(records)
        pipe = client.pipeline(transaction=True)
        pipe.hset(f"{prefix}:floor", mapping={e.customer_id: value for e in events})
        pipe.execute()
        if every:
            for event in events[::every]:
                producer.send(changes_topic, key=event.customer_id.encode(), value=record)
        producer.flush()
    elapsed = time.perf_counter() - started
    consumer.close()
    producer.close()
    client.delete(f"{prefix}:floor")
    client.close()
    return seen / elapsed


def _run_service(settings: Any, until: Callable[[Application], bool],
                 latencies: list[float] | None = None,
                 on_assigned: Callable[[], None] | None = None) -> tuple[Application, float]:
    """Run the service in a thread until ``until``; ``on_assigned`` is called once its
    consumer holds its partitions (a live service is up before traffic arrives)."""
    application = Application(settings)
    if latencies is not None:
        application.observer.latency_samples = latencies
    thread = threading.Thread(target=application.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    if on_assigned is not None:
        assign_deadline = time.perf_counter() + 60
        while not application.ownership.epochs and time.perf_counter() < assign_deadline:
            time.sleep(0.01)
        on_assigned()
    deadline = started + 1200
    while not until(application) and time.perf_counter() < deadline and thread.is_alive():
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    application.stop()
    thread.join(timeout=60)
    application.close()
    return application, elapsed


def _consumed(count: int) -> Callable[[Application], bool]:
    def done(application: Application) -> bool:
        return sum(application.store.positions().values()) >= count
    return done


def run(count: int = 200_000, customers: int = 20_000, rate: float = 2_000,
        latency_seconds: float = 20.0, servers: str = "127.0.0.1:9092",
        redis_url: str = "redis://127.0.0.1:6379/0", partitions: int = 4,
        seed: int = 0, batch_size: int = 10_000) -> dict[str, Any]:
    """The whole benchmark; returns the figures (also what ``streamseg bench kafka`` prints)."""
    tag = uuid.uuid4().hex[:8]
    topic, changes = f"bench-{tag}", f"bench-{tag}-changes"
    _create_topics(servers, [topic, changes, f"{topic}.dlq"], partitions)
    pairs = _events(count, customers, seed)
    _produce(servers, topic, pairs)

    bare = ceiling(servers, topic, count)

    client = redis.Redis.from_url(redis_url)
    memory_before = int(client.info("memory")["used_memory"])
    prefix = f"bench-{tag}"
    settings = load_settings(overrides={
        "source": {"uri": f"kafka://{servers}/{topic}", "batch_size": batch_size},
        "kafka": {"group_id": f"bench-{tag}"},
        "store": {"uri": redis_url, "redis_prefix": prefix,
                  "redis_buckets": max(1, customers // 50)},
        "sinks": {"changes": f"kafka://{servers}/{changes}"},
    })
    application, elapsed = _run_service(settings, _consumed(count))
    service = count / elapsed
    stored = application.store.count()
    memory_after = int(client.info("memory")["used_memory"])
    change_rate = application.totals["changes"] / count
    # The floor publishes as many events as the service did: risk-band changes too.
    published_rate = (application.totals["changes"]
                      + application.totals.get("risk_changes", 0)) / count
    floor = io_floor(servers, topic, count, redis_url, prefix, changes, published_rate)

    # Latency: the same service (warm: model seeded, customers known) on the same topic
    # and store, where a paced producer adds events after the backlog. (A store belongs
    # to one input: another topic would be refused.)
    latency_settings = settings.model_copy(update={
        "source": settings.source.model_copy(update={"batch_size": 500,
                                                      "poll_timeout_s": 0.05}),
    })
    paced_count = int(rate * latency_seconds)
    paced_pairs = _events(paced_count, customers, seed + 1)
    latencies: list[float] = []
    # The paced producer is another process, as a real producer would be: in a thread
    # it would compete with the service for the interpreter lock and inflate latency.
    # It starts once the service is up and holds its partitions: latency is that of a
    # running service, not of one still starting (loading its model, joining the group).
    producer = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(servers, topic, paced_pairs, rate))
    offset_base = sum(application.store.positions().values())

    def paced_done(app: Application) -> bool:
        return sum(app.store.positions().values()) >= offset_base + paced_count

    _run_service(latency_settings, paced_done, latencies, on_assigned=producer.start)
    producer.join()
    samples = np.array(latencies) * 1000.0

    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)
    return {
        "machine": machine(),
        "events": count,
        "customers": customers,
        "ceiling_events_per_second": round(bare),
        "service_events_per_second": round(service),
        "ratio_service_to_ceiling": round(service / bare, 3),
        "throughput_batch_size": batch_size,
        "segment_changes_per_event": round(change_rate, 3),
        "risk_changes_per_event": round(published_rate - change_rate, 3),
        "io_floor_events_per_second": round(floor),
        "ratio_io_floor_to_ceiling": round(floor / bare, 3),
        "latency_offered_rate_events_per_second": rate,
        "latency_events": int(samples.size),
        "latency_p50_ms": round(float(np.percentile(samples, 50)), 1) if samples.size else None,
        "latency_p99_ms": round(float(np.percentile(samples, 99)), 1) if samples.size else None,
        "redis_customers": stored,
        "redis_bytes_per_customer": round((memory_after - memory_before) / max(1, stored), 1),
    }
