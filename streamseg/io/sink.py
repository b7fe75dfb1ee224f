"""The sink interface: where segment changes and rejected input go.

One interface, :class:`Sink`, for both kinds of output. What differs between segment
changes and dead letters is only how an item becomes a record, which is a
:data:`Formatter`'s job (:mod:`streamseg.io.formats`); each backend -- JSON Lines,
Kafka -- is one sink class that takes a formatter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from streamseg.core.events import ChangeEvent, DeadLetter

__all__ = ["ChangeSink", "DeadLetterSink", "Formatter", "Sink", "SinkRecord"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SinkRecord:
    """One item as a sink writes it.

    ``text`` is the JSON document: the line of a JSON Lines file, or (UTF-8) the value
    of a Kafka record. ``key`` and ``headers`` are Kafka's; JSON Lines ignores them.
    """

    text: str
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


#: Turns an item (a segment change, a dead letter) into the record a sink writes.
Formatter = Callable[[T], SinkRecord]


class Sink(ABC, Generic[T]):
    """Publishes items -- segment changes or dead letters -- to one destination."""

    @abstractmethod
    def publish(self, items: Sequence[T]) -> None:
        """Send items (may buffer)."""

    @abstractmethod
    def flush(self) -> None:
        """Block until everything sent so far is durable / acknowledged."""

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self.flush()


#: Publishes segment-change (and risk-band-change) events.
ChangeSink = Sink[ChangeEvent]
#: Keeps rejected payloads with their reason.
DeadLetterSink = Sink[DeadLetter]
