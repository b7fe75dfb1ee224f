"""The source interface: where raw transaction records come from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from streamseg.core.events import RawRecord
from streamseg.core.state import LOCAL_PARTITION


@dataclass(slots=True)
class AssignmentChange:
    """How this worker's share of the input changed (see :meth:`Source.assignment_changes`).

    Partitions are named as in the store (``kafka:<topic>:<n>``, or ``local``). A
    partition revoked and assigned again since the last call is in both lists.
    """

    #: Newly this worker's: take them in the store, then resume at their stored position.
    assigned: list[str] = field(default_factory=list)
    #: No longer this worker's, handed over cleanly (a rebalance).
    revoked: list[str] = field(default_factory=list)
    #: Taken away without a hand-over (this worker's session expired): its writes for
    #: them will be refused.
    lost: list[str] = field(default_factory=list)


class Source(ABC):
    """Yields :class:`RawRecord` batches and knows how to resume after a restart.

    Positions are plain ``{key: next_position}`` mappings. The pipeline writes them to the
    store together with the batch's state, and on start-up hands them back through
    :meth:`seek`, so a resumed run neither skips nor repeats a record -- whatever the
    backend's own offset bookkeeping says.
    """

    #: False for unbounded streams (Kafka); True when the input ends (files).
    finite: bool = True
    #: True when other workers may consume other parts of the same input into the same
    #: store (a Kafka consumer group); False when this worker reads all of it (files).
    shared: bool = False
    _local_assigned: bool = False

    @abstractmethod
    def poll(self, max_records: int, timeout: float) -> list[RawRecord]:
        """Up to ``max_records`` records; an empty list when nothing arrived in time."""

    @property
    @abstractmethod
    def exhausted(self) -> bool:
        """True once a finite source has nothing more to give."""

    @abstractmethod
    def positions_after(self, records: Sequence[RawRecord]) -> dict[str, int]:
        """The positions to store once ``records`` are fully processed."""

    def assignment_changes(self) -> AssignmentChange | None:
        """What changed in this worker's share of the input since the last call (None:
        nothing). Called by the pipeline after every poll, in its own thread. A source
        one worker reads whole is assigned the ``local`` partition on the first call."""
        if self._local_assigned:
            return None
        self._local_assigned = True
        return AssignmentChange(assigned=[LOCAL_PARTITION])

    def partition_of(self, stream: str) -> str:
        """The partition a stream's records belong to."""
        return LOCAL_PARTITION

    def partition_counts(self) -> dict[str, int]:
        """Topic -> number of partitions, for a partitioned source (checked against the
        store: a changed count would give customers two owners)."""
        return {}

    def seek(self, positions: dict[str, int],  # noqa: B027 - optional
             partitions: Collection[str] | None = None) -> None:
        """Resume ``partitions`` (all of this worker's: None) from positions previously
        returned by :meth:`positions_after`: when a partition is taken, and after a
        failed batch, whose records must then come again (a source that cannot rewind
        keeps them)."""

    def behind(self) -> set[str]:
        """Partitions with records waiting that this worker has not polled yet (their
        idle customers are not re-scored past their own clock meanwhile; see
        :mod:`streamseg.engine.shared`). A source read in order has none."""
        return set()

    def written(self, positions: dict[str, int]) -> None:  # noqa: B027 - optional
        """The batch that ends at ``positions`` is in the store (a source that cannot
        rewind may forget what it kept to hand out again)."""

    def commit(self, positions: dict[str, int]) -> None:  # noqa: B027 - optional
        """Tell the backend the positions are durable (Kafka: commit offsets)."""

    def progress_total(self) -> int | None:
        """Total units for a progress bar (bytes of a file), or None."""
        return None

    def progress_done(self) -> int:
        return 0

    def ready(self) -> bool:
        return True

    def close(self) -> None:  # noqa: B027 - optional
        """Release files or connections."""
