"""What the loop tells the metrics besides its counters: latency and gauges."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from streamseg.core.events import RawRecord
from streamseg.engine import SegmentationEngine
from streamseg.io import Source
from streamseg.serve.metrics import Metrics
from streamseg.store import Store

__all__ = ["GAUGES_EVERY_SECONDS", "Observer"]

#: Seconds between refreshes of the gauges that cost a store or broker call.
GAUGES_EVERY_SECONDS = 5.0


class Observer:
    """End-to-end latency of written records, and the gauges of the model, the clock,
    segment sizes, consumer lag and readiness."""

    def __init__(self, metrics: Metrics, store: Store, source: Source,
                 model_version: int) -> None:
        self.metrics = metrics
        self.store = store
        self.source = source
        self._model_version = model_version
        self._last_refresh = 0.0
        #: The (topic, partition) labels of the lag series this worker exports now.
        self._lag_series: set[tuple[str, str]] = set()
        #: When a list, every event's produce-to-written latency (seconds) is appended
        #: too, for benchmarks that want exact percentiles rather than histogram buckets.
        self.latency_samples: list[float] | None = None

    def latency(self, records: Sequence[RawRecord]) -> None:
        """Records just written: observe the time since their broker timestamp."""
        written = time.time()
        for record in records:
            if record.produced_at is not None:
                latency = max(0.0, written - record.produced_at)
                self.metrics.end_to_end_latency.observe(latency)
                if self.latency_samples is not None:
                    self.latency_samples.append(latency)

    def refresh(self, engine: SegmentationEngine, is_ready: Callable[[], bool]) -> None:
        """Refresh the gauges; those that cost a store or broker call at most every
        :data:`GAUGES_EVERY_SECONDS`."""
        metrics = self.metrics
        version = engine.model.version
        if version != self._model_version:
            metrics.model_updates.inc(max(0, version - self._model_version))
            self._model_version = version
        metrics.model_version.set(version)
        if engine.watermark is not None:
            metrics.watermark.set(engine.watermark)
        now = time.monotonic()
        if now - self._last_refresh < GAUGES_EVERY_SECONDS:
            return
        self._last_refresh = now
        metrics.set_partition_sizes(engine.partitions)
        traits = getattr(engine, "traits", None)  # None: traits disabled
        if traits is not None:
            metrics.set_trait_quality(traits.total().quality.summary())
        lag = getattr(self.source, "lag", None)
        if callable(lag):
            self._set_lag(lag())
        is_ready()

    def _set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Export the lag of the partitions assigned now, and only theirs.

        A partition that moved to another worker is reported by that worker; a series
        left here would keep its last value forever, and the alerts, which take the
        ``max by (topic, partition)`` over workers, would see it behind for good.
        """
        gauge = self.metrics.consumer_lag
        series = {(topic, str(partition)): behind
                  for (topic, partition), behind in lags.items()}
        for topic, partition in self._lag_series - series.keys():
            gauge.remove(topic, partition)  # labels in the gauge's order: topic, partition
        for (topic, partition), behind in series.items():
            gauge.labels(topic=topic, partition=partition).set(behind)
        self._lag_series = set(series)
