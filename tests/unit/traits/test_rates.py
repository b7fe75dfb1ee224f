"""The spend of the traits grows with a buyer's purchase rate (orders per tenure), not
with their order band alone; BG/NBD's evidence of a customer gone silent lowers their
probability; shares of earlier formats still read."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.traits.cells import (
    CALIBRATION_MIN_EXAMPLES,
    Calibration,
    CellStats,
    cell_of,
    design,
    silence,
)
from streamseg.traits.learner import TraitShare
from streamseg.traits.rates import RateCurve, rate_of, relative_spend


def _stats() -> CellStats:
    """Recent buyers of 15+ orders: those of a short tenure (a fast rhythm) spend about
    as many orders as their rate says, every one of them buys; a slower one-order band
    buys less."""
    stats = CellStats()
    rng = np.random.default_rng(1)
    for _ in range(300):
        orders = int(rng.integers(15, 60))
        tenure = float(rng.uniform(200, 360))
        rate = rate_of(orders, tenure)
        stats.learn(cell_of(10, orders, tenure), 40.0, True, 40.0 * rate, rate, 40.0)
        stats.learn(cell_of(200, 1, 300), 40.0, bool(rng.random() < 0.1), 40.0,
                    rate_of(1, 300), 40.0)
    return stats


def test_spend_grows_with_the_rate_within_one_band() -> None:
    table = _stats().table()
    # Same recency, orders band (15+) and tenure band: only the rhythm differs.
    slow = table.spend(0.9, 10, 16, 40.0, 350)
    fast = table.spend(0.9, 10, 40, 40.0, 210)
    assert cell_of(10, 16, 350) // 4 == cell_of(10, 40, 210) // 4  # one recency x orders band
    assert fast > 2.0 * slow


def test_the_curve_is_flat_below_and_proportional_above_the_buyers_seen() -> None:
    xs, ys = np.array([0.5, 2.0]), np.array([1.5, 2.5])
    assert relative_spend(xs, ys, 0.1) == 1.5
    assert relative_spend(xs, ys, 1.25) == pytest.approx(2.0)
    assert relative_spend(xs, ys, 4.0) == pytest.approx(5.0)
    assert relative_spend(np.array([0.0]), np.array([1.5]), 2.0) == 1.5


def test_curves_add_up_over_partitions_and_read_back() -> None:
    whole, first, second = RateCurve(), RateCurve(), RateCurve()
    rng = np.random.default_rng(2)
    for i in range(200):
        rate, relative = float(rng.uniform(0.1, 9.0)), float(rng.uniform(0.5, 8.0))
        whole.learn(rate, relative)
        (first if i % 3 else second).learn(rate, relative)
    summed = RateCurve.from_json(first.to_json())
    summed.add(RateCurve.from_json(second.to_json()))
    assert summed.sums == pytest.approx(whole.sums)
    for a, b in zip(summed.points(), whole.points(), strict=True):
        assert a == pytest.approx(b)
    assert RateCurve.from_json(None).points()[0].size == 0


def test_a_share_of_the_format_before_the_curve_reads_and_predicts_per_band() -> None:
    stats = _stats()
    stored = TraitShare(stats).to_json()
    # What the version before wrote: no curve, no spend sums of the calibration.
    del stored["stats"]["rates"], stored["stats"]["calibration_spend"]
    old = TraitShare.from_json(stored).stats
    assert old.curve.buyers == 0 and old.calibration.factors()[1] == 1.0
    table = old.table()
    assert table.rates.size == 0  # per recency x orders band, as before
    assert table.spend(0.9, 10, 16, 40.0, 350) == table.spend(0.9, 10, 40, 40.0, 210)
    # The version before reads this version's shares: the calibration keeps its five
    # sums under its key, the new sums are under keys it does not read.
    new = TraitShare(stats).to_json()["stats"]
    assert len(new["calibration"].split(",")) == 6
    assert {"rates", "calibration_spend"} <= set(new)


def test_one_large_wrong_prediction_does_not_shrink_everyone_s_spend() -> None:
    calibration = Calibration()
    for i in range(300):
        calibration.learn(float(i), 0.3, True, 10.0, 10.0)  # right, for 300 customers
    calibration.learn(300.0, 0.3, False, 800.0, 0.0)         # one far off
    spend_factor = calibration.factors()[1]
    # A least-squares slope would put it near 3,000 / 643,000 (everyone's spend / 200).
    assert 0.7 < spend_factor < 1.0


def test_the_scalar_path_is_the_design_s() -> None:
    table = _stats().table()
    rng = np.random.default_rng(3)
    for _ in range(50):
        tenure = float(rng.uniform(0, 600))
        recency = float(rng.uniform(0, tenure))
        orders = int(rng.integers(1, 80))
        z = float(design(recency, orders, tenure) @ table.w)
        assert table.probability(recency, orders, tenure) == pytest.approx(
            1.0 / (1.0 + np.exp(-z)), rel=1e-9, abs=1e-12)


def test_a_burst_then_silence_is_told_from_an_occasional_buyer() -> None:
    """Customers who bought a dozen times in their first month and not in the five
    since did not buy again; regulars did, and so did half the occasional buyers as
    quiet as the first. Without the evidence of silence the logistic model confounds
    the two quiet kinds (the occasional buyer comes out near 0.05); with it, each gets
    its own."""
    stats = CellStats()
    for _ in range(200):
        stats.learn(cell_of(150, 12, 180), 30.0, False, 0.0)   # a burst, then silence
        stats.learn(cell_of(10, 40, 300), 30.0, True, 90.0)    # regulars
        stats.learn(cell_of(60, 20, 300), 30.0, True, 90.0)
        stats.learn(cell_of(100, 8, 400), 30.0, True, 30.0)
        stats.learn(cell_of(150, 3, 400), 30.0, True, 30.0)    # occasional buyers
        stats.learn(cell_of(160, 3, 380), 30.0, False, 0.0)
    table = stats.table()
    assert table.probability(160, 40, 190) < 0.01
    assert 0.25 < table.probability(160, 3, 390) < 0.75
    assert silence(160, 40, 190) > 20 * silence(160, 3, 390)


def test_the_calibration_ignores_the_predictions_of_a_model_that_learned_nothing() -> None:
    from streamseg.core.features import CustomerFeatures
    from streamseg.core.state import CustomerState
    from streamseg.traits.learner import TraitLearner

    day = 86_400.0
    learner = TraitLearner(horizon_days=90, every_days=90)
    learner.own("p", None)

    def customer(i: int) -> CustomerState:
        state = CustomerState(f"c{i}", CustomerFeatures.empty(), partition="p")
        state.features.apply(0.0, 20.0, "purchase", half_life_days=90)
        return state

    first = [customer(i) for i in range(CALIBRATION_MIN_EXAMPLES)]
    for state in first:  # one batch: all learned with the empty model
        learner.at_clock(state, 200 * day)
    share = learner.own_shares["p"]
    assert share.stats.examples >= CALIBRATION_MIN_EXAMPLES
    assert share.stats.calibration.sums[0] == 0.0
    learner.refresh()
    later = customer(10_000)
    learner.at_clock(later, 200 * day)
    assert share.stats.calibration.sums[0] > 0.0
