"""The store interface: per-customer state, the model checkpoint, source positions.

Every backend (memory, SQLite, Redis) implements :class:`Store`. A batch of the pipeline
is written with a single :meth:`Store.write_batch` call, atomically where the backend
allows, together with the source positions it reflects, so that a restarted worker
resumes exactly after the last batch it wrote.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamseg.core.state import CustomerState


@dataclass(slots=True)
class BatchWrite:
    """What the pipeline writes besides customer states at the end of a batch.

    One batch's write, applied atomically with the states (see :meth:`Store.write_batch`).
    """

    #: The model checkpoint (the model's persisted state, see
    #: :mod:`streamseg.engine.checkpoint`); None: unchanged since the last write.
    model_checkpoint: dict[str, Any] | None = None
    positions: dict[str, int] = field(default_factory=dict)  # source position key -> next
    meta: dict[str, Any] = field(default_factory=dict)  # watermark, counters
    # Serialized change events of this batch, replacing the previous batch's; published
    # after the write and again on restart (the transactional-outbox pattern).
    outbox: list[str] = field(default_factory=list)


class Store(ABC):
    """Where customer states, the model and source positions live."""

    @abstractmethod
    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """States of the given customers that exist (missing ids are absent)."""

    @abstractmethod
    def write_batch(self, states: Sequence[CustomerState], write: BatchWrite) -> None:
        """Write states and the rest of the batch together (atomically where possible)."""

    @abstractmethod
    def due_for_rescore(self, until: float, limit: int) -> list[str]:
        """Up to ``limit`` customer ids whose ``next_rescore_at`` is <= ``until``."""

    @abstractmethod
    def load_model(self) -> dict[str, Any] | None:
        """The last model checkpoint written, or None."""

    @abstractmethod
    def outbox(self) -> list[str]:
        """The change events written with the last batch."""

    @abstractmethod
    def positions(self) -> dict[str, int]:
        """Source positions written with the last batch."""

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """Watermark and counters written with the last batch."""

    @abstractmethod
    def iter_customers(self) -> Iterator[CustomerState]:
        """Every customer state (for export and reports)."""

    @abstractmethod
    def count(self) -> int:
        """Number of customers stored."""

    def get(self, customer_id: str) -> CustomerState | None:
        return self.get_many([customer_id]).get(customer_id)

    def segment_sizes(self) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for state in self.iter_customers():
            if state.segment is not None:
                sizes[state.segment] = sizes.get(state.segment, 0) + 1
        return sizes

    def ping(self) -> bool:
        """True when the backend answers (readiness)."""
        return True

    def forget_cached(self) -> None:  # noqa: B027 - optional hook
        """Drop what the store remembers of customers it loaded or wrote (a rebalance:
        another worker may write them now)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release connections."""
