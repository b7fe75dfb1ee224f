"""How much a buyer spends against how often they buy: the spend curve of the traits.

The expected spend within the horizon is, as BG/NBD x Gamma-Gamma has it, the expected
number of purchases times the value of a purchase. A buyer's number of purchases grows
with their purchase *rate* -- orders per tenure, here :func:`rate_of`: orders per 90
days of the customer's life, with 90 days of exposure added so that a new customer's
few days say little -- and not with their order count alone: twelve orders in three
months is four times the rhythm of twelve in a year.

:class:`RateCurve` keeps, per band of rate (:data:`RATE_EDGES`), sums over the labelled
snapshots that bought within the horizon: how many, their rates, and their spend in
units of their average order (shrunk to the population's, as the prediction uses it).
The sums add up over partitions, like the cells'. :meth:`RateCurve.points` turns them
into a curve: per band, the mean rate and the mean relative spend, each band shrunk
(by :data:`CURVE_PRIOR` buyers) to the band below it, the lowest to every buyer's mean;
between the points the curve is linear, below the first it is flat, above the last it
grows in proportion to the rate (the only place it grows faster than the data show).

>>> curve = RateCurve()
>>> for _ in range(200):
...     curve.learn(rate_of(1, 200), 1.8)      # occasional buyers: about one order
>>> for _ in range(60):
...     curve.learn(rate_of(12, 90), 5.5)      # twelve orders in three months
>>> xs, ys = curve.points()
>>> [round(float(x), 2) for x in xs], [round(float(y), 2) for y in ys]
([0.31, 6.0], [1.88, 4.59])
>>> round(relative_spend(xs, ys, rate_of(24, 90)), 2)  # twice that rhythm: twice as much
9.19
>>> round(relative_spend(xs, ys, 0.1), 2)               # rarer still: as the rarest seen
1.88
"""

from __future__ import annotations

import bisect

import numpy as np

__all__ = ["RATE_EDGES", "RATE_PRIOR_DAYS", "RateCurve", "rate_of", "relative_spend"]

#: Days of exposure added to a customer's tenure in their rate (a customer of a few days
#: with two orders is not taken to buy every other day).
RATE_PRIOR_DAYS = 90.0
#: Band edges of the rate, in orders per 90 days (a value at an edge is above it).
RATE_EDGES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
#: Pseudo-count (in buyers) of the shrinkage of a band to the one below.
CURVE_PRIOR = 20.0
_BANDS = len(RATE_EDGES) + 1


def rate_of(orders: int, tenure_days: float) -> float:
    """Orders per 90 days of the customer's life, with :data:`RATE_PRIOR_DAYS` more.

    >>> rate_of(3, 0.0), rate_of(3, 180.0)
    (3.0, 1.0)
    """
    return 90.0 * orders / (max(0.0, tenure_days) + RATE_PRIOR_DAYS)


def relative_spend(xs: np.ndarray, ys: np.ndarray, rate: float) -> float:
    """The curve through the points ``(xs, ys)`` at ``rate`` (flat below the first
    point, in proportion to the rate above the last)."""
    if rate >= xs[-1]:
        # (A top point at rate 0 cannot come from customers with orders; a hand-edited
        # share must still not divide by zero.)
        return float(ys[-1] * rate / xs[-1]) if xs[-1] > 0 else float(ys[-1])
    return float(np.interp(rate, xs, ys))


class RateCurve:
    """Sums per rate band over buyers: count, sum of rates, sum of relative spends."""

    __slots__ = ("sums",)

    def __init__(self, sums: np.ndarray | None = None) -> None:
        self.sums = np.zeros((_BANDS, 3)) if sums is None else sums

    @property
    def buyers(self) -> int:
        return int(self.sums[:, 0].sum())

    def learn(self, rate: float, relative: float) -> None:
        """A snapshot that bought: its rate, and its spend within the horizon over its
        (shrunk) average order."""
        row = self.sums[bisect.bisect_right(RATE_EDGES, rate)]
        # Rounded as stored (short to write; a restored curve equals the one kept).
        row[:] = np.round(row + (1.0, rate, relative), 6)

    def add(self, other: RateCurve) -> None:
        self.sums = self.sums + other.sums

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """The curve's points (mean rate, relative spend) of the bands with buyers, each
        shrunk by :data:`CURVE_PRIOR` buyers to the band below it (the lowest: to every
        buyer's mean); none before the first buyer."""
        seen = self.sums[:, 0] > 0
        n, rates, relative = self.sums[seen].T
        if not len(n):
            return np.zeros(0), np.zeros(0)
        xs = rates / n
        ys = np.empty(len(n))
        prior = float(relative.sum() / n.sum())
        for i in range(len(n)):
            # Shrunk to the band below, not grown in proportion to it: a band of few,
            # frequent buyers is where one big spender moves the mean most.
            ys[i] = (relative[i] + CURVE_PRIOR * prior) / (n[i] + CURVE_PRIOR)
            prior = float(ys[i])
        return xs, ys

    def to_json(self) -> str:
        """Sparse: ``band,count,rates,relative`` of the bands seen, ``;``-separated."""
        seen = np.flatnonzero(self.sums[:, 0])
        return ";".join(f"{b},{int(n)},{r!r},{s!r}" for b, (n, r, s)
                        in zip(seen.tolist(), self.sums[seen].tolist(), strict=True))

    @classmethod
    def from_json(cls, data: str | None) -> RateCurve:
        """As stored (None or empty: a share written before the curve, which starts
        from there)."""
        curve = cls()
        for item in (data or "").split(";"):
            if item:
                band, n, rates, relative = item.split(",")
                curve.sums[int(band)] = (int(n), float(rates), float(relative))
        return curve
