"""The segmentation engine: events in, customer states and segment changes out.

The engine holds no I/O of its own besides reading from the
:class:`~streamseg.store.Store`; writing, publishing changes and committing offsets are
the pipeline's job. One batch, top to bottom:

1. parse each record into a :class:`~streamseg.core.events.TransactionEvent`, or reject it
   (:mod:`.intake`);
2. load the batch's customers: from the engine's cache of the states it wrote
   (:mod:`.cache`), else from the store;
3. for each event, update the customer's features, re-score them at the service clock
   (standardise, assign to a segment) and note a change if the segment moved
   (:mod:`.changes`);
4. re-score customers whose features went stale while they were idle (:mod:`.timer`);
5. return the touched states, the changes, the rejects, and each written partition's
   share of the model and changed sample rows (:mod:`.batch`).

The model is shared by every worker of a store (:mod:`.shared`): each partition's share
is the engine's to keep while it owns the partition; the other partitions' shares and
the refiner's last version are read every ``pipeline.view_refresh_s``
(:meth:`SegmentationEngine.refresh_view`). Between versions, the re-assignment sweep
puts stored customers at their nearest centroid again (:mod:`.sweep`).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from streamseg.config import Settings
from streamseg.core.events import ChangeReason, RawRecord
from streamseg.core.features import SCALE_FLOOR, VECTOR_FIELDS, CustomerFeatures
from streamseg.core.naming import SegmentNamer
from streamseg.core.scaling import OnlineStandardizer
from streamseg.core.state import CustomerState
from streamseg.engine.batch import Batch, BatchOutcome
from streamseg.engine.cache import StateCache
from streamseg.engine.changes import segment_change
from streamseg.engine.checkpoint import restore_model
from streamseg.engine.intake import Intake
from streamseg.engine.refiner import Refiner
from streamseg.engine.shared import Share, Shares
from streamseg.engine.sweep import Sweep, Sweeping
from streamseg.engine.timer import InactivityTimer, next_rescore_at
from streamseg.engine.traits import TraitScoring
from streamseg.engine.vectors import standardise
from streamseg.engine.view import SharedView
from streamseg.model import Assignment, CustomerKMeans
from streamseg.store import LOCAL_PARTITION, Partition, Store
from streamseg.traits.bands import RiskBands
from streamseg.traits.learner import TraitLearner

log = logging.getLogger(__name__)

__all__ = ["SegmentationEngine"]


class SegmentationEngine(SharedView, Sweeping, TraitScoring):
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
        *,
        shared: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self._wall_clock = wall_clock
        restored = restore_model(store.load_model(), settings)
        self.model = restored.model
        #: Segment id -> name: derived by the refiner, published for the others.
        self.segment_names: dict[int, str] = restored.names
        #: What the refiner last published: the other owners' moves, and the customer
        #: scorings counted at that refinement (see :mod:`.refiner`).
        self.relabels: dict[str, tuple[int, int]] = restored.relabels
        self.refined_at = restored.refined_at
        #: Several workers may share the model (a Kafka source): the model neither seeds
        #: nor refines on its own; the refiner does (:mod:`.refiner`).
        self.shared = shared
        if shared and isinstance(self.model, CustomerKMeans):
            self.model.auto_refine = False
        if isinstance(self.model, CustomerKMeans):
            # The sweep places every customer again after a reorganisation (:mod:`.sweep`).
            self.model.reorganise = settings.model.sweep_page > 0
        #: Whether this worker derives names and publishes the model (it holds the lease).
        self.refiner = not shared
        self.namer = SegmentNamer(settings.naming.rules, settings.naming.stickiness)
        self.intake = Intake(settings.pseudonym_key())
        #: The states this engine last wrote (see :mod:`streamseg.engine.cache`).
        self.cache = StateCache(settings.pipeline.state_cache_size, store.forget_cached)
        self.timer = InactivityTimer(store)
        self.shares = Shares(len(VECTOR_FIELDS), SCALE_FLOOR)
        #: Partitions whose consumer has records waiting (set by the pipeline each poll).
        self.behind: set[str] = set()
        #: The partitions this worker owns, as it will write them: epoch, positions, the
        #: absolute sizes and customer count its batches maintain, and its model share.
        self.partitions: dict[str, Partition] = {}
        self.sweep = Sweep()
        # Assignments made outside a batch (taking a partition, adopting a version):
        # applied, written and announced by the next batch.
        self._pending: list[Assignment] = []
        self._published_stamp: str | None = None
        self._followed: dict[str, Any] = {}
        #: Predictive traits (None: traits.enabled is false); each partition's share of
        #: the trait model travels with its model share (see streamseg.traits.learner).
        self.traits: TraitLearner | None = (
            TraitLearner(settings.traits.horizon_days, settings.traits.snapshot_every_days)
            if settings.traits.enabled else None)
        self.bands = RiskBands(settings.traits.risk_bands, settings.traits.risk_hysteresis)
        self.refresh_view()

    # -- ownership --------------------------------------------------------------------
    def own(self, partition: Partition) -> None:
        """This worker now owns ``partition`` (as taken in the store)."""
        dim = len(VECTOR_FIELDS)
        share = Share.from_json(partition.model, dim, SCALE_FLOOR)
        if share.stats is not None and not self.model.ready:
            self.adopt_published(force=True)  # seeded meanwhile: the stats need centroids
        self.partitions[partition.name] = partition
        self.shares.own(partition.name, share)
        if self.traits is not None:
            self.traits.own(partition.name, (partition.model or {}).get("traits"))
        if isinstance(self.model, CustomerKMeans):
            rows = self.store.read_sample([partition.name]).get(partition.name, {})
            self._pending += self.model.own(
                partition.name, share.stats,
                [(cid, vector, segment) for cid, (segment, vector) in sorted(rows.items())])
            self.sync_others()
        self.cache.forget_partitions({partition.name})  # written by others meanwhile?
        self.timer.ask_again()
        self.sweep.forget([partition.name])

    def release(self, names: Iterable[str]) -> None:
        """This worker no longer owns ``names``: forget them and their customers. Their
        shares count among the others' (as last known here) until the next refresh."""
        names = set(names)
        kept = dict(self.shares.others)
        for name in names:
            if name not in self.partitions:
                continue
            kept[name] = self._share(name)
            self.partitions.pop(name, None)
            self.shares.release(name)
            if self.traits is not None:
                self.traits.release(name)
            if isinstance(self.model, CustomerKMeans):
                self.model.disown(name)
        self.shares.set_others(kept)
        self.sync_others()
        self.cache.forget_partitions(names)
        self.sweep.forget(names)

    # -- the clock ------------------------------------------------------------------
    @property
    def watermark(self) -> float | None:
        """The event-time watermark: the latest event time over every partition."""
        return self.shares.watermark()

    def now(self) -> float:
        """The service clock: the event-time watermark, or wall-clock time."""
        if self.settings.pipeline.clock == "wall":
            return self._wall_clock()
        watermark = self.watermark
        return watermark if watermark is not None else 0.0

    @property
    def scaler(self) -> OnlineStandardizer:
        """The standardiser of every customer (this worker's view)."""
        return self.shares.view()

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
            if self.traits is not None:
                state.partition = record.partition  # whose share learns its labels
                self.traits.on_event(state, event.epoch, event.amount, event.type)
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
            self.shares.advance(record.partition, event.epoch)
            if state.features.has_purchases:
                batch.to_score[state.customer_id] = (state, "behaviour")
        self._rescore_due(batch, self.settings.pipeline.max_rescore_per_batch)
        self._score_all(batch)
        return self._end(batch)

    def finish(self) -> BatchOutcome:
        """End of a finite stream: seed a model still warming up, or refine."""
        batch = self._begin()
        self._apply_assignments(batch, self.model.flush())
        return self._end(batch)

    def rescore_batch(self, limit: int) -> BatchOutcome:
        """Re-score up to ``limit`` idle customers who are due (the inactivity timer)."""
        batch = self._begin()
        self._rescore_due(batch, limit)
        self._score_all(batch)
        return self._end(batch)

    def refine_shared(self, refiner: Refiner, idle: bool = False) -> BatchOutcome:
        """The refiner's seeding or refinement of the shared model (:mod:`.refiner`),
        as a batch: its own customers' moves, and what it publishes."""
        batch = self._begin()
        self._apply_assignments(batch, refiner.run(self, idle))
        self.refresh_segment_names()
        batch.outcome.publish = True
        return self._end(batch)

    def take_pending(self) -> BatchOutcome:
        """A batch of the assignments made outside one (taking a partition, adopting)."""
        return self._end(self._begin())

    def _pending_keys(self) -> set[str]:
        return {a.key for a in self._pending}

    def _begin(self) -> Batch:
        if self.refiner:
            self.refresh_segment_names()
        batch = Batch()
        if self._pending:
            pending, self._pending = self._pending, []
            self._apply_assignments(batch, pending)
        return batch

    def _end(self, batch: Batch) -> BatchOutcome:
        outcome = batch.finish()
        # Only the partitions this worker owns can be written (a refinement may move a
        # sampled customer of a partition another worker owns: that owner writes it).
        outcome.states = [s for s in outcome.states if s.partition in self.partitions]
        written = {s.customer_id for s in outcome.states}
        outcome.changes = [c for c in outcome.changes if c.data.customer_id in written]
        outcome.risk_changes = [c for c in outcome.risk_changes
                                if c.data.customer_id in written]
        self._count_into_partitions(batch, outcome.states)
        if isinstance(self.model, CustomerKMeans):
            outcome.sample = {name: rows for name, rows in self.model.take_sample_changes().items()
                              if name in self.partitions}
        for changed in batch.shares_changed:  # written even if none of its customers was
            outcome.sample.setdefault(changed, {})
        touched = {s.partition for s in outcome.states} | set(outcome.sample)
        for name in touched:
            if name is not None and name in self.partitions:
                share = self._share(name).to_json()
                if self.traits is not None:
                    # The labels its customers' matured snapshots gave, in the same write
                    # as the customers whose snapshots they were: learned exactly once.
                    share["traits"] = self.traits.share_json(name)
                self.partitions[name].model = share
        self.cache.put_many(outcome.states)
        return outcome

    def _share(self, name: str) -> Share:
        stats = None
        if isinstance(self.model, CustomerKMeans):
            stats = self.model.partition_stats().get(name)
            if stats is None and self.model.ready:
                stats = self.model.empty_stats()
        share = self.shares.share(name, stats)
        if isinstance(self.model, CustomerKMeans):
            share.buffered = self.model.buffered_in(name)
        return share

    def _count_into_partitions(self, batch: Batch, states: Sequence[CustomerState]) -> None:
        """Move each written customer's count from its segment before the batch to its
        segment now, in its partition's absolute sizes."""
        for state in states:
            if self.traits is not None:
                self.traits.count(state, (batch.before.get(state.customer_id),
                                          batch.before_traits.get(state.customer_id)))
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
                batch.before_traits[cid] = state.traits

    def _score_all(self, batch: Batch) -> None:
        """Re-score every customer the batch marked, at the service clock, at once.

        A customer is scored once per batch, however many events they had in it: the
        features took every event; the vector, standardisation and model step are done
        for all marked customers together (vectorised), which is what keeps the cost per
        event low. Each customer's partition's standardiser unlearns its old raw vector
        and learns the new one; all are standardised with the view over every partition.
        """
        if not batch.to_score:
            return
        features = self.settings.features
        clock = self.now()
        states = [state for state, _ in batch.to_score.values()]
        raws = np.empty((len(states), len(VECTOR_FIELDS)))
        rows_of: dict[str, list[int]] = {}
        for row, state in enumerate(states):
            self._note_scored_raw(state)
            now = max(clock, state.features.reference_time or 0.0)
            snapshot = features.snapshot(state.features, now)
            raws[row] = snapshot.raw_vector()
            if state.traits_since is None:  # the traits' grid went up to the last scoring
                state.traits_since = state.updated_at
            state.updated_at = now
            state.next_rescore_at = next_rescore_at(now, snapshot.recency_days, features)
            rows_of.setdefault(state.partition or LOCAL_PARTITION, []).append(row)
        if self.traits is not None:
            self._score_traits(states, clock, batch.outcome)
        for name, rows in rows_of.items():
            scaler = self.shares.scaler_of(name)
            old_raws = [states[row].scored_raw for row in rows
                        if states[row].scored_raw is not None]
            if old_raws:
                scaler.revert_many(np.asarray(old_raws))
            scaler.learn_many(raws[rows] if len(rows_of) > 1 else raws)
            self.shares.scored(name, len(rows))
        vectors = standardise(self.scaler, raws)
        assignments = self.model.update_customers(
            [state.customer_id for state in states],
            vectors,
            [state.vector_array() for state in states],
            [state.segment for state in states],
            **({"partitions": [state.partition or LOCAL_PARTITION for state in states]}
               if isinstance(self.model, CustomerKMeans) else {}),
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
        until: dict[str, float | None]
        if self.settings.pipeline.clock == "wall":
            until = {name: self.now() for name in self.partitions}
        else:
            until = {name: self.shares.inactivity_clock(name, self.behind)
                     for name in self.partitions}
        due = [cid for cid in self.timer.due(until, limit) if cid not in batch.touched]
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
        if not self.segment_names and self.refiner:
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
