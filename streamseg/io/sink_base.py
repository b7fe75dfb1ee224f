"""The sink interfaces: where segment changes and rejected input go."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from streamseg.core.events import DeadLetter, SegmentChange


class ChangeSink(ABC):
    """Publishes segment-change events."""

    @abstractmethod
    def publish(self, changes: Sequence[SegmentChange]) -> None:
        """Send changes (may buffer)."""

    @abstractmethod
    def flush(self) -> None:
        """Block until everything sent so far is durable / acknowledged."""

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self.flush()


class DeadLetterSink(ABC):
    """Keeps rejected payloads with their reason."""

    @abstractmethod
    def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send rejected records (may buffer)."""

    @abstractmethod
    def flush(self) -> None:
        """Block until everything sent so far is durable / acknowledged."""

    def close(self) -> None:
        self.flush()
