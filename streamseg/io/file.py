"""File and stdin sources: JSON Lines, or CSV with a column mapping.

A file's position is the number of data lines consumed, stored under the key
``file:<absolute path>``; a restarted run skips that many lines and carries on.

Neither can rewind the way a Kafka consumer can, and both must when a batch fails
(:meth:`FileSource.seek` with the stored positions, after a store or sink failure):

* a file is opened again and read up to the stored position, so the batch that failed
  is read again (records already applied are recognised by their offsets);
* stdin cannot be read again, so the source keeps the records it handed out since the
  last batch written (:meth:`FileSource.written`) and hands them out again. If the write
  that failed had in fact been applied (a reply lost after the store applied it), its
  events are recognised by their event ids, the last ``pipeline.dedupe_window`` of each
  customer.

stdin may also be a pipe that stays open with nothing more to read for a while. A poll
there returns the records that arrived within its timeout (:class:`_PipeLines`) rather
than wait for a whole batch or the end of the input: the last lines written are applied
now, and the loop gets back to its stop flag between polls, so SIGTERM ends the run.
"""

from __future__ import annotations

import csv
import io
import os
import select
import sys
import time
from collections import deque
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from streamseg.core.events import InvalidEvent, RawRecord, validate_event
from streamseg.io.source import Source


class CsvMapping(BaseModel):
    """Which CSV column holds which event field.

    Columns left as ``None`` are absent from the file. Without an ``event_id`` column the
    id is ``<file name>:<line number>``, which is unique and stable across re-reads.
    """

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field("customer_id", description="Column with the customer id.")
    timestamp: str = Field("timestamp", description="Column with the event time.")
    amount: str = Field("amount", description="Column with the order value.")
    event_id: str | None = Field(None, description="Column with a unique event id.")
    quantity: str | None = Field(None, description="Column with the item count.")
    type: str | None = Field(None, description="Column with purchase/refund.")
    category: str | None = Field(None, description="Column with the product category.")
    channel: str | None = Field(None, description="Column with the sales channel.")
    currency: str | None = Field(None, description="Column with the currency code.")
    timestamp_format: str | None = Field(
        None, description="strptime format of the timestamp column; ISO 8601 when unset."
    )
    delimiter: str = Field(",", description="Field separator.")


class _PipeLines:
    """Lines of a file descriptor (stdin), waiting for one no longer than a deadline.

    A buffered ``readline`` blocks until a whole line is there, and the signal handler
    that sets the stop flag cannot end that wait (the read is resumed after it). Here
    ``select`` says when the descriptor has bytes, ``os.read`` takes what is there
    without waiting for more, and the start of a line waits in ``_partial`` for its end.
    Lines end at ``\n``, as JSON Lines asks (a ``\r`` before it goes with it in
    :meth:`FileSource.poll`; a lone ``\r``, which JSON allows as whitespace, ends no
    line); the bytes are decoded a whole line at a time, so a character split across
    reads is decoded whole.
    """

    #: Bytes per read: a pipe's default capacity on Linux.
    CHUNK = 64 * 1024

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lines: deque[bytes] = deque()
        self._partial = bytearray()
        self.eof = False

    def readline(self, deadline: float) -> str | None:
        """The next line with its ``\n`` (the last one maybe without), or None when
        none is complete by ``deadline`` (``time.monotonic()``), or at the end."""
        while not self._lines and not self.eof:
            wait = max(0.0, deadline - time.monotonic())
            # A regular file (``< file``) always selects as readable, and /dev/null too.
            readable, _, _ = select.select([self._fd], [], [], wait)
            if not readable:
                return None
            self._take(os.read(self._fd, self.CHUNK))
        if self._lines:
            return self._lines.popleft().decode("utf-8", errors="replace")
        return None

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            self.eof = True
            if self._partial:  # a last line without a newline is a line
                self._lines.append(bytes(self._partial))
                self._partial.clear()
            return
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._partial += chunk[start:end + 1]
            self._lines.append(bytes(self._partial))
            self._partial.clear()
            start = end + 1
        self._partial += chunk[start:]


