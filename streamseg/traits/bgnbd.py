"""How many purchases a customer makes next: BG/NBD, fitted on additive sums.

In BG/NBD (Fader, Hardie and Lee, 2005) a customer buys as a Poisson process of rate
``lambda`` while alive, and after each purchase stops for good with probability ``p``;
``lambda`` varies across customers as Gamma(r, alpha), ``p`` as Beta(a, b). From a
customer's repeat purchases ``x``, the day of their last purchase ``t_x`` and their
age ``T`` (both in days since the first purchase), it gives the expected number of
purchases in the next ``t`` days, :func:`expected_purchases` -- which grows with the
customer's own rhythm and falls as a silence grows long for it.

The four parameters are fitted by maximum likelihood (scipy) on sums that add up over
partitions, like the other sums of the trait model: :class:`HistoryHistogram` counts
the labels' histories -- each customer's as of the end of a label's horizon, when the
label is learned -- per cell of (repeat purchases band x age band x recency band), with
the sums of their ``x``, ``T`` and ``t_x`` and of the squares of the days, so that each
cell's likelihood is taken at its members' means, to the second order in their
spread. A fit takes milliseconds and is cached per histogram (a model is refitted only
when it learned).

>>> rng = np.random.default_rng(3)
>>> hist = HistoryHistogram()
>>> for x, t_x, age in sample(rng, 4000, r=0.5, alpha=20.0, a=1.5, b=3.0):
...     hist.learn(x, t_x, age)
>>> r, alpha, a, b = fit(hist)
>>> abs(r / alpha - 0.025) < 0.002          # the mean purchase rate per day
True
>>> busy = expected_purchases((r, alpha, a, b), 12, 170.0, 180.0, 90.0)
>>> gone = expected_purchases((r, alpha, a, b), 12, 20.0, 180.0, 90.0)
>>> busy > 3.0 > 0.5 > gone
True
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterator

import numpy as np
from scipy import optimize, special

__all__ = ["MIN_LABELS", "MIN_REPEAT_LABELS", "HistoryHistogram", "Params",
           "expected_purchases", "fit", "sample"]

#: The model's parameters (r, alpha, a, b); alpha in days.
Params = tuple[float, float, float, float]
#: Band edges (a value at an edge is above it): repeat purchases, one band per count
#: where customers are many (the likelihood is steep in them); and days, of the age and
#: of the recency of the last purchase, bands that widen with the days: the likelihood
#: depends on the days through ``log(alpha + days)``, which bends most at few days, and
#: is taken at each cell's mean to the second order in its spread (:func:`fit`). The
#: cells are few enough (704 at most) for the share to stay small.
REPEAT_EDGES = (1, 2, 3, 4, 5, 7, 10, 15, 20, 30)
DAY_EDGES = (7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0)
#: The layout of the sums, stored with them (a change of the bands or of the units
#: changes it). 2: days in whole tenths.
LAYOUT = 2
#: Labels a fit needs, in all and with a repeat purchase: with fewer, the four
#: parameters are hardly determined (the dropout's two are learned only from customers
#: who came back), and predictions go without BG/NBD's purchases.
MIN_LABELS = 200
MIN_REPEAT_LABELS = 50
_A = _R = len(DAY_EDGES) + 1
_CELLS = (len(REPEAT_EDGES) + 1) * _A * _R
# Columns: labels, sums of their x, T and t_x (in tenths of days), T squared and t_x
# squared (in days squared). All whole numbers (below 2**53), so that sums are exact:
# the histogram of several partitions is the same, to the bit, in whatever order
# they are added, and so is the fit every worker makes of it.
_N, _X, _T, _TX, _T2, _TX2 = range(6)
#: Box of the fit's unknowns (their logs; alpha in units of the mean age): wide enough
#: for any data the model fits; a fit stopped at its edge is no fit (:func:`fit`).
_BOUND = 10.0


def cell_of(repeat: int, age_days: float, recency_days: float) -> int:
    """The histogram cell of a customer with ``repeat`` repeat purchases, ``age_days``
    since the first and ``recency_days`` since the last (the recency of a customer
    without repeat purchases is their age: one band)."""
    x = bisect.bisect_right(REPEAT_EDGES, repeat)
    t = bisect.bisect_right(DAY_EDGES, age_days)
    r = bisect.bisect_right(DAY_EDGES, recency_days) if repeat else 0
    return (x * _A + t) * _R + r


class HistoryHistogram:
    """Per cell of (repeat purchases x age x recency bands): labels and the sums of
    their ``x``, ``T`` and ``t_x``. The sums add up over partitions."""

    __slots__ = ("sums",)

    def __init__(self, sums: np.ndarray | None = None) -> None:
        self.sums = np.zeros((_CELLS, 6)) if sums is None else sums

    @property
    def labels(self) -> int:
        return int(self.sums[:, _N].sum())

    @property
    def repeat_labels(self) -> int:
        """Labels of customers with a repeat purchase."""
        return int(self.sums[_A * _R:, _N].sum())

    def learn(self, repeat: int, last_days: float, age_days: float) -> None:
        """A label's history: repeat purchases, days from the first purchase to the last
        (``t_x``) and to the end of the history (``T``) (a history that cannot be --
        negative, or not finite -- is not learned)."""
        if repeat < 0 or not 0.0 <= last_days <= age_days < math.inf:
            return
        row = self.sums[cell_of(repeat, age_days, age_days - last_days)]
        # Whole tenths of days, squares in whole days (only their cell's spread needs
        # them): short to write, and exact (see the columns above).
        age, last = round(age_days, 1), round(last_days, 1) if repeat else 0.0
        row += (1.0, repeat, round(age * 10), round(last * 10), round(age ** 2),
                round(last ** 2))

    def add(self, other: HistoryHistogram) -> None:
        self.sums = self.sums + other.sums

    def to_json(self) -> str:
        """The bands' layout (:data:`LAYOUT`), then sparse: ``cell,labels,x,T,t_x,T²,t_x²``
        of the cells seen, ``;``-separated."""
        seen = np.flatnonzero(self.sums[:, _N])
        return f"{LAYOUT}:" + ";".join(
            f"{c},{int(n)},{int(x)},{int(t)},{int(tx)},{int(t2)},{int(tx2)}"
            for c, (n, x, t, tx, t2, tx2)
            in zip(seen.tolist(), self.sums[seen].tolist(), strict=True))

    @classmethod
    def from_json(cls, data: str | None) -> HistoryHistogram:
        """As stored. None or empty: a share written before the histogram; another layout
        of the bands: its cells mean other histories. Both start from an empty one.

        >>> HistoryHistogram.from_json("0:5,1,0,1.0,0.0,1,0").labels
        0
        """
        hist = cls()
        layout, _, cells = (data or "").partition(":")
        if layout != str(LAYOUT):
            return hist
        for item in cells.split(";"):
            if item:
                cell, n, x, *days = item.split(",")
                hist.sums[int(cell)] = (int(n), int(x), *(float(d) for d in days))
        return hist


def fit(hist: HistoryHistogram) -> Params | None:
    """Maximum-likelihood (r, alpha, a, b) of the histogram's labels; None with too few
    labels (:data:`MIN_LABELS`, :data:`MIN_REPEAT_LABELS`) or when the fit fails."""
    if hist.labels < MIN_LABELS or hist.repeat_labels < MIN_REPEAT_LABELS:
        return None
    seen = hist.sums[:, _N] > 0
    return _fit(hist.sums[seen].tobytes())


@functools.lru_cache(maxsize=8)
def _fit(key: bytes) -> Params | None:
    n, sx, st, stx, st2, stx2 = np.frombuffer(key).reshape(-1, 6).T
    x, age, last = sx / n, st / n / 10.0, stx / n / 10.0
    age_var = np.maximum(st2 / n - age ** 2, 0.0)
    last_var = np.maximum(stx2 / n - last ** 2, 0.0)
    # Ages in units of the mean age, so that the start and the box fit any data.
    scale = float(np.average(age, weights=n)) or 1.0
    age, last = age / scale, last / scale
    age_var, last_var = age_var / scale ** 2, last_var / scale ** 2
    repeat = x > 0

    def loss(theta: np.ndarray) -> float:
        r, alpha, a, b = np.exp(theta)
        common = (special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha)
                  + special.betaln(a, b + x) - special.betaln(a, b))
        # A cell's mean of log(alpha + days), to the second order in the days' spread.
        alive = -(r + x) * (np.log(alpha + age) - age_var / (2.0 * (alpha + age) ** 2))
        # Gone after the last purchase (only a customer with a repeat purchase can be).
        gone = np.full(len(x), -np.inf)
        gone[repeat] = (math.log(a) - np.log(b + x[repeat] - 1.0)
                        - (r + x[repeat]) * (np.log(alpha + last[repeat]) - last_var[repeat]
                                             / (2.0 * (alpha + last[repeat]) ** 2)))
        return -float(n @ (common + np.logaddexp(alive, gone))) / float(n.sum())

    with np.errstate(all="ignore"):
        result = optimize.minimize(loss, np.zeros(4), method="L-BFGS-B",
                                   bounds=[(-_BOUND, _BOUND)] * 4)
    # At the box's edge the likelihood ran off (the data do not determine a parameter):
    # no fit, rather than predictions from a bound.
    if (not np.all(np.isfinite(result.x)) or not math.isfinite(result.fun)
            or np.abs(result.x).max() >= _BOUND - 1e-3):
        return None
    r, alpha, a, b = np.exp(result.x).tolist()
    return r, alpha * scale, a, b


def expected_purchases(params: Params, repeat: int, last_days: float, age_days: float,
                       days: float) -> float | None:
    """BG/NBD's expected number of purchases in the next ``days`` of a customer with
    ``repeat`` repeat purchases, the last ``last_days`` and now ``age_days`` after the
    first (None where the formula has no finite value for these parameters).

    >>> round(expected_purchases((0.25, 30.0, 0.8, 2.5), 0, 0.0, 100.0, 90.0), 3)
    0.158
    """
    r, alpha, a, b = params
    x = float(repeat)
    if abs(a - 1.0) < 1e-9 or a + b + x - 1.0 <= 0.0:
        return None
    # Scalar arithmetic (this runs for every customer scored); a power beyond a float's
    # range means no finite value.
    try:
        hyp = float(special.hyp2f1(r + x, b + x, a + b + x - 1.0,
                                   days / (alpha + age_days + days)))
        first = ((a + b + x - 1.0) / (a - 1.0)
                 * (1.0 - ((alpha + age_days) / (alpha + age_days + days)) ** (r + x) * hyp))
        second = 1.0 + (a / (b + x - 1.0) * ((alpha + age_days) / (alpha + last_days))
                        ** (r + x) if repeat > 0 else 0.0)
        value = first / second
    except (OverflowError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) and value >= 0.0 else None


def sample(rng: np.random.Generator, customers: int, r: float, alpha: float, a: float,
           b: float, most_days: float = 360.0) -> Iterator[tuple[int, float, float]]:
    """Customers drawn from the model (for tests): ``(x, t_x, T)`` of each, their age
    ``T`` uniform in 1 .. ``most_days``."""
    for _ in range(customers):
        rate, dropout = rng.gamma(r, 1.0 / alpha), rng.beta(a, b)
        age = float(rng.uniform(1.0, most_days))
        x, last, t = 0, 0.0, 0.0
        while True:
            t += rng.exponential(1.0 / rate)
            if t > age:
                break
            x, last = x + 1, t
            if rng.random() < dropout:
                break
        yield x, last, age
