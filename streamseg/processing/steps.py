"""The model's steps between batches, as the run loop hands them off.

* :meth:`ModelSteps._share` -- a worker of a shared model, every
  ``pipeline.view_refresh_s``: the lease, the view of the other partitions and the
  refiner's last version, the refinement when due, a step of the sweep;
* :meth:`ModelSteps._idle` -- nothing arrived: re-score idle customers, refine and sweep;
* :meth:`ModelSteps._finish` -- the end of a finite input: a fixed point of re-scoring,
  refinement and sweep.

:class:`ModelSteps` is that part of :class:`~streamseg.app.Application`; each step only
asks the engine for a batch (:mod:`streamseg.engine`) and hands it to ``_deliver``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from streamseg.config import Settings
from streamseg.engine import SegmentationEngine
from streamseg.engine.refiner import Refiner
from streamseg.processing.commit import BatchCommit
from streamseg.processing.lease import LeaseKeeper
from streamseg.processing.observe import Observer
from streamseg.serve.metrics import Metrics

if TYPE_CHECKING:
    from streamseg.engine.batch import BatchOutcome

log = logging.getLogger(__name__)

__all__ = ["MAX_SWEEP_PASSES", "ModelSteps"]

#: Sweeps (each followed by a refinement) at the end of a finite stream at most: enough
#: for the segments to settle (a pass moves fewer customers each time), bounded for
#: the rare case that hysteresis keeps a few going back and forth.
MAX_SWEEP_PASSES = 20


class ModelSteps:
    """The steps of the model between batches (a mixin of the application)."""

    settings: Settings
    engine: SegmentationEngine
    refiner: Refiner
    commit: BatchCommit
    lease: LeaseKeeper | None
    metrics: Metrics
    observer: Observer
    shared: bool
    worker: str
    _stop: threading.Event
    _viewed_at: float
    _lease_tried_at: float
    _saturated: bool

    if TYPE_CHECKING:  # the application's
        def _deliver(self, outcome: BatchOutcome, positions: dict[str, int]) -> None: ...
        def is_ready(self) -> bool: ...

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
        if not self._saturated or engine.reorganising:
            # While catching up on a backlog the events come first: the sweep (quality
            # only) waits for the input to thin out, unless a reorganisation waits on it.
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
