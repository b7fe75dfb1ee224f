"""What workers write to Redis, without the rest of a worker: the load of ``bench redis``.

A worker's batch is one fenced script call (:meth:`RedisStore.write_batch`) holding, for
each partition the batch touches: its customers' records, the partition's positions,
segment sizes and customer count, its share of the model (``Partition.model``, JSON of
the standardiser and per-segment statistics), the changed rows of the model's sample,
and the outbox (the change events of the batch); and for the batch the metadata a
worker that does not hold the model lease writes (the settings record, the partition
counts). :class:`Workload` builds such batches from realistic customer states
(:func:`streamseg_bench.redis_memory.realistic_states`), with none of the engine's work
(parsing, features of real events, scoring) in between, so that what a writer spends is
mostly the store's encoding and the round trip.

* :meth:`Workload.first_batch` -- new customers, each with the change event of its first
  assignment (as a stream that builds the population writes them).
* :meth:`Workload.next_batch` -- existing customers again, each with one more purchase
  (:func:`evolve`): features, vector, times, offsets and event-id hashes change, a share
  ``change_rate`` of them changes segment (with a change event); the sampled ones' sample
  rows are rewritten (a live stream).

Not written: the model checkpoint, which only the lease holder writes, and only the
parts that changed after a refinement (every ``model.refine_interval_s``, not every
batch).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streamseg.core.events import SegmentChange, SegmentChangeData
from streamseg.core.features import SECONDS_PER_DAY, VECTOR_FIELDS
from streamseg.core.scaling import OnlineStandardizer
from streamseg.engine.shared import Share
from streamseg.model.stats import ClusterStats
from streamseg.store.base import BatchWrite, CustomerState, Partition, PartitionWrite, SampleRow
from streamseg.traits.cells import CELLS
from streamseg.traits.learner import TraitShare
from streamseg.traits.rates import rate_of
from streamseg_bench.redis_memory import _NAMES, PARTITIONS, realistic_states

__all__ = ["PARTITIONS", "Workload", "evolve", "generate_states", "owned_partitions",
           "partition_name"]

#: Segments of the default model (``model.n_clusters``).
SEGMENTS = 5
#: The metadata a worker writes with every batch (``Application._meta`` without the lease).
META: dict[str, Any] = {
    "settings": {
        "model.kind": "customer-kmeans", "model.n_clusters": 5, "model.reservoir_size": 5000,
        "model.seed": 42, "features.half_life_days": 90.0, "features.first_gap_days": 60.0,
        "features.grace_gaps": 4.0, "pipeline.clock": "event", "privacy.key_id": None,
        "input.source": "kafka group=streamseg topics=transactions",
        "model.hysteresis": 0.2, "model.refine_every": 1000, "model.lloyd_iterations": 10,
        "model.n_init": 10, "model.warmup": 500},
    "partition_counts": {"transactions": PARTITIONS},
}


def partition_name(index: int) -> str:
    """The name of partition ``index`` of the simulated topic."""
    return f"kafka:transactions:{index}"


def owned_partitions(writer: int, writers: int, partitions: int = PARTITIONS) -> list[str]:
    """The partitions writer ``writer`` of ``writers`` owns: every ``writers``-th one, as
    Kafka's range or round-robin assignor spreads 12 partitions over 1, 2 or 4 workers.

    >>> owned_partitions(1, 4)
    ['kafka:transactions:1', 'kafka:transactions:5', 'kafka:transactions:9']
    """
    if not 0 <= writer < writers:
        raise ValueError(f"writer {writer} of {writers}")
    return [partition_name(index) for index in range(writer, partitions, writers)]


def generate_states(customers: int, seed: int = 7, chunk: int = 10_000) -> list[CustomerState]:
    """``customers`` realistic states with ids ``cust-000000`` on, simulated ``chunk``
    customers at a time (the simulated events of 100,000 customers at once would take
    about a gigabyte), each chunk renumbered after the previous one."""
    states: list[CustomerState] = []
    for offset in range(0, customers, chunk):
        count = min(chunk, customers - offset)
        for state in realistic_states(count, seed=seed + offset):
            number = offset + int(state.customer_id.rsplit("-", 1)[-1])
            partition = partition_name(number % PARTITIONS)
            states.append(dataclasses.replace(
                state, customer_id=f"cust-{number:06d}", partition=partition,
                applied={partition: offset_of(state.applied)}))
    return states


def offset_of(applied: dict[str, int]) -> int:
    return next(iter(applied.values()), 0)


def evolve(state: CustomerState, rng: np.random.Generator, change_rate: float,
           half_life_days: float = 90.0) -> CustomerState:
    """``state`` after one more purchase, a few hours after its last event: what a
    live stream writes for a returning customer. Changes segment with probability
    ``change_rate``.

    >>> rng = np.random.default_rng(0)
    >>> before = generate_states(3)[0]
    >>> after = evolve(before, rng, change_rate=1.0)
    >>> (after.features.orders - before.features.orders, after.segment != before.segment,
    ...  offset_of(after.applied) - offset_of(before.applied), len(after.recent_ids))
    (1, True, 1, 8)
    """
    features = dataclasses.replace(state.features)
    last = features.reference_time or 1.7e9
    at = last + float(rng.uniform(600, 6 * 3600))
    features.apply(at, round(float(rng.lognormal(3.5, 0.8)), 2), "purchase",
                   half_life_days=half_life_days)
    segment = state.segment
    if segment is None or rng.random() < change_rate:
        segment = (int(segment or 0) + 1 + int(rng.integers(SEGMENTS - 1))) % SEGMENTS
    jitter = rng.normal(0.0, 0.05, len(VECTOR_FIELDS))
    vector = (np.asarray(state.vector or np.zeros(len(VECTOR_FIELDS))) + jitter)
    recent = [*state.recent_ids, zlib.crc32(f"{state.customer_id}-{at}".encode())][-8:]
    return dataclasses.replace(
        state, features=features, segment=segment, segment_name=_NAMES[segment],
        vector=vector.astype(np.float32).astype(float).tolist(), updated_at=at,
        next_rescore_at=at + float(rng.uniform(1, 14)) * SECONDS_PER_DAY,
        applied={name: offset + 1 for name, offset in state.applied.items()},
        recent_ids=recent)


class Workload:
    """Builds worker batches for the partitions ``states`` belong to.

    Parameters
    ----------
    shares
        Each partition's share of the model (JSON), as :func:`realistic_shares` makes it.
    sampled
        The customers in the model's sample (``model.reservoir_size`` of them over all
        partitions): their rows are written with them.
    change_rate
        Share of the customers of a :meth:`next_batch` that change segment.
    seed
        Seed of the draws.
    """

    def __init__(self, shares: dict[str, dict[str, Any]], sampled: Iterable[str],
                 change_rate: float = 0.05, seed: int = 11) -> None:
        self.rng = np.random.default_rng(seed)
        self.change_rate = change_rate
        self.sampled = frozenset(sampled)
        self.shares = {name: dict(share) for name, share in shares.items()}

    @classmethod
    def of(cls, states: Sequence[CustomerState], sample_size: int = 5000,
           change_rate: float = 0.05, seed: int = 11) -> Workload:
        """The workload of ``states``: their partitions' shares, and a uniform sample."""
        rng = np.random.default_rng(seed)
        ids = sorted(state.customer_id for state in states)
        chosen = rng.choice(len(ids), size=min(sample_size, len(ids)), replace=False)
        return cls(realistic_shares(states, rng), [ids[int(index)] for index in chosen],
                   change_rate, seed)

    def first_batch(self, parts: dict[str, Partition], states: Iterable[CustomerState]
                    ) -> BatchWrite:
        """New customers: counted into their partitions, each with the change event of
        its first assignment."""
        return self._batch(parts, [(None, state) for state in states])

    def next_batch(self, parts: dict[str, Partition], states: list[CustomerState]
                   ) -> BatchWrite:
        """The customers ``states`` again, each evolved by one purchase; ``states`` is
        updated in place to what was written."""
        pairs = []
        for index, before in enumerate(states):
            after = evolve(before, self.rng, self.change_rate)
            states[index] = after
            pairs.append((before, after))
        return self._batch(parts, pairs)

    def _batch(self, parts: dict[str, Partition],
               pairs: Iterable[tuple[CustomerState | None, CustomerState]]) -> BatchWrite:
        writes: dict[str, PartitionWrite] = {}
        for before, state in pairs:
            name = state.partition or ""
            part = parts[name]
            write = writes.get(name)
            if write is None:
                part.outbox = []
                part.positions = {}
                write = writes[name] = PartitionWrite(part)
            write.states.append(state)
            _count(part, None if before is None else before.segment, state.segment,
                   new=before is None)
            part.positions[name] = offset_of(state.applied) + 1
            if before is None or before.segment != state.segment:
                part.outbox.append(change_event(state, before))
            if state.customer_id in self.sampled:
                write.sample[state.customer_id] = self.sample_row(state)
        for name, write in writes.items():
            share = dict(self.shares[name])
            share["updates"] = int(share["updates"]) + len(write.states)
            share["clock"] = max(s.updated_at or 0.0 for s in write.states)
            self.shares[name] = share
            write.partition.model = share
        return BatchWrite(list(writes.values()), meta=META)

    def sample_row(self, state: CustomerState) -> SampleRow:
        """A sample row: the segment and a standardised (float64) model-space vector."""
        return (int(state.segment if state.segment is not None else -1),
                self.rng.standard_normal(len(VECTOR_FIELDS)).tolist())


