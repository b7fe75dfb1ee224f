"""``streamseg bench scale`` at a tiny size: it runs to the end on the real broker and
Redis, its JSON has every part, and it leaves no Redis keys behind. Nothing is asserted
on a timing or on the targets' verdicts (the figures depend on the machine)."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from typer.testing import CliRunner

from streamseg.cli import app


def test_bench_scale_runs_and_reports_every_part(kafka_servers: str, redis_url: str,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    result = CliRunner().invoke(app, [
        "bench", "scale", "--customers", "1000", "--partitions", "4", "--workers", "2,1",
        "--repeats", "1", "--kafka", kafka_servers, "--redis", redis_url,
        "--json", str(out), "--logs", str(tmp_path / "logs")])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(figures) == {"machine", "parameters", "summary", "targets", "warnings", "runs"}
    assert figures["parameters"]["workers"] == [1, 2]
    assert set(figures["summary"]) == {"1", "2"}
    assert {t["workers"] for t in figures["targets"]} == {2}
    assert len(figures["targets"]) == 6
    runs = figures["runs"]
    assert [(r["workers"], r["repeat"]) for r in runs] == [(1, 0), (2, 0)]
    for run in runs:
        assert run["customers_stored"] == 1000 and run["quiet"] in (True, False)
        # (a tiny stream may end before both workers hold partitions: a warning says so)
        assert run["all_joined"] or any("first write" in w for w in figures["warnings"])
        assert sum(run["events_by_worker"]) == figures["parameters"]["events"]
        assert len(run["events_by_worker"]) == run["workers"]
        assert run["events_per_second"] > 0 and run["cpu_per_1000_events"] > 0
        assert run["inertia_ratio"] > 0 and -1 <= run["ari"] <= 1
        assert (tmp_path / "logs" / run["prefix"] / "w0" / "service.log").exists()
    client = redis.Redis.from_url(redis_url)
    try:
        for run in runs:
            assert not list(client.scan_iter(match=f"{run['prefix']}*", count=1000))
    finally:
        client.close()
    # The table, then a verdict per target (progress lines on stderr may be mixed in).
    lines = result.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["workers", "events/s"])
    assert [line.split()[0] for line in lines[head + 1:head + 3]] == ["1", "2"]
    assert sum(line.startswith(("PASS  ", "FAIL  ")) for line in lines) == 6
