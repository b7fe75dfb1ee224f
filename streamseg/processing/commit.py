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

After a crash, :meth:`BatchCommit.republish_outbox` publishes the last written batch's
changes again: every change of a stored state reaches the change stream (possibly
twice, with the same CloudEvents id), and no change is published for a state that was
never stored.
"""

from __future__ import annotations

from typing import Any

from streamseg.core.events import SegmentChange
from streamseg.engine import BatchOutcome
from streamseg.io import ChangeSink, DeadLetterSink, Source
from streamseg.store import BatchWrite, Store

__all__ = ["BatchCommit"]


class BatchCommit:
    """The commit protocol of the module docstring, over one store, source and sinks."""

    def __init__(self, store: Store, source: Source | None, changes: ChangeSink,
                 dead_letters: DeadLetterSink) -> None:
        self.store = store
        self.source = source
        self.changes = changes
        self.dead_letters = dead_letters
        # Positions of the last written batch, committed once its changes are acknowledged.
        self._unsettled: dict[str, int] = {}

    def commit(self, outcome: BatchOutcome, positions: dict[str, int],
               model_checkpoint: dict[str, Any] | None, meta: dict[str, Any]) -> None:
        """Steps 1-4 for one batch (see the module docstring). ``model_checkpoint``
        None leaves the stored one as it is; ``source`` None (a job that reads no
        source) has no positions to commit."""
        # 1. dead letters, acknowledged before anything of the batch is stored
        self.dead_letters.publish(outcome.rejected)
        self.dead_letters.flush()
        write = BatchWrite(
            model_checkpoint=model_checkpoint,
            positions=positions,
            meta=meta,
            outbox=[change.to_json() for change in outcome.changes],
        )
        # 2. the previous batch's changes acknowledged, its positions committed
        self.settle()
        # 3. the batch, atomically
        self.store.write_batch(outcome.states, write)
        if self.source is not None:
            self.source.written(positions)
        # 4. this batch's changes, acknowledged by the next settle
        self.changes.publish(outcome.changes)
        self._unsettled = positions

    def settle(self) -> None:
        """Wait until the last written batch's changes are acknowledged; commit its
        positions. Raises if a change was not delivered (the batch's outbox, still in the
        store, is republished by the recovery)."""
        self.changes.flush()
        if self._unsettled:
            positions, self._unsettled = self._unsettled, {}
            if self.source is not None:
                self.source.commit(positions)

    def republish_outbox(self) -> None:
        """Publish the changes of the last written batch again (a crash may have lost them).

        Consumers may see such a change twice; it carries the same CloudEvents ``id``.
        """
        pending = self.store.outbox()
        if pending:
            self.changes.publish([SegmentChange.model_validate_json(item) for item in pending])
            self.changes.flush()

    def write_final(self, model_checkpoint: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write the model and metadata once more at the end of a run (no states)."""
        self.store.write_batch([], BatchWrite(model_checkpoint=model_checkpoint, meta=meta))
