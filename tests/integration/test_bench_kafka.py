"""`streamseg bench kafka` runs end to end on the real broker and Redis (small sizes).

Only the shape of the result is checked: figures are for people, not for tests.
"""

from __future__ import annotations

import pytest

from streamseg_bench import kafka as bench_kafka

# Alone: other tests' keys would count in the shared Redis' used_memory.
pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_bench_kafka_runs_every_part(kafka_servers: str, redis_url: str) -> None:
    result = bench_kafka.run(count=4000, customers=400, rate=1000, latency_seconds=2.0,
                             servers=kafka_servers, redis_url=redis_url)
    assert result["events"] == 4000 and result["redis_customers"] == 400
    for key in ("ceiling_events_per_second", "service_events_per_second",
                "io_floor_events_per_second", "latency_p50_ms", "latency_p99_ms",
                "redis_bytes_per_customer"):
        assert result[key] > 0, key
    assert result["latency_events"] == 2000
