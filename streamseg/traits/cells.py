"""The trait model: per-cell counts of what customers did next, shrunk to their parents.

A customer's features as of an instant fall in one *cell*: a recency band, an order
count band and a tenure band (:func:`cell_of`) -- the three quantities BG/NBD models
(recency, frequency, age). For every cell the model keeps sums over the labelled
snapshots that fell in it: how many, how many bought within the horizon, and their
spend within the horizon relative to their average order (:class:`CellStats`). The
sums add up, so the model of several partitions is the sum of theirs: every worker can
learn its own partitions' labels in its own fenced write, and every worker predicts
with the sum (see :mod:`.learner`).

The probability is a logistic regression fitted to the cells' counts, on log scales of
recency, orders and tenure, recency against the customer's own rhythm, and BG/NBD's
evidence that a customer has stopped: their repeat orders times how much longer they
have been around than at their last purchase (log scale), so that a customer who
bought often and then went silent is not taken for a regular (:func:`design`).

Expected spend is, as BG/NBD x Gamma-Gamma has it, how many purchases times the value
of one, the customer's average order shrunk to the population's, as the Gamma-Gamma
model does (one large first order says little about the next). The purchases are the
mean of two estimates: the probability to buy times what a buyer of the customer's
purchase *rate* spends in units of their average order (:mod:`.rates`), and BG/NBD's
expected purchases, fitted to the labels' purchase histories (:mod:`.bgnbd`), which
follow a frequent buyer's rhythm where the rate curve's top bands hold few buyers. A
share written before the rate curve predicts with the spend of buyers per recency x
orders band instead, until its curve has buyers; one written before the histories,
with the first estimate alone until BG/NBD has enough labels to be fitted.

Both are then calibrated online (:class:`Calibration`): recent-weighted sums over the
matured labels of what the model predicted and what happened, which add up too, scale
the odds of buying and the mean spend, so that the traits follow a cohort whose buying
drifts as it ages.

>>> stats = CellStats()
>>> for _ in range(50):
...     stats.learn(cell_of(5, 4, 400), 40.0, True, 80.0, rate_of(4, 400), 2.0)  # regulars
...     stats.learn(cell_of(300, 1, 300), 20.0, False, 0.0)  # lapsed one-timers do not
>>> table = stats.table()
>>> p_hot, p_cold = table.probability(5, 4, 400), table.probability(300, 1, 300)
>>> p_hot > 0.9 > 0.1 > p_cold
True
>>> table.spend(p_hot, 5, 4, 40.0, 400) > table.spend(p_cold, 300, 1, 20.0, 300)
True
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamseg.core.features import SECONDS_PER_DAY, CustomerFeatures
from streamseg.traits.bgnbd import HistoryHistogram, Params, expected_purchases, fit
from streamseg.traits.rates import RateCurve, rate_of, relative_spend

__all__ = ["CALIBRATION_MIN_EXAMPLES", "CELLS", "Calibration", "CellStats", "CellTable",
           "cell_at", "cell_of", "rate_of", "silence"]

#: Band edges: recency in days, orders, tenure in days (a value at an edge is above it).
RECENCY_EDGES = (3.0, 7.0, 14.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 365.0,
                 450.0, 540.0)
ORDER_EDGES = (2, 3, 4, 5, 7, 10, 15)
TENURE_EDGES = (60.0, 180.0, 365.0)
_R, _F, _T = len(RECENCY_EDGES) + 1, len(ORDER_EDGES) + 1, len(TENURE_EDGES) + 1
#: Number of cells.
CELLS = _R * _F * _T
#: Pseudo-counts of the shrinkage of a cell's spend to its parent's, and of a
#: customer's average order to the population's (in orders).
PRIOR_WEIGHT = 20.0
ORDER_PRIOR = 3.0
#: Ridge penalty of the logistic fit (on the coefficients but the intercept).
RIDGE = 1e-2
#: Half-life (days of event time) of the weights of the calibration sums: recent labels
#: count more, so that the calibration follows a cohort whose buying drifts.
CALIBRATION_HALF_LIFE_DAYS = 90.0
#: Pseudo-count (in decayed labels) that holds a young calibration at 1.
CALIBRATION_PRIOR = 50.0
#: Labels a model must have learned before the calibration learns from its predictions
#: (those of a model that has learned nothing are its starting guesses, not the data's).
CALIBRATION_MIN_EXAMPLES = 50
# Columns of the per-cell sums.
_N, _BOUGHT, _REL = range(3)
# Columns of the calibration sums: weight, predicted probability, bought, predicted
# spend squared, predicted times realised spend (the five of the first format, still
# written for readers of that format), predicted spend, realised spend.
_CW, _CP, _CB, _XX, _XY, _SX, _SY = range(7)
_CALIB = 7
_CALIB_V1 = 5
_LN2 = math.log(2.0)


@dataclass(slots=True)
class Calibration:
    """Decayed sums over matured labels of what the model predicted for them (before
    calibration) and what they did; each label weighs ``2 ** ((at - ref) / half-life)``,
    ``at`` its snapshot's event time, ``ref`` the latest such time seen. Sums decayed to a
    common reference time add up, so the calibration of several partitions is the sum of
    theirs (:meth:`add` decays both to the later reference first).

    >>> day = 86_400.0
    >>> c = Calibration()
    >>> c.learn(0.0, 0.5, False, 20.0, 0.0)
    >>> c.learn(90 * day, 0.5, True, 20.0, 10.0)   # one half-life later: twice the weight
    >>> round(float(c.sums[_CB] / c.sums[_CW]), 4), round(float(c.sums[_SY] / c.sums[_SX]), 4)
    (0.6667, 0.3333)
    """

    sums: np.ndarray = field(default_factory=lambda: np.zeros(_CALIB))
    #: The reference time (seconds; the latest snapshot time learned).
    ref: float = 0.0

    def _decay_to(self, ref: float) -> None:
        if ref > self.ref:
            if self.sums[_CW]:
                factor = math.exp(-(ref - self.ref) / SECONDS_PER_DAY
                                  / CALIBRATION_HALF_LIFE_DAYS * _LN2)
                self.sums = np.round(self.sums * factor, 6)
            self.ref = ref

    def learn(self, at: float, probability: float, bought: bool, predicted_spend: float,
              spend: float) -> None:
        self._decay_to(at)
        w = math.exp(-(self.ref - at) / SECONDS_PER_DAY / CALIBRATION_HALF_LIFE_DAYS * _LN2)
        # Rounded as stored (short to write; a restored model equals the one kept).
        row = np.zeros(_CALIB)
        row[:3] = (1.0, probability, 1.0 if bought else 0.0)
        row[3:] = (predicted_spend ** 2, predicted_spend * spend, predicted_spend, spend)
        self.sums = np.round(self.sums + w * row, 6)

    def add(self, other: Calibration) -> None:
        if not other.sums[_CW]:
            return
        mine = other.sums
        if other.ref < self.ref:
            mine = mine * math.exp(-(self.ref - other.ref) / SECONDS_PER_DAY
                                   / CALIBRATION_HALF_LIFE_DAYS * _LN2)
        else:
            self._decay_to(other.ref)
        self.sums = np.round(self.sums + mine, 6)

    def factors(self) -> tuple[float, float]:
        """What multiplies the model's odds of buying (buyers over predicted buyers) and
        its spend (realised spend over predicted), both shrunk to 1 by
        CALIBRATION_PRIOR pseudo-labels.

        The spend's factor is a ratio of sums, not a least-squares slope: a slope is
        pulled down by the few largest predictions (their errors are squared), and
        would shrink every customer's spend for them."""
        w, p, b = self.sums[:3].tolist()
        p_factor = 1.0
        if w > 0 and p > 0:
            p_factor = (b + CALIBRATION_PRIOR * p / w) / (p + CALIBRATION_PRIOR * p / w)
        sx, sy = self.sums[_SX:].tolist()
        spend_factor = 1.0
        if w > 0 and sx > 0:
            prior = CALIBRATION_PRIOR * sx / w
            spend_factor = (sy + prior) / (sx + prior)
        return p_factor, spend_factor

    def to_json(self) -> str:
        """The reference time and the sums of the first format (readers of that format
        read it as they did)."""
        return ",".join(repr(x) for x in [self.ref, *self.sums[:_CALIB_V1].tolist()])

    def spend_json(self) -> str:
        """The sums added since (predicted and realised spend), at the same reference."""
        return ",".join(repr(x) for x in self.sums[_CALIB_V1:].tolist())

    @classmethod
    def from_json(cls, data: str | None, spend: str | None = None) -> Calibration:
        """From :meth:`to_json` and :meth:`spend_json` (None: written before them; a
        calibration without its spend sums holds the spend at 1 until it has some)."""
        calibration = cls()
        if data:
            ref, *sums = (float(x) for x in data.split(","))
            extra = [float(x) for x in spend.split(",")] if spend else []
            values = (sums + extra + [0.0] * _CALIB)[:_CALIB]
            calibration.ref, calibration.sums = ref, np.array(values)
        return calibration


