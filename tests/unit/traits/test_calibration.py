"""The online calibration of the traits: recent-weighted sums of what the model predicted
for matured labels against what they did, that add up over partitions."""

from __future__ import annotations

import pytest

from streamseg.traits.cells import CALIBRATION_HALF_LIFE_DAYS, Calibration, CellStats, cell_of
from streamseg.traits.learner import TraitShare

DAY = 86_400.0


def _labels() -> list[tuple[float, float, bool, float, float]]:
    """(at, predicted p, bought, predicted spend, spend): the model says 0.3 and 20
    throughout; the cohort bought half the time early on, a tenth of the time lately,
    and spends half what the model says."""
    labels = []
    for day in range(0, 720, 3):
        recent = day >= 540
        for i in range(10):
            bought = i < (1 if recent else 5)
            labels.append((day * DAY, 0.3, bought, 20.0, 20.0 if bought else 0.0))
    return labels


def test_calibration_follows_drift_and_corrects_spend() -> None:
    stats = CellStats()
    for at, p, bought, predicted, spend in _labels():
        stats.calibration.learn(at, p, bought, predicted, spend)
        stats.learn(cell_of(100, 2, 300), 20.0, bought, spend)
    table = stats.table()
    # Recent labels weigh most: the share of buyers, decayed, is about 20% (all-time:
    # 40%), and the probability 0.3 moves down towards it.
    assert 0.18 < table.calibrated(0.3) < 0.26
    # Realised spend was below the model's (about 0.2 of it lately): scaled down.
    assert table.calibrated_spend(20.0) < 6.0
    assert table.calibrated(0.0) == 0.0


def test_partitions_add_up_whatever_their_reference_times() -> None:
    labels = _labels()
    whole, first, second = Calibration(), Calibration(), Calibration()
    for i, label in enumerate(labels):
        whole.learn(*label)
        (first if i % 3 else second).learn(*label)
    second.learn(800 * DAY, 0.3, False, 20.0, 0.0)  # the second partition is further on
    whole.learn(800 * DAY, 0.3, False, 20.0, 0.0)
    summed = Calibration()
    summed.add(Calibration.from_json(first.to_json(), first.spend_json()))
    summed.add(Calibration.from_json(second.to_json(), second.spend_json()))
    reversed_order = Calibration()
    reversed_order.add(second)
    reversed_order.add(first)
    for total in (summed, reversed_order):
        assert total.ref == whole.ref
        assert total.factors() == pytest.approx(whole.factors(), rel=1e-5)
        assert total.sums == pytest.approx(whole.sums, rel=1e-5)


def test_a_label_one_half_life_older_weighs_half() -> None:
    c = Calibration()
    c.learn(CALIBRATION_HALF_LIFE_DAYS * DAY, 0.5, True, 10.0, 10.0)
    c.learn(0.0, 0.5, True, 10.0, 10.0)  # late: learned after a newer one
    assert c.sums[0] == pytest.approx(1.5)


def test_a_share_stored_before_the_calibration_reads_uncalibrated() -> None:
    stats = CellStats()
    stats.learn(cell_of(5, 4, 400), 40.0, True, 80.0)
    stored = TraitShare(stats).to_json()
    del stored["stats"]["calibration"]  # as written by the version before
    share = TraitShare.from_json(stored)
    assert share.stats.calibration.factors() == (1.0, 1.0)
    table = share.stats.table()
    assert table.calibrated(0.4) == pytest.approx(0.4)
    assert table.calibrated_spend(12.0) == 12.0
