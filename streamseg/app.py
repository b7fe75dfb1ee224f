"""The application: source -> engine -> sinks -> store -> commit, configured from one place.

Reading :meth:`Application.run` top to bottom is reading the stream's path:

1. poll a batch of raw records from the source;
2. the engine turns them into customer states, segment changes and rejects;
3. rejects go to the dead-letter sink and are flushed (acknowledged);
4. the states, the model checkpoint, the source positions and the batch's changes (an
   outbox) go to the store in one atomic write (after the previous batch's changes
   were acknowledged: the write replaces the outbox that holds them);
5. the changes are published; their acknowledgement is awaited before the next write
   (or when idle, or at the end); after a crash they are published again from the
   outbox, with the same CloudEvents ids;
6. once they are acknowledged, the source commits the batch's offsets.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from streamseg.config import Settings
from streamseg.core.events import RawRecord, SegmentChange
from streamseg.engine import BatchOutcome, SegmentationEngine
from streamseg.errors import BrokerError
from streamseg.io import open_change_sink, open_dead_letter_sink, open_source
from streamseg.serve.metrics import Metrics, MetricsServer
from streamseg.store import BatchWrite, open_store

log = logging.getLogger(__name__)

_MAX_HISTORY = 1000  # points of segment-size history kept for the report
_BACKOFF_FIRST_SECONDS = 0.2
_BACKOFF_MAX_SECONDS = 5.0
_FINITE_SOURCE_RETRIES = 5
# Python's full (generation 2) garbage collection walks every tracked object: with
# hundreds of thousands of cached customer states it paused the loop ~100 ms twice in 20
# seconds of live traffic, which is the p99 latency. Instead, every second between
# batches, the loop collects and freezes the survivors (gc.freeze: they are no longer
# scanned); each collection then only walks objects since the last freeze, a pause of a
# few ms (every 10 s, pauses of ~25 ms: bench p99 34-52 ms rather than 15-21 ms).
# Objects are still freed by reference counting when dropped; only garbage *cycles*
# among frozen objects would stay: so every ten minutes everything is unfrozen and
# collected once (one pause of ~100 ms per 200k cached customers, ~0.03% of events).
_GC_FREEZE_EVERY_SECONDS = 1.0
_GC_FULL_EVERY_SECONDS = 600.0


def _failure_kind(error: BaseException) -> str:
    """'store' or 'broker', for the error metrics.

    A :class:`~streamseg.errors.BrokerError` is the broker's; so, until every Kafka
    module raises it, is any error of kafka-python's or of streamseg's Kafka modules.
    """
    if isinstance(error, BrokerError):
        return "broker"
    module = type(error).__module__
    broker = module.startswith(("kafka", "streamseg.io.kafka"))
    return "broker" if broker else "store"


@dataclass(slots=True)
class RunSummary:
    """Totals of one :meth:`Application.run` (this run only, not the store's history)."""

    processed: int
    rejected: int
    duplicates: int
    changes: int
    rescored: int
    customers: int
    segments: dict[int, int]
    seconds: float

    @property
    def events_per_second(self) -> float:
        return (self.processed + self.rejected) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"processed {self.processed} events, rejected {self.rejected}, "
            f"duplicates skipped {self.duplicates}, segment changes {self.changes}, "
            f"customers {self.customers}, segments {len(self.segments)} "
            f"in {self.seconds:.1f}s ({self.events_per_second:,.0f} events/s)"
        )