def _count(part: Partition, before: int | None, after: int | None, new: bool) -> None:
    """Move a customer's count from segment ``before`` to ``after`` (absolute sizes)."""
    if new:
        part.customers += 1
    elif before == after:
        return
    elif before is not None:
        part.sizes[before] = part.sizes.get(before, 0) - 1
    if after is not None:
        part.sizes[after] = part.sizes.get(after, 0) + 1


def change_event(state: CustomerState, before: CustomerState | None) -> str:
    """The change event (CloudEvents JSON) a worker puts in the outbox."""
    data = SegmentChangeData(
        customer_id=state.customer_id,
        from_segment=None if before is None else before.segment,
        from_name=None if before is None else before.segment_name,
        to_segment=int(state.segment or 0), to_name=state.segment_name,
        reason="first_assignment" if before is None else "behaviour",
        event_time=datetime.fromtimestamp(state.updated_at or 0.0, UTC),
        model_version=state.model_version)
    return SegmentChange.create(data).to_json()


def realistic_shares(states: Iterable[CustomerState], rng: np.random.Generator
                     ) -> dict[str, dict[str, Any]]:
    """Each partition's share of the model, as JSON: its customers' standardiser and
    per-segment statistics of their vectors, its clock and scoring count."""
    vectors: dict[str, list[list[float]]] = {}
    labels: dict[str, list[int]] = {}
    clocks: dict[str, float] = {}
    for state in states:
        name = state.partition or ""
        vectors.setdefault(name, []).append(list(state.vector or []))
        labels.setdefault(name, []).append(int(state.segment or 0) % SEGMENTS)
        clocks[name] = max(clocks.get(name, 0.0), state.updated_at or 0.0)
    shares = {}
    for name, rows in vectors.items():
        x = np.asarray(rows, dtype=np.float64)
        raw = np.abs(x) * 3 + rng.random(x.shape)  # raw features: log-scale, positive
        scaler = OnlineStandardizer(x.shape[1])
        scaler.learn_many(raw)
        stats = ClusterStats.of(x, np.asarray(labels[name]), k=SEGMENTS)
        shares[name] = Share(scaler, clocks[name], stats, updates=3 * len(rows)).to_json()
        shares[name]["traits"] = _trait_share(labels[name], rng)
    return shares


def _trait_share(segments: list[int], rng: np.random.Generator) -> dict[str, Any]:
    """A partition's share of the trait model after a year of labels: every cell seen,
    a full histogram of predictions, per-segment sums (its size)."""
    share = TraitShare()
    for _ in range(20 * len(segments)):
        cell = int(rng.integers(CELLS))
        p = float(rng.random())
        bought = bool(rng.random() < p)
        spend = float(rng.uniform(10, 200)) if bought else 0.0
        avg_order = float(rng.uniform(10, 100))
        # A history as the service learns it (rate curve, BG/NBD's histogram): so that
        # the share has the size of a real one.
        repeat = int(rng.geometric(0.3)) - 1
        age = float(rng.uniform(1, 540))
        share.stats.learn(cell, avg_order, bought, spend, rate_of(repeat + 1, age), avg_order,
                          (repeat, float(rng.uniform(0, age)) if repeat else 0.0, age))
        share.quality.update(p, bought, p * 50.0, spend)
    for segment in segments:
        share.count(segment, (round(float(rng.random()), 4), round(float(rng.uniform(0, 99)), 2)),
                    1)
    return share.to_json()
