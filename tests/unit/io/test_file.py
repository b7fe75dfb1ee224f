"""FileSource: JSON Lines and CSV files, stdin, positions and resuming."""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamseg.core.events import RawRecord
from streamseg.io import open_source
from streamseg.io.file import CsvMapping, FileSource

HEADER = "customer_id,timestamp,amount\n"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return str(path)


# -- JSON Lines -------------------------------------------------------------------------
def test_blank_lines_are_skipped_but_counted_in_origins(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.jsonl", '{"a": 1}\n\n   \n{"b": 2}\r\n')
    source = FileSource(path)
    records = source.poll(10, 0.0)
    assert [r.payload for r in records] == ['{"a": 1}', '{"b": 2}']
    assert [r.origin for r in records] == ["e.jsonl:1", "e.jsonl:4"]
    assert [r.offset for r in records] == [1, 2]
    assert {r.stream for r in records} == {source.key}
    assert source.key == f"file:{Path(path).resolve()}"
    assert source.exhausted and source.poll(10, 0.0) == []
    source.close()


def test_poll_hands_out_at_most_max_records(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.jsonl", "".join(f'{{"n": {n}}}\n' for n in range(5)))
    source = FileSource(path)
    assert len(source.poll(2, 0.0)) == 2 and not source.exhausted
    assert len(source.poll(2, 0.0)) == 2
    assert len(source.poll(2, 0.0)) == 1
    source.close()


def test_a_resumed_source_skips_the_records_of_its_stored_position(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.jsonl", '{"n": 1}\n\n{"n": 2}\n{"n": 3}\n')
    first = FileSource(path)
    positions = first.positions_after(first.poll(2, 0.0))
    first.close()
    assert positions == {first.key: 2}

    again = FileSource(path)
    again.seek(positions)
    records = again.poll(10, 0.0)
    assert [r.payload for r in records] == ['{"n": 3}']
    assert records[0].origin == "e.jsonl:4" and records[0].offset == 3
    again.close()


def test_seeking_past_the_end_exhausts_the_source(tmp_path: Path) -> None:
    source = FileSource(_write(tmp_path, "e.jsonl", '{"n": 1}\n'))
    source.seek({source.key: 5})
    assert source.exhausted and source.poll(10, 0.0) == []
    source.close()


def test_positions_of_no_records_are_empty(tmp_path: Path) -> None:
    source = FileSource(_write(tmp_path, "e.jsonl", ""))
    assert source.positions_after([]) == {}
    source.close()


def test_progress_counts_bytes_of_the_file(tmp_path: Path) -> None:
    text = '{"n": 1}\n{"n": 2}\n'
    source = open_source(_write(tmp_path, "e.jsonl", text))
    assert isinstance(source, FileSource)
    assert source.progress_total() == len(text) and source.progress_done() == 0
    source.poll(10, 0.0)
    assert source.progress_done() == len(text)
    source.close()


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source file not found"):
        FileSource(str(tmp_path / "absent.jsonl"))


def test_stdin_has_no_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b'{"n": 1}\n\xff\n'), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    source = FileSource("-")
    records = source.poll(10, 0.0)
    assert [r.origin for r in records] == ["stdin:1", "stdin:2"]
    assert records[1].payload == "\ufffd"  # undecodable bytes are replaced
    assert {r.stream for r in records} == {""}
    assert source.positions_after(records) == {}
    assert source.progress_total() is None and source.progress_done() == 0
    source.close()


def test_a_file_goes_back_to_the_stored_position_after_a_failed_batch(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "e.jsonl", "".join(f'{{"n": {i}}}\n' for i in range(10)))
    source = FileSource(path)
    first = source.poll(4, 0.0)
    source.poll(4, 0.0)  # this batch fails before it is written
    source.seek(source.positions_after(first))
    assert [r.payload for r in source.poll(3, 0.0)] == ['{"n": 4}', '{"n": 5}', '{"n": 6}']
    source.seek({})  # nothing stored yet: from the start
    assert [r.offset for r in source.poll(2, 0.0)] == [1, 2]
    source.close()


def test_a_csv_file_goes_back_without_reading_its_header_as_a_record(tmp_path: Path) -> None:
    rows = "".join(f"c{i},2024-01-0{1 + i},5\n" for i in range(5))
    path = _write(tmp_path, "e.csv", HEADER + rows)
    source = FileSource(path)
    first = source.poll(2, 0.0)
    source.poll(2, 0.0)
    source.seek(source.positions_after(first))
    again = source.poll(10, 0.0)
    assert [r.event.customer_id for r in again if r.event] == ["c2", "c3", "c4"]
    source.close()


def test_stdin_hands_out_again_what_was_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = "".join(f'{{"n": {i}}}\n' for i in range(6)).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines), encoding="utf-8"))
    source = FileSource("-")
    source.poll(2, 0.0)
    source.written({})
    failed = source.poll(2, 0.0)  # this batch fails before it is written
    source.seek({})
    again = source.poll(10, 0.0)
    assert again[:2] == failed
    assert [r.payload for r in again[2:]] == ['{"n": 4}', '{"n": 5}']
    assert source.exhausted
    source.close()


