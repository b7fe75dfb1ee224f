"""The throughput benchmark's shape (never its speed, which depends on the machine)."""

from __future__ import annotations

from streamseg_bench.throughput import throughput


def test_throughput_reports_every_run_of_both_inputs() -> None:
    result = throughput(repeat=1, simulated_customers=20)
    simulated = [label for label in result if label.startswith("simulated_")]
    assert len(simulated) == 1 and simulated[0].endswith("_events")
    assert set(result) == {"embedded_default_cdnow", simulated[0]}
    for figures in result.values():
        runs = figures["events_per_second_runs"]
        assert len(runs) == 1 and all(isinstance(rate, int) for rate in runs)
        assert figures["best"] == max(runs)
