"""The application: source -> engine -> sinks -> store -> commit, configured from one place.

:class:`Application` opens everything :class:`~streamseg.config.Settings` names and runs
the loop. The loop only hands work off; reading :meth:`Application.run` top to bottom is
reading the stream's path:

1. poll a batch of raw records from the source;
2. the engine turns them into customer states, segment changes and rejects
   (:mod:`streamseg.engine`);
3. the batch commit protocol makes them durable, then visible
   (:mod:`streamseg.processing.commit`: dead letters, the previous batch settled, one
   atomic store write, the changes published);
4. when idle, the inactivity timer re-scores customers whose time has come;
5. on a failure of the store or the broker, the loop backs off, reloads its state from
   the store and resumes (:mod:`streamseg.processing.recovery`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from streamseg.config import ConfigError, Settings
from streamseg.core.events import RawRecord
from streamseg.engine import BatchOutcome, SegmentationEngine
from streamseg.engine.checkpoint import is_legacy
from streamseg.engine.refiner import Refiner
from streamseg.engine.reseed import reseed_in_progress
from streamseg.engine.stored_settings import (
    check_partition_counts,
    check_stored_settings,
    record_from_checkpoint,
    settings_record,
)
from streamseg.io import open_change_sink, open_dead_letter_sink, open_source
from streamseg.processing.commit import BatchCommit
from streamseg.processing.gc import GarbagePolicy
from streamseg.processing.history import SizeHistory
from streamseg.processing.lease import LeaseKeeper, LeaseLost, worker_id
from streamseg.processing.observe import Observer
from streamseg.processing.ownership import Ownership
from streamseg.processing.recovery import FINITE_SOURCE_RETRIES, Backoff, failure_kind
from streamseg.processing.summary import RunSummary, RunTotals
from streamseg.serve.metrics import Metrics, MetricsServer
from streamseg.store import FencedError, Store, open_store

log = logging.getLogger(__name__)

__all__ = ["Application", "RunSummary"]

#: Sweeps (each followed by a refinement) at the end of a finite stream at most: enough
#: for the segments to settle (a pass moves fewer customers each time), bounded for
#: the rare case that hysteresis keeps a few going back and forth.
MAX_SWEEP_PASSES = 20

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
        self._closed = False
        try:
            self._open(settings)
        except BaseException:
            self._close_opened()  # what opened before the failure must not stay open
            raise

    #: What close() closes, in this order: the server and GC policy, the sinks (they
    #: flush), the source (it commits its last offsets), the lease, the store.
    _CLOSE_ORDER = ("metrics_server", "gc_policy", "changes", "dead_letters", "source",
                    "lease", "store")

    def _open(self, settings: Settings) -> None:
        self.metrics_server: MetricsServer | None = None
        source_uri, csv_mapping = settings.resolved_source()
        kafka = settings.kafka
        self.store = open_store(settings.store,
                                cached_customers=settings.pipeline.state_cache_size)
        meta = self.store.meta()
        # Before anything is written: settings that shape stored data must match the
        # store's (raises, naming them); the others are applied and recorded.
        stored = meta.get("settings") or record_from_checkpoint(self.store.load_model())
        changed = check_stored_settings(stored, settings, where=settings.store.uri)
        interrupted = reseed_in_progress(meta)
        if interrupted:
            raise ConfigError(interrupted)
        if changed:
            log.warning("applying changed settings to the existing store: %s",
                        ", ".join(changed))
        self.settings_record = settings_record(settings)
        #: Several workers share the model (see streamseg.engine.shared): a Kafka source
        #: (a consumer group spreads its partitions) and a model that can be shared.
        self.shared = (source_uri.startswith("kafka://")
                       and settings.model.kind == "customer-kmeans")
        self.worker = settings.pipeline.worker_id or worker_id()
        self.lease: LeaseKeeper | None = LeaseKeeper(
            self.store, self._lease_store, self.worker, settings.pipeline.lease_ttl_s)
        if self.shared:
            # The lease makes this worker the refiner, if nobody else is.
            self.lease.try_acquire()
        else:
            # The lease before the input: a second worker on this store stops here,
            # before it joins the consumer group (LeaseHeld names the holder).
            self.lease.acquire()
        if is_legacy(self.store.load_model()):
            self._upgrade()
        self.source = open_source(source_uri, csv_mapping=csv_mapping, settings=kafka)
        self.partition_counts = self.source.partition_counts()
        check_partition_counts(meta.get("partition_counts"), self.partition_counts,
                               settings.store.uri)
        self.changes = open_change_sink(settings.sinks.changes, settings=kafka)
        self.dead_letters = open_dead_letter_sink(settings.resolved_dead_letter(),
                                                  settings=kafka)
        self.commit = BatchCommit(self.store, self.source, self.changes, self.dead_letters)
        self.commit.lease = self.lease.token
        self.ownership = Ownership(self.store, self.source, self.commit)
        self.refiner = Refiner(settings.model.refine_interval_s, settings.model.refine_every,
                               settings.model.warmup)
        self._viewed_at = -float("inf")
        self._lease_tried_at = time.monotonic()
        self.engine = self._new_engine()
        self._stop = threading.Event()
        self.gc_policy = GarbagePolicy()
        self.gc_policy.start()
        self.backoff = Backoff()
        # True from a failed batch until an iteration of the loop succeeds again: the
        # backends may answer a ping (Redis out of memory or read-only) and still fail.
        self._failing = False
        self._totals = RunTotals()
        self.history = SizeHistory(list(meta.get("size_history") or []),
                                   settings.pipeline.history_every_days)
        self.metrics = Metrics()
        self.metrics.worker_info.labels(worker=self.worker).set(1)
        self.observer = Observer(self.metrics, self.store, self.source,
                                 self.engine.model.version)
        if settings.metrics.enabled:
            self.metrics_server = MetricsServer(
                self.metrics, self.is_ready, settings.metrics.host, settings.metrics.port
            )

    def _new_engine(self) -> SegmentationEngine:
        engine = SegmentationEngine(self.settings, self.store, shared=self.shared)
        if self._holds_lease():
            engine.lead()
        return engine

    def _holds_lease(self) -> bool:
        return self.lease is not None and self.lease.token is not None and not self.lease.lost

    def _upgrade(self) -> None:
        """A store written before the model was kept per partition: move it there, once,
        holding the lease (no worker of the previous version may run meanwhile)."""
        from streamseg.engine.upgrade import upgrade_store

        if not self._holds_lease():
            raise ConfigError(
                f"{self.settings.store.uri} was written by an earlier version of streamseg "
                "and must be upgraded by one worker alone: stop every worker of this "
                "store, then start one")
        upgrade_store(self.settings, self.store, self.lease.token if self.lease else None)

    def _lease_store(self) -> Store:
        """The renewing thread's store: its own connection, but for an in-process store."""
        if self.settings.store.uri.startswith("memory://"):
            return self.store
        return open_store(self.settings.store)

    @property
    def totals(self) -> dict[str, int]:
        """Events processed, rejected, duplicates, changes and re-scorings of this run."""
        return self._totals.as_dict()

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
        with self._progress_bar(progress) as advance:
            while not self._stop.is_set():
                try:
                    self._check_lease()
                    if self.source.finite:  # a whole file is this worker's from the start
                        self.ownership.follow(self.engine, [])
                    if self.shared:
                        self._share()
                    records = self.source.poll(
                        self.settings.source.batch_size, self.settings.source.poll_timeout_s
                    )
                    records = self.ownership.follow(self.engine, records)
                    self.engine.behind = self.source.behind()
                    if records:
                        self._process(records)
                        advance()
                        batches += 1
                    elif self.source.finite and self.source.exhausted:
                        self._finish()
                        break
                    else:
                        self._idle()
                    failures = 0
                    self._failing = False
                except FencedError as error:
                    if error.lease and self.shared:
                        self._demote()
                    elif error.lease and not (self.lease and self.lease.regain()):
                        raise LeaseLost(
                            f"this worker ({self.lease.holder if self.lease else '?'}) lost "
                            f"the model lease of {self.settings.store.uri}: {error}; "
                            "another worker holds the store now") from error
                    self._fenced(error)
                    continue
                except LeaseLost:
                    raise
                except Exception as error:  # noqa: BLE001 - infrastructure failures
                    failures += 1
                    self._failing = True
                    if self.source.finite and failures > FINITE_SOURCE_RETRIES:
                        raise
                    self._recover(error, failures)
                    continue
                self.gc_policy.tick()
                if max_batches is not None and batches >= max_batches:
                    break
        if self._failing:
            # Stopped while recovering: the engine may hold part of the batch that failed
            # (a model that counts customers the store never got); the store keeps the
            # last batch written whole, and the next run goes on from there.
            log.warning("stopped before recovering; the store keeps the last batch written")
        else:
            try:
                self.commit.settle()
                self.commit.write_final(self._checkpoint(), self._meta(force_history=True),
                                        self.engine.partitions)
            except Exception:  # noqa: BLE001 - the store keeps the last batch written
                log.exception("could not settle the last batch; the next run republishes "
                              "its changes from the outbox")
        return self._summary(time.monotonic() - started)

    def _process(self, records: list[RawRecord]) -> None:
        started = time.perf_counter()
        self.metrics.events_consumed.inc(len(records))
        outcome = self.engine.process(records)
        self._deliver(outcome, self.source.positions_after(records))
        self.observer.latency(records)
        self.metrics.batch_duration.observe(time.perf_counter() - started)

    def _idle(self) -> None:
        """Nothing arrived: let the last batch's commit go out now, and re-score idle
        customers (time still moves on for customers who stopped buying); a shared
        model's sweep takes a step too."""
        self.commit.settle()
        self._deliver(self.engine.rescore_batch(self.settings.pipeline.max_rescore_per_batch),
                      {})
        if self.shared:
            engine = self.engine
            if engine.refiner and self.refiner.due(engine, idle=True):
                self._deliver(engine.refine_shared(self.refiner, idle=True), {})
            self._deliver(engine.sweep_batch(self.settings.model.sweep_page), {})
        self.observer.refresh(self.engine, self.is_ready)

    def _finish(self) -> None:
        """End of input: seed a model still warming up, catch up on idle customers, then
        refine once more over what the catch-up moved, and sweep (every customer at its
        nearest centroid again, :mod:`streamseg.engine.sweep`) and refine until a sweep
        moves nobody.

        The run ends at a fixed point: nobody is due, nobody is away from the segment the
        sweep would give them, and the model has no update it has not refined over, so a
        run with no new events and no time passed changes nothing.
        """
        engine = self.engine
        self._deliver(engine.finish(), {})
        limit = max(1, self.settings.pipeline.max_rescore_per_batch)
        while not self._stop.is_set():
            outcome = engine.rescore_batch(limit)
            if not outcome.states:
                break
            self._deliver(outcome, {})
        if self._stop.is_set():
            return
        self._deliver(engine.finish(), {})
        page = self.settings.model.sweep_page
        for _ in range(MAX_SWEEP_PASSES if page > 0 else 0):
            while not self._stop.is_set() and engine.sweep_pending():
                self._deliver(engine.sweep_batch(page), {})
            if self._stop.is_set():
                return
            refined = engine.finish()
            self._deliver(refined, {})
            if engine.sweep.moved == 0 and not refined.states:
                break

    def _share(self) -> None:
        """A worker of a shared model, every ``pipeline.view_refresh_s``: the lease
        (refiner or not), the other partitions' shares and the refiner's last version,
        then the refinement when due, and a step of the sweep."""
        now = time.monotonic()
        if now - self._viewed_at < self.settings.pipeline.view_refresh_s:
            return
        self._viewed_at = now
        engine = self.engine
        if engine.refiner and self.lease is not None and self.lease.lost:
            self._demote()
        elif (not engine.refiner and self.lease is not None
              and now - self._lease_tried_at >= self.settings.pipeline.lease_ttl_s / 3):
            self._lease_tried_at = now
            if self.lease.try_acquire():
                engine.adopt_published(force=True)  # the latest version before its own
                engine.lead()
                self.commit.lease = self.lease.token
                log.info("this worker (%s) refines the shared model now", self.worker)
        engine.refresh_view()
        self._deliver(engine.take_pending(), {})
        if engine.refiner and self.refiner.due(engine):
            self._deliver(engine.refine_shared(self.refiner), {})
        self._deliver(engine.sweep_batch(self.settings.model.sweep_page), {})
        self.metrics.refiner.set(1 if engine.refiner else 0)

    def _demote(self) -> None:
        """The refiner lost the lease (paused past its time to live): another worker
        refines now; this one goes on as one of the others."""
        log.warning("this worker (%s) lost the model lease; another worker refines the "
                    "shared model now", self.worker)
        if self.lease is not None:
            self.lease.reset()
        self.commit.lease = None
        self.engine.refiner = False
        self._lease_tried_at = time.monotonic()
        self.metrics.refiner.set(0)

    def _deliver(self, outcome: BatchOutcome, positions: dict[str, int]) -> None:
        """Commit one batch (see :mod:`streamseg.processing.commit`), then count it."""
        if not (outcome.states or outcome.rejected or positions):
            return  # an idle tick with nothing due: nothing to write
        self.commit.commit(outcome, positions, self.engine.partitions,
                           self._checkpoint(), self._meta())
        self.metrics.count_batch(outcome)
        self._totals.add(outcome)
        self.observer.refresh(self.engine, self.is_ready)

    def _recover(self, error: Exception, failures: int) -> None:
        """Wait for the backends, then reload state from the store and resume from it."""
        self._count_failure(error)
        self.metrics.ready.set(0)
        delay = self.backoff.after(failures)
        log.warning("%s failure (%s: %s); retrying in %.1fs", failure_kind(error),
                    type(error).__name__, error, delay)
        while not self._stop.wait(delay):
            try:
                if not self.store.ping():
                    raise ConnectionError("store does not answer")
                self._reload()
                log.warning("recovered; resuming from the stored positions")
                return
            except Exception as again:  # noqa: BLE001 - still down: keep waiting
                self._count_failure(again)
                delay = self.backoff.again(delay)
                log.warning("still failing (%s: %s); retrying in %.1fs",
                            type(again).__name__, again, delay)

    def _reload(self) -> None:
        """The engine's in-memory model may hold half a batch: rebuild it from the last
        consistent write, and go back to the positions stored with it."""
        if self.lease is not None:
            self.commit.lease = self.lease.token if self._holds_lease() else None
        self.engine = self._new_engine()
        fenced = self.ownership.reload(self.engine)
        if fenced:
            log.warning("partition(s) %s taken by another worker meanwhile",
                        ", ".join(fenced))

    def _fenced(self, error: FencedError) -> None:
        """The store refused a batch: another worker took some of its partitions. Drop
        the batch, release them, and go on with what this worker still owns."""
        log.warning("%s; dropping the batch and going on with what this worker still "
                    "holds", error)
        self.metrics.fenced_writes.inc()
        self.ownership.release(self.engine, error.partitions)
        self._reload()

    def _check_lease(self) -> None:
        if self.lease is not None and self.lease.lost and not self.shared:
            raise LeaseLost(f"this worker ({self.lease.holder}) lost the model lease of "
                            f"{self.settings.store.uri}: another worker holds it now")

    def _count_failure(self, error: BaseException) -> None:
        kind = failure_kind(error)
        (self.metrics.store_errors if kind == "store" else self.metrics.broker_errors).inc()

    # -- metadata and metrics --------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any] | None:
        """The model checkpoint, from the worker that holds the lease only."""
        return self.engine.model_checkpoint() if self.engine.refiner else None

    def _meta(self, force_history: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "settings": self.settings_record,
            "partition_counts": self.partition_counts,
        }
        if not self.engine.refiner:
            return meta  # what describes the whole model is the refiner's to write
        meta |= {
            "watermark": self.engine.watermark,
            "model_version": self.engine.model.version,
            "segments": self.engine.segment_summaries(),
        }
        if self.history.record(self.engine.now(), self.engine.segment_summaries(),
                               force_history):
            meta["size_history"] = self.history.points
        return meta

    def _summary(self, seconds: float) -> RunSummary:
        t = self._totals
        return RunSummary(
            processed=t.processed, rejected=t.rejected, duplicates=t.duplicates,
            changes=t.changes, rescored=t.rescored, customers=self.store.count(),
            segments=self.store.segment_sizes(), seconds=seconds,
            risk_changes=t.risk_changes,
        )

    # -- starting and stopping -------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the batch in hand (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
        """Close everything the application opened (sinks flush what they hold)."""
        self._close_opened()

    def _close_opened(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name in self._CLOSE_ORDER:
            resource = getattr(self, name, None)
            if resource is None:
                continue
            try:
                resource.close()
            except Exception:  # noqa: BLE001 - closing must try every resource
                log.exception("error while closing the %s", name)

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

    @contextmanager
    def _progress_bar(self, enabled: bool) -> Iterator[Callable[[], None]]:
        total = self.source.progress_total() if enabled else None
        if total is None:
            yield lambda: None
            return
        from tqdm import tqdm

        with tqdm(total=total, unit="B", unit_scale=True, desc="events", leave=False) as bar:

            def advance() -> None:
                bar.update(self.source.progress_done() - bar.n)

            yield advance