# -- stdin on a pipe that stays open ----------------------------------------------------
#: Guard against a poll that blocks for good (the bug these tests catch), not a speed bar.
HANG_GUARD_S = 30.0


@pytest.fixture
def stdin_pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """stdin is the read end of a real pipe; yields ``[write fd]`` (the test may close it
    and set it to -1)."""
    read, write = os.pipe()
    handle = open(read, encoding="utf-8")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdin", handle)
    holder = [write]
    yield holder
    if holder[0] >= 0:
        os.close(holder[0])  # also ends a poll the old code left blocked
    handle.close()


def _poll(source: FileSource, max_records: int, timeout: float) -> list[RawRecord]:
    """``source.poll`` in a thread, failing the test if it does not return."""
    result: list[list[RawRecord]] = []
    thread = threading.Thread(target=lambda: result.append(source.poll(max_records, timeout)),
                              daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), \
        f"poll({max_records}, {timeout}) on an open pipe still blocked after {HANG_GUARD_S}s"
    return result[0]


def test_stdin_poll_returns_the_lines_that_arrived_while_the_pipe_stays_open(
    stdin_pipe: list[int],
) -> None:
    source = FileSource("-")
    # Three lines and the start of a fourth; the batch would take 500.
    os.write(stdin_pipe[0], b'{"n": 0}\n\n{"n": 1}\r\n{"n": 2}\n{"n": ')
    records = _poll(source, 500, 0.2)
    assert [r.payload for r in records] == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert [r.origin for r in records] == ["stdin:1", "stdin:3", "stdin:4"]
    assert not source.exhausted
    # Nothing more: an empty poll once the timeout is over, not a wait for more lines
    # (the loop checks its stop flag between polls: SIGTERM ends the run).
    assert _poll(source, 500, 0.2) == []
    assert not source.exhausted
    # The partial line is completed; a character split across writes is decoded whole.
    os.write(stdin_pipe[0], b'3}\n{"c": "\xc3')
    os.write(stdin_pipe[0], b'\xa9"}\n')
    records = _poll(source, 500, 0.2)
    assert [r.payload for r in records] == ['{"n": 3}', '{"c": "\u00e9"}']
    assert [r.origin for r in records] == ["stdin:5", "stdin:6"]
    # A full batch is returned as soon as it is there, the rest on the next poll.
    os.write(stdin_pipe[0], b"".join(b'{"m": %d}\n' % i for i in range(5)))
    assert [r.payload for r in _poll(source, 3, 0.2)] == ['{"m": 0}', '{"m": 1}', '{"m": 2}']
    # The end of the pipe ends the source; a last line without a newline counts.
    os.write(stdin_pipe[0], b'{"last": 1}')
    os.close(stdin_pipe[0])
    stdin_pipe[0] = -1
    records = _poll(source, 500, 0.2)
    assert [r.payload for r in records] == ['{"m": 3}', '{"m": 4}', '{"last": 1}']
    assert [r.origin for r in records] == ["stdin:10", "stdin:11", "stdin:12"]
    assert _poll(source, 500, 0.2) == [] and source.exhausted
    source.close()


