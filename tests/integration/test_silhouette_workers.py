"""``streamseg_silhouette`` with several workers: one series, from the worker that holds
the model lease, and taken over by another worker when that one stops."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from streamseg_bench.simulate import simulate_stream
from tests.integration._service import (
    Service,
    free_port,
    produce,
    service_config,
    wait_until,
)


def test_only_the_worker_holding_the_lease_exports_the_silhouette(
        tmp_path: Path, kafka_servers: str, redis_url: str, redis_prefix: str,
        new_topic: Callable[..., str]) -> None:
    events, _ = simulate_stream(customers=800, seed=4)
    topic = new_topic("sil")
    produce(kafka_servers, topic, events)
    config = service_config(kafka=kafka_servers, redis_url=redis_url, topic=topic,
                            prefix=redis_prefix, group=f"g-{redis_prefix}",
                            changes_topic=new_topic("sil-changes"),
                            dlq_topic=new_topic("sil-dlq"),
                            pipeline={"lease_ttl_s": 3.0})
    workers = [Service(tmp_path, name, config, metrics_port=free_port()) for name in "ab"]
    for worker in workers:
        worker.env.update({"STREAMSEG_METRICS__SILHOUETTE_SAMPLE": "300",
                           "STREAMSEG_METRICS__SILHOUETTE_INTERVAL_S": "0.3"})
        worker.start()
    try:
        def exporting() -> list[Service]:
            return [w for w in workers if w.metric("streamseg_silhouette") is not None]

        wait_until(lambda: len(exporting()) >= 1, "a worker to export the silhouette",
                   services=workers)
        for _ in range(10):  # one series at every scrape, from the refiner
            found = exporting()
            assert len(found) == 1, [w.name for w in found]
            assert found[0].metric("streamseg_refiner") == 1
            value = found[0].metric("streamseg_silhouette")
            assert value is not None and -1.0 <= value <= 1.0
            time.sleep(0.2)
        # The refiner paused past its lease: the other worker takes the lease over and
        # exports; the paused one, resumed, refines no more and exports nothing.
        refiner = exporting()[0]
        other = next(w for w in workers if w is not refiner)
        refiner.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            wait_until(lambda: other.metric("streamseg_refiner") == 1
                       and other.metric("streamseg_silhouette") is not None,
                       "the other worker to take the lease and export the silhouette",
                       services=[other])
        finally:
            refiner.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        wait_until(lambda: refiner.metric("streamseg_refiner") == 0,
                   "the resumed worker to see it lost the lease", services=workers)
        for _ in range(5):
            assert [w.name for w in exporting()] == [other.name]
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.stop_quietly()
