"""The segmentation engine: events in, customer states and segment changes out.

The engine holds no I/O of its own besides reading customer states from the
:class:`~streamseg.store.Store`; writing them, publishing changes and committing offsets
are the pipeline's job. One batch, top to bottom:

1. parse each record into a :class:`~streamseg.core.events.TransactionEvent`, or reject it;
2. load the batch's customers: from the engine's cache of the states it wrote, else
   from the store;
3. for each event, update the customer's features, re-score them at the service clock
   (standardise, assign to a segment) and note a change if the segment moved;
4. re-score customers whose features went stale while they were idle (inactivity);
5. return the touched states, the changes and the rejects.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streamseg.config import Settings
from streamseg.core.events import (
    ChangeReason,
    DeadLetter,
    InvalidEvent,
    RawRecord,
    SegmentChange,
    SegmentChangeData,
    TransactionEvent,
    parse_event,
)
from streamseg.core.features import (
    SCALE_FLOOR,
    SECONDS_PER_DAY,
    VECTOR_FIELDS,
    CustomerFeatures,
)
from streamseg.core.naming import SegmentNamer, centroid_units
from streamseg.core.privacy import pseudonymise, scrub_payload
from streamseg.core.scaling import OnlineStandardizer
from streamseg.model import Assignment, SegmentModel, build_model
from streamseg.store import CustomerState, Store

# Events more than this far ahead of the service clock are rejected: one bad clock on a
# producer must not drag the event-time watermark years into the future.
MAX_FUTURE_SECONDS = 7 * SECONDS_PER_DAY
# Customers become due for inactivity re-scoring after hours or days of service time;
# asking the store who is due more often than this (per service-clock seconds) only
# adds a query to every small batch of live traffic.
RESCORE_CHECK_SECONDS = 60.0
# Events before this are certainly wrong (and would overflow the decay arithmetic).
MIN_EVENT_TIME = datetime(1970, 1, 2, tzinfo=UTC).timestamp()


@dataclass(slots=True)
class BatchOutcome:
    """What one batch produced, for the pipeline to write, publish and count."""

    states: list[CustomerState] = field(default_factory=list)
    changes: list[SegmentChange] = field(default_factory=list)
    rejected: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    rescored: int = 0


@dataclass(slots=True)
class _Batch:
    """The customers one batch has read (``loaded``) and changed (``touched``)."""

    loaded: dict[str, CustomerState] = field(default_factory=dict)
    touched: dict[str, CustomerState] = field(default_factory=dict)
    # Customers to re-score at the end of the batch, with why.
    to_score: dict[str, tuple[CustomerState, ChangeReason]] = field(default_factory=dict)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)

    def state(self, customer_id: str) -> CustomerState | None:
        return self.touched.get(customer_id) or self.loaded.get(customer_id)

    def finish(self) -> BatchOutcome:
        self.outcome.states = list(self.touched.values())
        return self.outcome


def _nest_reservoir_keys(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model state of a checkpoint, with ``reservoir_keys`` put back in place."""
    model = dict(checkpoint["model"])
    keys = checkpoint.get("reservoir_keys")
    if keys is not None and model.get("reservoir") is not None:
        model["reservoir"] = {**model["reservoir"], "keys": keys}
    return model


