"""The state cache: least recently written evicted first; forgotten when ownership moves."""

from __future__ import annotations

from streamseg.core.features import CustomerFeatures
from streamseg.core.state import CustomerState
from streamseg.engine.cache import StateCache


def _states(*ids: str, partition: str = "p0") -> list[CustomerState]:
    return [CustomerState(cid, CustomerFeatures.empty(), partition=partition) for cid in ids]


def test_the_least_recently_written_is_evicted_first() -> None:
    cache = StateCache(limit=2)
    cache.put_many(_states("a", "b"))
    cache.put_many(_states("a"))  # written again: now the most recent
    cache.put_many(_states("c"))
    assert sorted(cache.keys()) == ["a", "c"]


def test_a_zero_limit_keeps_nothing() -> None:
    cache = StateCache(limit=0)
    cache.put_many(_states("a"))
    assert len(cache) == 0


def test_a_moved_partition_drops_its_customers_and_the_store_memo() -> None:
    forgotten: list[bool] = []
    cache = StateCache(limit=10, forget_store_memo=lambda: forgotten.append(True))
    cache.put_many(_states("a", "b", partition="p0") + _states("c", partition="p1"))
    cache.forget_partitions(set())
    assert len(cache) == 3 and forgotten == []
    cache.forget_partitions({"p0"})
    assert sorted(cache.keys()) == ["c"] and forgotten == [True]
    cache.clear()
    assert len(cache) == 0 and forgotten == [True, True]
