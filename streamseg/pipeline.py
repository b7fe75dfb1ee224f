"""The application: source -> engine -> sinks -> store -> commit, configured from one place.

Reading :meth:`Application.run` top to bottom is reading the stream's path:

1. poll a batch of raw records from the source;
2. the engine turns them into customer states, segment changes and rejects;
3. rejects go to the dead-letter sink and changes to the change sink, and both are
   flushed (acknowledged) -- *before* the state is written, so that a crash in between
   re-publishes a change (same CloudEvents id) rather than losing it;
4. the states, the source positions and, periodically, the model go to the store in
   one write;
5. only then the source commits its offsets.
"""

from __future__ import annotations

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
from streamseg.engine import BatchOutcome, SegmentationEngine
from streamseg.sinks import open_change_sink, open_dead_letter_sink
from streamseg.sources import open_source
from streamseg.store import Checkpoint, open_store

log = logging.getLogger(__name__)


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
        self.store = open_store(
            settings.store.uri,
            password=settings.store.redis_password,
            prefix=settings.store.redis_prefix,
        )
        self.source = open_source(source_uri, csv_mapping=csv_mapping, settings=kafka)
        self.changes = open_change_sink(settings.sinks.changes, settings=kafka)
        self.dead_letters = open_dead_letter_sink(self._dead_letter_uri(source_uri),
                                                  settings=kafka)
        self.engine = SegmentationEngine(settings, self.store)
        self.source.seek(self.store.positions())
        self._stop = threading.Event()
        self._totals: dict[str, Any] = {
            "processed": 0, "rejected": 0, "duplicates": 0, "changes": 0, "rescored": 0
        }
        self._events_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    def _dead_letter_uri(self, source_uri: str) -> str:
        configured = self.settings.sinks.dead_letter
        if configured == "kafka://" and source_uri.startswith("kafka://"):
            return source_uri.split(",")[0] + ".dlq"
        return configured

    # -- the loop --------------------------------------------------------------------
    def run(self, *, progress: bool = False, max_batches: int | None = None) -> RunSummary:
        """Process until a finite source ends, :meth:`stop` is called, or SIGTERM."""
        started = time.monotonic()
        batches = 0
        with self._progress_bar(progress) as advance:
            while not self._stop.is_set():
                records = self.source.poll(
                    self.settings.source.batch_size, self.settings.source.poll_timeout_s
                )
                if records:
                    outcome = self.engine.process(records)
                    self._deliver(outcome, self.source.positions_after(records))
                    advance()
                    batches += 1
                    if max_batches is not None and batches >= max_batches:
                        break
                elif self.source.finite and self.source.exhausted:
                    self._finish()
                    break
                else:
                    # Idle: time still moves on for customers who stopped buying.
                    self._deliver(self.engine.rescore_batch(
                        self.settings.pipeline.max_rescore_per_batch), {})
        self._checkpoint_model()
        return self._summary(time.monotonic() - started)

    def stop(self) -> None:
        """Ask the loop to stop after the batch in hand (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
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
        self.dead_letters.publish(outcome.rejected)
        self.changes.publish(outcome.changes)
        self.dead_letters.flush()
        self.changes.flush()
        totals = self._totals
        totals["processed"] += outcome.applied
        totals["rejected"] += len(outcome.rejected)
        totals["duplicates"] += outcome.duplicates
        totals["changes"] += len(outcome.changes)
        totals["rescored"] += outcome.rescored
        self._events_since_checkpoint += outcome.applied + outcome.rescored
        checkpoint = Checkpoint(positions=positions, meta={"watermark": self.engine.watermark})
        if self._checkpoint_due():
            checkpoint.model_state = self.engine.model_checkpoint()
            self._events_since_checkpoint = 0
            self._last_checkpoint = time.monotonic()
        if outcome.states or checkpoint.positions or checkpoint.model_state:
            self.store.write_batch(outcome.states, checkpoint)
        if positions:
            self.source.commit(positions)

    def _checkpoint_due(self) -> bool:
        pipeline = self.settings.pipeline
        return (
            self._events_since_checkpoint >= pipeline.checkpoint_every_events
            or time.monotonic() - self._last_checkpoint >= pipeline.checkpoint_every_seconds
        )

    def _checkpoint_model(self) -> None:
        self.store.write_batch([], Checkpoint(model_state=self.engine.model_checkpoint(),
                                              meta={"watermark": self.engine.watermark}))
        self._events_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

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
