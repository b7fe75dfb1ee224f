"""The quality bars of the README, asserted on the same measurements `streamseg bench` prints.

Only quality is asserted here, never speed.
"""

from __future__ import annotations

from pathlib import Path

from streamseg.bench import common, quality
from streamseg.bench.simulate import read_truth, write_stream
from streamseg.config import SAMPLE_URI


def test_cdnow_inertia_within_ten_percent_of_batch_kmeans(tmp_path: Path) -> None:
    _, settings = common.run_file(SAMPLE_URI, tmp_path)
    result = quality.inertia_ratio(settings)
    assert result["customers"] == 2357
    assert result["ratio"] <= 1.10, result


def test_simulated_archetypes_recovered(tmp_path: Path) -> None:
    # The default archetypes include customers who stopped buying 150-220 days before
    # the end: they must be found by inactivity alone.
    events = tmp_path / "events.jsonl"
    _, truth_path = write_stream(events, customers=2000, seed=1)
    _, settings = common.run_file(str(events), tmp_path)
    assert quality.adjusted_rand(settings, read_truth(truth_path)) >= 0.9
