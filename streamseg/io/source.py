"""The source interface: where raw transaction records come from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from streamseg.core.events import RawRecord


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
    #: Bumped whenever the source's share of the input changes (a Kafka rebalance): the
    #: pipeline then drops what it cached of customers another worker may have written.
    assignment_epoch: int = 0

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

    def seek(self, positions: dict[str, int]) -> None:  # noqa: B027 - optional
        """Resume from positions previously returned by :meth:`positions_after`: at
        start-up, and after a failed batch, whose records must then come again (a source
        that cannot rewind keeps them)."""

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
