"""The BG/NBD side of `streamseg bench traits`: lifetimes on today's numpy/pandas/scipy."""

from __future__ import annotations

import warnings
from datetime import date

import numpy as np
import pytest

from streamseg.config import SAMPLE_PATH
from streamseg_bench import bgnbd
from streamseg_bench.holdout import Transactions

CUTOFF = date(1997, 9, 30)


@pytest.fixture(scope="module")
def log() -> Transactions:
    return Transactions.read_sample_csv(SAMPLE_PATH)


def test_summary_is_lifetimes_own_on_the_sample(log: Transactions) -> None:
    import pandas as pd

    lifetimes = bgnbd._lifetimes()
    frame = pd.DataFrame({"customer_id": log.customer_ids.astype(str),
                          "date": log.days.astype("datetime64[ns]"), "amount": log.amounts})
    theirs = lifetimes.utils.summary_data_from_transaction_data(
        frame, "customer_id", "date", monetary_value_col="amount",
        observation_period_end=pd.Timestamp(CUTOFF), freq="D")
    ours = bgnbd.summarise(log, CUTOFF)
    assert ours.customer_ids == list(theirs.index)
    assert len(ours.customer_ids) == 2357
    np.testing.assert_array_equal(ours.frequency, theirs["frequency"].to_numpy())
    np.testing.assert_array_equal(ours.recency, theirs["recency"].to_numpy())
    np.testing.assert_array_equal(ours.T, theirs["T"].to_numpy())
    np.testing.assert_allclose(ours.monetary, theirs["monetary_value"].to_numpy(), atol=1e-9)


def test_lifetimes_fits_without_warnings_and_forecasts_every_customer(
    log: Transactions,
) -> None:
    summary = bgnbd.summarise(log, CUTOFF)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecation in lifetimes' path would show here
        forecast = bgnbd.fit_and_forecast(summary, 90)
    assert forecast.customer_ids == summary.customer_ids
    assert set(forecast.bgnbd_params) == {"r", "alpha", "a", "b"}
    assert all(value > 0 for value in forecast.bgnbd_params.values())
    assert forecast.gamma_gamma_customers == int(
        ((summary.frequency > 0) & (summary.monetary > 0)).sum())
    assert ((forecast.purchase_probability >= 0) & (forecast.purchase_probability <= 1)).all()
    assert (forecast.expected_spend >= 0).all()
    # At most one purchase day of the horizon can be the first: P(>=1) <= E[purchases].
    assert (forecast.purchase_probability <= forecast.expected_purchases + 1e-9).all()


def test_purchase_probability_tends_to_lifetimes_p_alive(log: Transactions) -> None:
    # Over an endless horizon an alive customer buys for sure: P(>= 1) -> P(alive).
    summary = bgnbd.summarise(log, CUTOFF)
    fitter = bgnbd._lifetimes().BetaGeoFitter(penalizer_coef=0.0)
    fitter.fit(summary.frequency, summary.recency, summary.T)
    params = {name: float(fitter.params_[name]) for name in ("r", "alpha", "a", "b")}
    alive = fitter.conditional_probability_alive(summary.frequency, summary.recency, summary.T)
    ours = bgnbd.probability_of_purchase(params, 1e60, summary.frequency, summary.recency,
                                         summary.T)
    np.testing.assert_allclose(ours, alive, atol=1e-6)


@pytest.mark.parametrize(("x", "t_x", "age"), [(0, 0, 100), (1, 30, 120), (4, 200, 260),
                                                (6, 40, 270)])
def test_purchase_probability_matches_monte_carlo_posterior(x: int, t_x: float,
                                                            age: float) -> None:
    # Draw (lambda, p) from the priors, weight each draw by BG/NBD's likelihood of
    # (x, t_x, T), and average the chance of a purchase in the next t.
    params = {"r": 0.5, "alpha": 20.0, "a": 0.8, "b": 2.5}
    t = 90.0
    rng = np.random.default_rng(7)
    rate = rng.gamma(params["r"], 1 / params["alpha"], 400_000)
    drop = rng.beta(params["a"], params["b"], 400_000)
    log_rate = np.log(rate)
    alive = np.exp(x * (log_rate + np.log1p(-drop)) - rate * age)
    dead = (np.exp(np.log(drop) + (x - 1) * np.log1p(-drop) + x * log_rate - rate * t_x)
            if x > 0 else np.zeros_like(rate))
    simulated = float((alive * -np.expm1(-rate * t)).sum() / (alive + dead).sum())
    ours = bgnbd.probability_of_purchase(params, t, np.array([x]), np.array([t_x]),
                                         np.array([age]))
    assert float(ours[0]) == pytest.approx(simulated, abs=0.01)


def test_too_few_customers_is_a_fit_error_not_a_crash() -> None:
    log = Transactions.from_rows([("a", "19970101", 5.0), ("b", "19970102", 6.0)])
    with pytest.raises(bgnbd.FitError, match="repeat purchases"):
        bgnbd.fit_and_forecast(bgnbd.summarise(log, date(1997, 3, 1)), 90)
