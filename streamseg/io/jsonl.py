"""JSON Lines sinks: a file (appended to) or ``-`` for stdout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from streamseg.core.events import DeadLetter, SegmentChange
from streamseg.io.sink_base import ChangeSink, DeadLetterSink


class _JsonLines:
    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self._handle: IO[str] = sys.stdout
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, lines: Sequence[str]) -> None:
        if lines:
            self._handle.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self.flush()
        if self._handle is not sys.stdout:
            self._handle.close()


class JsonlChangeSink(ChangeSink):
    """One CloudEvents JSON object per line."""

    def __init__(self, path: str) -> None:
        self._out = _JsonLines(path)

    def publish(self, changes: Sequence[SegmentChange]) -> None:
        self._out.write([change.to_json() for change in changes])

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()


class JsonlDeadLetterSink(DeadLetterSink):
    """One ``{"reason", "origin", "rejected_at", "payload"}`` object per line."""

    def __init__(self, path: str) -> None:
        self._out = _JsonLines(path)

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        self._out.write([letter.to_json() for letter in letters])

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()
