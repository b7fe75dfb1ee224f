"""Flapping: customers who keep changing segment on a stream where nothing changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streamseg_bench import common
from streamseg_bench.flapping import STATIONARY, flapping_share
from streamseg_bench.simulate import STREAM_END, simulate_stream

MIDPOINT = datetime(2024, 7, 1, tzinfo=UTC)


def _change(customer: str, reason: str, when: datetime) -> str:
    data = {"customer_id": customer, "reason": reason,
            "event_time": when.isoformat().replace("+00:00", "Z")}
    return json.dumps({"type": "io.streamseg.segment.changed", "data": data}) + "\n"


def test_flapping_share_counts_changes_after_the_midpoint(tmp_path: Path) -> None:
    before, after = MIDPOINT - timedelta(days=1), MIDPOINT + timedelta(days=1)
    lines = [_change(c, "first_assignment", before) for c in ("a", "b", "c", "d")]
    lines += [_change("a", "behaviour", after)] * 3  # three changes: flapping
    lines += [_change("b", "model_update", after)] * 2  # two: not yet
    lines += [_change("c", "inactivity", before)] * 5  # before the midpoint: not counted
    # A first assignment after the midpoint is still not a change.
    lines += [_change("e", "first_assignment", after)]
    path = tmp_path / "changes.jsonl"
    path.write_text("".join(lines))
    result = flapping_share(path, MIDPOINT.timestamp())
    assert result == {
        "customers": 5,
        "changes_second_half": 5,
        "customers_over_two_changes": 1,
        "share_over_two_changes": 0.2,
        "by_reason": {"behaviour": 3, "model_update": 2},
    }


def test_flapping_share_of_no_changes(tmp_path: Path) -> None:
    path = tmp_path / "changes.jsonl"
    path.write_text("")
    assert flapping_share(path, MIDPOINT.timestamp())["share_over_two_changes"] == 0.0


def test_stationary_archetypes_neither_start_nor_stop() -> None:
    for kind in STATIONARY.values():
        assert kind.start_days_ago[0] >= 360
        assert kind.stop_days_ago == (0, 0)


def test_hysteresis_keeps_flapping_under_one_percent(tmp_path: Path) -> None:
    # The figure `streamseg bench flapping` prints (2,000 customers, seed 3). Other seeds
    # land closer to the bar (see the README), so this asserts
    # the documented benchmark, plus that hysteresis is what brings the share down.
    events, _ = simulate_stream(customers=2000, seed=3, archetypes=STATIONARY)
    source = tmp_path / "stationary.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    midpoint = (STREAM_END - timedelta(days=182)).timestamp()
    shares = {}
    for margin in (0.0, 0.2):
        folder = tmp_path / str(margin)
        folder.mkdir()
        common.run_file(str(source), folder, {"model": {"hysteresis": margin}})
        result = flapping_share(folder / "changes.jsonl", midpoint)
        assert result["customers"] == 2000
        shares[margin] = result["share_over_two_changes"]
    assert shares[0.2] <= 0.01, shares
    assert shares[0.2] < shares[0.0], shares