def test_stdin_on_a_pipe_hands_out_again_what_was_not_written(stdin_pipe: list[int]) -> None:
    source = FileSource("-")
    os.write(stdin_pipe[0], b"".join(b'{"n": %d}\n' % i for i in range(4)))
    first = _poll(source, 2, 0.2)
    source.written({})
    failed = _poll(source, 500, 0.2)  # this batch fails before it is written
    source.seek({})
    assert _poll(source, 500, 0.2) == failed
    assert [r.payload for r in first + failed] == [f'{{"n": {i}}}' for i in range(4)]
    source.close()


# -- CSV --------------------------------------------------------------------------------
def test_csv_rows_become_validated_events(tmp_path: Path) -> None:
    path = _write(tmp_path, "o.csv", HEADER + "c1,2024-05-01T10:00:00,12.5\r\n\nc2,2024-05-02,3\n")
    source = FileSource(path)
    records = source.poll(10, 0.0)
    assert [r.error for r in records] == [None, None]
    first = records[0].event
    assert first is not None
    assert (first.customer_id, first.amount) == ("c1", 12.5)
    assert first.timestamp == datetime(2024, 5, 1, 10, tzinfo=UTC)
    # Without an event_id column the id is the origin: unique and stable across re-reads.
    assert first.event_id == "o.csv:2" and records[1].origin == "o.csv:4"
    assert [r.offset for r in records] == [1, 2]
    assert records[0].payload == "c1,2024-05-01T10:00:00,12.5"
    source.close()


def test_csv_columns_are_mapped_and_empty_cells_left_out(tmp_path: Path) -> None:
    mapping = CsvMapping(customer_id="Customer", timestamp="When", amount="Total",
                         event_id="Id", category="Cat", delimiter=";")
    path = _write(tmp_path, "o.csv", "Id;Customer;When;Total;Cat\n"
                                     "e1;c1;2024-05-01;4; Toys \ne2;c2;2024-05-01;5;\n")
    source = FileSource(path, csv_mapping=mapping)
    events = [r.event for r in source.poll(10, 0.0)]
    assert [(e.event_id, e.category) for e in events if e is not None] == [
        ("e1", "Toys"), ("e2", None)]
    source.close()


def test_a_csv_header_without_a_mapped_column_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "o.csv", "customer_id,amount\nc1,3\n")
    with pytest.raises(ValueError, match=r"lacks mapped column\(s\) \['timestamp'\]"):
        FileSource(path)


def test_a_csv_row_with_the_wrong_field_count_is_an_error(tmp_path: Path) -> None:
    source = FileSource(_write(tmp_path, "o.csv", HEADER + "c1,2024-05-01\n"))
    (record,) = source.poll(10, 0.0)
    assert record.event is None
    assert record.error == "CSV row has 2 fields, header has 3"
    source.close()


def test_a_csv_timestamp_format_is_applied_as_utc(tmp_path: Path) -> None:
    mapping = CsvMapping(timestamp_format="%d/%m/%Y %H:%M")
    path = _write(tmp_path, "o.csv", HEADER + "c1,02/05/2024 13:30,1\nc2,2024-05-02,1\n")
    source = FileSource(path, csv_mapping=mapping)
    good, bad = source.poll(10, 0.0)
    assert good.event is not None
    assert good.event.timestamp == datetime(2024, 5, 2, 13, 30, tzinfo=UTC)
    assert bad.event is None and bad.error is not None
    assert bad.error.startswith("timestamp: time data '2024-05-02' does not match")
    source.close()


def test_an_invalid_csv_row_carries_the_validation_reason(tmp_path: Path) -> None:
    source = FileSource(_write(tmp_path, "o.csv", HEADER + "c1,2024-05-01,-3\n"))
    (record,) = source.poll(10, 0.0)
    assert record.event is None and record.error is not None
    assert record.error.startswith("amount:")
    source.close()


def test_a_resumed_csv_source_does_not_count_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "o.csv", HEADER + "c1,2024-05-01,1\nc2,2024-05-01,2\n")
    source = FileSource(path)
    source.seek({source.key: 1})
    (record,) = source.poll(10, 0.0)
    assert record.event is not None and record.event.customer_id == "c2"
    assert record.origin == "o.csv:3"
    source.close()
