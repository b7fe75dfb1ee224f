"""The scale benchmark's pure parts: medians, ratios, targets, the table (never a timing)."""

from __future__ import annotations

import pytest

from streamseg_bench.scale import (
    Run,
    check_targets,
    format_table,
    format_targets,
    summarise,
    warnings_of,
)


def _run(workers: int, eps: float, cpu: float, inertia: float = 1.01, ari: float = 0.95,
         repeat: int = 0) -> Run:
    return Run(workers=workers, repeat=repeat, prefix="p", events_per_second=eps,
               cpu_per_1000_events=cpu, inertia_ratio=inertia, ari=ari)


def _runs() -> list[Run]:
    return [
        _run(1, 1000, 0.10, 1.02, 0.96, 0), _run(1, 900, 0.12, 1.01, 0.97, 1),
        _run(1, 5000, 0.11, 1.03, 0.95, 2),  # an outlier: the median ignores it
        _run(2, 1500, 0.11, 1.02, 0.95, 0), _run(2, 1400, 0.12, 1.03, 0.96, 1),
        _run(2, 1600, 0.10, 1.04, 0.94, 2),
    ]


def test_each_figure_is_its_own_median_and_ratios_are_of_the_medians() -> None:
    summary = summarise(_runs())
    assert set(summary) == {1, 2}
    one, two = summary[1], summary[2]
    assert (one["events_per_second"], one["cpu_per_1000_events"]) == (1000, 0.11)
    assert (one["inertia_ratio"], one["ari"], one["runs"]) == (1.02, 0.96, 3)
    assert (two["events_per_second"], two["cpu_per_1000_events"]) == (1500, 0.11)
    assert two["speedup"] == pytest.approx(1.5)
    assert two["cpu_ratio"] == pytest.approx(1.0)
    assert one["speedup"] == one["cpu_ratio"] == 1.0


def test_without_one_worker_there_are_no_ratios() -> None:
    summary = summarise([_run(2, 1500, 0.1), _run(4, 2000, 0.1)])
    assert all("speedup" not in row and "cpu_ratio" not in row for row in summary.values())
    checks = check_targets(summary)
    # Only the absolute quality targets can be checked.
    assert {c["target"] for c in checks} == {"inertia ratio <= 1.10", "ARI >= 0.9"}
    assert "-" in format_table(summary)


def test_targets_pass_and_fail_on_the_values() -> None:
    runs = [_run(1, 1000, 0.10, 1.01, 0.97), _run(2, 1290, 0.11, 1.02, 0.96),
            _run(4, 2000, 0.12, 1.12, 0.94)]
    checks = {(c["workers"], c["target"]): c for c in check_targets(summarise(runs))}
    speedup = checks[(2, "events/s over one worker's >= 1.3")]
    assert speedup["value"] == pytest.approx(1.29) and not speedup["passed"]
    assert checks[(2, "CPU per event over one worker's <= 1.15")]["passed"]
    cpu4 = checks[(4, "CPU per event over one worker's <= 1.15")]
    assert cpu4["value"] == pytest.approx(1.2) and not cpu4["passed"]
    assert checks[(2, "inertia ratio <= 1.10")]["passed"]
    assert not checks[(4, "inertia ratio <= 1.10")]["passed"]
    assert checks[(4, "ARI >= 0.9")]["passed"]
    # 0.01 worse than one worker's passes; 0.11 and 0.03 worse fail.
    assert checks[(2, "inertia ratio at most 0.02 above one worker's")]["passed"]
    assert not checks[(4, "inertia ratio at most 0.02 above one worker's")]["passed"]
    assert checks[(2, "ARI at most 0.02 below one worker's")]["passed"]
    assert not checks[(4, "ARI at most 0.02 below one worker's")]["passed"]
    assert all(c["workers"] != 1 for c in checks.values())


def test_the_table_and_the_verdicts_read_the_summary() -> None:
    runs = [_run(1, 1000, 0.10, 1.01, 0.97), _run(2, 1500, 0.10, 1.02, 0.96)]
    summary = summarise(runs)
    lines = format_table(summary).splitlines()
    assert lines[0].split()[:2] == ["workers", "events/s"]
    assert lines[1].split() == ["1", "1,000", "1.00x", "0.100", "1.00x", "1.0100", "0.9700",
                                "1"]
    assert lines[2].split() == ["2", "1,500", "1.50x", "0.100", "1.00x", "1.0200", "0.9600",
                                "1"]
    verdicts = format_targets(check_targets(summary)).splitlines()
    assert len(verdicts) == 6
    assert all(line.startswith("PASS  2 workers: ") for line in verdicts)
    failing = format_targets([{"target": "ARI >= 0.9", "workers": 4, "value": 0.85,
                               "limit": 0.9, "passed": False}])
    assert failing == "FAIL  4 workers: ARI >= 0.9 (value 0.8500, limit 0.9)"


def test_warnings_name_what_the_medians_hide() -> None:
    runs = [_run(1, 1000, 0.1, 1.01, 0.97, 0), _run(1, 1000, 0.1, 3.3, 0.69, 1),
            _run(1, 1000, 0.1, 2.7, 0.70, 2), _run(2, 1500, 0.1, 1.0, 0.96, 0),
            _run(2, 1500, 0.1, 1.7, 0.95, 1), _run(2, 1500, 0.1, 1.0, 0.96, 2)]
    runs[3].quiet = False
    runs[5].all_joined = False
    notes = warnings_of(runs, summarise(runs))
    assert notes[:3] == [
        "1 worker(s), repeat 2: inertia ratio 3.3000, ARI 0.6900, outside the bars",
        "1 worker(s), repeat 3: inertia ratio 2.7000, ARI 0.7000, outside the bars",
        "2 worker(s), repeat 2: inertia ratio 1.7000, ARI 0.9500, outside the bars"]
    assert notes[3].startswith("2 worker(s), repeat 1: not quiet")
    assert notes[4].startswith("2 workers, repeat 3: the stream ended before all held")
    assert notes[5].startswith("one worker's median quality is itself outside the bars")
    assert len(notes) == 6
    assert warnings_of(runs[:1], summarise(runs[:1])) == []
