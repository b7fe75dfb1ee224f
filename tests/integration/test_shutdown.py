"""Graceful shutdown: SIGTERM while ``streamseg run`` is busy.

It finishes the batch in hand, writes it, publishes its changes, commits the offsets
and exits 0. Afterwards the group's committed offsets equal the positions stored in
Redis, the change topic agrees with the store, and a restart goes on exactly where the
first run stopped: nothing skipped, nothing processed twice.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from streamseg.store.redis import RedisStore, _delete_prefix
from tests.integration._service import (
    Service,
    committed_offsets,
    end_offsets,
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
