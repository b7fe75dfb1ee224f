"""Re-segment the stored customers into ``k`` segments, without replaying their events.

``streamseg reseed --k 6`` is how an existing store moves to another number of segments
(``model.n_clusters`` cannot change on an existing store: see
:mod:`streamseg.engine.stored_settings`). The events may no longer be in Kafka, but the
store holds every customer's features, which is all the model needs:

1. every customer's vector is recomputed from the stored features at the service clock,
   and the standardiser is rebuilt over those vectors (all in one space);
2. a new model with ``k`` segments learns them: k-means++ seeding on the first
   ``model.warmup`` customers (in a seeded random order), then the rest, then a full
   refinement; two more passes re-place every customer at its nearest centroid (without
   hysteresis) and refine, so that customers outside the reservoir are placed too;
3. every customer is written with its new segment, and a ``model_update`` change event
   is published for each customer whose segment id or name changed, through the same
   commit protocol as the stream (outbox, then publish).

Writes go in batches. The store's metadata marks a reseed in progress from the first
write to the last, and ``streamseg run`` refuses to start on a store so marked: an
interrupted reseed is finished by running it again (it starts from the stored features,
so running it twice gives the same result). Stop the service before reseeding.

Segment ids are given afresh (the old and new standardisers differ, so old and new
centres are not comparable); names come from the naming rules as always.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streamseg.config import ConfigError, Settings
from streamseg.core.events import SegmentChange
from streamseg.core.features import SCALE_FLOOR, VECTOR_FIELDS
from streamseg.core.scaling import OnlineStandardizer
from streamseg.core.state import CustomerState
from streamseg.engine.batch import BatchOutcome
from streamseg.engine.changes import segment_change
from streamseg.engine.engine import SegmentationEngine, partition_of_applied
from streamseg.engine.shared import Share, Shares
from streamseg.engine.stored_settings import (
    check_stored_settings,
    record_from_checkpoint,
    settings_record,
)
from streamseg.engine.timer import next_rescore_at
from streamseg.io import open_change_sink, open_dead_letter_sink
from streamseg.model import Assignment, CustomerKMeans, build_model
from streamseg.processing.commit import BatchCommit
from streamseg.processing.history import SizeHistory
from streamseg.processing.lease import worker_id
from streamseg.store import LOCAL_PARTITION, Partition, Store, open_store
from streamseg.traits.learner import regroup_traits

__all__ = ["ReseedSummary", "reseed", "reseed_in_progress"]

#: Customers per store write (and per model update call).
CHUNK = 5000
#: Passes that re-place every customer at its nearest centroid after the first fit.
PLACEMENT_PASSES = 2


@dataclass(slots=True)
class ReseedSummary:
    """What a reseed did."""

    customers: int
    changes: int
    sizes: dict[int, int]


def reseed_in_progress(meta: dict[str, Any]) -> str | None:
    """An error message if the store's metadata marks an unfinished reseed, else None."""
    mark = meta.get("reseed")
    if not mark:
        return None
    return (f"a reseed to {mark.get('k')} segments was interrupted: the store holds "
            f"segments of two models; run `streamseg reseed --k {mark.get('k')}` again "
            "to finish it")


def reseed(settings: Settings, k: int) -> ReseedSummary:
    """Re-segment the customers of the store ``settings`` names into ``k`` segments.

    ``settings`` are the store's (``model.n_clusters`` may differ: it becomes ``k``).
    Raises :class:`~streamseg.config.ConfigError` when other settings that shape stored
    data differ from the store's, or for a model kind that cannot be reseeded.
    """
    if settings.model.kind != "customer-kmeans":
        raise ConfigError(f"reseed needs model.kind customer-kmeans, not {settings.model.kind}")
    target = settings.model_copy(update={"model": settings.model.model_copy(
        update={"n_clusters": k, "warmup": max(k, settings.model.warmup),
                "reservoir_size": max(k, settings.model.reservoir_size)})})
    store = open_store(settings.store)
    try:
        meta = store.meta()
        stored = dict(meta.get("settings") or record_from_checkpoint(store.load_model()))
        stored.pop("model.n_clusters", None)  # the one setting a reseed changes
        check_stored_settings(stored, target, where=settings.store.uri)
        return _Reseed(target, store, meta).run()
    finally:
        store.close()


