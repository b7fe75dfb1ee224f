"""How much Redis memory one customer takes in :class:`~streamseg.store.redis.RedisStore`.

The budget is 250 bytes per customer, everything included (customer records, due
indexes, the partitions' counters). :func:`measure_memory_per_customer` writes realistic
customers under a fresh key prefix, reads ``used_memory`` before and after, deletes them
again and returns the growth per customer.

"Realistic" means: the features of simulated customers (:mod:`streamseg_bench.simulate`: five
archetypes, a year of purchases and refunds with sub-second event times), ids like
``cust-000123``, a 6-dimensional float32 vector, a segment with a name, a model version,
a next re-score time, the Kafka offset last applied and the hashes of the last 8 event
ids (``pipeline.dedupe_window``), the predictive traits and, for a customer who bought
since their last grid point, the snapshot that waits for its label (``traits``),
spread over the 12 partitions of a topic -- what workers write.
"""

from __future__ import annotations

import uuid
import zlib
from datetime import datetime
from functools import partial

import numpy as np

from streamseg.core.features import SECONDS_PER_DAY, VECTOR_FIELDS, CustomerFeatures
from streamseg.store.base import BatchWrite, CustomerState, Partition, PartitionWrite
from streamseg.traits.cells import cell_at
from streamseg.traits.schedule import Grid, Snapshot
from streamseg_bench.simulate import simulate_stream

#: Partitions of the simulated topic.
PARTITIONS = 12
#: Segment names of the naming rules, as a worker writes them.
_NAMES = ("VIP", "Loyal regulars", "New", "Bargain hunters", "At risk", "Lapsed big spenders")


def realistic_states(customers: int, seed: int = 7, dedupe_window: int = 8
                     ) -> list[CustomerState]:
    """Customer states as a worker would store them after a simulated stream."""
    events, _ = simulate_stream(customers=customers, seed=seed)
    rng = np.random.default_rng(seed)
    features: dict[str, CustomerFeatures] = {}
    applied: dict[str, int] = {}
    recent: dict[str, list[int]] = {}
    partitions = PARTITIONS
    for offset, event in enumerate(events):
        cid = event["customer_id"]
        when = datetime.fromisoformat(event["timestamp"]).timestamp()
        features.setdefault(cid, CustomerFeatures.empty()).apply(
            when, event["amount"], event["type"], half_life_days=90.0
        )
        applied[cid] = offset // partitions  # an offset in the customer's partition
        ids = recent.setdefault(cid, [])
        ids.append(zlib.crc32(event["event_id"].encode()))
        del ids[:-dedupe_window]
    states = []
    for cid, feats in features.items():
        now = feats.reference_time or 0.0
        # The traits' defaults (streamseg.traits): one snapshot waits per customer.
        # The snapshot waiting for its label is stored when a purchase followed it.
        grid = Grid.of(cid, 90.0, 90.0)
        snapshots: list[Snapshot] = [
            grid.snapshot(feats, t, partial(cell_at, feats))
            for t in grid.points(now - grid.horizon, now)
            if feats.last_purchase is not None and feats.last_purchase > t]
        probability = round(float(rng.beta(1.0, 3.0)), 3)
        spend = float(round(probability * feats.total_spend / max(1, feats.orders)
                            * float(rng.uniform(1, 3))))
        vector = rng.standard_normal(len(VECTOR_FIELDS)).astype(np.float32).astype(float)
        segment = int(rng.integers(len(_NAMES)))
        partition = int(cid.rsplit("-", 1)[-1]) % partitions
        states.append(
            CustomerState(
                customer_id=cid,
                features=feats,
                segment=segment,
                segment_name=_NAMES[segment],
                vector=vector.tolist(),
                updated_at=now,
                model_version=int(rng.integers(1, 200)),
                next_rescore_at=now + float(rng.uniform(1, 14)) * SECONDS_PER_DAY,
                applied={f"kafka:transactions:{partition}": applied[cid]},
                recent_ids=recent[cid] if dedupe_window else [],
                partition=f"kafka:transactions:{partition}",
                snapshots=snapshots,
                traits=(probability, spend),
            )
        )
    return states


def measure_memory_per_customer(
    redis_url: str, customers: int = 20_000, password: str | None = None,
    buckets: int | None = None,
) -> float:
    """Bytes of Redis ``used_memory`` per customer written (and cleaned up afterwards).

    Parameters
    ----------
    redis_url
        The Redis to measure on. Keys go under a fresh ``bench-<uuid>`` prefix and are
        deleted before returning; nothing else should write to this Redis meanwhile,
        since any other growth of ``used_memory`` is counted too.
    customers
        How many simulated customers to write (in batches of 500, as a worker does).
    password
        Redis password, unless the URL has one.
    buckets
        Bucket count of the layout; None for the store's default.
    """
    from streamseg.store.redis import RedisStore

    states = realistic_states(customers)
    store = RedisStore.from_uri(redis_url, password=password,
                                prefix=f"bench-{uuid.uuid4().hex[:12]}", buckets=buckets)
    client = store._redis
    try:
        # Every partition taken and written once before measuring: what is measured is
        # what customers add.
        parts = {name: store.take_partition(name)
                 for name in sorted({state.partition or "" for state in states})}
        store.write_batch(BatchWrite([PartitionWrite(part) for part in parts.values()]))
        before = int(client.info("memory")["used_memory"])
        for start in range(0, len(states), 500):
            store.write_batch(_batch(parts, states[start:start + 500]))
        after = int(client.info("memory")["used_memory"])
    finally:
        store.delete_all()
        store.close()
    return (after - before) / max(1, len(states))


def _batch(parts: dict[str, Partition], states: list[CustomerState]) -> BatchWrite:
    """A batch of new customers as workers write it: per partition, the customers and the
    partition's counters after them (``parts`` is updated)."""
    writes: dict[str, PartitionWrite] = {}
    for state in states:
        part = parts[state.partition or ""]
        part.customers += 1
        if state.segment is not None:
            part.sizes[state.segment] = part.sizes.get(state.segment, 0) + 1
        part.positions = {name: offset + 1 for name, offset in state.applied.items()}
        writes.setdefault(part.name, PartitionWrite(part)).states.append(state)
    return BatchWrite(list(writes.values()))


if __name__ == "__main__":  # pragma: no cover - manual benchmark
    import sys

    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    print(f"{measure_memory_per_customer(url, count):.1f} bytes per customer")