class Application:
    """streamseg's stream, assembled from :class:`~streamseg.config.Settings`.

    >>> import tempfile, os
    >>> from streamseg.config import load_settings
    >>> folder = tempfile.mkdtemp()
    >>> settings = load_settings(overrides={
    ...     "store": {"uri": "memory://"},
    ...     "sinks": {"changes": os.path.join(folder, "changes.jsonl"),
    ...               "dead_letter": os.path.join(folder, "dead.jsonl")}})
    >>> summary = Application(settings).run()
    >>> summary.processed, summary.rejected, summary.customers, len(summary.segments)
    (6919, 0, 2357, 5)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        source_uri, csv_mapping = settings.resolved_source()
        kafka = settings.kafka
        self.store = open_store(settings.store,
                                cached_customers=settings.pipeline.state_cache_size)
        self.source = open_source(source_uri, csv_mapping=csv_mapping, settings=kafka)
        self.changes = open_change_sink(settings.sinks.changes, settings=kafka)
        self.dead_letters = open_dead_letter_sink(settings.resolved_dead_letter(),
                                                  settings=kafka)
        self.engine = self._new_engine()
        self.source.seek(self.store.positions())
        self._stop = threading.Event()
        self._assignment_epoch = self.source.assignment_epoch
        # Start-up allocated the model and whatever was loaded: collect and freeze now,
        # before traffic, rather than in the first batch.
        gc.collect()
        gc.freeze()
        self._last_gc_freeze = self._last_gc_full = time.monotonic()
        # Positions of the last written batch, committed once its changes are acknowledged.
        self._unsettled: dict[str, int] = {}
        # True from a failed batch until an iteration of the loop succeeds again: the
        # backends may answer a ping (Redis out of memory or read-only) and still fail.
        self._failing = False
        self._totals: dict[str, Any] = {
            "processed": 0, "rejected": 0, "duplicates": 0, "changes": 0, "rescored": 0
        }
        self._last_gauges = 0.0
        self._size_history: list[dict[str, Any]] = list(
            self.store.meta().get("size_history") or []
        )
        self._model_version = self.engine.model.version
        self.metrics = Metrics()
        #: When a list, every event's produce-to-written latency (seconds) is appended
        #: too, for benchmarks that want exact percentiles rather than histogram buckets.
        self.latency_samples: list[float] | None = None
        self.metrics_server: MetricsServer | None = None
        if settings.metrics.enabled:
            self.metrics_server = MetricsServer(
                self.metrics, self.is_ready, settings.metrics.host, settings.metrics.port
            )

    def _new_engine(self) -> SegmentationEngine:
        engine = SegmentationEngine(self.settings, self.store)
        engine.shared_input = self.source.shared
        return engine

    @property
    def totals(self) -> dict[str, int]:
        """Events processed, rejected, duplicates, changes and re-scorings of this run."""
        return dict(self._totals)

    def is_ready(self) -> bool:
        """True while the source, the sinks and the store all answer and the last batch
        did not fail."""
        try:
            ready = (not self._failing and self.source.ready() and self.changes.ready()
                     and self.store.ping())
        except Exception:  # noqa: BLE001 - any failure means not ready
            ready = False
        self.metrics.ready.set(1 if ready else 0)
        return ready

    # -- the loop --------------------------------------------------------------------
    def run(self, *, progress: bool = False, max_batches: int | None = None) -> RunSummary:
        """Process until a finite source ends, :meth:`stop` is called, or SIGTERM.

        Failures of the store or the broker do not end the loop: it reports not-ready,
        waits with exponential backoff, reloads its state from the store and resumes from
        the positions stored with the last written batch, so nothing is lost or applied
        twice. (A finite source gives up after a few consecutive failures instead, so a
        one-off command does not hang forever.)
        """
        started = time.monotonic()
        batches = 0
        failures = 0
        self._republish_outbox()
        with self._progress_bar(progress) as advance:
            while not self._stop.is_set():
                try:
                    records = self.source.poll(
                        self.settings.source.batch_size, self.settings.source.poll_timeout_s
                    )
                    self._follow_assignment()
                    if records:
                        self._process(records)
                        advance()
                        batches += 1
                    elif self.source.finite and self.source.exhausted:
                        self._finish()
                        break
                    else:
                        self._settle()  # idle: let the last batch's commit go out now
                        # Idle: time still moves on for customers who stopped buying.
                        self._deliver(self.engine.rescore_batch(
                            self.settings.pipeline.max_rescore_per_batch), {})
                        self._update_gauges()
                    failures = 0
                    self._failing = False
                except Exception as error:  # noqa: BLE001 - infrastructure failures
                    failures += 1
                    self._failing = True
                    if self.source.finite and failures > _FINITE_SOURCE_RETRIES:
                        raise
                    self._recover(error, failures)
                    continue
                self._collect_garbage()
                if max_batches is not None and batches >= max_batches:
                    break
        if self._failing:
            # Stopped while recovering: the engine may hold part of the batch that failed
            # (a model that counts customers the store never got); the store keeps the
            # last batch written whole, and the next run goes on from there.
            log.warning("stopped before recovering; the store keeps the last batch written")
        else:
            try:
                self._settle()
                self._write_final()
            except Exception:  # noqa: BLE001 - the store keeps the last batch written
                log.exception("could not settle the last batch; the next run republishes "
                              "its changes from the outbox")
        return self._summary(time.monotonic() - started)

    def _follow_assignment(self) -> None:
        """After a poll: if partitions moved, customers this worker cached may have been
        written since by another worker; read them from the store again."""
        if self.source.assignment_epoch != self._assignment_epoch:
            self._assignment_epoch = self.source.assignment_epoch
            self.engine.forget_cached()

    def _process(self, records: list[RawRecord]) -> None:
        started = time.perf_counter()
        self.metrics.events_consumed.inc(len(records))
        outcome = self.engine.process(records)
        self._deliver(outcome, self.source.positions_after(records))
        self._observe_latency(records)
        self.metrics.batch_duration.observe(time.perf_counter() - started)

    def _collect_garbage(self) -> None:
        """Between batches: collect young garbage and freeze the survivors (see
        ``_GC_FREEZE_EVERY_SECONDS``), so that no batch pays for a full collection."""
        now = time.monotonic()
        if now - self._last_gc_freeze < _GC_FREEZE_EVERY_SECONDS:
            return
        self._last_gc_freeze = now
        if now - self._last_gc_full >= _GC_FULL_EVERY_SECONDS:
            self._last_gc_full = now
            gc.unfreeze()  # frozen garbage cycles, if any, are collected too
        gc.collect()
        gc.freeze()

    def _recover(self, error: Exception, failures: int) -> None:
        """Wait for the backends, then reload state from the store and resume from it."""
        kind = _failure_kind(error)
        (self.metrics.store_errors if kind == "store" else self.metrics.broker_errors).inc()
        self.metrics.ready.set(0)
        delay = min(_BACKOFF_MAX_SECONDS, _BACKOFF_FIRST_SECONDS * 2 ** min(failures - 1, 10))
        log.warning("%s failure (%s: %s); retrying in %.1fs", kind, type(error).__name__,
                    error, delay)
        while not self._stop.wait(delay):
            try:
                if not self.store.ping():
                    raise ConnectionError("store does not answer")
                # The engine's in-memory model may hold half a batch: rebuild it from the
                # last consistent write, and go back to the positions stored with it.
                self.engine = self._new_engine()
                self.source.seek(self.store.positions())
                self._republish_outbox()
                log.warning("recovered; resuming from the stored positions")
                return
            except Exception as again:  # noqa: BLE001 - still down: keep waiting
                kind = _failure_kind(again)
                (self.metrics.store_errors if kind == "store" else
                 self.metrics.broker_errors).inc()
                delay = min(_BACKOFF_MAX_SECONDS, delay * 2)
                log.warning("still failing (%s: %s); retrying in %.1fs",
                            type(again).__name__, again, delay)

    def _republish_outbox(self) -> None:
        """Publish the changes of the last written batch again (a crash may have lost them).

        Consumers may see such a change twice; it carries the same CloudEvents ``id``.
        """
        pending = self.store.outbox()
        if pending:
            self.changes.publish([SegmentChange.model_validate_json(item) for item in pending])
            self.changes.flush()

    def stop(self) -> None:
        """Ask the loop to stop after the batch in hand (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
        gc.unfreeze()  # the process may go on without this loop's collections
        if self.metrics_server is not None:
            self.metrics_server.close()
        for closer in (self.changes.close, self.dead_letters.close, self.source.close,
                       self.store.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing must try every resource
                log.exception("error while closing")

    @contextmanager
    def handle_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT finish the current batch, write it and stop cleanly."""

        def _handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: finishing the current batch", signum)
            self.stop()

        previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- steps -----------------------------------------------------------------------
    def _deliver(self, outcome: BatchOutcome, positions: dict[str, int]) -> None:
        """Publish rejects, settle the previous batch, write this one, publish its changes.

        Dead letters are flushed before the write, so a crash re-sends rather than loses
        them. Changes go into the store's outbox *with* the states, and are published
        after the write: every change of a stored state reaches the change topic (again
        after a crash, from the outbox), and no change is published for a state that
        was never stored. This batch's offsets are committed by the next
        :meth:`_settle`, once its changes are acknowledged.
        """
        if not (outcome.states or outcome.rejected or positions):
            return  # an idle tick with nothing due: nothing to write
        self.dead_letters.publish(outcome.rejected)
        self.dead_letters.flush()
        write = BatchWrite(
            model_checkpoint=self.engine.model_checkpoint(),
            positions=positions,
            meta=self._meta(),
            outbox=[change.to_json() for change in outcome.changes],
        )
        # The previous batch's changes must be acknowledged before this write replaces
        # the outbox that holds them.
        self._settle()
        self.store.write_batch(outcome.states, write)
        # Sent now (within linger_ms); the acknowledgement is awaited by the next
        # _settle, so the broker's round trip overlaps the next poll instead of adding
        # to every batch's latency.
        self.changes.publish(outcome.changes)
        self._unsettled = positions
        self._count(outcome)
        self._update_gauges()

    def _settle(self) -> None:
        """Wait until the last written batch's changes are acknowledged; commit its
        positions. Raises if a change was not delivered (the batch's outbox, still in the
        store, is republished by the recovery)."""
        self.changes.flush()
        if self._unsettled:
            positions, self._unsettled = self._unsettled, {}
            self.source.commit(positions)

    def _count(self, outcome: BatchOutcome) -> None:
        totals = self._totals
        metrics = self.metrics
        metrics.events_processed.inc(outcome.applied)
        metrics.count_rejections(letter.reason for letter in outcome.rejected)
        metrics.events_duplicate.inc(outcome.duplicates)
        metrics.rescored.inc(outcome.rescored)
        for change in outcome.changes:
            data = change.data
            metrics.segment_changes.labels(
                from_segment="none" if data.from_segment is None else str(data.from_segment),
                to_segment=str(data.to_segment), reason=data.reason,
            ).inc()
        totals["processed"] += outcome.applied
        totals["rejected"] += len(outcome.rejected)
        totals["duplicates"] += outcome.duplicates
        totals["changes"] += len(outcome.changes)
        totals["rescored"] += outcome.rescored

    def _observe_latency(self, records: list[RawRecord]) -> None:
        written = time.time()
        for record in records:
            if record.produced_at is not None:
                latency = max(0.0, written - record.produced_at)
                self.metrics.end_to_end_latency.observe(latency)
                if self.latency_samples is not None:
                    self.latency_samples.append(latency)

    def _update_gauges(self, every_seconds: float = 5.0) -> None:
        """Refresh gauges that cost a store or broker call, at most every few seconds."""
        version = self.engine.model.version
        if version != self._model_version:
            self.metrics.model_updates.inc(max(0, version - self._model_version))
            self._model_version = version
        self.metrics.model_version.set(version)
        if self.engine.watermark is not None:
            self.metrics.watermark.set(self.engine.watermark)
        now = time.monotonic()
        if now - self._last_gauges < every_seconds:
            return
        self._last_gauges = now
        self.metrics.set_segment_sizes(self.store.segment_sizes())
        lag = getattr(self.source, "lag", None)
        if callable(lag):
            for (topic, partition), behind in lag().items():
                self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(behind)
        self.is_ready()

    def _meta(self, force_history: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "watermark": self.engine.watermark,
            "model_version": self.engine.model.version,
            "segments": self.engine.segment_summaries(),
        }
        if self._record_history(force_history):
            meta["size_history"] = self._size_history
        return meta

    def _record_history(self, force: bool = False) -> bool:
        """Append a point to the segment-size history when the clock moved on enough.

        The history feeds the report's "sizes over time" plot. It is bounded: when full,
        every other point is dropped, so it always spans the whole run at a coarser step.
        """
        now = self.engine.now()
        summaries = self.engine.segment_summaries()
        if not summaries:
            return False
        history = self._size_history
        step = self.settings.pipeline.history_every_days * 86_400.0
        if history and now - history[-1]["time"] < step and not force:
            return False
        if history and history[-1]["time"] == now:
            history.pop()  # same instant: the newer sizes replace the older
        history.append({
            "time": now,
            "sizes": {str(s["segment"]): s["size"] for s in summaries},
            "names": {str(s["segment"]): s["name"] for s in summaries},
        })
        if len(history) > _MAX_HISTORY:
            del history[::2]
        return True

    def _write_final(self) -> None:
        """Write the model and the final history point (at the end of a run)."""
        self.store.write_batch([], BatchWrite(model_checkpoint=self.engine.model_checkpoint(),
                                              meta=self._meta(force_history=True)))

    def _finish(self) -> None:
        """End of input: seed a model still warming up, then catch up on idle customers."""
        self._deliver(self.engine.finish(), {})
        limit = max(1, self.settings.pipeline.max_rescore_per_batch)
        while not self._stop.is_set():
            outcome = self.engine.rescore_batch(limit)
            if not outcome.states:
                break
            self._deliver(outcome, {})

    def _summary(self, seconds: float) -> RunSummary:
        t = self._totals
        return RunSummary(
            processed=t["processed"], rejected=t["rejected"], duplicates=t["duplicates"],
            changes=t["changes"], rescored=t["rescored"], customers=self.store.count(),
            segments=self.store.segment_sizes(), seconds=seconds,
        )

    @contextmanager
    def _progress_bar(self, enabled: bool) -> Iterator[Any]:
        total = self.source.progress_total() if enabled else None
        if total is None:
            yield lambda: None
            return
        from tqdm import tqdm

        with tqdm(total=total, unit="B", unit_scale=True, desc="events", leave=False) as bar:

            def advance() -> None:
                bar.update(self.source.progress_done() - bar.n)

            yield advance
