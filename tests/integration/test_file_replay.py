"""A file replay whose store goes away mid-run loses nothing.

A file cannot rewind like a Kafka consumer: after a store failure, the records of the
batch that failed must be read again from the file. The store is a PRIVATE redis-server
(own port, append-only file fsynced on every write), stopped for a few seconds while
``streamseg run`` replays a file into it, then started again with its data; the end
state must equal a clean run's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamseg.config import StoreSettings
from streamseg.store import open_store
from tests.integration._service import (
    Service,
    free_port,
    services,
    sixty_day_stream,
    wait_until,
)

pytestmark = pytest.mark.integration

#: How long the store stays away mid-run.
OUTAGE_S = 4.0


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    env = {"STREAMSEG_STATE_DIR": str(tmp_path_factory.mktemp("private-redis")),
           "STREAMSEG_REDIS_PORT": str(port), "STREAMSEG_REDIS_PERSIST": "1"}
    services("up", "redis", env=env)
    try:
        yield f"redis://127.0.0.1:{port}/0", env
    finally:
        services("down", "redis", "--clean", env=env)


def _config(source: Path, redis_url: str, prefix: str, folder: Path) -> dict[str, object]:
    return {
        "source": {"uri": str(source), "batch_size": 500},
        "store": {"uri": redis_url, "redis_prefix": prefix, "redis_buckets": 128},
        "sinks": {"changes": str(folder / f"{prefix}-changes.jsonl"),
                  "dead_letter": str(folder / f"{prefix}-dead.jsonl")},
        "model": {"n_clusters": 4, "warmup": 100},
    }


def _features(redis_url: str, prefix: str) -> dict[str, dict[str, object]]:
    store = open_store(StoreSettings(uri=redis_url, redis_prefix=prefix))
    try:
        return {s.customer_id: s.features.to_dict() for s in store.iter_customers()}
    finally:
        store.close()


def test_a_file_replay_loses_nothing_when_the_store_goes_away_mid_run(
    tmp_path: Path, private_redis: tuple[str, dict[str, str]]
) -> None:
    redis_url, env = private_redis
    source = tmp_path / "events.jsonl"
    events = sixty_day_stream(3000, seed=11)
    source.write_text("".join(json.dumps(event) + "\n" for event in events))

    clean = Service(tmp_path, "clean", _config(source, redis_url, "clean", tmp_path)).start()
    assert clean.wait() == 0, clean.log_tail()

    prefix = f"outage-{uuid.uuid4().hex[:6]}"
    service = Service(tmp_path, "outage", _config(source, redis_url, prefix, tmp_path),
                      metrics_port=free_port()).start()
    try:
        wait_until(lambda: (service.metric("streamseg_events_processed_total") or 0)
                   >= len(events) // 4, "a quarter of the file replayed", services=[service])
        services("down", "redis", env=env)  # the append-only file keeps the data
        time.sleep(OUTAGE_S)
        services("up", "redis", env=env)
        assert service.wait() == 0, service.log_tail()
    finally:
        service.stop_quietly()
    assert "retrying" in service.log_text(), "the store outage did not hit the run"

    expected, got = _features(redis_url, "clean"), _features(redis_url, prefix)
    assert len(expected) == 3000
    different = sorted(cid for cid in expected if got.get(cid) != expected[cid])
    assert not different, f"{len(different)} customers differ, e.g. {different[:3]}"