def _centres(edges: tuple[float, ...], top: float) -> np.ndarray:
    """A representative value of each band (the middle; the last band: ``top``)."""
    bounds = (0.0, *edges)
    return np.array([(lo + hi) / 2 for lo, hi in zip(bounds, (*edges, top), strict=True)])


def design(recency_days: np.ndarray | float, orders: np.ndarray | float,
           tenure_days: np.ndarray | float) -> np.ndarray:
    """The logistic model's inputs: log scales, recency against the customer's own
    rhythm (a frequent buyer gone quiet is a worse sign than an occasional one), and
    :func:`silence`.

    >>> design(10.0, 3, 100.0).shape
    (7,)
    """
    recency = np.asarray(recency_days, dtype=float)
    count = np.asarray(orders, dtype=float)
    tenure = np.asarray(tenure_days, dtype=float)
    r, o, t = np.log1p(recency), np.log1p(count), np.log1p(tenure)
    gap = np.log1p(tenure / np.maximum(count, 1.0))
    quiet = (count - 1.0) * (t - np.log1p(np.maximum(tenure - recency, 0.0)))
    return np.stack(np.broadcast_arrays(np.ones_like(r), r, o, t, r * o, r - gap, quiet),
                    axis=-1)


def silence(recency_days: float, orders: int, tenure_days: float) -> float:
    """BG/NBD's evidence that a customer has stopped buying: their repeat orders times
    the log of how much longer they have been a customer than at their last purchase
    (in BG/NBD the odds of having stopped grow as ``((a + T) / (a + t_x)) ** (r + x)``).
    Nothing for a customer of one order; much for one who bought every day for a month
    and not in the half-year since, whom recency and orders alone take for a regular.

    >>> silence(0.0, 9, 200.0), silence(50.0, 1, 200.0)
    (0.0, 0.0)
    >>> round(silence(170.0, 56, 200.0), 1)
    102.8
    """
    t = math.log1p(tenure_days)
    return (orders - 1) * (t - math.log1p(max(tenure_days - recency_days, 0.0)))


