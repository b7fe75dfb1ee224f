"""``bench redis``: the workload it writes and the arithmetic of its figures (never a
speed or a size: those depend on the machine and the Redis)."""

from __future__ import annotations

import doctest
import math
from types import ModuleType

import pytest
from typer.testing import CliRunner

from streamseg.cli import app
from streamseg.store import MemoryStore
from streamseg_bench import redis_limits, redis_workload, redis_writers
from streamseg_bench.redis_limits import bytes_per, parse_options, reading, table
from streamseg_bench.redis_workload import (
    PARTITIONS,
    Workload,
    generate_states,
    owned_partitions,
    partition_name,
)
from streamseg_bench.redis_writers import summarize


@pytest.mark.parametrize("module", [redis_limits, redis_workload, redis_writers])
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0


@pytest.mark.parametrize("writers", [1, 2, 3, 4, 6, 12])
def test_writers_own_every_partition_once(writers: int) -> None:
    owned = [name for w in range(writers) for name in owned_partitions(w, writers)]
    assert sorted(owned) == sorted(partition_name(i) for i in range(PARTITIONS))
    assert {len(owned_partitions(w, writers)) for w in range(writers)} == {PARTITIONS // writers}


def test_states_are_numbered_across_chunks_and_placed_by_number() -> None:
    states = sorted(generate_states(25, chunk=10), key=lambda s: s.customer_id)
    assert [s.customer_id for s in states] == [f"cust-{n:06d}" for n in range(25)]
    for n, state in enumerate(states):
        assert state.partition == partition_name(n % PARTITIONS)
        assert list(state.applied) == [state.partition]
        assert state.features.orders > 0 and state.vector and len(state.recent_ids) <= 8


def test_batches_carry_what_a_worker_writes() -> None:
    states = generate_states(60)
    workload = Workload.of(states, sample_size=10, change_rate=0.5, seed=3)
    assert len(workload.sampled) == 10 and set(workload.shares) == {s.partition for s in states}
    store = MemoryStore()
    parts = {name: store.take_partition(name) for name in workload.shares}

    first = workload.first_batch(parts, states)
    store.write_batch(first)
    assert store.count() == 60 and sum(store.segment_sizes().values()) == 60
    assert sum(len(p.partition.outbox) for p in first.partitions) == 60  # first assignments
    assert {cid for p in first.partitions for cid in p.sample} == workload.sampled
    for part in first.partitions:
        assert part.partition.model is not None
        assert part.partition.model["updates"] >= len(part.states)
    assert first.meta["partition_counts"] == {"transactions": PARTITIONS}

    again = states[:30]
    second = workload.next_batch(parts, again)
    store.write_batch(second)
    assert store.count() == 60 and sum(store.segment_sizes().values()) == 60
    moved = [after for before, after in zip(states[:30], again, strict=True)
             if before.segment != after.segment]
    assert 0 < len(moved) < 30
    assert sum(len(p.partition.outbox) for p in second.partitions) == len(moved)
    for before, after in zip(states[:30], again, strict=True):
        assert after.features.orders == before.features.orders + 1
        assert (after.updated_at or 0) > (before.updated_at or 0)
        stored = store.get(after.customer_id)
        assert stored is not None and stored.segment == after.segment
    assert store.segment_sizes() == _sizes(store, [s.customer_id for s in states])


def _sizes(store: MemoryStore, ids: list[str]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for state in store.get_many(ids).values():
        assert state.segment is not None
        sizes[state.segment] = sizes.get(state.segment, 0) + 1
    return dict(sorted(sizes.items()))


def test_figures_of_a_run_without_writes_are_not_a_division_by_zero() -> None:
    result = summarize(1, 100, True, 1.0, 0.5, [
        {"customers": 0, "batches": 0, "seconds": 1.0, "cpu_s": 0.1, "latencies": []}], (0, 0))
    assert result["writes_per_s"] == 0 and result["latency_ms_p50"] is None
    assert math.isnan(result["redis_cpu_s_per_1000_writes"])
    assert result["redis_bound_writes_per_s"] is None and result["machine_busy_pct"] is None
    assert bytes_per(0, 10) == {"bytes_per_customer": 0.0, "customers_per_gib": 0}


def test_table_shows_both_memory_figures_and_every_run() -> None:
    run = summarize(2, 500, False, 10.0, 4.0, [
        {"customers": 40_000, "batches": 80, "seconds": 10.0, "cpu_s": 9.0,
         "latencies": [0.02] * 80}], (150, 200))
    result = {"redis": "x", "server": {"version": "7"}, "cores": 2,
              "memory": {"customers": 1000, "buckets": 20, "fixed_overhead_bytes": 5,
                         "used_memory_after": 2**20, "used_memory_rss": 2**21,
                         "lua_vm_bytes": 2**19,
                         "with_fixed_overhead": bytes_per(300_000, 1000),
                         "without_fixed_overhead": bytes_per(250_000, 1000)},
              "writes": [run, run | {"mode": "replay", "redis_bound_writes_per_s": 20_000}]}
    result["reading"] = reading(result["writes"])
    assert result["reading"]["writes_per_s_at_one_redis_core"] == {"500": [10_000, 20_000]}
    text = table(result)
    assert "300.0" in text and "250.0" in text and "4,294,967" in text
    assert "4,000" in text and "10,000" in text and "replay" in text
    assert "lower bounds" in text and "10,000 to 20,000" in text
    saturated = reading([run | {"redis_cpu_pct": 97.0}])
    assert saturated["redis_saturated"] and "Redis was the limit" in table(
        result | {"reading": saturated})


def test_options() -> None:
    assert parse_options("4", "100,50", "replay,store") == ((4,), (100, 50), ("replay", "store"))
    for bad in (("0", None, "store"), ("1,x", None, "store"), ("1", "5,-1", "store"),
                ("1", None, "fast"), ("1", None, "")):
        with pytest.raises(ValueError):
            parse_options(*bad)
    result = CliRunner().invoke(app, ["bench", "redis", "--writers", "two"])
    assert result.exit_code == 2 and "writers" in result.output
