"""Fixtures that need the real services: a Kafka broker and a redis-server.

Start them with ``scripts/services up`` (``scripts/services env`` prints the variables
below). Where they are is read from the environment:

* ``STREAMSEG_TEST_KAFKA`` -- bootstrap servers, default ``127.0.0.1:9092``;
* ``STREAMSEG_TEST_REDIS`` -- Redis URL, default ``redis://127.0.0.1:6379/0``.

When a service does not answer, the tests that need it *fail* (they are never
skipped): a green run always means the integration paths really ran. Every test uses
its own topics (``it-<uuid>``) and Redis key prefix, so runs can repeat and overlap.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

if TYPE_CHECKING:
    from tests.integration._service import Service

KAFKA = os.environ.get("STREAMSEG_TEST_KAFKA", "127.0.0.1:9092")
REDIS = os.environ.get("STREAMSEG_TEST_REDIS", "redis://127.0.0.1:6379/0")
_HINT = "start the services with `scripts/services up` (see `scripts/services status`)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL, after checking that it answers."""
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=3, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis at {REDIS} (STREAMSEG_TEST_REDIS) is not reachable: {error}; "
                    f"{_HINT}", pytrace=False)
    finally:
        client.close()
    return REDIS


@pytest.fixture(scope="session")
def kafka_servers() -> str:
    """The test bootstrap servers, after checking that a broker answers."""
    from kafka import KafkaAdminClient

    host, _, port = KAFKA.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        admin = KafkaAdminClient(bootstrap_servers=KAFKA, bootstrap_timeout_ms=10_000)
        admin.list_topics()
        admin.close()
    except Exception as error:  # noqa: BLE001 - any failure means "not usable"
        pytest.fail(f"Kafka at {KAFKA} (STREAMSEG_TEST_KAFKA) is not reachable: {error}; "
                    f"{_HINT}", pytrace=False)
    return KAFKA


@pytest.fixture(scope="session")
def kafka_admin(kafka_servers: str) -> Iterator[Any]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_servers)
    yield admin
    admin.close()


def _wait_for_leaders(admin: Any, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Until the broker describes every partition of the new topic with a leader, so that
    a test's producers and consumers start on a topic that is ready (on a loaded broker,
    producing right after the creation met NotLeaderForPartitionError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics([name])
        leaders = [p for t in described if t.get("error_code") == 0
                   for p in t.get("partitions", [])
                   if p.get("error_code") == 0 and p.get("leader_id", -1) >= 0]
        if len(leaders) == partitions:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"topic {name}: {len(leaders)} of {partitions} partitions have a "
                        f"leader after {timeout_s:.0f} s", pytrace=False)
        time.sleep(0.1)


@pytest.fixture
def new_topic(kafka_admin: Any) -> Iterator[Callable[..., str]]:
    """Factory: create a uniquely named topic (4 partitions); deleted after the test."""
    created: list[str] = []

    def make(label: str = "t", partitions: int = 4, configs: dict[str, str] | None = None
             ) -> str:
        name = f"it-{label}-{uuid.uuid4().hex[:10]}"
        kafka_admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1,
                    "configs": configs or {}}},
            wait_for_metadata=True,
        )
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions)
        return name

    yield make
    if created:
        with contextlib.suppress(Exception):  # cleanup is best effort
            kafka_admin.delete_topics(created)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    from streamseg.store.redis import _delete_prefix

    prefix = f"it-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    _delete_prefix(client, prefix)
    client.close()


@pytest.fixture
def producer(kafka_servers: str) -> Iterator[Any]:
    from kafka import KafkaProducer

    client = KafkaProducer(bootstrap_servers=kafka_servers, acks="all", linger_ms=5)
    yield client
    client.close(timeout=10)


@pytest.fixture
def cleanup(redis_url: str) -> Iterator[tuple[list[Service], list[str]]]:
    """(services, Redis prefixes) to clean up at teardown: each service still running
    is SIGKILLed, each prefix deleted."""
    from streamseg.store.redis import _delete_prefix

    spawned: list[Service] = []
    prefixes: list[str] = []
    yield spawned, prefixes
    for service in spawned:
        service.stop_quietly()
    client = redis.Redis.from_url(redis_url)
    for prefix in prefixes:
        _delete_prefix(client, prefix)
    client.close()