_REC_C = _centres(RECENCY_EDGES, 640.0)
_ORD_C = np.array([1.0, 2.0, 3.0, 4.0, 5.5, 8.0, 12.0, 20.0])
_TEN_C = _centres(TENURE_EDGES, 500.0)
#: The design row of each cell (its band centres); tenure at least recency.
_R_IDX, _F_IDX, _T_IDX = (a.reshape(-1) for a in np.meshgrid(
    np.arange(_R), np.arange(_F), np.arange(_T), indexing="ij"))
_CELL_X = design(_REC_C[_R_IDX], _ORD_C[_F_IDX], np.maximum(_TEN_C[_T_IDX], _REC_C[_R_IDX]))


def _cell_recency(cell: int, tenure_days: float) -> float:
    """The recency of a customer in ``cell`` (its band's centre, at most the tenure)."""
    return min(float(_REC_C[cell // (_F * _T)]), max(0.0, tenure_days))


def cell_of(recency_days: float, orders: int, tenure_days: float) -> int:
    """The cell of a customer's recency, order count and tenure."""
    r = bisect.bisect_right(RECENCY_EDGES, recency_days)
    f = bisect.bisect_right(ORDER_EDGES, orders)
    t = bisect.bisect_right(TENURE_EDGES, tenure_days)
    return (r * _F + f) * _T + t


def cell_at(features: CustomerFeatures, at: float) -> int:
    """The cell of ``features`` as of ``at`` (a customer with at least one purchase)."""
    assert features.last_purchase is not None and features.first_purchase is not None
    return cell_of(max(0.0, at - features.last_purchase) / SECONDS_PER_DAY, features.orders,
                   max(0.0, at - features.first_purchase) / SECONDS_PER_DAY)


def fit_logistic(x: np.ndarray, n: np.ndarray, bought: np.ndarray,
                 iterations: int = 25) -> np.ndarray:
    """Coefficients of a logistic regression fitted to binomial counts per row (IRLS,
    Newton's method): the same fit as on the snapshots one by one, whose inputs are
    their cells'."""
    w = np.zeros(x.shape[1])
    seen = n > 0
    x, n, bought = x[seen], n[seen], bought[seen]
    if not len(n):
        return w
    share = (bought.sum() + 1.0) / (n.sum() + 2.0)
    w[0] = np.log(share / (1.0 - share))
    penalty = np.full(x.shape[1], RIDGE)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -500.0, 500.0)))
        gradient = x.T @ (bought - n * p) - penalty * w
        hessian = (x * (n * p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return w


@dataclass(slots=True)
class CellStats:
    """Sums over labelled snapshots per cell (they add up over partitions): how many,
    how many bought, and their spend relative to their average order."""

    sums: np.ndarray = field(default_factory=lambda: np.zeros((CELLS, 3)))
    #: Sum of the snapshots' average orders (the population's average order).
    avg_orders: float = 0.0
    #: What the model predicted for the labels against what they did (recent-weighted).
    calibration: Calibration = field(default_factory=Calibration)

    #: Buyers' spend against their purchase rate (see :mod:`.rates`).
    curve: RateCurve = field(default_factory=RateCurve)
    #: The labels' purchase histories, for BG/NBD's purchases (:mod:`.bgnbd`).
    histories: HistoryHistogram = field(default_factory=HistoryHistogram)

    @property
    def examples(self) -> int:
        return int(self.sums[:, _N].sum())

    def learn(self, cell: int, avg_order: float, bought: bool, spend: float,
              rate: float | None = None, value: float | None = None,
              history: tuple[int, float, float] | None = None) -> None:
        """A labelled snapshot: its cell, average order, whether and how much it bought;
        its purchase ``rate`` (:func:`rate_of`) and the ``value`` its spend is measured
        in (its average order shrunk to the population's, as predictions use it), for
        the rate curve (None: not learned there); the customer's ``history`` as of the
        end of its horizon, for BG/NBD: repeat purchases, days from the first purchase to
        the last and to the horizon's end (None: not learned there)."""
        if bought and rate is not None and value is not None and value > 0:
            self.curve.learn(rate, spend / value)
        if history is not None:
            self.histories.learn(*history)
        row = self.sums[cell]
        row[_N] += 1.0
        row[_BOUGHT] += 1.0 if bought else 0.0
        # Rounded as stored (short to write; a restored model equals the one kept).
        row[_REL] = round(row[_REL] + (spend / avg_order if avg_order > 0 else 0.0), 6)
        self.avg_orders = round(self.avg_orders + avg_order, 6)

    def add(self, other: CellStats) -> None:
        self.sums += other.sums
        self.avg_orders += other.avg_orders
        self.calibration.add(other.calibration)
        self.curve.add(other.curve)
        self.histories.add(other.histories)

    def table(self, horizon_days: float = 90.0) -> CellTable:
        """What predictions of the next ``horizon_days`` need (computed once per model
        change)."""
        n, bought = self.sums[:, _N], self.sums[:, _BOUGHT]
        w = fit_logistic(_CELL_X, n, bought)
        # Spend relative to the average order, among those who bought: per recency x
        # orders band, shrunk to everyone's.
        sums = self.sums.reshape(_R, _F, _T, 3).sum(axis=2)
        total_bought = sums[..., _BOUGHT].sum()
        rel_all = sums[..., _REL].sum() / total_bought if total_bought else 1.0
        rel = (sums[..., _REL] + PRIOR_WEIGHT * rel_all) / (sums[..., _BOUGHT] + PRIOR_WEIGHT)
        n_all = n.sum()
        mean_order = self.avg_orders / n_all if n_all else 0.0
        p_factor, spend_factor = self.calibration.factors()
        rates, relative = self.curve.points()
        return CellTable(w, rel.reshape(-1), float(mean_order), int(n_all), p_factor,
                         spend_factor, rates, relative, fit(self.histories), horizon_days)

    def to_json(self) -> dict[str, Any]:
        """Sparse: only the cells seen."""
        # One string rather than nested lists: cheap to copy, encode and decode, which
        # happens with every write of the partition.
        seen = np.flatnonzero(self.sums[:, _N])
        cells = ";".join(f"{c},{int(n)},{int(b)},{rel!r}"
                         for c, (n, b, rel) in zip(seen.tolist(), self.sums[seen].tolist(),
                                                   strict=True))
        return {"cells": cells, "avg_orders": self.avg_orders,
                "calibration": self.calibration.to_json(),
                "calibration_spend": self.calibration.spend_json(),
                "rates": self.curve.to_json(), "histories": self.histories.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CellStats:
        stats = cls()
        if data:
            for item in (data.get("cells") or "").split(";"):
                if item:
                    cell, n, bought, rel = item.split(",")
                    stats.sums[int(cell)] = (int(n), int(bought), float(rel))
            stats.avg_orders = float(data.get("avg_orders", 0.0))
            # Shares written before the calibration, its spend sums, the rate curve or
            # the histories have none of them (each starts from there).
            stats.calibration = Calibration.from_json(data.get("calibration"),
                                                      data.get("calibration_spend"))
            stats.curve = RateCurve.from_json(data.get("rates"))
            stats.histories = HistoryHistogram.from_json(data.get("histories"))
        return stats


@dataclass(slots=True, frozen=True)
class CellTable:
    """What a prediction needs: the logistic coefficients, the relative spend of buyers
    per recency x orders band (before the rate curve has buyers) and the rate curve's
    points, the population's average order."""

    w: np.ndarray
    rel: np.ndarray
    mean_order: float
    examples: int
    #: Calibration: what multiplies the odds of buying and the expected spend.
    p_factor: float = 1.0
    spend_factor: float = 1.0
    #: The rate curve's points (:meth:`.rates.RateCurve.points`; empty: none yet).
    rates: np.ndarray = field(default_factory=lambda: np.zeros(0))
    relative: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: BG/NBD's (r, alpha, a, b) (None: too few labels yet, or a share from before the
    #: histories: the spend is then the rate curve's alone) and the horizon in days.
    bgnbd: Params | None = None
    horizon_days: float = 90.0
    #: ``w`` as floats, for the scalar path.
    coefficients: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "coefficients", tuple(self.w.tolist()))

    def calibrated(self, probability: float) -> float:
        """The model's probability with its odds times the calibration's factor."""
        odds = probability * self.p_factor
        return odds / (odds + 1.0 - probability) if odds > 0 else 0.0

    def calibrated_spend(self, spend: float) -> float:
        """The model's spend times the calibration's factor."""
        return spend * self.spend_factor

    def probability(self, recency_days: float, orders: int, tenure_days: float) -> float:
        """The model's probability, before calibration (:meth:`calibrated`)."""
        # Scalar arithmetic (this runs for every customer scored): design() by hand.
        w0, w1, w2, w3, w4, w5, w6 = self.coefficients
        r = math.log1p(recency_days)
        o = math.log1p(orders)
        gap = math.log1p(tenure_days / max(orders, 1))
        z = (w0 + w1 * r + w2 * o + w3 * math.log1p(tenure_days) + w4 * r * o
             + w5 * (r - gap) + w6 * silence(recency_days, orders, tenure_days))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def probability_of_cell(self, cell: int) -> float:
        """The probability of a customer at the centre of ``cell`` (what a snapshot
        keeps of its features), before calibration."""
        z = float(_CELL_X[cell] @ self.w)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def spend_of_cell(self, cell: int, probability: float, orders: int, avg_order: float,
                      rate: float, tenure_days: float) -> float:
        """The spend of a snapshot in ``cell`` (what it keeps of its features, with its
        orders, average order, purchase rate and tenure), before calibration."""
        recency = _cell_recency(cell, tenure_days)
        return self.blended(*self.estimates(probability, cell // _T, orders, avg_order, rate,
                                            self._purchases(orders, recency, tenure_days)))

    def spend(self, probability: float, recency_days: float, orders: int,
              avg_order: float, tenure_days: float) -> float:
        """Expected spend within the horizon, before calibration (see
        :meth:`calibrated_spend`): the mean of two estimates (:meth:`estimates`), the
        probability to buy (before calibration) times what a buyer of the customer's
        purchase rate spends relative to their average order, and BG/NBD's expected
        purchases, each times that order shrunk to the population's."""
        r = bisect.bisect_right(RECENCY_EDGES, recency_days)
        f = bisect.bisect_right(ORDER_EDGES, orders)
        return self.blended(*self.estimates(probability, r * _F + f, orders, avg_order,
                                            rate_of(orders, tenure_days),
                                            self._purchases(orders, recency_days,
                                                            tenure_days)))

    def _purchases(self, orders: int, recency_days: float, tenure_days: float
                   ) -> float | None:
        """BG/NBD's expected purchases within the horizon (None: not fitted)."""
        if self.bgnbd is None:
            return None
        tenure = max(0.0, tenure_days)
        return expected_purchases(self.bgnbd, max(0, orders - 1),
                                  max(0.0, tenure - recency_days), tenure, self.horizon_days)

    def value(self, orders: int, avg_order: float) -> float:
        """The customer's average order shrunk to the population's (by ORDER_PRIOR
        orders): what one purchase of theirs is expected to be worth."""
        mean = self.mean_order if self.mean_order > 0 else avg_order
        return (orders * avg_order + ORDER_PRIOR * mean) / (orders + ORDER_PRIOR)

    @staticmethod
    def blended(rated: float, bgnbd: float | None) -> float:
        """The mean of the two estimates (:meth:`estimates`), neither of which is known
        to be the better (weights fitted to the matured labels follow the past too
        closely); the rate curve's alone before BG/NBD is fitted."""
        return rated if bgnbd is None else (rated + bgnbd) / 2.0

    def estimates(self, probability: float, rf: int, orders: int, avg_order: float,
                  rate: float, purchases: float | None) -> tuple[float, float | None]:
        """The spend two ways, each a number of purchases (in units of the customer's
        value) times that value: what buyers of the customer's rate spent next, learned
        from the labels, which follows how the cohort buys; and BG/NBD's purchases
        (None: not fitted), which follow the customer's own rhythm and silence beyond
        the bands that labels fill (the most frequent buyers)."""
        value = self.value(orders, avg_order)
        if len(self.rates):
            relative = relative_spend(self.rates, self.relative, rate)
        else:  # a model of shares from before the rate curve: per band
            relative = float(self.rel[rf])
        return (probability * relative * value,
                None if purchases is None else purchases * value)
