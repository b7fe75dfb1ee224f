"""In-process store (``memory://``): for tests and throwaway runs; nothing survives."""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from streamseg.store.base import BatchWrite, CustomerState, Store


class MemoryStore(Store):
    """Keeps deep copies, so callers cannot change stored state by accident.

    >>> from streamseg.core.features import CustomerFeatures
    >>> store = MemoryStore()
    >>> store.write_batch([CustomerState("c1", CustomerFeatures.empty(), segment=2)], BatchWrite())
    >>> store.get("c1").segment, store.count()
    (2, 1)
    """

    def __init__(self) -> None:
        self._customers: dict[str, dict[str, Any]] = {}
        self._due: list[tuple[float, str]] = []  # lazy heap; stale entries skipped on read
        self._model: dict[str, Any] | None = None
        self._positions: dict[str, int] = {}
        self._meta: dict[str, Any] = {}
        self._outbox: list[str] = []

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        return {
            cid: CustomerState.from_dict(copy.deepcopy(self._customers[cid]))
            for cid in customer_ids
            if cid in self._customers
        }

    def write_batch(self, states: Sequence[CustomerState], write: BatchWrite) -> None:
        for state in states:
            self._customers[state.customer_id] = copy.deepcopy(state.to_dict())
            if state.next_rescore_at is not None:
                heapq.heappush(self._due, (state.next_rescore_at, state.customer_id))
        if write.model_checkpoint is not None:
            self._model = copy.deepcopy(write.model_checkpoint)
        self._positions.update(write.positions)
        self._outbox = list(write.outbox)
        self._meta.update(copy.deepcopy(write.meta))

    def due_for_rescore(self, until: float, limit: int) -> list[str]:
        found: list[str] = []
        seen: set[str] = set()
        kept: list[tuple[float, str]] = []
        while self._due and self._due[0][0] <= until and len(found) < limit:
            due_at, cid = heapq.heappop(self._due)
            current = self._customers.get(cid, {}).get("next_rescore_at")
            if current != due_at or cid in seen:
                continue  # superseded by a later write
            seen.add(cid)
            found.append(cid)
            kept.append((due_at, cid))
        for item in kept:  # still due until the caller writes a new time
            heapq.heappush(self._due, item)
        return found

    def load_model(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._model)

    def outbox(self) -> list[str]:
        return list(self._outbox)

    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    def meta(self) -> dict[str, Any]:
        return copy.deepcopy(self._meta)

    def iter_customers(self) -> Iterator[CustomerState]:
        for data in list(self._customers.values()):
            yield CustomerState.from_dict(copy.deepcopy(data))

    def count(self) -> int:
        return len(self._customers)
