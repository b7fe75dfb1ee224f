"""The gauges the loop refreshes: consumer lag follows this worker's partitions."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from streamseg.core.events import RawRecord
from streamseg.io import Source
from streamseg.processing import observe
from streamseg.processing.observe import Observer
from streamseg.serve.metrics import Metrics
from streamseg.store import MemoryStore

LAG = "streamseg_consumer_lag_records"


class _LaggingSource(Source):
    """A source whose assigned partitions and their lag the test sets (what
    ``KafkaSource.lag()`` reports: one entry per partition assigned now)."""

    finite = False

    def __init__(self) -> None:
        self.lags: dict[tuple[str, int], int] = {}

    def poll(self, max_records: int, timeout: float) -> list[RawRecord]:
        return []

    @property
    def exhausted(self) -> bool:
        return False

    def positions_after(self, records: Sequence[RawRecord]) -> dict[str, int]:
        return {}

    def lag(self) -> dict[tuple[str, int], int]:
        return dict(self.lags)


def _lag_series(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for family in metrics.registry.collect() if family.name == LAG
            for s in family.samples}


@pytest.fixture(autouse=True)
def _refresh_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # The broker-backed gauges are throttled; here every refresh must reach them.
    monkeypatch.setattr(observe, "GAUGES_EVERY_SECONDS", 0.0)


def test_the_lag_of_a_partition_moved_to_another_worker_is_removed() -> None:
    metrics, source = Metrics(), _LaggingSource()
    observer = Observer(metrics, MemoryStore(), source, model_version=0)
    engine: Any = SimpleNamespace(model=SimpleNamespace(version=0), watermark=None,
                                  partitions={})

    def refresh() -> dict[tuple[str, str], float]:
        observer.refresh(engine, lambda: True)
        return _lag_series(metrics)

    source.lags = {("t", 0): 5, ("t", 1): 7, ("u", 0): 2}
    assert refresh() == {("t", "0"): 5, ("t", "1"): 7, ("u", "0"): 2}
    # A rebalance gives t/1 to another worker, which now reports its lag: a series left
    # here would be a second, stale value for it (alerts take the max over workers).
    source.lags = {("t", 0): 3, ("u", 0): 0}
    assert refresh() == {("t", "0"): 3, ("u", "0"): 0}
    # Given back later, it is reported again; losing them all leaves no series.
    source.lags = {("t", 1): 4}
    assert refresh() == {("t", "1"): 4}
    source.lags = {}
    assert refresh() == {}