class SegmentationEngine:
    """Features, standardiser and model, advanced one batch at a time.

    >>> from streamseg.config import load_settings
    >>> from streamseg.store import MemoryStore
    >>> settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4}})
    >>> engine = SegmentationEngine(settings, MemoryStore())
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
        checkpoint = store.load_model()
        model_params = settings.model.model_dump(exclude={"kind"})
        if checkpoint is not None and checkpoint.get("kind") == settings.model.kind:
            self.model: SegmentModel = build_model(settings.model.kind, **model_params).from_state(
                _nest_reservoir_keys(checkpoint), lookup=self._stored_vectors
            )
            self.scaler = OnlineStandardizer.from_state(checkpoint["scaler"])
            self.watermark: float | None = checkpoint.get("watermark")
            names = checkpoint.get("names") or {}
        else:
            self.model = build_model(settings.model.kind, **model_params)
            self.scaler = OnlineStandardizer(len(VECTOR_FIELDS), SCALE_FLOOR)
            self.watermark = None
            names = {}
        self.namer = SegmentNamer(settings.naming.rules, settings.naming.stickiness)
        self._pseudonym_key = settings.pseudonym_key()
        #: Segment id -> name; refreshed from the centroids before each batch.
        self.segment_names: dict[int, str] = {int(k): v for k, v in names.items()}
        # Customer states as this engine last wrote or read them, most recent last. The
        # worker owns its customers, so reading them back from the store every batch
        # would only repeat what it wrote; the pipeline clears this on a rebalance, and
        # a new engine (recovery) starts empty, so a half-applied batch is never reused.
        self._cache: dict[str, CustomerState] = {}
        self._cache_limit = settings.pipeline.state_cache_size
        #: Set by the pipeline when other workers may write to the same store (Kafka).
        self.shared_input = False
        # The service clock at the last due query, and whether it hit its limit.
        self._due_checked_at: float | None = None
        self._due_backlog = False

    def forget_cached(self) -> None:
        """Drop the cached customer states (another worker may have written them)."""
        self._cache.clear()
        self.store.forget_cached()

    def _load(self, batch: _Batch, customer_ids: Iterable[str], *,
              from_store: bool = False) -> None:
        """Make the states of ``customer_ids`` available to the batch: cache, then store
        (``from_store``: the store only, for customers not touched by this batch yet)."""
        cache: dict[str, CustomerState] = {} if from_store else self._cache
        missing: list[str] = []
        for cid in customer_ids:
            if cid in batch.touched or (cid in batch.loaded and not from_store):
                continue
            state = cache.get(cid)
            if state is None:
                missing.append(cid)
            else:
                batch.loaded[cid] = state
        if missing:
            batch.loaded.update(self.store.get_many(missing))

    def _cache_states(self, states: Sequence[CustomerState]) -> None:
        """Cache the batch's states (about to be written), evicting the least recent."""
        limit = self._cache_limit
        if limit <= 0:
            return
        cache = self._cache
        for state in states:
            cache.pop(state.customer_id, None)
            cache[state.customer_id] = state
        excess = len(cache) - limit
        if excess > 0:
            for cid in list(itertools.islice(cache, excess)):
                del cache[cid]

    def _stored_vectors(self, keys: list[str]) -> dict[str, tuple[list[float], int]]:
        return {cid: (state.vector, state.segment)
                for cid, state in self.store.get_many(keys).items()
                if state.vector is not None and state.segment is not None}

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
        events = self._parse(records, batch.outcome)
        self._load(batch, dict.fromkeys(event.customer_id for event, _ in events))
        outcome = batch.outcome
        window = self.settings.pipeline.dedupe_window
        for event, record in events:
            state = batch.state(event.customer_id)
            if state is None:
                state = CustomerState(event.customer_id, CustomerFeatures.empty())
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

    def _end(self, batch: _Batch) -> BatchOutcome:
        outcome = batch.finish()
        self._cache_states(outcome.states)
        return outcome

    def _begin(self) -> _Batch:
        self.refresh_segment_names()
        return _Batch()

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
        """The model's checkpoint, written with every batch.

        Light: the reservoir's vectors and segments are in the store already (see
        ``__init__``). The reservoir's customer ids, the largest part, change only when
        a new customer is sampled: they are a part of their own, ``reservoir_keys``, so
        that a store can skip writing a part that did not change (Redis does).
        """
        model = self.model.to_state(with_vectors=False)
        reservoir = model.get("reservoir")
        keys = None
        if reservoir is not None:
            reservoir = model["reservoir"] = dict(reservoir)
            keys = reservoir.pop("keys")
        return {
            "kind": self.settings.model.kind,
            "model": model,
            "reservoir_keys": keys,
            "scaler": self.scaler.to_state(),
            "watermark": self.watermark,
            "names": {str(k): v for k, v in self.segment_names.items()},
        }

    # -- steps -----------------------------------------------------------------------
    def _parse(
        self, records: Sequence[RawRecord], outcome: BatchOutcome
    ) -> list[tuple[TransactionEvent, RawRecord]]:
        events: list[tuple[TransactionEvent, RawRecord]] = []
        horizon = max(self.now(), self._wall_clock()) + MAX_FUTURE_SECONDS
        key = self._pseudonym_key
        for record in records:
            if record.error is not None:
                self._reject(outcome, record, record.error)
                continue
            try:
                event = record.event or parse_event(record.payload)
            except InvalidEvent as error:
                self._reject(outcome, record, error.reason)
                continue
            epoch = event.epoch
            if epoch < MIN_EVENT_TIME or epoch > horizon:
                self._reject(outcome, record, f"timestamp out of range: {event.timestamp}")
                continue
            if key is not None:
                # From here on only the keyed hash exists: state, changes, logs, metrics.
                event = event.model_copy(
                    update={"customer_id": pseudonymise(event.customer_id, key)}
                )
            events.append((event, record))
        return events

    def _reject(self, outcome: BatchOutcome, record: RawRecord, reason: str) -> None:
        letter = DeadLetter.from_record(record, reason)
        if self._pseudonym_key is not None:
            letter.payload = scrub_payload(letter.payload, self._pseudonym_key)
        outcome.rejected.append(letter)

    def _score_all(self, batch: _Batch) -> None:
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
            wait_days = min(
                features.rescore_max_days,
                max(features.rescore_min_days, features.rescore_growth * snapshot.recency_days),
            )
            state.next_rescore_at = now + wait_days * SECONDS_PER_DAY
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
        batch: _Batch,
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

    def _rescore_due(self, batch: _Batch, limit: int) -> None:
        if limit <= 0 or self.watermark is None:
            return
        now = self.now()
        if (self._due_checked_at is not None and self._due_backlog is False
                and 0 <= now - self._due_checked_at < RESCORE_CHECK_SECONDS):
            return  # asked recently and nothing was left over: spare the store a query
        found = self.store.due_for_rescore(now, limit)
        self._due_checked_at = now
        self._due_backlog = len(found) >= limit
        due = [cid for cid in found if cid not in batch.touched]
        # With a shared input, read from the store, not the cache: the due index is per
        # prefix, and another worker on the same prefix may have written these
        # customers since. (A replay re-scores about three idle customers per event:
        # reading them back would cost a file replay a quarter of its speed.)
        self._load(batch, due, from_store=self.shared_input)
        for cid in due:
            state = batch.state(cid)
            if state is not None and state.features.has_purchases:
                batch.to_score[cid] = (state, "inactivity")
                batch.touched[cid] = state
                batch.outcome.rescored += 1

    def _assign(
        self,
        state: CustomerState,
        assignment: Assignment,
        reason: ChangeReason,
        outcome: BatchOutcome,
    ) -> None:
        previous = state.segment
        if not self.segment_names:
            self.refresh_segment_names()  # the model was seeded during this batch
        state.vector = np.asarray(assignment.vector).tolist()
        state.model_version = self.model.version
        state.segment_name = self.segment_names.get(assignment.segment)
        if previous == assignment.segment:
            return
        state.segment = int(assignment.segment)
        if previous is None:
            why: ChangeReason = "first_assignment"
        elif assignment.by_model_update:
            why = "model_update"
        else:
            why = reason
        event_time = datetime.fromtimestamp(state.updated_at or self.now(), tz=UTC)
        outcome.changes.append(
            SegmentChange.create(
                SegmentChangeData(
                    customer_id=state.customer_id,
                    from_segment=previous,
                    from_name=self.segment_names.get(previous) if previous is not None else None,
                    to_segment=state.segment,
                    to_name=state.segment_name,
                    reason=why,
                    event_time=event_time,
                    model_version=int(self.model.version),
                )
            )
        )

