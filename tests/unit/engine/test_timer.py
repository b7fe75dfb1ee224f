"""The inactivity timer: waits grow with recency, the store is asked sparingly."""

from __future__ import annotations

from streamseg.config import FeatureSettings
from streamseg.core.features import SECONDS_PER_DAY
from streamseg.engine.timer import RESCORE_CHECK_SECONDS, InactivityTimer, next_rescore_at
from streamseg.store import MemoryStore


class _CountingStore(MemoryStore):
    def __init__(self, due: list[str]) -> None:
        super().__init__()
        self.asked = 0
        self._answer = due

    def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
        self.asked += 1
        return self._answer[:limit]


def test_the_wait_is_clamped_between_min_and_max_days() -> None:
    features = FeatureSettings(rescore_min_days=1, rescore_max_days=14, rescore_growth=0.5)
    assert next_rescore_at(0.0, 0.0, features) == 1 * SECONDS_PER_DAY
    assert next_rescore_at(0.0, 10.0, features) == 5 * SECONDS_PER_DAY
    assert next_rescore_at(0.0, 400.0, features) == 14 * SECONDS_PER_DAY


def test_the_store_is_asked_again_only_after_a_minute_of_service_time() -> None:
    store = _CountingStore(due=["a"])
    timer = InactivityTimer(store)
    assert timer.due({"p0": 1000.0}, limit=10) == ["a"]
    assert timer.due({"p0": 1000.0 + RESCORE_CHECK_SECONDS / 2}, limit=10) == []
    assert timer.due({"p0": 1000.0 + RESCORE_CHECK_SECONDS}, limit=10) == ["a"]
    assert store.asked == 2


def test_a_full_answer_means_a_backlog_asked_for_at_once() -> None:
    store = _CountingStore(due=["a", "b", "c"])
    timer = InactivityTimer(store)
    assert timer.due({"p0": 0.0}, limit=2) == ["a", "b"]
    assert timer.due({"p0": 1.0}, limit=2) == ["a", "b"]
    assert store.asked == 2


def test_a_clock_that_went_back_asks_again() -> None:
    store = _CountingStore(due=[])
    timer = InactivityTimer(store)
    timer.due({"p0": 1000.0}, limit=5)
    timer.due({"p0": 900.0}, limit=5)
    assert store.asked == 2


def test_only_the_owned_partitions_are_asked_and_the_limit_spans_them() -> None:
    asked: list[str] = []

    class _Store(MemoryStore):
        def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
            asked.append(partition)
            return [f"{partition}-{i}" for i in range(min(limit, 2))]

    timer = InactivityTimer(_Store())
    assert timer.due({"b": 0.0, "a": 0.0, "c": 0.0}, limit=3) == ["a-0", "a-1", "b-0"]
    assert asked == ["a", "b"]


def test_each_partition_is_asked_up_to_its_own_time_and_none_is_skipped() -> None:
    asked: list[tuple[str, float]] = []

    class _Store(MemoryStore):
        def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
            asked.append((partition, until))
            return []

    InactivityTimer(_Store()).due({"a": 500.0, "b": 200.0, "c": None}, limit=3)
    assert asked == [("a", 500.0), ("b", 200.0)]
