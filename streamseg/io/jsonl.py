"""The JSON Lines sink: a file (appended to) or ``-`` for stdout.

One :class:`~streamseg.io.sink.SinkRecord` text per line; what the text is comes from
the formatter (:mod:`streamseg.io.formats`): a CloudEvents object per segment change, a
``{"reason", "origin", "rejected_at", "payload"}`` object per dead letter.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TypeVar

from streamseg.io.sink import Formatter, Sink

__all__ = ["JsonLinesSink"]

T = TypeVar("T")


class JsonLinesSink(Sink[T]):
    """Writes each item's record text as one line.

    >>> import io, os, tempfile
    >>> from streamseg.core.events import DeadLetter
    >>> from streamseg.io.formats import dead_letter_record
    >>> path = os.path.join(tempfile.mkdtemp(), "out", "rejects.jsonl")
    >>> sink = JsonLinesSink(path, dead_letter_record)
    >>> sink.publish([DeadLetter("{oops", "malformed JSON", "f:1", rejected_at="t")])
    >>> sink.close()
    >>> print(open(path).read(), end="")
    {"reason": "malformed JSON", "origin": "f:1", "rejected_at": "t", "payload": "{oops"}
    """

    def __init__(self, path: str, formatter: Formatter[T]) -> None:
        self.path = path
        self._format = formatter
        if path == "-":
            self._handle: IO[str] = sys.stdout
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def publish(self, items: Sequence[T]) -> None:
        if items:
            self._handle.write("\n".join(self._format(item).text for item in items) + "\n")

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self.flush()
        if self._handle is not sys.stdout:
            self._handle.close()
