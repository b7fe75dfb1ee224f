"""The standard to beat: BG/NBD and Gamma-Gamma (Fader, Hardie and Lee), fitted in batch.

The models are fitted by the ``lifetimes`` package (0.11.3, its last release, from 2020),
a benchmark-only dependency imported here lazily (``pip install -e ".[bench]"``). Two
things keep it working on today's numpy 2 / pandas 3 / scipy:

- The per-customer summary (frequency, recency, T, monetary value) is computed here with
  numpy (:func:`summarise`), with lifetimes' definition at a period of one day, instead of
  ``lifetimes.utils.summary_data_from_transaction_data``: that is the part of lifetimes
  built on pandas idioms (``to_period``, grouped ``sum`` of mixed columns) that pandas
  keeps changing. The unit tests check both give the same table on the sample.
- Importing lifetimes sets ``pd.options.mode.chained_assignment``, which pandas 3
  deprecates with a warning; that one warning is silenced around the import. The fitters
  themselves (autograd + scipy.optimize) run unchanged.

lifetimes 0.11.3 has no P(at least one purchase in the next t) for BG/NBD, so
:func:`probability_of_purchase` is the closed form: a customer alive at T with the
posterior Gamma(r + x, alpha + T) purchase rate makes no purchase in t with probability
((alpha + T) / (alpha + T + t)) ** (r + x) (dropout only happens at a purchase, so an
alive customer who does not buy stays alive); a dead one never buys. Hence
P(>= 1 purchase) = P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from streamseg_bench.holdout import Transactions


class LifetimesMissing(RuntimeError):
    """lifetimes (a benchmark-only dependency) is not installed."""


class FitError(RuntimeError):
    """BG/NBD or Gamma-Gamma could not be fitted on these purchases."""


def _lifetimes() -> Any:
    try:
        with warnings.catch_warnings():
            # pandas 3 deprecates the option lifetimes.utils sets at import time.
            warnings.filterwarnings("ignore", message=".*chained_assignment.*")
            import lifetimes
    except ImportError as error:
        raise LifetimesMissing(
            "the BG/NBD columns need the lifetimes package: pip install -e \".[bench]\""
        ) from error
    return lifetimes


def lifetimes_version() -> str:
    """The installed lifetimes' version (raises :class:`LifetimesMissing` without it)."""
    return str(_lifetimes().__version__)


@dataclass(frozen=True)
class Summary:
    """lifetimes' per-customer table, at a period of one day, as parallel arrays.

    ``frequency``: repeat purchase days (days with a purchase, less the first);
    ``recency``: days from the first to the last purchase day; ``T``: days from the
    first purchase day to the cutoff; ``monetary``: mean spend of the repeat purchase
    days (0 without any).
    """

    customer_ids: list[str]
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray


def summarise(log: Transactions, cutoff: date) -> Summary:
    """The summary of every customer with a purchase on or before ``cutoff``.

    >>> log = Transactions.from_rows([("a", "19970101", 10.0), ("a", "19970101", 2.0),
    ...                               ("a", "19970111", 6.0), ("a", "19970121", 8.0),
    ...                               ("b", "19970105", 3.0)])
    >>> s = summarise(log, date(1997, 1, 31))
    >>> s.customer_ids, s.frequency.tolist(), s.recency.tolist(), s.T.tolist()
    (['a', 'b'], [2.0, 0.0], [20.0, 0.0], [30.0, 26.0])
    >>> s.monetary.tolist()
    [7.0, 0.0]
    """
    cut = log.until(cutoff)
    per_day: dict[str, dict[np.datetime64, float]] = {}
    for customer_id, day, amount in zip(cut.customer_ids, cut.days, cut.amounts, strict=True):
        days = per_day.setdefault(customer_id, {})
        days[day] = days.get(day, 0.0) + float(amount)
    ids = sorted(per_day)
    end = np.datetime64(cutoff, "D")
    frequency, recency, age, monetary = [], [], [], []
    for customer_id in ids:
        days = per_day[customer_id]
        ordered = sorted(days)
        first, last = ordered[0], ordered[-1]
        repeats = [days[d] for d in ordered[1:]]
        frequency.append(len(repeats))
        recency.append((last - first).astype(int))
        age.append((end - first).astype(int))
        monetary.append(float(np.mean(repeats)) if repeats else 0.0)
    return Summary(ids, np.array(frequency, dtype=float), np.array(recency, dtype=float),
                   np.array(age, dtype=float), np.array(monetary, dtype=float))


