"""BG/NBD's expected purchases in the spend of the traits: fitted by maximum likelihood on
additive sums of the labels' purchase histories (each as of the end of its label's
horizon), predicted as lifetimes does, and shares written before them still read."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.core.features import CustomerFeatures
from streamseg.core.state import CustomerState
from streamseg.traits import bgnbd
from streamseg.traits.bgnbd import HistoryHistogram, expected_purchases, fit, sample
from streamseg.traits.cells import CellStats, cell_of, rate_of
from streamseg.traits.learner import TraitLearner, TraitShare

DAY = 86_400.0


def _histogram(seed: int, customers: int, r: float, alpha: float, a: float, b: float,
               ) -> HistoryHistogram:
    hist = HistoryHistogram()
    for x, t_x, age in sample(np.random.default_rng(seed), customers, r, alpha, a, b):
        hist.learn(x, t_x, age)
    return hist


@pytest.mark.parametrize(("r", "alpha", "a", "b"), [(0.5, 20.0, 1.5, 3.0),
                                                    (0.25, 35.0, 0.8, 2.4)])
def test_the_fit_recovers_the_parameters_of_data_drawn_from_the_model(
        r: float, alpha: float, a: float, b: float) -> None:
    params = fit(_histogram(11, 6000, r, alpha, a, b))
    assert params is not None
    fitted_r, fitted_alpha, fitted_a, fitted_b = params
    # What the data determine well: the mean purchase rate, the shape of its spread
    # across customers and the mean chance of stopping after a purchase.
    assert fitted_r / fitted_alpha == pytest.approx(r / alpha, rel=0.1)
    assert fitted_r == pytest.approx(r, rel=0.2)
    assert fitted_a / (fitted_a + fitted_b) == pytest.approx(a / (a + b), abs=0.05)


def test_too_few_labels_fit_nothing() -> None:
    assert fit(HistoryHistogram()) is None
    only_once = HistoryHistogram()
    for age in range(1, 1000):  # many labels, none with a repeat purchase
        only_once.learn(0, 0.0, float(age % 300))
    assert fit(only_once) is None


def test_expected_purchases_are_lifetimes_own() -> None:
    # Reference values of lifetimes 0.11.3's BetaGeoFitter
    # .conditional_expected_number_of_purchases_up_to_time(90, x, t_x, T) with
    # r=0.25, alpha=30, a=0.8, b=2.5 (and a=1.6).
    params = (0.25, 30.0, 0.8, 2.5)
    assert expected_purchases(params, 0, 0.0, 100.0, 90.0) == pytest.approx(0.157995146392)
    assert expected_purchases(params, 3, 50.0, 100.0, 90.0) == pytest.approx(1.03288956194)
    assert expected_purchases(params, 12, 170.0, 180.0, 90.0) == pytest.approx(4.16144836587)
    assert expected_purchases(params, 12, 20.0, 180.0, 90.0) == pytest.approx(1.8035040052e-6)
    assert expected_purchases((0.25, 30.0, 1.6, 2.5), 3, 50.0, 100.0, 90.0) == pytest.approx(
        0.62753476071)
    # Where the formula has no value (a = 1 divides by zero): none, not a crash.
    assert expected_purchases((0.25, 30.0, 1.0, 2.5), 3, 50.0, 100.0, 90.0) is None


def test_the_histograms_of_two_partitions_add_up_to_that_of_both() -> None:
    whole, first, second = HistoryHistogram(), HistoryHistogram(), HistoryHistogram()
    rng = np.random.default_rng(5)
    for i, (x, t_x, age) in enumerate(sample(rng, 800, 0.4, 25.0, 1.0, 3.0)):
        whole.learn(x, t_x, age)
        (first if i % 3 else second).learn(x, t_x, age)
    summed = HistoryHistogram.from_json(first.to_json())
    summed.add(HistoryHistogram.from_json(second.to_json()))
    assert summed.sums == pytest.approx(whole.sums)
    assert HistoryHistogram.from_json(whole.to_json()).sums.tolist() == whole.sums.tolist()
    assert fit(summed) == pytest.approx(fit(whole), rel=1e-3)  # the optimiser's tolerance


def test_workers_adding_the_partitions_in_any_order_fit_the_same_model() -> None:
    # Each worker adds the other partitions' histograms to its own: in another order on
    # each. The sums must agree to the bit, or the optimiser may stop elsewhere (within
    # its tolerance) and the workers predict with different models.
    rng = np.random.default_rng(8)
    parts = [HistoryHistogram() for _ in range(3)]
    for i, (x, t_x, age) in enumerate(sample(rng, 3000, 0.4, 25.0, 1.0, 3.0)):
        parts[i % 3].learn(x, t_x + 0.01 * (i % 7), age + 0.37 * (i % 11))
    sums, fits = [], []
    for order in ((0, 1, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        total = HistoryHistogram()
        for index in order:
            total.add(HistoryHistogram.from_json(parts[index].to_json()))
        sums.append(total.sums.tobytes())
        fits.append(fit(total))
    assert len(set(sums)) == 1
    assert fits[0] is not None and all(f == fits[0] for f in fits)


def test_an_impossible_history_is_not_learned() -> None:
    hist = HistoryHistogram()
    hist.learn(-1, 0.0, 10.0)
    hist.learn(2, 20.0, 10.0)          # the last purchase after the end of the history
    hist.learn(2, float("nan"), 10.0)
    hist.learn(2, 5.0, float("inf"))
    assert hist.labels == 0


def test_a_label_learns_the_history_as_of_the_end_of_its_horizon() -> None:
    learner = TraitLearner(horizon_days=90, every_days=30)
    learner.own("local", None)
    state = CustomerState("c1", CustomerFeatures.empty(), partition="local")  # grid: 17, 47..
    for day, amount in ((0, 20.0), (20, 30.0)):
        learner.on_event(state, day * DAY, amount, "purchase")
        state.features.apply(day * DAY, amount, "purchase", half_life_days=90)
    learner.on_event(state, 200 * DAY, 25.0, "purchase")  # before it is applied
    # Snapshots of days 17, 47, 77 and 107 have matured (their horizons end before day
    # 200): each history has the purchases up to its end (two; the last on day 20).
    hist = learner.total().stats.histories
    assert hist.labels == 4 == learner.examples()
    n, x, age, last = hist.sums[:, :4].sum(axis=0).tolist()  # days in tenths
    assert (n, x, age / 10, last / 10) == (4, 4, 107 + 137 + 167 + 197, 4 * 20)


def _stats_with_histories() -> CellStats:
    """Labels of customers drawn from BG/NBD, with a rate curve of their buyers."""
    stats = CellStats()
    rng = np.random.default_rng(2)
    for x, t_x, age in sample(rng, 1500, 0.5, 20.0, 1.0, 3.0):
        orders, recency = x + 1, age - t_x
        rate = rate_of(orders, age)
        bought = bool(rng.random() < min(0.9, rate / 3))
        stats.learn(cell_of(recency, orders, age), 30.0, bought, 30.0 * rate if bought else 0.0,
                    rate, 30.0, (x, t_x, age))
    return stats


def test_the_spend_is_the_mean_of_the_rate_curve_s_and_bgnbd_s() -> None:
    stats = _stats_with_histories()
    table = stats.table()
    assert table.bgnbd is not None
    stored = TraitShare(stats).to_json()
    del stored["stats"]["histories"]
    alone = TraitShare.from_json(stored).stats.table()  # what the rate curve says alone
    assert alone.bgnbd is None
    for recency, orders, tenure in ((5.0, 30, 200.0), (150.0, 30, 200.0), (40.0, 2, 300.0)):
        value = table.value(orders, 30.0)
        purchases = expected_purchases(table.bgnbd, orders - 1, tenure - recency, tenure, 90.0)
        assert purchases is not None
        assert table.spend(0.5, recency, orders, 30.0, tenure) == pytest.approx(
            (alone.spend(0.5, recency, orders, 30.0, tenure) + purchases * value) / 2)
    # A frequent buyer gone silent is expected to buy less than one still buying, on
    # BG/NBD's evidence, even at the same probability and rate.
    assert table.spend(0.5, 150.0, 30, 30.0, 200.0) < table.spend(0.5, 5.0, 30, 30.0, 200.0)
    assert alone.spend(0.5, 150.0, 30, 30.0, 200.0) == alone.spend(0.5, 5.0, 30, 30.0, 200.0)


def test_a_share_written_before_the_histories_reads_and_learns_them_from_there() -> None:
    stats = _stats_with_histories()
    stored = TraitShare(stats).to_json()
    del stored["stats"]["histories"]
    old = TraitShare.from_json(stored).stats
    assert old.histories.labels == 0 and old.examples == stats.examples
    old.add(stats)  # another partition's share, of this version
    assert old.histories.labels == stats.histories.labels
    assert old.table().bgnbd is not None


def test_a_fit_is_cached_per_histogram() -> None:
    hist = _histogram(4, 1000, 0.5, 20.0, 1.5, 3.0)
    bgnbd._fit.cache_clear()
    first = fit(hist)
    again = fit(HistoryHistogram.from_json(hist.to_json()))
    assert first == again and bgnbd._fit.cache_info().hits == 1


def test_a_histogram_of_another_layout_of_bands_is_not_read_as_this_one() -> None:
    hist = _histogram(4, 300, 0.5, 20.0, 1.5, 3.0)
    stored = hist.to_json()
    assert HistoryHistogram.from_json(stored).labels == 300
    other = "9" + stored[stored.index(":"):]  # another version's bands
    assert HistoryHistogram.from_json(other).labels == 0


def test_extreme_parameters_do_not_fail() -> None:
    # Parameters a small store once fitted (r huge, alpha tiny): powers that overflow a
    # float (Python's ** raised OverflowError, which stopped the service's batches).
    extreme = (22026.47, 0.2176, 13.58, 0.0779)
    for repeat, last, age in ((6, 343.0, 405.0), (0, 0.0, 405.0), (40, 10.0, 405.0)):
        value = expected_purchases(extreme, repeat, last, age, 90.0)
        assert value is None or 0.0 <= value < float("inf")

