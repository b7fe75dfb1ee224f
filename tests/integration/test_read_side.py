"""The read commands on the real Redis: they never write, and a store that disagrees
with its model is a one-line error.

``segments``, ``get``, ``export``, ``report`` and ``evaluate`` run as a user runs them
(subprocesses); every key of the prefix is DUMPed before and after, and must come back
byte-identical.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from streamseg.app import Application
from streamseg.config import load_settings
from streamseg.store.redis import _delete_prefix
from streamseg_bench.simulate import write_stream

STREAMSEG = [sys.executable, "-m", "streamseg.cli"]
CUSTOMERS = 600


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([*STREAMSEG, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def _dump(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of the prefix with its serialized value (type, content, encoding)."""
    dump: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        dump[key] = (client.dump(key), client.pttl(key) > 0)
    return dump


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Redis prefix with 600 simulated customers, created with 64 buckets."""
    from tests.integration.conftest import REDIS

    folder = tmp_path_factory.mktemp("read-side")
    events = folder / "events.jsonl"
    write_stream(events, CUSTOMERS, 3)
    prefix = f"it-read-{folder.name[-8:]}"
    settings = load_settings(overrides={
        "source": {"uri": str(events)},
        "store": {"uri": REDIS, "redis_prefix": prefix, "redis_buckets": 64},
        "sinks": {"changes": str(folder / "changes.jsonl"),
                  "dead_letter": str(folder / "dead.jsonl")},
    })
    application = Application(settings)
    try:
        application.run()
    finally:
        application.close()
    client = redis.Redis.from_url(REDIS)
    yield folder, prefix, client
    _delete_prefix(client, prefix)
    client.close()


def _store_args(prefix: str) -> tuple[list[str], dict[str, str]]:
    from tests.integration.conftest import REDIS

    # No bucket count in the reader's settings: it must use the prefix's own (64).
    return ["--store", REDIS], {"STREAMSEG_STORE__REDIS_PREFIX": prefix}


def test_read_commands_leave_the_prefix_byte_identical(populated: Any, redis_url: str) -> None:
    folder, prefix, client = populated
    store, env = _store_args(prefix)
    before = _dump(client, prefix)
    assert len(before) > 64  # buckets, partitions, model, meta, ...
    some_id = json.loads((folder / "changes.jsonl").read_text().splitlines()[0])["subject"]
    runs = {
        "segments": _cli(["segments", *store], folder, env),
        "segments --json": _cli(["segments", "--json", *store], folder, env),
        "get": _cli(["get", some_id, *store], folder, env),
        "export": _cli(["export", *store, "--out", str(folder / "out.jsonl")], folder, env),
        "report": _cli(["report", *store, "--out", str(folder / "report.html")], folder, env),
        "evaluate": _cli(["evaluate", "--json", "--k", "2..6", *store], folder, env),
    }
    for name, result in runs.items():
        assert result.returncode == 0, (name, result.stderr)
    assert _dump(client, prefix) == before
    assert json.loads(runs["get"].stdout)["customer_id"] == some_id
    assert sum(1 for _ in (folder / "out.jsonl").open()) == CUSTOMERS
    assert sum(s["size"] for s in json.loads(runs["segments --json"].stdout)) == CUSTOMERS
    evaluation = json.loads(runs["evaluate"].stdout)
    assert evaluation["sample"] == {"customers": CUSTOMERS, "of": CUSTOMERS, "exact": True,
                                    "vectors": evaluation["sample"]["vectors"]}
    assert -1 <= evaluation["live"]["silhouette"] <= 1
    assert [p["k"] for p in evaluation["k_sweep"]] == [2, 3, 4, 5, 6]
    assert 'data-figure="quality"' in (folder / "report.html").read_text()


def test_read_commands_write_nothing_under_a_new_prefix(redis_url: str, redis_prefix: str,
                                                        tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    store = ["--store", redis_url]
    env = {"STREAMSEG_STORE__REDIS_PREFIX": redis_prefix, "STREAMSEG_STORE__REDIS_BUCKETS": "32"}
    segments = _cli(["segments", *store], tmp_path, env)
    report = _cli(["report", *store, "--out", str(tmp_path / "r.html")], tmp_path, env)
    missing = _cli(["get", "nobody", *store], tmp_path, env)
    evaluation = _cli(["evaluate", *store], tmp_path, env)
    assert segments.returncode == 0 and report.returncode == 0, segments.stderr + report.stderr
    assert missing.returncode == 1 and "no customer 'nobody'" in missing.stderr
    assert evaluation.returncode == 2
    assert evaluation.stderr.startswith("error: ") and "not seeded yet" in evaluation.stderr
    assert list(client.scan_iter(match=f"{redis_prefix}:*")) == []  # no layout key either
    client.close()


def test_deleted_customer_keys_are_a_one_line_error(populated: Any, tmp_path: Path) -> None:
    _, prefix, client = populated
    copy = f"{prefix}-copy"
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.restore(copy.encode() + key[len(prefix):], 0, client.dump(key), replace=True)
    try:
        for key in client.scan_iter(match=f"{copy}:c:*"):
            client.delete(key)
        store, env = _store_args(copy)
        before = _dump(client, copy)
        for command in (["segments"], ["get", "cust-000001"],
                        ["export", "--out", str(tmp_path / "x.jsonl")],
                        ["report", "--out", str(tmp_path / "r.html")], ["evaluate"]):
            result = _cli([*command, *store], tmp_path, env)
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
            assert lines[0].startswith("error: ")
            assert f"counts {CUSTOMERS} customers" in lines[0]
            assert "no customer record" in lines[0] and "replay" in lines[0]
        assert not (tmp_path / "x.jsonl").exists()
        assert _dump(client, copy) == before
    finally:
        _delete_prefix(client, copy)


def test_a_prefix_of_the_previous_layout_is_an_error_and_is_not_migrated(
        redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}:layout", "v1 buckets=16")
    before = _dump(client, redis_prefix)
    result = _cli(["segments", "--store", redis_url], tmp_path,
                  {"STREAMSEG_STORE__REDIS_PREFIX": redis_prefix})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "layout of an earlier version" in result.stderr and "migrate" in result.stderr
    assert _dump(client, redis_prefix) == before
    client.close()
