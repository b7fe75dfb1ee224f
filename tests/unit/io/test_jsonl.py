"""The JSON Lines sink: one formatter text per line, appended to a file or stdout."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamseg.core.events import DeadLetter
from streamseg.io import open_change_sink, open_dead_letter_sink
from streamseg.io.formats import dead_letter_record
from streamseg.io.jsonl import JsonLinesSink
from streamseg.io.sink import SinkRecord


def _text(item: str) -> SinkRecord:
    return SinkRecord(item, key=b"ignored", headers=[("ignored", b"too")])


def test_each_item_is_one_line_of_its_record_text(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(str(path), _text)
    sink.publish(["a", "b"])
    sink.publish([])  # nothing, not an empty line
    sink.publish(["c"])
    sink.close()
    assert path.read_text(encoding="utf-8") == "a\nb\nc\n"


def test_the_file_is_appended_to_and_its_folder_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "out.jsonl"
    for item in ("first", "second"):
        sink = JsonLinesSink(str(path), _text)
        sink.publish([item])
        sink.close()
    assert path.read_text(encoding="utf-8") == "first\nsecond\n"


def test_flush_makes_lines_visible_before_close(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(str(path), _text)
    sink.publish(["x"])
    sink.flush()
    assert path.read_text(encoding="utf-8") == "x\n"
    assert sink.ready()
    sink.close()


def test_dash_writes_to_stdout_and_leaves_it_open(capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonLinesSink("-", _text)
    sink.publish(["one", "two"])
    sink.close()
    print("still open")
    assert capsys.readouterr().out == "one\ntwo\nstill open\n"


def test_dead_letters_are_written_as_utf8_json(tmp_path: Path) -> None:
    path = tmp_path / "dlq.jsonl"
    letter = DeadLetter(payload="{ü", reason="malformed", origin="f:1", rejected_at="t")
    sink = JsonLinesSink(str(path), dead_letter_record)
    sink.publish([letter])
    sink.close()
    assert path.read_bytes() == (letter.to_json() + "\n").encode("utf-8")
    assert "ü".encode() in path.read_bytes()  # not escaped


def test_the_factories_open_json_lines_for_paths(tmp_path: Path) -> None:
    changes = open_change_sink(str(tmp_path / "c.jsonl"))
    letters = open_dead_letter_sink(str(tmp_path / "d.jsonl"))
    assert isinstance(changes, JsonLinesSink) and isinstance(letters, JsonLinesSink)
    changes.close()
    letters.close()
