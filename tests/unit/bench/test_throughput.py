"""The throughput benchmark's shape (never its speed, which depends on the machine)."""

from __future__ import annotations

from streamseg_bench.throughput import throughput


def test_throughput_reports_every_run_of_both_inputs_with_and_without_traits() -> None:
    result = throughput(repeat=1, simulated_customers=20)
    cost = result.pop("traits_cost")
    simulated = [label for label in result
                 if label.startswith("simulated_") and not label.endswith("_no_traits")]
    assert len(simulated) == 1 and simulated[0].endswith("_events")
    inputs = {"embedded_default_cdnow", simulated[0]}
    assert set(result) == inputs | {label + "_no_traits" for label in inputs}
    for figures in result.values():
        runs = figures["events_per_second_runs"]
        assert len(runs) == 1 and all(isinstance(rate, int) for rate in runs)
        assert figures["best"] == max(runs)
    assert set(cost) == inputs
    for label in inputs:
        expected = round(result[label]["best"] / result[label + "_no_traits"]["best"], 3)
        assert cost[label]["with_over_without"] == expected
