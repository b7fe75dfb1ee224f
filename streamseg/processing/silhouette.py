"""The ``streamseg_silhouette`` gauge: the live segments' mean silhouette, refreshed in
the background at a bounded cost.

Every ``metrics.silhouette_interval_s`` a daemon thread of the worker that holds the
model lease measures the silhouette of at most ``metrics.silhouette_sample`` customers:

* which customers: those of the model's own sample (the hash-based sample every
  partition keeps with its share, :mod:`streamseg.model.sample`), the ones with the
  lowest hashes first -- a uniform draw read in a few round trips, not a scan;
* which vectors and labels: as ``streamseg evaluate`` (:mod:`streamseg.evaluate`):
  recomputed from the stored features at the service clock with the current
  standardiser, labelled with each customer's stored (live) segment.

Cost per refresh: one read of the sample rows, one ``get_many`` of ``sample``
customers, and O(sample^2) arithmetic (1,000 customers: about 0.1 s of one core on our
shared 2-core machine), in
its own thread with its own read-only store connection, never on the batch path.

Several workers: only the lease holder exports the gauge (checked at every scrape), so
it is one series however many workers run, and neither ``sum()`` nor ``max()`` over
workers counts it twice. A worker that is not the refiner exports no series at all.
With a model that keeps no sample (``river-kmeans``) there is nothing to measure and no
series either.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamseg.config import Settings
from streamseg.model.sample import hash_of
from streamseg.store import ReadOnlyStore

log = logging.getLogger(__name__)

__all__ = ["RETRY_S", "SilhouetteGauge", "SilhouetteMonitor", "measure_silhouette"]

#: Seconds before the next try while there is no value (not seeded yet, not the refiner).
RETRY_S = 10.0


class SilhouetteGauge(Collector):
    """``streamseg_silhouette``, exported only while ``exported()`` is true and a value
    was measured.

    >>> registry = CollectorRegistry()
    >>> gauge = SilhouetteGauge(registry, lambda: True)
    >>> registry.get_sample_value("streamseg_silhouette") is None  # nothing measured yet
    True
    >>> gauge.value = 0.5
    >>> registry.get_sample_value("streamseg_silhouette")
    0.5
    """

    NAME = "streamseg_silhouette"

    def __init__(self, registry: CollectorRegistry, exported: Callable[[], bool]) -> None:
        self.value: float | None = None
        self._exported = exported
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        if self.value is not None and self._exported():
            yield GaugeMetricFamily(
                self.NAME, "Mean silhouette coefficient of the live segments on a sample of "
                "customers (metrics.silhouette_sample), vectors recomputed at the service "
                "clock; exported by the worker that holds the model lease only.",
                value=self.value)


def measure_silhouette(settings: Settings, store: ReadOnlyStore, size: int) -> float | None:
    """The live silhouette on up to ``size`` customers of the model's sample, or None
    when there is nothing to measure (no sample, fewer than two segments present)."""
    from streamseg.evaluate.evaluation import sample_of
    from streamseg.evaluate.metrics import silhouette
    from streamseg.read.view import ReadView

    view = ReadView(settings, store)
    if view.centroids is None:
        return None
    rows = store.read_sample(store.partition_names())
    ids = sorted({cid for part in rows.values() for cid in part}, key=hash_of)[:size]
    states = store.get_many(ids)
    chosen = [states[cid] for cid in ids if cid in states and states[cid].segment is not None
              and states[cid].features.has_purchases]
    if len(chosen) < 3:
        return None
    sample = sample_of(view, chosen, len(chosen))
    if not 2 <= len(np.unique(sample.segments)) < len(chosen):
        return None
    return silhouette(sample.vectors, sample.segments)


class SilhouetteMonitor:
    """The background thread that refreshes a :class:`SilhouetteGauge`."""

    def __init__(self, settings: Settings, gauge: SilhouetteGauge,
                 open_store: Callable[[], ReadOnlyStore], measuring: Callable[[], bool]
                 ) -> None:
        self._settings = settings
        self._gauge = gauge
        self._open_store = open_store
        self._measuring = measuring
        self._stop = threading.Event()
        #: Refreshes done (for tests and logs).
        self.refreshes = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="streamseg-silhouette")
        self._thread.start()

    def _run(self) -> None:
        store: ReadOnlyStore | None = None
        interval = self._settings.metrics.silhouette_interval_s
        try:
            while not self._stop.is_set():
                if self._measuring():
                    try:
                        if store is None:
                            store = self._open_store()
                        self._gauge.value = measure_silhouette(
                            self._settings, store, self._settings.metrics.silhouette_sample)
                        self.refreshes += 1
                    except Exception as error:  # noqa: BLE001 - a gauge must not stop a worker
                        log.warning("could not measure the silhouette (%s: %s); trying again "
                                    "in %.0f s", type(error).__name__, error, interval)
                else:
                    self._gauge.value = None  # another worker measures now: none stale here
                # Nothing to measure yet (a model still warming up): look again sooner.
                self._stop.wait(interval if self._gauge.value is not None
                                else min(interval, RETRY_S))
        finally:
            if store is not None:
                store.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
