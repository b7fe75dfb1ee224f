"""The quality bars of the README, asserted on the same measurements `streamseg bench` prints.

Only quality is asserted here, never speed.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamseg.config import SAMPLE_PATH, SAMPLE_URI
from streamseg_bench import common, quality
from streamseg_bench.simulate import SIXTY_DAYS, read_truth, simulate_stream, write_stream


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


def test_segments_that_change_late_are_found_for_customers_outside_the_sample(
        tmp_path: Path) -> None:
    """The 60-day archetypes change late (buyers lapse in the last weeks), when most
    customers are outside a small sample: a restart found on the sample must still
    re-organise them all (a reorganisation, swept over every stored customer)."""
    events, truth = simulate_stream(customers=2000, seed=1, archetypes=SIXTY_DAYS)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    _, settings = common.run_file(str(path), tmp_path, {"model": {"reservoir_size": 300}})
    ratio = quality.inertia_ratio(settings)
    assert ratio["ratio"] <= 1.10, ratio
    assert quality.adjusted_rand(settings, truth) >= 0.9


def test_cdnow_made_larger_copies_every_customer_with_jittered_amounts(tmp_path: Path) -> None:
    import csv

    out = tmp_path / "cdnow_x2.csv"
    rows = quality.replicate_cdnow(2, out)
    with open(out, newline="", encoding="utf-8") as handle:
        copied = list(csv.DictReader(handle))
    with open(SAMPLE_PATH, newline="", encoding="utf-8") as handle:
        original = list(csv.DictReader(handle))
    assert rows == len(copied) == 2 * len(original)
    ids = {row["customer_id"] for row in original}
    assert {row["customer_id"] for row in copied} == {f"{i}-{c}" for i in ids for c in (0, 1)}
    assert [row["date"] for row in copied] == sorted(row["date"] for row in copied)
    total = sum(float(row["amount"]) for row in original)
    assert 1.9 * total < sum(float(row["amount"]) for row in copied) < 2.1 * total
