"""Seeding and refinement of a model several workers share, by one of them at a time.

The worker that holds the store's model lease is the *refiner*. Every
``model.refine_interval_s`` seconds, once ``model.refine_every`` customers were scored
over all partitions since the last refinement (or, before seeding, once the warm-up
buffers of all partitions hold ``model.warmup`` customers), it runs
:meth:`Refiner.run` inside one of its batches:

When the input goes idle, the refiner refines with the complete restart search
(``model.n_init`` candidates, as at the end of a finite stream), once per quiet spell.

1. **Snapshot.** Read every other partition's share and sample rows in one consistent
   read (:meth:`~streamseg.store.Store.snapshot`; Redis: one ``MULTI``). Each owner
   writes a partition's share and its rows in the same atomic write, so each
   partition's statistics and rows describe the same instant; partitions add up, so
   the snapshot is consistent as a whole. The refiner's own partitions are its live
   ones.
2. **Others.** Their statistics become the model's others: the refinement's fixed part
   (customers outside the sample) is exact over what was read.
3. **Seed or refine.** Not seeded yet: k-means++ over the refiner's buffer and the other
   partitions' buffered rows. Seeded: Lloyd iterations (and a restart candidate) over
   its sampled customers and the others' assigned rows, ids matched to the current ones.
4. **Publish.** The refiner's own customers that moved are assigned in this batch; the
   other workers' are published as *relabels* (customer -> new segment, and a checksum
   of the vector the refinement saw), with the new version, centroids and names, in the
   batch's model checkpoint -- one atomic write with the refiner's customers, refused
   if the refiner lost the lease meanwhile. Nothing is published half.

The other workers adopt a version when their view refreshes (every
``pipeline.view_refresh_s``): they move each of their relabelled customers whose vector
is still the one the refinement saw, in their partition's statistics, state and sample
row at once, and announce it as a ``model_update`` change. A relabel of a customer
whose vector changed since is dropped: its own update placed it already.

The invariant between a refinement and its adoption: each partition's stored sums are
at all times exactly the sums over its stored customers' vectors and segments (the
owner changes both in one write); the published centroids are the means the refinement
computed, which the stored sums reach once every owner has adopted its relabels. Until
then a worker's centroids are the means of its view, which mixes adopted and not yet
adopted partitions; a relabel lost to a crash is found again by the next refinement,
which reads the rows as stored.

A *reorganisation* breaks that invariant on purpose, for a while. When more customers
than the sample holds are stored, a restart that reorganises the segments is judged on
the sample alone (:func:`~streamseg.model.refinement.refine`): the customers outside it
still sit in the old solution's segments, and centroids that were the means of the
stored sums would be pulled straight back to it. So the refiner publishes the restart's
centroids *pinned*: every worker scores with them as published, and each owner's
re-assignment sweep (:mod:`.sweep`) places every customer of its partitions at them,
recording the version it swept at in the partition's share. Once every partition's
share says so, the refiner releases the centroids (a new version): they are the means
of the stored sums again, now those of the new solution. Meanwhile no refinement runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from streamseg.engine.shared import Share
from streamseg.faults import fail_point
from streamseg.model import Assignment, CustomerKMeans

if TYPE_CHECKING:
    from streamseg.engine.engine import SegmentationEngine

log = logging.getLogger(__name__)

__all__ = ["Refiner"]


class Refiner:
    """When the refiner seeds or refines the shared model, and how (module docstring)."""

    def __init__(self, interval_s: float, refine_every: int, warmup: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.refine_every = refine_every
        self.warmup = warmup
        self._clock = clock
        self._last: float | None = None

    def due(self, engine: SegmentationEngine, idle: bool = False) -> bool:
        """Whether :meth:`run` should run now. ``idle``: the input has nothing new --
        the stream's end for now, when any update not refined over is (a refinement
        with the complete restart search, as at the end of a finite stream)."""
        model = engine.model
        if not isinstance(model, CustomerKMeans):
            return False
        if not model.ready:
            # (not early when idle: a live stream idles between bursts, long before
            # there is enough to seed from)
            return model.n_buffered + engine.shares.buffered() >= self.warmup
        if model.pinned:  # a reorganisation waits for every partition's sweep
            return engine.swept_everywhere()
        if self._last is not None and self._clock() - self._last < self.interval_s:
            return False
        pending = engine.shares.total_updates() - engine.refined_at
        return pending >= (1 if idle else self.refine_every)

    def run(self, engine: SegmentationEngine, idle: bool = False) -> list[Assignment]:
        """Steps 1-4 of the module docstring; returns the refiner's own customers'
        assignments (the batch applies them). The published parts are left in
        ``engine`` (``relabels``, ``refined_at``, the model's version and centroids) for
        the batch's checkpoint. ``idle``: refine with the complete restart search."""
        model = engine.model
        assert isinstance(model, CustomerKMeans)
        if model.pinned:
            # Every owner placed its customers at the held centroids: release them.
            model.unpin()
            engine.relabels = {}
            log.info("every partition swept at the reorganisation; version %d follows "
                     "the statistics again", model.version)
            return []
        self._last = self._clock()
        # 1. snapshot of the other partitions
        names = [n for n in engine.store.partition_names() if n not in engine.partitions]
        parts, samples = engine.store.snapshot(names)
        k, dim = engine.settings.model.n_clusters, engine.shares.dim
        shares = {name: Share.from_json(part.model, dim, engine.shares.floor)
                  for name, part in parts.items()}
        # 2. their statistics are the fixed part
        engine.shares.set_others(shares)
        engine.sync_others()
        rows = [(cid, vector, segment) for name in sorted(samples)
                for cid, (segment, vector) in sorted(samples[name].items())]
        engine.refined_at = engine.shares.total_updates()
        # 3. seed or refine
        if not model.ready:
            waiting = np.array([vector for _, vector, segment in rows if segment < 0],
                               dtype=np.float64).reshape(-1, dim)
            if model.n_buffered + len(waiting) < k:
                return []
            buffered = model.n_buffered + len(waiting)
            moved = model.seed_shared(waiting)
            fail_point("refiner.before_publish")
            engine.relabels = {}
            log.info("seeded the shared model over %d buffered customers", buffered)
            return moved
        assigned = [(cid, vector, segment) for cid, vector, segment in rows if segment >= 0]
        refinement = model.refine_shared(
            ([cid for cid, _, _ in assigned],
             np.array([vector for _, vector, _ in assigned], dtype=np.float64).reshape(-1, dim),
             np.array([segment for _, _, segment in assigned], dtype=np.int64)),
            full_search=idle)
        fail_point("refiner.before_publish")
        # 4. publish: the others' moves go out with the checkpoint
        engine.relabels = refinement.relabels
        log.info("refinement %d over %d sampled customers (%d of other workers): %d of "
                 "this worker's and %d of the others' moved", model.version,
                 model.n_sampled + len(assigned), len(assigned), len(refinement.moved),
                 len(refinement.relabels))
        if model.pinned:
            log.info("refinement %d reorganises the segments (judged on the sample): its "
                     "centroids are held until every partition was swept", model.version)
        return refinement.moved
