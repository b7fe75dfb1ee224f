"""Graceful shutdown: SIGTERM while ``streamseg run`` is busy, or idle on stdin.

Busy on Kafka, it finishes the batch in hand, writes it, publishes its changes, commits
the offsets and exits 0. Afterwards the group's committed offsets equal the positions
stored in Redis, the change topic agrees with the store, and a restart goes on exactly
where the first run stopped: nothing skipped, nothing processed twice.

Reading stdin (``source.uri: "-"``) from a pipe that stays open, it applies every line
written so far, a last batch short of ``batch_size`` included, without waiting for more
lines or the end of the pipe; and SIGTERM stops it while it waits for more.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from streamseg.store.redis import RedisStore, _delete_prefix
from tests.integration._service import (
    DEADLINE_S,
    Service,
    committed_offsets,
    end_offsets,
    free_port,
    last_changes,
    produce,
    read_topic,
    service_config,
    sixty_day_stream,
    stream_positions,
    wait_until,
)

pytestmark = pytest.mark.integration

#: Failure guard for the exit after SIGTERM (not a performance bar).
EXIT_GUARD_S = 30.0
_SUMMARY = re.compile(r"processed (\d+) events, rejected (\d+), duplicates skipped (\d+)")


@pytest.fixture
def spawned(redis_url: str) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop_quietly()


def _summary(service: Service) -> tuple[int, int, int]:
    """(processed, rejected, duplicates) from the summary line of the last run."""
    found = _SUMMARY.findall(service.log_path.read_text(errors="replace"))
    assert found, f"no summary line\n{service.log_tail()}"
    processed, rejected, duplicates = (int(x) for x in found[-1])
    return processed, rejected, duplicates


def test_sigterm_while_busy_writes_commits_and_resumes_exactly(
    kafka_servers: str, redis_url: str, redis_prefix: str,
    new_topic: Callable[..., str], tmp_path: Path, spawned: list[Service],
) -> None:
    events = sixty_day_stream(1500, seed=31)  # ~30k events
    topic, changes = new_topic("shutdown-events"), new_topic("shutdown-chg")
    produce(kafka_servers, topic, events)
    ends = end_offsets(kafka_servers, topic)
    group = f"it-shutdown-{uuid.uuid4().hex[:8]}"
    service = Service(tmp_path, "shutdown", service_config(
        kafka=kafka_servers, redis_url=redis_url, topic=topic, prefix=redis_prefix,
        group=group, changes_topic=changes, dlq_topic=new_topic("shutdown-dlq"),
        model={"n_clusters": 4, "warmup": 200},
    ))
    spawned.append(service)
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)

    def progress() -> int:
        return sum(stream_positions(store.positions(), topic).values())

    # -- SIGTERM in the middle of the stream -----------------------------------------------
    service.start()
    wait_until(lambda: progress() >= 3000, "the service to be busy", services=[service])
    service.terminate()
    assert service.wait(EXIT_GUARD_S) == 0, service.log_tail()
    stored = stream_positions(store.positions(), topic)
    done = sum(stored.values())
    assert done < len(events), "the stream was over before SIGTERM: make it longer"

    # the batch in hand was written and committed: Kafka's group and the store agree
    assert committed_offsets(kafka_servers, group, topic) == stored
    processed, rejected, duplicates = _summary(service)
    assert (processed, rejected, duplicates) == (done, 0, 0)
    # its changes were published (and the outbox cleared): the topic agrees with the store
    assert store.outbox() == []
    states = {s.customer_id: s for s in store.iter_customers()}
    last = last_changes(read_topic(kafka_servers, changes))
    assert {cid: data["to_segment"] for cid, data in last.items()} == {
        cid: s.segment for cid, s in states.items() if s.segment is not None}

    # -- a restart takes over exactly there --------------------------------------------------
    service.start()
    wait_until(lambda: progress() == len(events), "the restart to reach the end",
               services=[service])
    service.terminate()
    assert service.wait(EXIT_GUARD_S) == 0, service.log_tail()
    processed, rejected, duplicates = _summary(service)
    assert (processed, rejected, duplicates) == (len(events) - done, 0, 0), \
        "the restart processed events of the first run again"
    assert committed_offsets(kafka_servers, group, topic) == ends
    assert stream_positions(store.positions(), topic) == ends
    purchases = Counter(e["customer_id"] for e in events if e["type"] == "purchase")
    states = {s.customer_id: s for s in store.iter_customers()}
    assert {c: s.features.orders for c, s in states.items() if s.features.orders} == \
        dict(purchases)
    last = last_changes(read_topic(kafka_servers, changes))
    assert {cid: data["to_segment"] for cid, data in last.items()} == {
        cid: s.segment for cid, s in states.items()}
    store.close()
    client = redis.Redis.from_url(redis_url)
    _delete_prefix(client, redis_prefix)  # the fixture does it too; keep Redis lean early
    client.close()


# -- stdin ---------------------------------------------------------------------------------
STDIN_BATCH = 500


def _write_in_chunks(pipe: Any, data: bytes, chunk: int, errors: list[BaseException]) -> None:
    """Write ``data`` in pieces that cut lines anywhere, flushing each (so the service
    sees partial lines), and leave the pipe open."""
    try:
        for start in range(0, len(data), chunk):
            pipe.write(data[start:start + chunk])
            pipe.flush()
    except BaseException as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


@pytest.mark.parametrize("lines", [13 * STDIN_BATCH + 420, 13 * STDIN_BATCH],
                         ids=["last-batch-partial", "whole-batches"])
def test_stdin_held_open_applies_every_line_and_stops_on_sigterm(
    lines: int, redis_url: str, redis_prefix: str, tmp_path: Path, spawned: list[Service],
) -> None:
    """A pipe held open: every line written is applied while no more come (a partial
    last batch included), and SIGTERM while it waits for more ends the run with 0."""
    events = sixty_day_stream(400, seed=7)[:lines]
    assert len(events) == lines
    service = Service(tmp_path, "stdin", {
        "source": {"uri": "-", "batch_size": STDIN_BATCH, "poll_timeout_s": 0.2},
        "store": {"uri": redis_url, "redis_prefix": redis_prefix, "redis_buckets": 128},
        "sinks": {"changes": "changes.jsonl", "dead_letter": "dead.jsonl"},
        "model": {"n_clusters": 4, "warmup": 200},
    }, metrics_port=free_port())
    spawned.append(service)
    service.start(stdin_pipe=True)
    assert service.process is not None and service.process.stdin is not None
    data = "".join(json.dumps(event) + "\n" for event in events).encode()
    errors: list[BaseException] = []
    # From a thread: a service that stopped reading must fail the test, not hang it.
    writer = threading.Thread(target=_write_in_chunks, daemon=True,
                              args=(service.process.stdin, data, 4093, errors))
    writer.start()

    wait_until(lambda: service.metric("streamseg_events_processed_total") == lines,
               f"all {lines} lines applied while stdin stays open", services=[service])
    writer.join(DEADLINE_S)
    assert not writer.is_alive() and not errors, errors
    assert service.alive()  # the pipe is open: it waits for more

    service.terminate()
    assert service.wait(EXIT_GUARD_S) == 0, service.log_tail()
    assert _summary(service) == (lines, 0, 0)
    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    try:
        orders = {s.customer_id: s.features.orders for s in store.iter_customers()
                  if s.features.orders}
    finally:
        store.close()
    assert orders == dict(Counter(e["customer_id"] for e in events if e["type"] == "purchase"))
