"""One writer per partition, on the real broker and Redis.

* With a model that only one worker can hold (``river-kmeans``), a second worker on the
  same store stops at start, naming the holder; the first goes on as a single worker
  would. (The default model is shared by several workers: test_shared_model.py.)
* A worker paused (SIGSTOP) past its lease and session timeout loses its partitions to a
  new worker; resumed (SIGCONT), its writes are refused, it drops that batch and goes on
  with what the group gives it; the end state equals a clean run's.
* A worker restarted with its group's committed offsets wound back resumes every
  partition from the position stored with it, not from Kafka's, and every customer's
  state records its partition.

Every wait is bounded; nothing is asserted on durations.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamseg.config import StoreSettings
from streamseg.store import Store, open_store
from streamseg_bench.simulate import simulate_stream
from tests.integration._service import (
    SIXTY_DAYS,
    STREAM_END,
    Service,
    end_offsets,
    free_port,
    produce,
    read_topic,
    service_config,
    stream_positions,
    wait_until,
)

pytestmark = pytest.mark.integration


def _stream(customers: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    return simulate_stream(customers=customers, seed=seed, archetypes=SIXTY_DAYS,
                           end=STREAM_END)


def _config(kafka: str, redis_url: str, topic: str, prefix: str,
            new_topic: Callable[..., str], **sections: Any) -> dict[str, Any]:
    return service_config(
        kafka=kafka, redis_url=redis_url, topic=topic, prefix=prefix, group=prefix,
        changes_topic=new_topic("w-chg"), dlq_topic=new_topic("w-dlq"),
        consumer={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                  **sections.pop("consumer", {})},
        model={"n_clusters": 5, "reservoir_size": 10_000}, **sections)


def _store(redis_url: str, prefix: str) -> Store:
    return open_store(StoreSettings(uri=redis_url, redis_prefix=prefix))


def _progress(store: Store, topic: str) -> int:
    return sum(stream_positions(store.positions(), topic).values())


def _finish(service: Service, store: Store, topic: str, total: int) -> None:
    wait_until(lambda: _progress(store, topic) == total,
               f"{service.name} to reach the end of the topic", services=[service])
    service.terminate()
    assert service.wait(60) == 0, service.log_tail()


def _assert_exact(store: Store, events: list[dict[str, Any]], topic: str,
                  ends: dict[int, int], label: str) -> dict[str, Any]:
    """Every event applied once; totals equal the stored customers'; returns the states."""
    states = {s.customer_id: s for s in store.iter_customers()}
    purchases = Counter(e["customer_id"] for e in events if e["type"] == "purchase")
    assert {c: s.features.orders for c, s in states.items() if s.features.orders} == \
        dict(purchases), label
    assert stream_positions(store.positions(), topic) == ends, label
    segments = Counter(s.segment for s in states.values() if s.segment is not None)
    assert store.segment_sizes() == dict(segments), f"{label}: sizes != stored segments"
    assert store.count() == len(states), label
    return states


def test_a_second_worker_of_a_model_only_one_can_hold_stops_naming_the_first(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]],
) -> None:
    spawned, prefixes = cleanup
    events, truth = _stream(1500, seed=3)
    topic = new_topic("w-second")
    produce(kafka_servers, topic, events)
    ends = end_offsets(kafka_servers, topic)
    prefix = f"it-w2-{uuid.uuid4().hex[:8]}"
    prefixes.append(prefix)
    config = _config(kafka_servers, redis_url, topic, prefix, new_topic,
                     pipeline={"lease_ttl_s": 6})
    config["model"] = {"kind": "river-kmeans", "n_clusters": 5}
    first = Service(tmp_path, "first", config, metrics_port=free_port()).start()
    second = Service(tmp_path, "second", config)
    spawned += [first, second]
    wait_until(lambda: first.readyz() == 200, "the first worker to be ready",
               services=[first])
    second.start()
    assert second.wait() != 0, second.log_tail()
    log = second.log_text()
    assert "another worker holds this store's model lease" in log, second.log_tail()
    assert f":{first.process.pid}" in log, "the error names the holder"  # type: ignore[union-attr]
    store = _store(redis_url, prefix)
    _finish(first, store, topic, sum(ends.values()))
    states = _assert_exact(store, events, topic, ends, "first")
    assert set(states) == set(truth)  # the first went on alone and placed everyone