class _Reseed:
    def __init__(self, settings: Settings, store: Store, meta: dict[str, Any]) -> None:
        self.settings = settings
        self.store = store
        self.meta = meta
        self.engine = SegmentationEngine(settings, store)
        # A new model and standardisers: nothing of the old ones is kept but each
        # partition's clock and count of scorings.
        params = settings.model.params()
        self.engine.model = build_model(settings.model.kind, **params)
        old = self.engine.shares.others
        self.engine.shares = Shares(len(VECTOR_FIELDS), SCALE_FLOOR)
        for name, share in old.items():
            self.engine.shares.own(name, Share(OnlineStandardizer(len(VECTOR_FIELDS),
                                                                  SCALE_FLOOR),
                                               share.clock, None, share.updates))
        self.engine.segment_names = {}
        self.engine.relabels = {}

    def run(self) -> ReseedSummary:
        self.all_states = list(self.store.iter_customers())
        for state in self.all_states:
            if state.partition is None:
                state.partition = partition_of_applied(state)
        states = [s for s in self.all_states if s.features.has_purchases]
        before = {s.customer_id: (s.segment, s.segment_name) for s in states}
        vectors = self._vectors(states)
        placed = self._fit([s.customer_id for s in states],
                           [s.partition or LOCAL_PARTITION for s in states], vectors)
        engine = self.engine
        engine.refresh_segment_names()
        version = int(engine.model.version)
        for state in states:
            segment, vector = placed[state.customer_id]
            state.segment = segment
            state.vector = vector
            state.segment_name = engine.segment_names.get(segment)
            state.model_version = version
        return self._write(states, before)

    def _vectors(self, states: list[CustomerState]) -> np.ndarray:
        """Every customer's vector at the service clock, standardised over all of them."""
        features = self.settings.features
        clock = self.engine.now()
        raws = np.empty((len(states), len(VECTOR_FIELDS)))
        for row, state in enumerate(states):
            now = max(clock, state.features.reference_time or 0.0)
            snapshot = features.snapshot(state.features, now)
            raws[row] = snapshot.raw_vector()
            state.updated_at = now
            state.next_rescore_at = next_rescore_at(now, snapshot.recency_days, features)
        rows_of: dict[str, list[int]] = {}
        for row, state in enumerate(states):
            rows_of.setdefault(state.partition or LOCAL_PARTITION, []).append(row)
        for name, rows in sorted(rows_of.items()):
            self.engine.shares.scaler_of(name).learn_many(raws[rows])
        scaler = self.engine.scaler
        vectors: np.ndarray = scaler.transform_many(raws).astype(np.float32).astype(np.float64)
        return vectors

    def _fit(self, keys: list[str], partitions: list[str],
             vectors: np.ndarray) -> dict[str, tuple[int, list[float]]]:
        """The new model learns every customer; returns each one's (segment, vector)."""
        model = self.engine.model
        assert isinstance(model, CustomerKMeans)
        hysteresis = self.settings.model.hysteresis
        model.adjust(hysteresis=0.0)  # placing, not damping
        order = np.random.default_rng(self.settings.model.seed).permutation(len(keys))
        placed: dict[str, tuple[int, list[float]]] = {}

        def take(assignments: list[Assignment]) -> None:
            for a in assignments:
                placed[a.key] = (int(a.segment), np.asarray(a.vector).tolist())

        def feed(rows: np.ndarray, first: bool) -> None:
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start:start + CHUNK]
                ids = [keys[i] for i in chunk]
                previous = [None if first else np.asarray(placed[c][1]) for c in ids]
                segments = [None if first else placed[c][0] for c in ids]
                take(model.update_customers(ids, vectors[chunk], previous, segments,
                                            [partitions[i] for i in chunk]))

        warmup = min(len(order), self.settings.model.warmup)
        # Warm-up customers one call, so that seeding sees all of them at once.
        feed(order[:warmup], first=True)
        feed(order[warmup:], first=True)
        take(model.flush())
        for _ in range(PLACEMENT_PASSES):
            feed(order, first=False)
            take(model.flush())
        model.adjust(hysteresis=hysteresis)
        return placed

    def _write(self, states: list[CustomerState],
               before: dict[str, tuple[int | None, str | None]]) -> ReseedSummary:
        settings = self.settings
        engine = self.engine
        changes_sink = open_change_sink(settings.sinks.changes, settings=settings.kafka)
        letters = open_dead_letter_sink(settings.resolved_dead_letter(),
                                        settings=settings.kafka)
        commit = BatchCommit(self.store, None, changes_sink, letters)
        mark = {"reseed": {"k": settings.model.n_clusters}}
        published = 0
        lease = self.store.acquire_lease(f"reseed@{worker_id()}", settings.pipeline.lease_ttl_s)
        commit.lease = lease
        try:
            partitions = self._partitions()
            for partition in partitions.values():
                commit.republish(partition.outbox)
            engine.partitions = partitions
            for name, partition in partitions.items():
                learned = (partition.model or {}).get("traits")
                partition.model = engine._share(name).to_json()
                if learned is not None:
                    # The trait model stays; its per-segment sums follow the new segments.
                    partition.model["traits"] = regroup_traits(learned, [
                        s for s in self.all_states if (s.partition or LOCAL_PARTITION) == name])
            sample = self._sample(partitions)
            for start in range(0, max(1, len(states)), CHUNK):
                chunk = states[start:start + CHUNK]
                outcome = BatchOutcome(states=chunk, changes=self._changes(chunk, before),
                                       sample=sample if start == 0 else {})
                published += len(outcome.changes)
                commit.commit(outcome, {}, partitions, None, mark)
                self.store.renew_lease(lease, settings.pipeline.lease_ttl_s)
            history = SizeHistory(list(self.meta.get("size_history") or []),
                                  settings.pipeline.history_every_days)
            summaries = engine.segment_summaries()
            history.record(engine.now(), summaries, force=True)
            commit.settle()
            commit.write_final(engine.model_checkpoint(), {
                "settings": settings_record(settings),
                "reseed": None,
                "watermark": engine.watermark,
                "model_version": engine.model.version,
                "segments": summaries,
                "size_history": history.points,
            }, partitions)
        finally:
            changes_sink.close()
            letters.close()
            self.store.release_lease(lease)
        sizes: dict[int, int] = {}
        for state in states:
            if state.segment is not None:
                sizes[state.segment] = sizes.get(state.segment, 0) + 1
        return ReseedSummary(customers=len(states), changes=published,
                             sizes=dict(sorted(sizes.items())))

    def _sample(self, partitions: dict[str, Partition]) -> dict[str, dict[str, Any]]:
        """Every partition's sample rows as the new model has them: the old model's rows
        it does not have are deleted."""
        new = self.engine.model.take_sample_changes()  # type: ignore[attr-defined]
        old = self.store.read_sample(partitions)
        return {name: {**dict.fromkeys(old.get(name, {})), **new.get(name, {})}
                for name in partitions}

    def _partitions(self) -> dict[str, Partition]:
        """Every partition of the store, taken (a worker still running is fenced off),
        with its sizes and customer count as the reseed leaves them."""
        partitions: dict[str, Partition] = {}
        for name in self.store.partition_names():
            taken = self.store.take_partition(name)
            taken.sizes, taken.customers = {}, 0
            partitions[name] = taken
        for state in self.all_states:
            name = state.partition or LOCAL_PARTITION
            if name not in partitions:
                partitions[name] = self.store.take_partition(name)
                partitions[name].sizes = {}
                partitions[name].customers = 0
            partition = partitions[name]
            partition.customers += 1
            if state.segment is not None:
                partition.sizes[state.segment] = partition.sizes.get(state.segment, 0) + 1
        return partitions

    def _changes(self, states: list[CustomerState],
                 before: dict[str, tuple[int | None, str | None]]) -> list[SegmentChange]:
        changes = []
        for state in states:
            old_segment, old_name = before[state.customer_id]
            if state.segment is None or (old_segment, old_name) == (state.segment,
                                                                    state.segment_name):
                continue
            changes.append(segment_change(
                state.customer_id, old_segment, state.segment, self.engine.segment_names,
                "model_update", True, state.updated_at or self.engine.now(),
                state.model_version, previous_name=old_name))
        return changes

