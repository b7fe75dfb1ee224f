"""The segmentation engine: events in, customer states and segment changes out.

The engine holds no I/O of its own besides reading customer states from the
:class:`~streamseg.store.Store`; writing them, publishing changes and committing offsets
are the pipeline's job. One batch, top to bottom:

1. parse each record into a :class:`~streamseg.core.events.TransactionEvent`, or reject it
   (:mod:`.intake`);
2. load the batch's customers: from the engine's cache of the states it wrote
   (:mod:`.cache`), else from the store;
3. for each event, update the customer's features, re-score them at the service clock
   (standardise, assign to a segment) and note a change if the segment moved
   (:mod:`.changes`);
4. re-score customers whose features went stale while they were idle (:mod:`.timer`);
5. return the touched states, the changes and the rejects (:mod:`.batch`).

What the engine has learnt (model, standardiser, clock, names) is restored from and
written as the model checkpoint (:mod:`.checkpoint`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from streamseg.config import Settings
from streamseg.core.events import ChangeReason, RawRecord
from streamseg.core.features import VECTOR_FIELDS, CustomerFeatures
from streamseg.core.naming import SegmentNamer, centroid_units
from streamseg.core.state import CustomerState
from streamseg.engine.batch import Batch, BatchOutcome
from streamseg.engine.cache import StateCache
from streamseg.engine.changes import segment_change
from streamseg.engine.checkpoint import model_checkpoint, restore_model
from streamseg.engine.intake import Intake
from streamseg.engine.timer import InactivityTimer, next_rescore_at
from streamseg.model import Assignment
from streamseg.store import LOCAL_PARTITION, Partition, Store

__all__ = ["SegmentationEngine"]


class SegmentationEngine:
    """Features, standardiser and model, advanced one batch at a time.

    >>> from streamseg.config import load_settings
    >>> from streamseg.store import MemoryStore
    >>> settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4}})
    >>> store = MemoryStore()
    >>> engine = SegmentationEngine(settings, store)
    >>> engine.own(store.take_partition("local"))  # what the pipeline does on assignment
    >>> records = [
    ...     RawRecord(f'{{"event_id": "{i}", "customer_id": "c{i % 5}", '
    ...               f'"timestamp": "2024-01-{1 + i:02d}", "amount": {10 + 90 * (i % 2)}}}', "doc")
    ...     for i in range(10)
    ... ]
    >>> outcome = engine.process(records)
    >>> outcome.applied, len(outcome.rejected), len({s.customer_id for s in outcome.states})
    (10, 0, 5)
    >>> sum(c.data.reason == "first_assignment" for c in outcome.changes)  # one per customer
    5
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._wall_clock = wall_clock
        restored = restore_model(store.load_model(), settings, store)
        self.model = restored.model
        self.scaler = restored.scaler
        self.watermark: float | None = restored.watermark
        #: Segment id -> name; refreshed from the centroids before each batch.
        self.segment_names: dict[int, str] = restored.segment_names
        self.namer = SegmentNamer(settings.naming.rules, settings.naming.stickiness)
        self.intake = Intake(settings.pseudonym_key())
        #: The states this engine last wrote (see :mod:`streamseg.engine.cache`).
        self.cache = StateCache(settings.pipeline.state_cache_size, store.forget_cached)
        self.timer = InactivityTimer(store)
        #: The partitions this worker owns, as it will write them: epoch, positions, and
        #: the absolute sizes and customer count its batches maintain.
        self.partitions: dict[str, Partition] = {}

    # -- ownership --------------------------------------------------------------------
    def own(self, partition: Partition) -> None:
        """This worker now owns ``partition`` (as taken in the store)."""
        self.partitions[partition.name] = partition
        self.cache.forget_partitions({partition.name})  # written by others meanwhile?
        self.timer.ask_again()

    def release(self, names: Iterable[str]) -> None:
        """This worker no longer owns ``names``: forget them and their customers."""
        names = set(names)
        for name in names:
            self.partitions.pop(name, None)
        self.cache.forget_partitions(names)

    # -- the clock ------------------------------------------------------------------
    def now(self) -> float:
        """The service clock: the event-time watermark, or wall-clock time."""
        if self.settings.pipeline.clock == "wall":
            return self._wall_clock()
        return self.watermark if self.watermark is not None else 0.0

    # -- one batch -------------------------------------------------------------------
    def process(self, records: Sequence[RawRecord]) -> BatchOutcome:
        """Apply a batch of records; return what to publish and write."""
        batch = self._begin()
        events, batch.outcome.rejected = self.intake.parse(records, self.now(),
                                                           self._wall_clock())
        self._load(batch, dict.fromkeys(event.customer_id for event, _ in events))
        outcome = batch.outcome
        window = self.settings.pipeline.dedupe_window
        for event, record in events:
            state = batch.state(event.customer_id)
            if state is None:
                state = CustomerState(event.customer_id, CustomerFeatures.empty())
            if record.partition not in self.partitions:
                outcome.foreign += 1  # another worker's (a rebalance): theirs to apply
                continue
            if record.stream and state.applied.get(record.stream, -1) >= record.offset:
                outcome.duplicates += 1  # redelivered after a crash: already in the state
                continue
            id_hash = zlib.crc32(event.event_id.encode())
            if window and id_hash in state.recent_ids:
                outcome.duplicates += 1  # the same event produced twice
                continue
            self._note_scored_raw(state)
            state.features.apply(
                event.epoch, event.amount, event.type,
                half_life_days=self.settings.features.half_life_days,
            )
            if record.stream:
                state.applied[record.stream] = record.offset
            state.partition = record.partition
            if window:
                state.recent_ids = [*state.recent_ids[-(window - 1):], id_hash] if window > 1 \
                    else [id_hash]
            batch.touched[state.customer_id] = state
            outcome.applied += 1
            if self.watermark is None or event.epoch > self.watermark:
                self.watermark = event.epoch
            if state.features.has_purchases:
                batch.to_score[state.customer_id] = (state, "behaviour")
        self._rescore_due(batch, self.settings.pipeline.max_rescore_per_batch)
        self._score_all(batch)
        return self._end(batch)

    def finish(self) -> BatchOutcome:
        """End of a finite stream: seed a model still warming up."""
        batch = self._begin()
        self._apply_assignments(batch, self.model.flush())
        return self._end(batch)

    def rescore_batch(self, limit: int) -> BatchOutcome:
        """Re-score up to ``limit`` idle customers who are due (the inactivity timer)."""
        batch = self._begin()
        self._rescore_due(batch, limit)
        self._score_all(batch)
        return self._end(batch)

    def _begin(self) -> Batch:
        self.refresh_segment_names()
        return Batch()

    def _end(self, batch: Batch) -> BatchOutcome:
        outcome = batch.finish()
        # Only the partitions this worker owns can be written (a refinement may move a
        # sampled customer of a partition another worker owns: that owner writes it).
        outcome.states = [s for s in outcome.states if s.partition in self.partitions]
        written = {s.customer_id for s in outcome.states}
        outcome.changes = [c for c in outcome.changes if c.data.customer_id in written]
        self._count_into_partitions(batch, outcome.states)
        self.cache.put_many(outcome.states)
        return outcome

    def _count_into_partitions(self, batch: Batch, states: Sequence[CustomerState]) -> None:
        """Move each written customer's count from its segment before the batch to its
        segment now, in its partition's absolute sizes."""
        for state in states:
            partition = self.partitions[state.partition]  # type: ignore[index]
            sizes = partition.sizes
            if state.customer_id not in batch.before:
                partition.customers += 1
                before = None
            else:
                before = batch.before[state.customer_id]
            if before == state.segment:
                continue
            if before is not None:
                sizes[before] = sizes.get(before, 0) - 1
                if sizes[before] <= 0:
                    del sizes[before]
            if state.segment is not None:
                sizes[state.segment] = sizes.get(state.segment, 0) + 1

    # -- what the engine has learnt ---------------------------------------------------
    def refresh_segment_names(self) -> None:
        """Re-derive segment names from the current centroids (O(k^2), cheap)."""
        if not self.model.ready:
            return
        centroids = self.model.centroids
        self.segment_names = self.namer.name(centroids, centroid_units(centroids, self.scaler),
                                             self.segment_names)

    def segment_summaries(self) -> list[dict[str, Any]]:
        """Each segment's id, name, size and centre in original units (from the model)."""
        if not self.model.ready:
            return []
        centroids = self.model.centroids
        sizes = self.model.sizes
        return [
            {"segment": segment, "name": self.segment_names.get(segment),
             "size": int(sizes[segment]), "centre": units}
            for segment, units in enumerate(centroid_units(centroids, self.scaler))
        ]

    def model_checkpoint(self) -> dict[str, Any]:
        """The model checkpoint, written with every batch (see :mod:`.checkpoint`)."""
        return model_checkpoint(self.settings.model.kind, self.model, self.scaler,
                                self.watermark, self.segment_names)

    # -- steps -----------------------------------------------------------------------
    def _load(self, batch: Batch, customer_ids: Iterable[str]) -> None:
        """Make the states of ``customer_ids`` available to the batch: cache, then store."""
        ids = list(customer_ids)
        missing: list[str] = []
        for cid in ids:
            if cid in batch.touched or cid in batch.loaded:
                continue
            state = self.cache.get(cid)
            if state is None:
                missing.append(cid)
            else:
                batch.loaded[cid] = state
        if missing:
            batch.loaded.update(self.store.get_many(missing))
        for cid in ids:
            state = batch.loaded.get(cid)
            if state is not None and cid not in batch.before:
                if state.partition is None:
                    state.partition = partition_of_applied(state)
                batch.before[cid] = state.segment

    def _score_all(self, batch: Batch) -> None:
        """Re-score every customer the batch marked, at the service clock, at once.

        A customer is scored once per batch, however many events they had in it: the
        features took every event; the vector, standardisation and model step are done
        for all marked customers together (vectorised), which is what keeps the cost per
        event low.
        """
        if not batch.to_score:
            return
        features = self.settings.features
        clock = self.now()
        states = [state for state, _ in batch.to_score.values()]
        raws = np.empty((len(states), len(VECTOR_FIELDS)))
        old_raws: list[np.ndarray] = []
        for row, state in enumerate(states):
            self._note_scored_raw(state)
            if state.scored_raw is not None:
                old_raws.append(state.scored_raw)
            now = max(clock, state.features.reference_time or 0.0)
            snapshot = features.snapshot(state.features, now)
            raws[row] = snapshot.raw_vector()
            state.updated_at = now
            state.next_rescore_at = next_rescore_at(now, snapshot.recency_days, features)
        if old_raws:
            self.scaler.revert_many(np.asarray(old_raws))
        self.scaler.learn_many(raws)
        vectors = self.scaler.transform_many(raws).astype(np.float32).astype(np.float64)
        assignments = self.model.update_customers(
            [state.customer_id for state in states],
            vectors,
            [state.vector_array() for state in states],
            [state.segment for state in states],
        )
        for row, state in enumerate(states):
            state.vector = vectors[row].tolist()
            state.scored_raw = raws[row].copy()  # a copy: a view would pin the batch
            batch.touched[state.customer_id] = state
        reasons = {cid: reason for cid, (_, reason) in batch.to_score.items()}
        batch.to_score.clear()
        self._apply_assignments(batch, assignments, reasons)

    def _apply_assignments(
        self,
        batch: Batch,
        assignments: Sequence[Assignment],
        reasons: dict[str, ChangeReason] | None = None,
    ) -> None:
        """Write the model's assignments into the states, at once.

        Assignments of customers other than the one updated (seeding, refinement) are
        applied now, not at the end of the batch: if such a customer has an event later
        in the batch, the model must get back the segment it just gave them.
        """
        self._load(batch, [a.key for a in assignments])
        for assignment in assignments:
            state = batch.state(assignment.key)
            if state is None:
                continue  # the model knows a customer the store lost; nothing to update
            batch.touched[assignment.key] = state
            reason = (reasons or {}).get(assignment.key, "behaviour")
            self._assign(state, assignment, reason, batch.outcome)

    def _note_scored_raw(self, state: CustomerState) -> None:
        """Note the raw vector of the customer's last scoring before features change.

        The standardiser must unlearn it when the customer is re-scored. A cached state
        still has it; a state read from the store gets it recomputed from the features
        as they were at ``updated_at``, which gives exactly the same vector.
        """
        if state.scored_raw is not None or state.updated_at is None:
            return
        if state.features.has_purchases:
            snapshot = self.settings.features.snapshot(state.features, state.updated_at)
            state.scored_raw = snapshot.raw_vector()

    def _rescore_due(self, batch: Batch, limit: int) -> None:
        if limit <= 0 or self.watermark is None:
            return
        due = [cid for cid in self.timer.due(self.partitions, self.now(), limit)
               if cid not in batch.touched]
        # The cache is right for them too: it forgets a partition's customers whenever
        # the partition moves, and only this worker writes the partitions it owns.
        self._load(batch, due)
        for cid in due:
            state = batch.state(cid)
            if state is not None and state.features.has_purchases:
                batch.to_score[cid] = (state, "inactivity")
                batch.touched[cid] = state
                batch.outcome.rescored += 1

    def _assign(self, state: CustomerState, assignment: Assignment, reason: ChangeReason,
                outcome: BatchOutcome) -> None:
        previous = state.segment
        if not self.segment_names:
            self.refresh_segment_names()  # the model was seeded during this batch
        state.vector = np.asarray(assignment.vector).tolist()
        state.model_version = self.model.version
        state.segment_name = self.segment_names.get(assignment.segment)
        if previous == assignment.segment:
            return
        state.segment = int(assignment.segment)
        outcome.changes.append(segment_change(
            state.customer_id, previous, state.segment, self.segment_names, reason,
            assignment.by_model_update, state.updated_at or self.now(),
            int(self.model.version),
        ))


def partition_of_applied(state: CustomerState) -> str:
    """The partition of a state stored before states recorded theirs: the Kafka
    partition (a stream key) it last applied an event from, else ``local``."""
    kafka = [stream for stream in state.applied if stream.startswith("kafka:")]
    return max(kafka, key=lambda stream: state.applied[stream]) if kafka else LOCAL_PARTITION