def probability_of_purchase(
    params: dict[str, float], t: float, frequency: np.ndarray, recency: np.ndarray,
    age: np.ndarray,
) -> np.ndarray:
    """P(at least one purchase in the next ``t`` periods) under BG/NBD (see module doc).

    ``params`` are BG/NBD's r, alpha, a, b. A new customer (x = 0 at T = 0) is alive
    and buys in t with probability 1 - (alpha / (alpha + t)) ** r:

    >>> p = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
    >>> zero = np.zeros(1)
    >>> round(float(probability_of_purchase(p, 90, zero, zero, zero)[0]), 6)
    0.545815
    >>> round(1 - (4 / 94) ** 0.25, 6)
    0.545815
    """
    r, alpha, a, b = (float(params[name]) for name in ("r", "alpha", "a", "b"))
    x = np.asarray(frequency, dtype=float)
    t_x = np.asarray(recency, dtype=float)
    big_t = np.asarray(age, dtype=float)
    # P(alive), as lifetimes' conditional_probability_alive (in logs, for large x).
    log_ratio = (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
    odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-300) * np.exp(log_ratio), 0.0)
    alive = 1.0 / (1.0 + odds)
    none_if_alive = np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t)))
    return np.asarray(alive * (1.0 - none_if_alive))


@dataclass(frozen=True)
class Forecast:
    """BG/NBD and BG/NBD x Gamma-Gamma forecasts for the customers of a summary."""

    customer_ids: list[str]
    expected_purchases: np.ndarray
    purchase_probability: np.ndarray
    expected_spend: np.ndarray
    bgnbd_params: dict[str, float]
    gamma_gamma_params: dict[str, float]
    gamma_gamma_customers: int


def fit_and_forecast(summary: Summary, horizon_days: int, penalizer: float = 0.0) -> Forecast:
    """Fit BG/NBD on every customer and Gamma-Gamma on those with repeat purchases of a
    positive mean value; forecast the next ``horizon_days``. Raises :class:`FitError`
    when either cannot be fitted (e.g. too few customers).

    Expected spend = expected purchase days x Gamma-Gamma's conditional mean spend per
    purchase day (its population mean for customers without repeat purchases).
    """
    lifetimes = _lifetimes()
    repeat = (summary.frequency > 0) & (summary.monetary > 0)
    if not repeat.any():
        raise FitError("Gamma-Gamma needs customers with repeat purchases of a positive "
                       "value; there are none up to this cutoff")
    try:
        bg = lifetimes.BetaGeoFitter(penalizer_coef=penalizer)
        bg.fit(summary.frequency, summary.recency, summary.T)
        gg = lifetimes.GammaGammaFitter(penalizer_coef=penalizer)
        gg.fit(summary.frequency[repeat], summary.monetary[repeat])
    except (ValueError, lifetimes.utils.ConvergenceError) as error:  # LinAlgError included
        raise FitError(f"lifetimes could not fit these {len(summary.customer_ids)} "
                       f"customers: {' '.join(str(error).split())}") from error
    params = {name: float(bg.params_[name]) for name in ("r", "alpha", "a", "b")}
    expected = np.asarray(bg.conditional_expected_number_of_purchases_up_to_time(
        horizon_days, summary.frequency, summary.recency, summary.T), dtype=float)
    probability = probability_of_purchase(params, horizon_days, summary.frequency,
                                          summary.recency, summary.T)
    per_purchase = np.asarray(gg.conditional_expected_average_profit(
        summary.frequency, summary.monetary), dtype=float)
    return Forecast(
        customer_ids=summary.customer_ids, expected_purchases=expected,
        purchase_probability=probability, expected_spend=expected * per_purchase,
        bgnbd_params={k: round(v, 6) for k, v in params.items()},
        gamma_gamma_params={k: round(float(gg.params_[k]), 6) for k in ("p", "q", "v")},
        gamma_gamma_customers=int(repeat.sum()),
    )
