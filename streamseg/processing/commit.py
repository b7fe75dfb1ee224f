"""The batch commit protocol: one batch made durable, then visible, then acknowledged.

Each batch the engine produced goes through :meth:`BatchCommit.commit`:

1. **Dead letters** are published and flushed (acknowledged) first: a crash after this
   re-sends them rather than losing them (dead letters are at-least-once).
2. **Settle the previous batch**: wait until its change events are acknowledged, then
   commit its source positions to the source (Kafka offsets). This must happen before
   step 3, because the write replaces the outbox that still holds those changes.
3. **Write** the customer states, the model checkpoint, the source positions, the
   metadata and this batch's change events (the *outbox*) to the store in one atomic
   write. From here on the batch counts as done: a restart resumes after it.
4. **Publish** this batch's changes. They are sent now; their acknowledgement is awaited
   by the next batch's step 2 (or by :meth:`BatchCommit.settle` when the stream is idle
   or ends), so the broker's round trip overlaps the next poll instead of adding to
   every batch's latency.

Everything of a batch that belongs to a partition -- its customers, its positions, its
sizes and customer count, its change events (its *outbox*) -- is written per partition,
with the owner epoch this worker took (the store refuses the whole write if another
worker took one since). When a worker takes a partition (at start, after a crash, or
from another worker), it publishes that partition's outbox again
(:meth:`BatchCommit.republish`): every change of a stored state reaches the change
stream (possibly twice, with the same CloudEvents id), and no change is published for a
state that was never stored.
"""

from __future__ import annotations

from typing import Any

from streamseg.core.events import ChangeEvent, parse_change
from streamseg.core.state import CustomerState
from streamseg.engine import BatchOutcome
from streamseg.io import ChangeSink, DeadLetterSink, Source
from streamseg.store import BatchWrite, Partition, PartitionWrite, Store

__all__ = ["BatchCommit"]


class BatchCommit:
    """The commit protocol of the module docstring, over one store, source and sinks."""

    def __init__(self, store: Store, source: Source | None, changes: ChangeSink,
                 dead_letters: DeadLetterSink) -> None:
        self.store = store
        self.source = source
        self.changes = changes
        self.dead_letters = dead_letters
        #: The model lease this worker holds; every write carries it (None: unchecked).
        self.lease: str | None = None
        # Positions of the last written batch, committed once its changes are acknowledged.
        self._unsettled: dict[str, int] = {}

    def commit(self, outcome: BatchOutcome, positions: dict[str, int],
               partitions: dict[str, Partition], model_checkpoint: dict[str, Any] | None,
               meta: dict[str, Any]) -> None:
        """Steps 1-4 for one batch (see the module docstring).

        ``partitions`` are the partitions this worker owns, as the engine keeps them
        (epoch, absolute sizes and customer count after the batch); each one the batch
        touches is written with its customers, positions and outbox. ``model_checkpoint``
        None leaves the stored one as it is.
        """
        # 1. dead letters, acknowledged before anything of the batch is stored
        self.dead_letters.publish(outcome.rejected)
        self.dead_letters.flush()
        write = self._write(outcome, positions, partitions, model_checkpoint, meta)
        # 2. the previous batch's changes acknowledged, its positions committed
        self.settle()
        # 3. the batch, atomically (refused whole if this worker was fenced meanwhile)
        self.store.write_batch(write)
        for part in write.partitions:
            owned = partitions[part.partition.name]
            owned.positions.update(part.partition.positions)
            owned.outbox = part.partition.outbox
        if self.source is not None:
            self.source.written(positions)
        # 4. this batch's changes, acknowledged by the next settle
        self.changes.publish([*outcome.changes, *outcome.risk_changes])
        self._unsettled = positions

    def _write(self, outcome: BatchOutcome, positions: dict[str, int],
               partitions: dict[str, Partition], model_checkpoint: dict[str, Any] | None,
               meta: dict[str, Any]) -> BatchWrite:
        """The batch as the store writes it: one part per partition it touches."""
        states: dict[str, list[CustomerState]] = {}
        partition_of: dict[str, str] = {}
        for state in outcome.states:
            name = state.partition or ""
            states.setdefault(name, []).append(state)
            partition_of[state.customer_id] = name
        outboxes: dict[str, list[str]] = {}
        published: list[ChangeEvent] = [*outcome.changes, *outcome.risk_changes]
        for change in published:
            name = partition_of[change.data.customer_id]
            outboxes.setdefault(name, []).append(change.to_json())
        moved: dict[str, dict[str, int]] = {}
        for stream, position in positions.items():
            name = self.source.partition_of(stream) if self.source is not None else stream
            moved.setdefault(name, {})[stream] = position
        # A partition whose stored outbox still holds changes of an earlier batch (now
        # acknowledged: step 2 comes first) is written too, to empty it.
        names = (set(states) | set(moved) | set(outcome.sample)
                 | {n for n, p in partitions.items() if p.outbox})
        parts = []
        for name in sorted(names):
            owned = partitions[name]
            parts.append(PartitionWrite(
                Partition(name, owned.epoch, moved.get(name, {}), dict(owned.sizes),
                          owned.customers, outboxes.get(name, []), owned.model),
                states.get(name, []),
                outcome.sample.get(name, {}),
            ))
        return BatchWrite(parts, model_checkpoint, meta, self.lease)

    def settle(self) -> None:
        """Wait until the last written batch's changes are acknowledged; commit its
        positions. Raises if a change was not delivered (the batch's outbox, still in the
        store, is republished by the recovery)."""
        self.changes.flush()
        if self._unsettled:
            positions, self._unsettled = self._unsettled, {}
            if self.source is not None:
                self.source.commit(positions)

    def forget(self, partitions: set[str]) -> None:
        """Partitions moved away: their positions are no longer this worker's to commit."""
        if self.source is None:
            return
        self._unsettled = {stream: position for stream, position in self._unsettled.items()
                           if self.source.partition_of(stream) not in partitions}

    def republish(self, outbox: list[str]) -> None:
        """Publish the changes of a partition's last written batch again: a crash, or the
        partition's previous owner, may have lost them. Consumers may see such a change
        twice; it carries the same CloudEvents ``id``."""
        if outbox:
            self.changes.publish([parse_change(item) for item in outbox])
            self.changes.flush()

    def write_final(self, model_checkpoint: dict[str, Any] | None, meta: dict[str, Any],
                    partitions: dict[str, Partition] | None = None) -> None:
        """At the end of a run, once the last batch is settled: the model and metadata
        once more, and the outboxes of ``partitions`` emptied (their changes are
        acknowledged; a restart need not publish them again)."""
        parts = [PartitionWrite(Partition(name, owned.epoch, {}, dict(owned.sizes),
                                          owned.customers, [], owned.model))
                 for name, owned in sorted((partitions or {}).items()) if owned.outbox]
        self.store.write_batch(BatchWrite(parts, model_checkpoint, meta, self.lease))
        for part in parts:
            (partitions or {})[part.partition.name].outbox = []
