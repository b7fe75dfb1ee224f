"""``bench redis`` end to end on a real redis-server: every run writes, nothing is left
behind (its figures are the machine's, never asserted)."""

from __future__ import annotations

import pytest
import redis

from streamseg_bench.redis_limits import private_redis, run


def _check(result: dict, runs: int) -> None:
    memory = result["memory"]
    assert memory["customers"] == 240 and memory["partitions"] == 12
    assert memory["with_fixed_overhead"]["bytes_per_customer"] > 0
    assert len(result["writes"]) == runs
    for figures in result["writes"]:
        assert figures["customer_writes"] > 0 and figures["batches_per_s"] > 0
        assert figures["redis_cpu_s_per_1000_writes"] >= 0


@pytest.mark.serial  # other tests' keys would count in the shared Redis' used_memory
def test_on_a_shared_redis_its_prefix_is_deleted(redis_url: str) -> None:
    result = run(customers=240, seconds=0.3, writers=(1, 2), batches=(40,),
                 modes=("store", "replay"), redis_url=redis_url, sample_size=20)
    _check(result, 4)
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=result["prefix"] + ":*"))
    finally:
        client.close()


def test_by_default_on_a_private_redis_server_stopped_afterwards() -> None:
    result = run(customers=240, seconds=0.3, writers=(4,), batches=(30,), modes=("replay",),
                 sample_size=20)
    _check(result, 1)
    assert result["redis"] == "private redis-server"
    with private_redis() as url:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        assert client.ping()
    with pytest.raises(redis.ConnectionError):
        client.ping()  # stopped