def test_a_paused_worker_that_lost_its_partitions_cannot_write_when_it_wakes(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]],
) -> None:
    spawned, prefixes = cleanup
    events, _ = _stream(3000, seed=5)
    topic = new_topic("w-fence")
    produce(kafka_servers, topic, events)
    ends = end_offsets(kafka_servers, topic)
    total = sum(ends.values())
    runs: dict[str, Store] = {}
    services: dict[str, Service] = {}
    for label, names in (("clean", ["clean"]), ("fenced", ["paused", "successor"])):
        prefix = f"it-wf-{label}-{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        runs[label] = _store(redis_url, prefix)
        config = _config(kafka_servers, redis_url, topic, prefix, new_topic,
                         source={"uri": f"kafka://{kafka_servers}/{topic}",
                                 "batch_size": 200, "poll_timeout_s": 0.2},
                         pipeline={"lease_ttl_s": 3})
        for name in names:  # two workers on one store: the second starts as a successor
            services[name] = Service(tmp_path, name, config, metrics_port=free_port())
    spawned += list(services.values())
    services["clean"].start()
    paused, successor, store = services["paused"], services["successor"], runs["fenced"]
    paused.start()
    wait_until(lambda: _progress(store, topic) > total // 5, "a fifth of the stream",
               services=[paused])
    paused.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        time.sleep(3.5)  # past the lease's time to live: nobody renews it
        successor.start()
        before = _progress(store, topic)
        wait_until(lambda: _progress(store, topic) > before,
                   "the successor to take the partitions and write", services=[successor])
    finally:
        paused.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    wait_until(lambda: (paused.metric("streamseg_fenced_writes_total") or 0) >= 1,
               "the paused worker's write to be refused", services=[paused, successor])
    assert "dropping the batch" in paused.log_text(), paused.log_tail()
    wait_until(lambda: _progress(store, topic) == total, "the end of the topic",
               services=[paused, successor])
    _finish(paused, store, topic, total)
    _finish(successor, store, topic, total)
    _finish(services["clean"], runs["clean"], topic, total)
    fenced = _assert_exact(store, events, topic, ends, "fenced")
    clean = _assert_exact(runs["clean"], events, topic, ends, "clean")
    assert set(fenced) == set(clean)
    for cid, state in fenced.items():
        assert state.features.to_dict() == pytest.approx(clean[cid].features.to_dict(),
                                                         rel=1e-9, abs=1e-9), cid


def test_a_restarted_worker_resumes_each_partition_from_its_stored_position(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]],
) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    spawned, prefixes = cleanup
    events, _ = _stream(800, seed=9)
    half = len(events) // 2
    topic = new_topic("w-resume")
    produce(kafka_servers, topic, events[:half])
    prefix = f"it-wr-{uuid.uuid4().hex[:8]}"
    prefixes.append(prefix)
    store = _store(redis_url, prefix)
    worker = Service(tmp_path, "worker", _config(kafka_servers, redis_url, topic, prefix,
                                                  new_topic), metrics_port=free_port())
    spawned.append(worker)
    worker.start()
    _finish(worker, store, topic, half)
    # Wind the group's committed offsets back to 0: only the store knows where it is.
    rewind = KafkaConsumer(bootstrap_servers=kafka_servers, group_id=prefix,
                           enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in end_offsets(kafka_servers, topic)]
    rewind.commit({tp: OffsetAndMetadata(0, "", -1) for tp in partitions})
    rewind.close()
    produce(kafka_servers, topic, events[half:])
    ends = end_offsets(kafka_servers, topic)
    worker.start()  # its metrics count this run only
    wait_until(lambda: _progress(store, topic) == sum(ends.values()),
               "the restarted worker to reach the end", services=[worker])
    assert worker.metric("streamseg_events_duplicate_total") == 0, \
        "records before the stored positions were read again"
    worker.terminate()
    assert worker.wait(60) == 0, worker.log_tail()
    states = _assert_exact(store, events, topic, ends, "resumed")
    partition_of = {json.loads(m.value)["customer_id"]: f"kafka:{topic}:{m.partition}"
                    for m in read_topic(kafka_servers, topic)}
    assert {cid: s.partition for cid, s in states.items()} == partition_of
