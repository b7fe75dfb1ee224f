"""The state cache: least recently written evicted first; forgotten when ownership moves."""

from __future__ import annotations

from streamseg.core.features import CustomerFeatures
from streamseg.core.state import CustomerState
from streamseg.engine.cache import StateCache


def _states(*ids: str) -> list[CustomerState]:
    return [CustomerState(cid, CustomerFeatures.empty()) for cid in ids]


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


def test_a_moved_assignment_drops_the_cache_and_the_store_memo() -> None:
    forgotten: list[bool] = []
    cache = StateCache(limit=10, forget_store_memo=lambda: forgotten.append(True))
    cache.put_many(_states("a"))
    cache.follow(3)
    cache.follow(3)
    assert len(cache) == 1 and forgotten == []
    cache.follow(4)
    assert len(cache) == 0 and forgotten == [True]
    assert cache.epoch == 4
