"""The command line, end to end, as a user runs it (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

STREAMSEG = [sys.executable, "-m", "streamseg.cli"]


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*STREAMSEG, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`streamseg run` with no arguments, in an empty folder: the embedded default."""
    folder = tmp_path_factory.mktemp("demo")
    return folder, _run(["run"], folder).stdout


def test_run_without_arguments_segments_the_bundled_sample(demo: tuple[Path, str]) -> None:
    folder, out = demo
    assert "processed 6919 events, rejected 0" in out
    assert "customers 2357, segments 5" in out
    rows = [line for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == 5
    assert (folder / ".streamseg" / "state.db").exists()
    changes = (folder / ".streamseg" / "changes.jsonl").read_text().splitlines()
    assert len({json.loads(line)["subject"] for line in changes}) == 2357


def test_second_run_resumes_and_counts_nothing_twice(demo: tuple[Path, str]) -> None:
    folder, _ = demo
    out = _run(["run"], folder).stdout
    assert "processed 0 events" in out and "customers 2357, segments 5" in out


def test_segments_get_export(demo: tuple[Path, str]) -> None:
    folder, _ = demo
    segments = json.loads(_run(["segments", "--json"], folder).stdout)
    assert len(segments) == 5 and sum(s["size"] for s in segments) == 2357
    assert all(len(s["centroid_vector"]) == 6 and s["name"] for s in segments)
    assert len({s["name"] for s in segments}) == 5  # names are unique
    customer = json.loads(_run(["get", "0001"], folder).stdout)
    assert customer["segment"] in {s["segment"] for s in segments}
    assert customer["features"]["orders"] >= 1
    missing = _run(["get", "no-such-customer"], folder, check=False)
    assert missing.returncode == 1 and "no customer 'no-such-customer'" in missing.stderr
    _run(["export", "--out", "customers.jsonl"], folder)
    lines = [json.loads(x) for x in (folder / "customers.jsonl").read_text().splitlines()]
    assert len(lines) == 2357
    assert {"customer_id", "segment", "features", "vector"} <= set(lines[0])


def test_schema_commands_print_json_schemas(tmp_path: Path) -> None:
    event = json.loads(_run(["schema"], tmp_path).stdout)
    assert {"event_id", "customer_id", "timestamp", "amount"} <= set(event["required"])
    change = json.loads(_run(["schema", "--changes"], tmp_path).stdout)
    # both types the change stream carries, told apart by "type"
    assert change["discriminator"]["propertyName"] == "type"
    for name in ("SegmentChange", "RiskBandChange"):
        assert {"specversion", "type", "data"} <= set(change["$defs"][name]["properties"])


def test_simulate_then_run_from_stdin(tmp_path: Path) -> None:
    out = _run(["simulate", "--customers", "200", "--seed", "4", "--out", "s.jsonl"], tmp_path)
    assert "for 200 customers" in out.stdout
    assert (tmp_path / "s.truth.csv").read_text().count("\n") == 201
    with (tmp_path / "s.jsonl").open() as stdin:
        result = subprocess.run(
            [*STREAMSEG, "run", "--source", "-", "--store", "memory://", "--sink", "-",
             "--dead-letter", "dead.jsonl"],
            cwd=tmp_path, stdin=stdin, capture_output=True, text=True, timeout=300,
        )
    assert result.returncode == 0, result.stderr
    changes = [json.loads(line) for line in result.stdout.splitlines()]
    assert len({c["subject"] for c in changes}) == 200
    assert "processed" in result.stderr  # the summary goes to stderr when stdout is data


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model:\n  n_clusters: 1\n")
    result = _run(["run", "--config", "c.yaml"], tmp_path, check=False)
    assert result.returncode == 2
    assert "model.n_clusters" in result.stderr
    missing = _run(["run", "--source", "nope.jsonl"], tmp_path, check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr
