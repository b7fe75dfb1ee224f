"""The quality bars of the README, asserted on the same measurements `streamseg bench` prints.

Only quality is asserted here, never speed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from streamseg.bench import runs as bench
from streamseg.bench.simulate import STREAM_END, read_truth, simulate_stream, write_stream
from streamseg.config import SAMPLE_URI


def test_cdnow_inertia_within_ten_percent_of_batch_kmeans(tmp_path: Path) -> None:
    _, settings = bench.run_file(SAMPLE_URI, tmp_path)
    result = bench.inertia_ratio(settings)
    assert result["customers"] == 2357
    assert result["ratio"] <= 1.10, result


def test_simulated_archetypes_recovered(tmp_path: Path) -> None:
    # The default archetypes include customers who stopped buying 150-220 days before
    # the end: they must be found by inactivity alone.
    events = tmp_path / "events.jsonl"
    _, truth_path = write_stream(events, customers=2000, seed=1)
    _, settings = bench.run_file(str(events), tmp_path)
    assert bench.adjusted_rand(settings, read_truth(truth_path)) >= 0.9


def test_hysteresis_keeps_flapping_under_one_percent(tmp_path: Path) -> None:
    # The figure `streamseg bench flapping` prints (2,000 customers, seed 3). Other seeds
    # land closer to the bar (README: 0.85% and 0.95% for seeds 4 and 5), so this asserts
    # the documented benchmark, plus that hysteresis is what brings the share down.
    events, _ = simulate_stream(customers=2000, seed=3, archetypes=bench.STATIONARY)
    source = tmp_path / "stationary.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    midpoint = (STREAM_END - timedelta(days=182)).timestamp()
    shares = {}
    for margin in (0.0, 0.2):
        folder = tmp_path / str(margin)
        folder.mkdir()
        bench.run_file(str(source), folder, {"model": {"hysteresis": margin}})
        result = bench.flapping_share(folder / "changes.jsonl", midpoint)
        assert result["customers"] == 2000
        shares[margin] = result["share_over_two_changes"]
    assert shares[0.2] <= 0.01, shares
    assert shares[0.2] < shares[0.0], shares
