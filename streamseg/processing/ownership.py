"""Which partitions this worker owns, kept in step with the source, the store and the
engine -- in the pipeline's thread.

The source only notes how its share of the input moved (kafka-python calls its
rebalance listener on another thread, in the middle of a poll); after every poll the
pipeline calls :meth:`Ownership.follow`, which:

1. releases the partitions revoked or lost: the engine forgets their customers and
   their counts, their positions are no longer committed, and the records the poll
   returned for them are dropped (their new owner reads them);
2. takes each newly assigned partition in the store (bumping its owner epoch, so that a
   previous owner that wakes up cannot write it any more), hands it to the engine,
   publishes its outbox again (the previous owner may not have), drops the records the
   poll returned for it and sends it back to its stored position.

After a failed batch (:meth:`Ownership.reload`) the partitions are read again from the
store; one whose epoch moved was taken by another worker meanwhile and is released.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from streamseg.core.events import RawRecord
from streamseg.engine import SegmentationEngine
from streamseg.io import Source
from streamseg.processing.commit import BatchCommit
from streamseg.store import Store

log = logging.getLogger(__name__)

__all__ = ["Ownership"]


class Ownership:
    """The partitions this worker owns and the epochs it took them with."""

    def __init__(self, store: Store, source: Source, commit: BatchCommit) -> None:
        self.store = store
        self.source = source
        self.commit = commit
        #: Partition -> the owner epoch this worker took it with.
        self.epochs: dict[str, int] = {}
        # Assigned by the source, not taken in the store yet.
        self._pending: set[str] = set()

    def follow(self, engine: SegmentationEngine, records: list[RawRecord]) -> list[RawRecord]:
        """Apply the source's assignment changes (module docstring); return the records
        of the poll that are still this worker's to process.

        A partition assigned but not taken yet (the store failed while taking it) stays
        pending, and is taken at the next call: an assignment is never lost.
        """
        change = self.source.assignment_changes()
        if change is not None:
            gone = set(change.revoked) | set(change.lost)
            self._pending -= gone
            owned_gone = gone & set(self.epochs)
            if owned_gone:
                self.release(engine, owned_gone)
            self._pending |= set(change.assigned)
        taken = {}
        for name in sorted(self._pending):
            partition = self.store.take_partition(name)
            self.epochs[name] = partition.epoch
            self._pending.discard(name)
            engine.own(partition)
            self.commit.republish(partition.outbox)
            taken[name] = partition
            log.info("took partition %s (epoch %d)", name, partition.epoch)
        if taken:
            positions = {s: p for part in taken.values() for s, p in part.positions.items()}
            self.source.seek(positions, partitions=set(taken))
        # Records of partitions just taken come again from their stored position; those
        # of partitions gone or not taken yet are not this worker's.
        return [record for record in records
                if record.partition in self.epochs and record.partition not in taken]

    def release(self, engine: SegmentationEngine, names: Collection[str]) -> None:
        """This worker no longer owns ``names``."""
        for name in names:
            self.epochs.pop(name, None)
        engine.release(names)
        self.commit.forget(set(names))
        log.info("released partition(s) %s", ", ".join(sorted(names)))

    def reload(self, engine: SegmentationEngine) -> list[str]:
        """Hand the owned partitions, as stored, to a new ``engine``; release those another
        worker took meanwhile (returned), send the others back to their stored
        positions and publish their outboxes again."""
        fenced = []
        for name, epoch in list(self.epochs.items()):
            partition = self.store.read_partition(name)
            if partition.epoch != epoch:
                fenced.append(name)
                continue
            engine.own(partition)
        if fenced:
            self.release(engine, fenced)
        positions = {stream: position for name in self.epochs
                     for stream, position in engine.partitions[name].positions.items()}
        self.source.seek(positions, partitions=set(self.epochs))
        for name in self.epochs:
            self.commit.republish(engine.partitions[name].outbox)
        return fenced
