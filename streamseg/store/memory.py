"""In-process store (``memory://``): for tests and throwaway runs; nothing survives."""

from __future__ import annotations

import copy
import heapq
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from streamseg.core.state import CustomerState
from streamseg.store.base import (
    BatchWrite,
    FencedError,
    LeaseHeld,
    Partition,
    SampleRow,
    Store,
)


class MemoryStore(Store):
    """Keeps deep copies, so callers cannot change stored state by accident.

    >>> from streamseg.core.features import CustomerFeatures
    >>> from streamseg.store.base import PartitionWrite
    >>> store = MemoryStore()
    >>> part = store.take_partition("local")
    >>> part.customers, part.sizes = 1, {2: 1}
    >>> state = CustomerState("c1", CustomerFeatures.empty(), segment=2, partition="local")
    >>> store.write_batch(BatchWrite([PartitionWrite(part, [state])]))
    >>> store.get("c1").segment, store.count(), store.segment_sizes()
    (2, 1, {2: 1})
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._customers: dict[str, dict[str, Any]] = {}
        # Per partition, a lazy heap of (due time, customer); stale entries are skipped.
        self._due: dict[str, list[tuple[float, str]]] = {}
        self._partitions: dict[str, Partition] = {}
        self._samples: dict[str, dict[str, SampleRow]] = {}
        self._model: dict[str, Any] | None = None
        self._meta: dict[str, Any] = {}
        self._lease: tuple[str, float] | None = None  # (token, expires at)
        self._clock = clock

    # -- customers --------------------------------------------------------------------
    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        return {
            cid: CustomerState.from_dict(copy.deepcopy(self._customers[cid]))
            for cid in customer_ids
            if cid in self._customers
        }

    def iter_customers(self) -> Iterator[CustomerState]:
        for data in list(self._customers.values()):
            yield CustomerState.from_dict(copy.deepcopy(data))

    # -- partitions -------------------------------------------------------------------
    def take_partition(self, name: str) -> Partition:
        stored = self._partitions.setdefault(name, Partition(name))
        stored.epoch += 1
        return copy.deepcopy(stored)

    def read_partition(self, name: str) -> Partition:
        return copy.deepcopy(self._partitions.get(name, Partition(name)))

    def partition_names(self) -> list[str]:
        return sorted(self._partitions)

    def read_sample(self, names: Iterable[str]) -> dict[str, dict[str, SampleRow]]:
        return {name: copy.deepcopy(self._samples.get(name, {})) for name in names}

    def customers_page(self, partition: str, cursor: str, limit: int) -> tuple[list[str], str]:
        ids = sorted(cid for cid, data in self._customers.items()
                     if data.get("partition") == partition and cid > cursor)[:limit]
        return ids, (ids[-1] if len(ids) == limit else "")

    # -- the batch --------------------------------------------------------------------
    def write_batch(self, write: BatchWrite) -> None:
        stale = [part.partition.name for part in write.partitions
                 if part.partition.name not in self._partitions
                 or self._partitions[part.partition.name].epoch != part.partition.epoch]
        lease_lost = write.lease is not None and not self._holds(write.lease)
        if stale or lease_lost:
            raise FencedError(stale, lease_lost)
        for part in write.partitions:
            new = part.partition
            stored = self._partitions[new.name]
            stored.positions.update(new.positions)
            stored.sizes = dict(new.sizes)
            stored.customers = new.customers
            stored.outbox = list(new.outbox)
            if new.model is not None:
                stored.model = copy.deepcopy(new.model)
            sample = self._samples.setdefault(new.name, {})
            for cid, row in part.sample.items():
                if row is None:
                    sample.pop(cid, None)
                else:
                    sample[cid] = (int(row[0]), [float(v) for v in row[1]])
            due = self._due.setdefault(new.name, [])
            for state in part.states:
                self._customers[state.customer_id] = copy.deepcopy(state.to_dict())
                if state.next_rescore_at is not None:
                    heapq.heappush(due, (state.next_rescore_at, state.customer_id))
        if write.model_checkpoint is not None:
            self._model = copy.deepcopy(write.model_checkpoint)
        self._meta.update(copy.deepcopy(write.meta))

    def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
        heap = self._due.get(partition, [])
        found: list[str] = []
        seen: set[str] = set()
        kept: list[tuple[float, str]] = []
        while heap and heap[0][0] <= until and len(found) < limit:
            due_at, cid = heapq.heappop(heap)
            current = self._customers.get(cid, {})
            if (current.get("next_rescore_at") != due_at or cid in seen
                    or current.get("partition") not in (partition, None)):
                continue  # superseded by a later write
            seen.add(cid)
            found.append(cid)
            kept.append((due_at, cid))
        for item in kept:  # still due until the caller writes a new time
            heapq.heappush(heap, item)
        return found

    # -- the model and metadata -------------------------------------------------------
    def load_model(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._model)

    def meta(self) -> dict[str, Any]:
        return copy.deepcopy(self._meta)

    # -- the lease --------------------------------------------------------------------
    def _holds(self, token: str) -> bool:
        return (self._lease is not None and self._lease[0] == token
                and self._lease[1] > self._clock())

    def acquire_lease(self, holder: str, ttl_s: float, *, replace_own: bool = False) -> str:
        now = self._clock()
        own = self._lease is not None and self._lease[0].rpartition("#")[0] == holder
        if self._lease is not None and self._lease[1] > now and not (replace_own and own):
            raise LeaseHeld(self._lease[0].rpartition("#")[0], self._lease[1] - now)
        token = f"{holder}#{uuid.uuid4().hex[:12]}"
        self._lease = (token, now + ttl_s)
        return token

    def renew_lease(self, token: str, ttl_s: float) -> bool:
        if not self._holds(token):
            return False
        self._lease = (token, self._clock() + ttl_s)
        return True

    def release_lease(self, token: str) -> None:
        if self._lease is not None and self._lease[0] == token:
            self._lease = None