def _descriptor(stream: IO[str]) -> int | None:
    """The file descriptor of ``stream``, or None for an in-memory stream (tests)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


class FileSource(Source):
    """Reads a ``.jsonl`` or ``.csv`` file, or ``-`` for JSON Lines on stdin.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "events.jsonl")
    >>> _ = open(path, "w").write('{"a": 1}\\n\\n{"b": 2}\\n')
    >>> source = FileSource(path)
    >>> [r.origin.split(os.sep)[-1] for r in source.poll(10, 0.0)], source.exhausted
    (['events.jsonl:1', 'events.jsonl:3'], True)
    """

    def __init__(self, path: str, csv_mapping: CsvMapping | None = None) -> None:
        self.path = path
        self.is_stdin = path == "-"
        self.is_csv = path.lower().endswith(".csv")
        self.mapping = csv_mapping or CsvMapping()
        self.key = "stdin" if self.is_stdin else f"file:{Path(path).resolve()}"
        self._name = "stdin" if self.is_stdin else Path(path).name
        self._stream = "" if self.is_stdin else self.key
        self._pipe: _PipeLines | None = None
        if self.is_stdin:
            fd = _descriptor(sys.stdin)
            if fd is not None:
                self._pipe = _PipeLines(fd)
            else:  # an in-memory stdin never waits: a plain readline does
                self._handle: IO[str] = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8",
                                                         errors="replace")
            self._size: int | None = None
        else:
            if not Path(path).is_file():
                raise FileNotFoundError(f"source file not found: {path}")
            self._size = Path(path).stat().st_size
        # stdin only: records handed out since the last batch written, and those of them
        # to hand out again after a failure (see the module docstring).
        self._unwritten: list[RawRecord] = []
        self._replay: list[RawRecord] = []
        self._open()

    def _open(self) -> None:
        """Start reading at the beginning (a file is opened again)."""
        if not self.is_stdin:
            if getattr(self, "_handle", None) is not None:
                self._handle.close()
            self._handle = open(self.path, encoding="utf-8", errors="replace",  # noqa: SIM115
                                newline="")
        self._line = 0  # physical lines read so far
        self._consumed = 0  # data records handed out so far (the stored position)
        self._done = False
        self._header: list[str] | None = None
        if self.is_csv:
            first = self._handle.readline()
            self._line += 1
            self._header = next(csv.reader([first], delimiter=self.mapping.delimiter), [])
            self._check_header()

    def _check_header(self) -> None:
        assert self._header is not None
        wanted = {
            field: column
            for field, column in self.mapping.model_dump().items()
            if field not in ("timestamp_format", "delimiter") and column is not None
        }
        missing = [column for column in wanted.values() if column not in self._header]
        if missing:
            raise ValueError(
                f"{self.path}: CSV header {self._header} lacks mapped column(s) {missing};"
                " set source.csv in the config"
            )

    @property
    def exhausted(self) -> bool:
        return self._done and not self._replay

    def seek(self, positions: dict[str, int],
             partitions: Collection[str] | None = None) -> None:
        """Go to the stored position: forward by skipping lines, back by opening the
        file again; stdin hands out again what was not written (module docstring)."""
        if self.is_stdin:
            self._replay = self._unwritten + self._replay
            self._unwritten = []
            return
        target = positions.get(self.key, 0)
        if target < self._consumed:
            self._open()
        while self._consumed < target and not self._done:
            self._read_line()

    def written(self, positions: dict[str, int]) -> None:
        """The records handed out so far are in the store: stdin may forget them."""
        self._unwritten.clear()

    def _read_line(self, deadline: float = 0.0) -> str | None:
        """The next physical line ("" if blank), or None at the end or, on a pipe, when
        none is complete by ``deadline`` (a file never waits: it is ignored)."""
        if self._pipe is not None:
            line = self._pipe.readline(deadline)
            if line is None:
                self._done = self._pipe.eof
                return None
        else:
            line = self._handle.readline()
            if not line:
                self._done = True
                return None
        self._line += 1
        if line.strip():
            self._consumed += 1
            return line
        return ""

    def poll(self, max_records: int, timeout: float) -> list[RawRecord]:
        records = self._replay[:max_records]
        del self._replay[:max_records]
        if self.is_stdin:
            self._unwritten += records
        deadline = time.monotonic() + timeout
        while len(records) < max_records:
            line = self._read_line(deadline)
            if line is None:
                break
            if not line:
                continue  # blank lines are not records
            origin = f"{self._name}:{self._line}"
            if self.is_csv:
                record = self._csv_record(line.rstrip("\r\n"), origin)
            else:
                record = RawRecord(line.rstrip("\r\n"), origin, self._stream, self._consumed)
            records.append(record)
            if self.is_stdin:
                self._unwritten.append(record)
        return records

    def _csv_record(self, line: str, origin: str) -> RawRecord:
        assert self._header is not None
        record = RawRecord(line, origin, self._stream, self._consumed)
        values = next(csv.reader([line], delimiter=self.mapping.delimiter), [])
        if len(values) != len(self._header):
            record.error = f"CSV row has {len(values)} fields, header has {len(self._header)}"
            return record
        row = dict(zip(self._header, values, strict=True))
        fields: dict[str, Any] = {}
        for field, column in self.mapping.model_dump().items():
            if field in ("timestamp_format", "delimiter") or column is None:
                continue
            value = row[column].strip()
            if value != "":
                fields[field] = value
        fields.setdefault("event_id", origin)
        if self.mapping.timestamp_format and "timestamp" in fields:
            try:
                parsed = datetime.strptime(fields["timestamp"], self.mapping.timestamp_format)
            except ValueError as error:
                record.error = f"timestamp: {error}"
                return record
            fields["timestamp"] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        try:
            record.event = validate_event(fields)
        except InvalidEvent as error:
            record.error = error.reason
        return record

    def positions_after(self, records: Sequence[RawRecord]) -> dict[str, int]:
        if self.is_stdin or not records:
            return {}
        return {self.key: records[-1].offset}

    def progress_total(self) -> int | None:
        return self._size

    def progress_done(self) -> int:
        if self._size is None:
            return 0
        try:
            return self._handle.buffer.tell() if hasattr(self._handle, "buffer") else 0
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if not self.is_stdin:
            self._handle.close()
