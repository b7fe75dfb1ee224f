"""Prometheus metrics and the health endpoints ops watch.

Every metric is prefixed ``streamseg_`` and follows Prometheus naming conventions
(``_total`` for counters, base units: seconds). Label values are bounded: rejection
reasons are grouped into a few categories, segments are ids below ``n_clusters``.

The HTTP server (``metrics.enabled``) answers:

* ``/metrics`` -- the Prometheus exposition format;
* ``/healthz`` -- 200 while the process is alive;
* ``/readyz`` -- 200 only while the source, sinks and store answer, 503 otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

if TYPE_CHECKING:
    from streamseg.engine import BatchOutcome
    from streamseg.store import Partition

# Latency buckets in seconds, from a millisecond to half a minute.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def reason_category(reason: str) -> str:
    """Group a dead-letter reason into a bounded label value.

    >>> reason_category("amount: Input should be greater than or equal to 0")
    'invalid_field'
    >>> reason_category("malformed JSON: EOF while parsing")
    'malformed_json'
    """
    lowered = reason.lower()
    for prefix, category in (
        ("malformed json", "malformed_json"),
        ("payload too large", "too_large"),
        ("event must be a json object", "not_an_object"),
        ("timestamp out of range", "timestamp_out_of_range"),
        ("csv row", "csv"),
        ("duplicate event", "duplicate"),
    ):
        if lowered.startswith(prefix):
            return category
    return "invalid_field"


class Metrics:
    """All of streamseg's metrics, in a registry of their own (one per application)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._size_series: set[tuple[str, str]] = set()
        self._customer_series: set[str] = set()
        self.events_consumed = Counter(
            "streamseg_events_consumed_total", "Records read from the source.", registry=r)
        self.events_processed = Counter(
            "streamseg_events_processed_total", "Valid events applied to customer state.",
            registry=r)
        self.events_rejected = Counter(
            "streamseg_events_rejected_total", "Records sent to the dead-letter output.",
            ["reason"], registry=r)
        self.events_duplicate = Counter(
            "streamseg_events_duplicate_total",
            "Redelivered or repeated events skipped because their state already had them.",
            registry=r)
        self.segment_changes = Counter(
            "streamseg_segment_changes_total", "Segment changes published.",
            ["from_segment", "to_segment", "reason"], registry=r)
        self.risk_band_changes = Counter(
            "streamseg_risk_band_changes_total",
            "Risk-band changes published (io.streamseg.risk.changed).",
            ["from_band", "to_band"], registry=r)
        # The trait model's progressive validation, over every partition (each worker's
        # view of the sum of the partitions' shares): every worker reports alike, so
        # take max() across workers, never sum().
        self.trait_examples = Gauge(
            "streamseg_trait_examples", "Labelled snapshots the trait model has learned, "
            "over all partitions (every worker reports the same: max() across workers).",
            registry=r)
        self.trait_auc = Gauge(
            "streamseg_trait_auc", "Progressive ROC AUC of purchase_probability, each label "
            "predicted before it was learned (max() across workers).", registry=r)
        self.trait_calibration_error = Gauge(
            "streamseg_trait_calibration_error", "Progressive expected calibration error of "
            "purchase_probability over deciles (max() across workers).", registry=r)
        self.trait_spend_rmse = Gauge(
            "streamseg_trait_spend_rmse", "Progressive RMSE of expected_spend (max() across "
            "workers).", registry=r)
        self.rescored = Counter(
            "streamseg_inactivity_rescored_total",
            "Idle customers re-scored by the inactivity timer.", registry=r)
        self.batch_duration = Histogram(
            "streamseg_batch_duration_seconds", "Time to process, publish and write one batch.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.end_to_end_latency = Histogram(
            "streamseg_end_to_end_latency_seconds",
            "From the event's produce time (broker timestamp) to its state being written.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.consumer_lag = Gauge(
            "streamseg_consumer_lag_records", "Records not yet consumed, per partition.",
            ["topic", "partition"], registry=r)
        self.segment_size = Gauge(
            "streamseg_segment_size_customers",
            "Customers currently in each segment, per partition, exported by the "
            "partition's owner: sum by (segment) over workers for the totals.",
            ["segment", "partition"], registry=r)
        self.customers = Gauge(
            "streamseg_customers", "Customers stored, per partition, exported by the "
            "partition's owner: sum over workers for the total.",
            ["partition"], registry=r)
        self.refiner = Gauge(
            "streamseg_refiner", "1 while this worker holds the model lease (it refines "
            "and publishes the shared model); else 0.", registry=r)
        self.worker_info = Gauge(
            "streamseg_worker_info", "Always 1: the worker's name (pipeline.worker_id), as "
            "in the logs and the lease.", ["worker"], registry=r)
        self.model_updates = Counter(
            "streamseg_model_updates_total", "Refinements or re-seeds of the centroids.",
            registry=r)
        self.model_version = Gauge(
            "streamseg_model_version", "Version of the model now serving.", registry=r)
        self.store_errors = Counter(
            "streamseg_store_errors_total", "Failed store operations (retried).", registry=r)
        self.fenced_writes = Counter(
            "streamseg_fenced_writes_total",
            "Batches the store refused because another worker took their partitions.",
            registry=r)
        self.broker_errors = Counter(
            "streamseg_broker_errors_total", "Failed Kafka operations (retried).", registry=r)
        self.ready = Gauge(
            "streamseg_ready", "1 while connected to source, sinks and store; else 0.",
            registry=r)
        self.watermark = Gauge(
            "streamseg_event_time_watermark_seconds", "Latest event time seen (Unix time).",
            registry=r)

    def count_rejections(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.events_rejected.labels(reason=reason_category(reason)).inc()

    def count_batch(self, outcome: BatchOutcome) -> None:
        """Count what one written batch did: events applied, rejected and skipped,
        re-scorings and segment changes."""
        self.events_processed.inc(outcome.applied)
        self.count_rejections(letter.reason for letter in outcome.rejected)
        self.events_duplicate.inc(outcome.duplicates)
        self.rescored.inc(outcome.rescored)
        for change in outcome.changes:
            data = change.data
            self.segment_changes.labels(
                from_segment="none" if data.from_segment is None else str(data.from_segment),
                to_segment=str(data.to_segment), reason=data.reason,
            ).inc()
        for risk in outcome.risk_changes:
            self.risk_band_changes.labels(from_band=risk.data.from_band,
                                          to_band=risk.data.to_band).inc()

    def set_trait_quality(self, summary: dict[str, Any]) -> None:
        """The trait model's progressive validation figures (``Quality.summary()``); a
        figure not known yet leaves its gauge as it is."""
        self.trait_examples.set(summary["examples"])
        for gauge, name in ((self.trait_auc, "auc"),
                            (self.trait_calibration_error, "calibration_error"),
                            (self.trait_spend_rmse, "spend_rmse")):
            if summary.get(name) is not None:
                gauge.set(summary[name])

    def set_partition_sizes(self, partitions: dict[str, Partition]) -> None:
        """The sizes and customer counts of the partitions this worker owns; the series
        of partitions it no longer owns are removed (their new owner exports them)."""
        sizes = {(str(segment), name): n for name, part in partitions.items()
                 for segment, n in part.sizes.items()}
        for labels in self._size_series - set(sizes):
            if labels[1] in partitions:
                self.segment_size.labels(*labels).set(0)  # an emptied segment
                sizes[labels] = 0
            else:
                self.segment_size.remove(*labels)
        for labels, n in sizes.items():
            self.segment_size.labels(*labels).set(n)
        self._size_series = set(sizes)
        for name in self._customer_series - set(partitions):
            self.customers.remove(name)
        for name, part in partitions.items():
            self.customers.labels(partition=name).set(part.customers)
        self._customer_series = set(partitions)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # scrapes every few seconds would flood the service's log


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread.

    >>> import urllib.request
    >>> server = MetricsServer(Metrics(), lambda: True, host="127.0.0.1", port=0)
    >>> urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz").read()
    b'ready\\n'
    >>> server.close()
    """

    def __init__(
        self, metrics: Metrics, is_ready: Callable[[], bool], host: str, port: int
    ) -> None:
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._is_ready = is_ready
        self._server: WSGIServer = make_server(host, port, self._app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="streamseg-metrics")
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ready = self._is_ready()
            start_response("200 OK" if ready else "503 Service Unavailable",
                           [("Content-Type", "text/plain")])
            return [b"ready\n" if ready else b"not ready\n"]
        result: Iterable[bytes] = self._metrics_app(environ, start_response)
        return result

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
