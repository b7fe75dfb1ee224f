"""The segmentation engine: events in, customer states and segment changes out.

The engine holds no I/O of its own besides reading customer states from the
:class:`~streamseg.store.Store`; writing them, publishing changes and committing offsets
are the pipeline's job. One batch, top to bottom:

1. parse each record into a :class:`~streamseg.events.TransactionEvent`, or reject it;
2. load the batch's customers from the store;
3. for each event, update the customer's features, re-score them at the service clock
   (standardise, assign to a segment) and note a change if the segment moved;
4. re-score customers whose features went stale while they were idle (inactivity);
5. return the touched states, the changes and the rejects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streamseg.config import Settings
from streamseg.events import (
    ChangeReason,
    DeadLetter,
    InvalidEvent,
    RawRecord,
    SegmentChange,
    SegmentChangeData,
    TransactionEvent,
    parse_event,
)
from streamseg.features import SECONDS_PER_DAY, VECTOR_FIELDS, CustomerFeatures, OnlineStandardizer
from streamseg.model import Assignment, SegmentModel, build_model
from streamseg.store import CustomerState, Store

# Events more than this far ahead of the service clock are rejected: one bad clock on a
# producer must not drag the event-time watermark years into the future.
MAX_FUTURE_SECONDS = 7 * SECONDS_PER_DAY
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
    latest_produced_at: float | None = None


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
    >>> sorted({c.data.reason for c in outcome.changes})
    ['first_assignment']
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
                checkpoint["model"]
            )
            self.scaler = OnlineStandardizer.from_state(checkpoint["scaler"])
            self.watermark: float | None = checkpoint.get("watermark")
        else:
            self.model = build_model(settings.model.kind, **model_params)
            self.scaler = OnlineStandardizer(len(VECTOR_FIELDS))
            self.watermark = None
        self.names: dict[int, str] = {}

    # -- the clock ------------------------------------------------------------------
    def now(self) -> float:
        """The service clock: the event-time watermark, or wall-clock time."""
        if self.settings.pipeline.clock == "wall":
            return self._wall_clock()
        return self.watermark if self.watermark is not None else 0.0

    # -- one batch -------------------------------------------------------------------
    def process(self, records: Sequence[RawRecord]) -> BatchOutcome:
        outcome = BatchOutcome()
        events = self._parse(records, outcome)
        touched: dict[str, CustomerState] = {}
        loaded = self.store.get_many({event.customer_id for event, _ in events})
        pending: dict[str, tuple[Assignment, ChangeReason]] = {}

        for event, record in events:
            state = touched.get(event.customer_id) or loaded.get(event.customer_id)
            if state is None:
                state = CustomerState(event.customer_id, CustomerFeatures.empty())
            if record.stream and state.applied.get(record.stream, -1) >= record.offset:
                outcome.duplicates += 1  # redelivered after a crash: already in the state
                continue
            state.features.apply(
                event.epoch, event.amount, event.type,
                half_life_days=self.settings.features.half_life_days,
            )
            if record.stream:
                state.applied[record.stream] = record.offset
            touched[state.customer_id] = state
            outcome.applied += 1
            if self.watermark is None or event.epoch > self.watermark:
                self.watermark = event.epoch
            if record.produced_at is not None:
                outcome.latest_produced_at = max(outcome.latest_produced_at or 0.0,
                                                 record.produced_at)
            if state.features.has_purchases:
                self._score(state, "behaviour", touched, pending, outcome)

        self._rescore_due(touched, pending, outcome, self.settings.pipeline.max_rescore_per_batch)
        self._apply_pending(touched, pending, outcome)
        outcome.states = list(touched.values())
        return outcome

    def finish(self) -> BatchOutcome:
        """End of a finite stream: seed a model still warming up, catch up on idle customers."""
        outcome = BatchOutcome()
        touched: dict[str, CustomerState] = {}
        pending: dict[str, tuple[Assignment, ChangeReason]] = {}
        for assignment in self.model.flush():
            pending[assignment.key] = (assignment, "behaviour")
        self._apply_pending(touched, pending, outcome)
        outcome.states = list(touched.values())
        return outcome

    def rescore_batch(self, limit: int) -> BatchOutcome:
        """Re-score up to ``limit`` idle customers who are due (the inactivity timer)."""
        outcome = BatchOutcome()
        touched: dict[str, CustomerState] = {}
        pending: dict[str, tuple[Assignment, ChangeReason]] = {}
        self._rescore_due(touched, pending, outcome, limit)
        self._apply_pending(touched, pending, outcome)
        outcome.states = list(touched.values())
        return outcome

    def model_checkpoint(self) -> dict[str, Any]:
        return {
            "kind": self.settings.model.kind,
            "model": self.model.to_state(),
            "scaler": self.scaler.to_state(),
            "watermark": self.watermark,
        }

    # -- steps -----------------------------------------------------------------------
    def _parse(
        self, records: Sequence[RawRecord], outcome: BatchOutcome
    ) -> list[tuple[TransactionEvent, RawRecord]]:
        events: list[tuple[TransactionEvent, RawRecord]] = []
        horizon = max(self.now(), self._wall_clock()) + MAX_FUTURE_SECONDS
        for record in records:
            if record.error is not None:
                outcome.rejected.append(DeadLetter.from_record(record, record.error))
                continue
            try:
                event = record.event or parse_event(record.payload)
            except InvalidEvent as error:
                outcome.rejected.append(DeadLetter.from_record(record, error.reason))
                continue
            epoch = event.epoch
            if epoch < MIN_EVENT_TIME or epoch > horizon:
                outcome.rejected.append(
                    DeadLetter.from_record(record, f"timestamp out of range: {event.timestamp}")
                )
                continue
            events.append((event, record))
        return events

    def _score(
        self,
        state: CustomerState,
        reason: ChangeReason,
        touched: dict[str, CustomerState],
        pending: dict[str, tuple[Assignment, ChangeReason]],
        outcome: BatchOutcome,
    ) -> None:
        """Recompute a customer's vector at the service clock and (re)assign them."""
        features = self.settings.features
        now = max(self.now(), state.features.reference_time or 0.0)
        snapshot = state.features.snapshot(now, half_life_days=features.half_life_days)
        raw = snapshot.raw_vector()
        if state.raw_vector is not None:
            self.scaler.revert_one(np.asarray(state.raw_vector))
        self.scaler.learn_one(raw)
        vector = self.scaler.transform_one(raw)
        assignments = self.model.update_customer(
            state.customer_id, vector, state.vector_array(), state.segment
        )
        state.raw_vector = raw.tolist()
        state.vector = vector.tolist()
        state.updated_at = now
        wait_days = min(
            features.rescore_max_days,
            max(features.rescore_min_days, features.rescore_growth * snapshot.recency_days),
        )
        state.next_rescore_at = now + wait_days * SECONDS_PER_DAY
        touched[state.customer_id] = state
        for assignment in assignments:
            if assignment.key == state.customer_id:
                self._assign(state, assignment, reason, outcome)
            else:
                pending[assignment.key] = (assignment, reason)

    def _rescore_due(
        self,
        touched: dict[str, CustomerState],
        pending: dict[str, tuple[Assignment, ChangeReason]],
        outcome: BatchOutcome,
        limit: int,
    ) -> None:
        if limit <= 0 or self.watermark is None:
            return
        due = [cid for cid in self.store.due_for_rescore(self.now(), limit) if cid not in touched]
        for state in self.store.get_many(due).values():
            if state.features.has_purchases:
                self._score(state, "inactivity", touched, pending, outcome)
                outcome.rescored += 1

    def _apply_pending(
        self,
        touched: dict[str, CustomerState],
        pending: dict[str, tuple[Assignment, ChangeReason]],
        outcome: BatchOutcome,
    ) -> None:
        """Store assignments the model made for customers other than the one updated."""
        missing = [key for key in pending if key not in touched]
        touched.update(self.store.get_many(missing))
        for key, (assignment, reason) in pending.items():
            state = touched.get(key)
            if state is None:
                continue  # the model knows a customer the store lost; nothing to update
            self._assign(state, assignment, reason, outcome)

    def _assign(
        self,
        state: CustomerState,
        assignment: Assignment,
        reason: ChangeReason,
        outcome: BatchOutcome,
    ) -> None:
        previous = state.segment
        state.vector = np.asarray(assignment.vector).tolist()
        state.model_version = self.model.version
        if previous == assignment.segment:
            return
        state.segment = assignment.segment
        state.segment_name = self.names.get(assignment.segment)
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
                    from_name=self.names.get(previous) if previous is not None else None,
                    to_segment=assignment.segment,
                    to_name=state.segment_name,
                    reason=why,
                    event_time=event_time,
                    model_version=self.model.version,
                )
            )
        )

