"""The trait model: per-cell counts of what customers did next, shrunk to their parents.

A customer's features as of an instant fall in one *cell*: a recency band, an order
count band and a tenure band (:func:`cell_of`) -- the three quantities BG/NBD models
(recency, frequency, age). For every cell the model keeps sums over the labelled
snapshots that fell in it: how many, how many bought within the horizon, and their
spend within the horizon relative to their average order (:class:`CellStats`). The
sums add up, so the model of several partitions is the sum of theirs: every worker can
learn its own partitions' labels in its own fenced write, and every worker predicts
with the sum (see :mod:`.learner`).

Predictions shrink each cell to its parent (recency x orders, then recency, then all)
with a pseudo-count: a cell seen 3 times is mostly its parent, one seen 3,000 times is
itself. Counting is calibrated by construction (a cell's probability is the share of
its snapshots that bought). Expected spend is the cell's mean spend relative to the
average order, times the customer's average order shrunk to the population's, as the
Gamma-Gamma model does (one large first order says little about the next).

Both are then calibrated online (:class:`Calibration`): recent-weighted sums over the
matured labels of what the model predicted and what happened, which add up too, scale
the odds of buying and the spend, so that the traits follow a cohort whose buying
drifts as it ages.

>>> stats = CellStats()
>>> for _ in range(50):
...     stats.learn(cell_of(5, 4, 400), 40.0, True, 80.0)    # recent regulars buy again
...     stats.learn(cell_of(300, 1, 300), 20.0, False, 0.0)  # lapsed one-timers do not
>>> table = stats.table()
>>> p_hot, p_cold = table.probability(5, 4, 400), table.probability(300, 1, 300)
>>> p_hot > 0.9 > 0.1 > p_cold
True
>>> table.spend(p_hot, 5, 4, 40.0) > table.spend(p_cold, 300, 1, 20.0)
True
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamseg.core.features import SECONDS_PER_DAY, CustomerFeatures

__all__ = ["CELLS", "Calibration", "CellStats", "CellTable", "cell_at", "cell_of"]

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
# Columns of the per-cell sums.
_N, _BOUGHT, _REL = range(3)
# Columns of the calibration sums: weight, predicted probability, bought, predicted
# spend squared, predicted times realised spend.
_CW, _CP, _CB, _XX, _XY = range(5)
_CALIB = 5
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
    >>> round(float(c.sums[_CB] / c.sums[_CW]), 4), round(float(c.sums[_XY] / c.sums[_XX]), 4)
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
        row[3:] = (predicted_spend ** 2, predicted_spend * spend)
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
        its spend (least squares through the origin of the realised spend on the
        predicted), both shrunk to 1 by CALIBRATION_PRIOR pseudo-labels."""
        w, p, b = self.sums[:3].tolist()
        p_factor = 1.0
        if w > 0 and p > 0:
            p_factor = (b + CALIBRATION_PRIOR * p / w) / (p + CALIBRATION_PRIOR * p / w)
        xx, xy = self.sums[3:].tolist()
        spend_factor = 1.0
        if w > 0 and xx > 0:
            # Least squares (through the origin) of the realised spend on the model's.
            prior = CALIBRATION_PRIOR * xx / w
            spend_factor = (xy + prior) / (xx + prior)
        return p_factor, spend_factor

    def to_json(self) -> str:
        return ",".join(repr(x) for x in [self.ref, *self.sums.tolist()])

    @classmethod
    def from_json(cls, data: str | None) -> Calibration:
        calibration = cls()
        if data:
            ref, *sums = (float(x) for x in data.split(","))
            calibration.ref, calibration.sums = ref, np.array(sums)
        return calibration


def _centres(edges: tuple[float, ...], top: float) -> np.ndarray:
    """A representative value of each band (the middle; the last band: ``top``)."""
    bounds = (0.0, *edges)
    return np.array([(lo + hi) / 2 for lo, hi in zip(bounds, (*edges, top), strict=True)])


def design(recency_days: np.ndarray | float, orders: np.ndarray | float,
           tenure_days: np.ndarray | float) -> np.ndarray:
    """The logistic model's inputs: log scales, and recency against the customer's own
    rhythm (a frequent buyer gone quiet is a worse sign than an occasional one)."""
    r = np.log1p(np.asarray(recency_days, dtype=float))
    o = np.log1p(np.asarray(orders, dtype=float))
    t = np.log1p(np.asarray(tenure_days, dtype=float))
    per_order = np.asarray(tenure_days, dtype=float) / np.maximum(np.asarray(orders, float), 1.0)
    gap = np.log1p(per_order)
    return np.stack(np.broadcast_arrays(np.ones_like(r), r, o, t, r * o, r - gap), axis=-1)


