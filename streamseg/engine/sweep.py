"""The re-assignment sweep: every stored customer put at its nearest centroid again.

A refinement moves the centroids and re-assigns the sampled customers; a customer
outside the sample keeps the segment it got when it was last scored, which may no longer
be its nearest. After each new model version, the owner of each partition goes through
its stored customers, page by page (``model.sweep_page`` customers), and the model
re-places each one at its unchanged vector (``CustomerKMeans.replace``, with the
hysteresis rule); those that move get a ``model_update`` change like any other. So the
segmentation follows the centroids for the whole population, not only for the sample,
while the memory stays that of one page.

:class:`Sweep` only remembers where the sweep is: the model version its pass started
at, and a cursor per partition. A pass that finishes with the version unchanged leaves
nothing to do until the next version.

After a *reorganisation* (a restart found on the sample; see :mod:`.refiner`) the
centroids are held until every partition was swept at its version: each owner records
the version its pass started at in the partition's share (:class:`Sweeping`), and the
refiner -- or a worker alone, when its own pass ends -- then releases them. A worker
alone sweeps between batches only then; otherwise at the end of a finite stream.

>>> sweep = Sweep()
>>> sweep.pending(version=1)
True
>>> sweep.begin_if_needed(1, ["p0"]); sweep.next_partition()
'p0'
>>> sweep.advance("p0", ""); sweep.pending(1), sweep.pending(2)
(False, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from streamseg.engine.batch import Batch, BatchOutcome
from streamseg.engine.shared import Shares
from streamseg.model import Assignment, CustomerKMeans, SegmentModel
from streamseg.store import Partition, Store

__all__ = ["Sweep", "Sweeping"]


class Sweep:
    """Progress of the re-assignment sweep over the partitions a worker owns."""

    def __init__(self) -> None:
        #: The model version the last complete pass started at (None: no pass yet).
        self.done: int | None = None
        #: The version the pass in progress started at, and its cursors.
        self.started: int | None = None
        self.cursors: dict[str, str] = {}
        #: Customers the pass in progress (or the last one) moved.
        self.moved = 0

    def pending(self, version: int) -> bool:
        """Whether a pass is due or in progress for model ``version``."""
        return self.done != version

    def begin_if_needed(self, version: int, partitions: Iterable[str]) -> None:
        """Start a pass over ``partitions`` unless one for ``version`` is in progress."""
        if self.started == version and self.cursors:
            return
        self.started = version
        self.cursors = {name: "" for name in sorted(partitions)}
        self.moved = 0

    def next_partition(self) -> str | None:
        """The partition to read the next page from (None: the pass is over)."""
        return next(iter(self.cursors), None)

    def advance(self, partition: str, cursor: str) -> None:
        """A page of ``partition`` was read; ``cursor`` is where it goes on ('' = done)."""
        if cursor:
            self.cursors[partition] = cursor
            return
        self.cursors.pop(partition, None)
        if not self.cursors:
            self.done = self.started

    def forget(self, partitions: Iterable[str]) -> None:
        """Partitions moved away (or came in): start the next pass afresh."""
        del partitions
        self.started = None
        self.cursors = {}
        self.done = None


class Sweeping:
    """The sweep's steps, and the end of a reorganisation (a mixin of the engine)."""

    model: SegmentModel
    store: Store
    shares: Shares
    partitions: dict[str, Partition]
    shared: bool
    sweep: Sweep

    if TYPE_CHECKING:  # the engine's
        def _begin(self) -> Batch: ...
        def _end(self, batch: Batch) -> BatchOutcome: ...
        def _load(self, batch: Batch, customer_ids: Iterable[str]) -> None: ...
        def _pending_keys(self) -> set[str]: ...
        def _apply_assignments(self, batch: Batch, assignments: list[Assignment]) -> None: ...

    @property
    def reorganising(self) -> bool:
        """Whether a reorganisation holds the centroids until the sweep is over."""
        return isinstance(self.model, CustomerKMeans) and self.model.pinned

    def sweep_pending(self) -> bool:
        """Whether a pass of the re-assignment sweep is due or in progress."""
        model = self.model
        return (isinstance(model, CustomerKMeans) and model.ready
                and self.sweep.pending(model.version))

    def sweep_batch(self, limit: int) -> BatchOutcome:
        """One page of the re-assignment sweep (:mod:`.sweep`): stored customers put at
        their nearest centroid again; an empty outcome when no pass is due."""
        batch = self._begin()
        model = self.model
        if limit <= 0 or not self.sweep_pending():
            return self._end(batch)
        assert isinstance(model, CustomerKMeans)
        self.sweep.begin_if_needed(model.version, self.partitions)
        partition = self.sweep.next_partition()
        if partition is None:
            self.sweep.advance("", "")
            return self._end(batch)
        ids, cursor = self.store.customers_page(partition, self.sweep.cursors[partition], limit)
        self.sweep.advance(partition, cursor)
        if not cursor:  # the pass is over in this partition: say so with its share
            self.shares.swept[partition] = self.sweep.started or 0
            batch.shares_changed.add(partition)
        self._load(batch, ids)
        rows = [state for cid in ids if (state := batch.state(cid)) is not None
                and state.partition == partition and state.vector is not None
                and state.segment is not None and cid not in self._pending_keys()]
        if rows:
            moved = model.replace([s.customer_id for s in rows],
                                  np.array([s.vector for s in rows], dtype=np.float64),
                                  [int(s.segment) for s in rows],  # type: ignore[arg-type]
                                  [partition] * len(rows))
            self.sweep.moved += len(moved)
            self.shares.scored(partition, len(moved))
            self._apply_assignments(batch, moved)
        if not self.shared and model.pinned and self.swept_everywhere():
            model.unpin()
            batch.outcome.publish = True
        return self._end(batch)

    def swept_everywhere(self) -> bool:
        """Whether the sweep placed every partition's customers at the model's current
        version (each owner says so in its partition's share)."""
        version = self.model.version if isinstance(self.model, CustomerKMeans) else 0
        if any(self.shares.swept.get(name, -1) < version for name in self.partitions):
            return False
        return all(share.swept >= version for share in self.shares.others.values()
                   if share.stats is not None and share.stats.counts.any())

