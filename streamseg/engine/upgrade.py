"""Upgrade a store written before the model was kept per partition.

Earlier versions kept the whole model -- its per-segment sums, the standardiser, the
clock -- in one checkpoint, written by the one worker a store allowed. Now each
partition's owner keeps that partition's share (:mod:`.shared`). The stored customers
hold everything a share is made of, so the upgrade rebuilds each partition's share from
its customers, exactly as the engine would have kept it:

- per-segment sums, square sums and counts of their stored vectors and segments;
- the standardiser over their raw vectors as last scored (recomputed from the stored
  features at ``updated_at``, which gives exactly the vector the engine learnt);
- the clock: the latest event time among them;
- the sample: the customers whose id hashes below the sampling rate (halved from 1
  until the sample fits ``model.reservoir_size``), with their vector and segment.

The model keeps its centroids, version and segment names: no customer changes segment.
The worker that opens the store runs it once, holding the model lease (see
:class:`streamseg.app.Application`); every partition is taken, so a worker of the
previous version still running is fenced off.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from streamseg.config import Settings
from streamseg.core.features import SCALE_FLOOR, VECTOR_FIELDS
from streamseg.core.scaling import OnlineStandardizer
from streamseg.engine.checkpoint import model_checkpoint
from streamseg.engine.engine import partition_of_applied
from streamseg.engine.shared import Share
from streamseg.model import CustomerKMeans, build_model
from streamseg.model.sample import hash_of
from streamseg.model.stats import ClusterStats
from streamseg.store import BatchWrite, PartitionWrite, SampleRow, Store

log = logging.getLogger(__name__)

__all__ = ["upgrade_store"]


class _Part:
    """What the upgrade gathers of one partition's customers."""

    def __init__(self) -> None:
        self.scaler = OnlineStandardizer(len(VECTOR_FIELDS), SCALE_FLOOR)
        self.clock: float | None = None
        self.raws: list[np.ndarray] = []
        self.rows: list[tuple[str, list[float], int]] = []
        self.waiting: list[tuple[str, list[float]]] = []


def upgrade_store(settings: Settings, store: Store, lease: str | None) -> None:
    """Move a legacy checkpoint's model into the partitions (module docstring)."""
    checkpoint = store.load_model() or {}
    old_model: dict[str, Any] = checkpoint.get("model") or {}
    params = settings.model.params()
    kind = checkpoint.get("kind", settings.model.kind)
    model = build_model(kind, **params) if kind == "customer-kmeans" else None
    buffered = _legacy_buffer(old_model)
    parts: dict[str, _Part] = {}
    for state in store.iter_customers():
        name = state.partition or partition_of_applied(state)
        part = parts.setdefault(name, _Part())
        reference = state.features.reference_time
        if reference is not None and (part.clock is None or reference > part.clock):
            part.clock = reference
        if state.features.has_purchases and state.updated_at is not None:
            raw = settings.features.snapshot(state.features, state.updated_at).raw_vector()
            part.raws.append(raw)
        if state.vector is not None and state.segment is not None:
            part.rows.append((state.customer_id, list(state.vector), int(state.segment)))
        elif state.customer_id in buffered:
            part.waiting.append((state.customer_id, buffered[state.customer_id]))
    for part in parts.values():
        if part.raws:
            part.scaler.learn_many(np.asarray(part.raws))
    names = {int(k): v for k, v in (checkpoint.get("names") or {}).items()}
    centroids = old_model.get("centroids")
    rate = 1.0
    if isinstance(model, CustomerKMeans) and centroids is not None:
        every = [cid for part in parts.values() for cid, _, _ in part.rows]
        rate = _rate(every, settings.model.reservoir_size)
        model.adopt(int(old_model.get("version", 1)), np.asarray(centroids, dtype=np.float64),
                    rate, {})
    writes = []
    k = settings.model.n_clusters
    for name, part in sorted(parts.items()):
        stats = None
        sample: dict[str, SampleRow | None] = {}
        if isinstance(model, CustomerKMeans) and model.ready:
            x = np.array([v for _, v, _ in part.rows],
                         dtype=np.float64).reshape(-1, len(VECTOR_FIELDS))
            stats = ClusterStats.of(x, np.array([s for _, _, s in part.rows], dtype=np.int64), k)
            model.own(name, stats, part.rows)
            # The model loads its sample as if read from the store: write it there.
            for cid, vector, segment in part.rows:
                if hash_of(cid) < rate:
                    sample[cid] = (segment, vector)
        elif isinstance(model, CustomerKMeans):
            for cid, vector in part.waiting:
                sample[cid] = (-1, vector)
        taken = store.take_partition(name)
        taken.model = Share(part.scaler, part.clock, stats, 0, len(part.waiting)).to_json()
        writes.append(PartitionWrite(taken, [], sample))
    if isinstance(model, CustomerKMeans):
        changes = model.take_sample_changes()
        for write in writes:
            write.sample.update(changes.get(write.partition.name, {}))
        new_checkpoint = model_checkpoint(kind, model, names)
    else:
        new_checkpoint = model_checkpoint(kind, _river(settings, old_model), names)
    store.write_batch(BatchWrite(writes, new_checkpoint, {}, lease))
    log.warning("upgraded %s: the model's share of each of %d partition(s) is now kept "
                "with the partition", settings.store.uri, len(parts))


def _legacy_buffer(old_model: dict[str, Any]) -> dict[str, list[float]]:
    """The warm-up buffer of a legacy customer-kmeans state (customer -> vector)."""
    buffer = old_model.get("buffer") or {}
    keys = buffer.get("keys") or []
    vectors = buffer.get("vectors") or []
    return {str(k): list(v) for k, v in zip(keys, vectors, strict=False)}


def _rate(keys: list[str], capacity: int) -> float:
    """The sampling rate a hash-based sample of ``keys`` settles at (halved from 1
    until at most ``capacity`` are in)."""
    hashes = np.array([hash_of(key) for key in keys])
    rate = 1.0
    while (hashes < rate).sum() > capacity:
        rate /= 2
    return rate


def _river(settings: Settings, old_model: dict[str, Any]) -> Any:
    """A river-kmeans model restored from its legacy state (its state did not change)."""
    return build_model("river-kmeans", **settings.model.params()).from_state(old_model)