_REC_C = _centres(RECENCY_EDGES, 640.0)
_ORD_C = np.array([1.0, 2.0, 3.0, 4.0, 5.5, 8.0, 12.0, 20.0])
_TEN_C = _centres(TENURE_EDGES, 500.0)
#: The design row of each cell (its band centres); tenure at least recency.
_R_IDX, _F_IDX, _T_IDX = (a.reshape(-1) for a in np.meshgrid(
    np.arange(_R), np.arange(_F), np.arange(_T), indexing="ij"))
_CELL_X = design(_REC_C[_R_IDX], _ORD_C[_F_IDX], np.maximum(_TEN_C[_T_IDX], _REC_C[_R_IDX]))


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

    @property
    def examples(self) -> int:
        return int(self.sums[:, _N].sum())

    def learn(self, cell: int, avg_order: float, bought: bool, spend: float) -> None:
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

    def table(self) -> CellTable:
        """What predictions need (computed once per model change)."""
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
        return CellTable(w, rel.reshape(-1), float(mean_order), int(n_all), p_factor,
                         spend_factor)

    def to_json(self) -> dict[str, Any]:
        """Sparse: only the cells seen."""
        # One string rather than nested lists: cheap to copy, encode and decode, which
        # happens with every write of the partition.
        seen = np.flatnonzero(self.sums[:, _N])
        cells = ";".join(f"{c},{int(n)},{int(b)},{rel!r}"
                         for c, (n, b, rel) in zip(seen.tolist(), self.sums[seen].tolist(),
                                                   strict=True))
        return {"cells": cells, "avg_orders": self.avg_orders,
                "calibration": self.calibration.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CellStats:
        stats = cls()
        if data:
            for item in (data.get("cells") or "").split(";"):
                if item:
                    cell, n, bought, rel = item.split(",")
                    stats.sums[int(cell)] = (int(n), int(bought), float(rel))
            stats.avg_orders = float(data.get("avg_orders", 0.0))
            # Shares written before the calibration have none (it starts from there).
            stats.calibration = Calibration.from_json(data.get("calibration"))
        return stats


@dataclass(slots=True, frozen=True)
class CellTable:
    """What a prediction needs: the logistic coefficients, the relative spend of buyers
    per recency x orders band, the population's average order."""

    w: np.ndarray
    rel: np.ndarray
    mean_order: float
    examples: int
    #: Calibration: what multiplies the odds of buying and the expected spend.
    p_factor: float = 1.0
    spend_factor: float = 1.0
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
        w0, w1, w2, w3, w4, w5 = self.coefficients
        r = math.log1p(recency_days)
        o = math.log1p(orders)
        gap = math.log1p(tenure_days / max(orders, 1))
        z = w0 + w1 * r + w2 * o + w3 * math.log1p(tenure_days) + w4 * r * o + w5 * (r - gap)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def probability_of_cell(self, cell: int) -> float:
        """The probability of a customer at the centre of ``cell`` (what a snapshot
        keeps of its features), before calibration."""
        z = float(_CELL_X[cell] @ self.w)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def spend_of_cell(self, cell: int, probability: float, orders: int,
                      avg_order: float) -> float:
        rf = cell // _T
        return self._spend(probability, rf, orders, avg_order)

    def spend(self, probability: float, recency_days: float, orders: int,
              avg_order: float, tenure_days: float = 0.0) -> float:
        """Expected spend within the horizon: the probability to buy (before calibration)
        times what a buyer of the band spends, relative to their average order shrunk to
        the population's, before calibration (see :meth:`calibrated_spend`)."""
        r = bisect.bisect_right(RECENCY_EDGES, recency_days)
        f = bisect.bisect_right(ORDER_EDGES, orders)
        return self._spend(probability, r * _F + f, orders, avg_order)

    def _spend(self, probability: float, rf: int, orders: int, avg_order: float) -> float:
        mean = self.mean_order if self.mean_order > 0 else avg_order
        shrunk = (orders * avg_order + ORDER_PRIOR * mean) / (orders + ORDER_PRIOR)
        return probability * float(self.rel[rf]) * shrunk
