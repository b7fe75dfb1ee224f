"""When a customer is photographed, and when the photograph gets its label.

Snapshots are taken on a grid in event time, one every ``every`` seconds, whether or
not the customer buys: a snapshot at each purchase would only teach the model about
customers who just bought. The grid is shifted per customer by a phase derived from
the customer id (``crc32(id) % every``, in whole days), so that snapshots fall at every
age of a customer's life alike and not all on the same day; grid point ``k`` is at
``phase + k * every``, a whole number of days since the epoch (UTC midnight). A
snapshot at ``t`` sees every event at or before ``t``.

A snapshot's label is what the customer did in ``(t, t + horizon]``: whether they
bought (their last purchase is then after ``t``) and how much they spent (their total
spend then, less the total at ``t``). It *matures* once time has passed ``t + horizon``:

* in the event path, before an event at ``e`` is applied, every snapshot with
  ``t + horizon < e`` matures first, so a purchase after a snapshot's horizon is never
  counted in its label, however late the timer comes;
* on the inactivity timer (the customer is idle), once the clock is past
  ``t + horizon``: no event after the horizon was applied (it would have matured the
  snapshot first), so the totals are those at ``t + horizon``.

What is stored. A grid point after the customer's last purchase needs nothing: the
customer's features have not moved since, so its cell, orders and spend are those of
now, and its label, if it matures before another purchase, is "did not buy". Such a
point is *implicit*: the points ``t`` with ``max(first purchase, last purchase,
progress - horizon) <= t < progress`` (``progress``: the time up to which the customer
was processed). Only when a purchase follows a point before its horizon ends is the
point *materialised* (:class:`Snapshot`: its time, cell, orders and spend), just before
the purchase is applied; it waits in the customer's state until it matures. So a
customer carries at most ``ceil(horizon / every)`` snapshots, and an idle one none.

An event that arrives late, at or before ``t`` of a materialised snapshot, moves that
snapshot's baseline (it belongs to the past the snapshot saw, not to its future).

>>> day = 86_400.0
>>> from streamseg.core.features import CustomerFeatures
>>> f = CustomerFeatures.empty()
>>> f.apply(0.0, 10.0, "purchase", half_life_days=90)
>>> grid = Grid(every=30 * day, horizon=90 * day, phase=0.0)
>>> [t / day for t in grid.points(0.0, 65 * day)]   # grid points before day 65
[0.0, 30.0, 60.0]
>>> pending = [grid.snapshot(f, t, lambda at: 0) for t in grid.points(0.0, 65 * day)]
>>> f.apply(70 * day, 25.0, "purchase", half_life_days=90)   # bought on day 70
>>> [(l.snapshot.at / day, l.bought, l.spend) for l in grid.mature(f, pending, 100 * day)]
[(0.0, True, 25.0)]
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from streamseg.core.features import SECONDS_PER_DAY, CustomerFeatures

__all__ = ["Grid", "Label", "Snapshot", "max_pending", "phase_of"]


@dataclass(slots=True)
class Snapshot:
    """A customer as of ``at``: the cell of their features (see :mod:`.cells`), and the
    totals that their label is measured from."""

    at: float
    cell: int
    #: Orders and total spend (purchases) at ``at``.
    orders: int
    spend: float

    @property
    def avg_order(self) -> float:
        return self.spend / self.orders if self.orders else 0.0


@dataclass(slots=True)
class Label:
    """A matured snapshot: whether the customer bought within the horizon, and how much."""

    snapshot: Snapshot
    bought: bool
    spend: float


def phase_of(customer_id: str, every: float) -> float:
    """The customer's shift of the grid: whole days in ``[0, every)`` (``every`` in
    seconds), so that grid points are whole days since the epoch (stored as such)."""
    days = max(1, int(every // SECONDS_PER_DAY))
    return float(zlib.crc32(customer_id.encode()) % days) * SECONDS_PER_DAY


def max_pending(horizon_days: float, every_days: float) -> int:
    """The most snapshots a customer can have waiting for their label.

    >>> max_pending(90, 90), max_pending(90, 30), max_pending(90, 45)
    (1, 3, 2)
    """
    return max(1, math.ceil(horizon_days / every_days - 1e-9))


@dataclass(slots=True, frozen=True)
class Grid:
    """One customer's snapshot grid (seconds) and the label horizon."""

    every: float
    horizon: float
    phase: float

    @classmethod
    def of(cls, customer_id: str, every_days: float, horizon_days: float) -> Grid:
        # Whole days: snapshot times are stored as days since the epoch.
        every = float(max(1, round(every_days))) * SECONDS_PER_DAY
        return cls(every, horizon_days * SECONDS_PER_DAY, phase_of(customer_id, every))

    def point(self, k: int) -> float:
        return self.phase + k * self.every

    def first_at_or_after(self, time: float) -> int:
        """The index of the first grid point at or after ``time``."""
        return math.ceil((time - self.phase) / self.every)

    def points(self, start: float, end: float) -> list[float]:
        """The grid points in ``[start, end)``."""
        k = self.first_at_or_after(start)
        out: list[float] = []
        while (at := self.point(k)) < end:
            out.append(at)
            k += 1
        return out

    def implicit(self, features: CustomerFeatures, progress: float | None,
                 until: float) -> list[float]:
        """The grid points that wait for their label without being stored, plus the new
        ones up to ``until``: those at or after the customer's last purchase, not matured
        at ``progress`` (the time the customer was processed up to; None: never)."""
        first, last = features.first_purchase, features.last_purchase
        if first is None or last is None:
            return []
        low = max(first, last) if progress is None else max(first, last, progress - self.horizon)
        return self.points(low, until)

    @staticmethod
    def snapshot(features: CustomerFeatures, at: float, cell_of: Callable[[float], int]
                 ) -> Snapshot:
        """The customer as of grid point ``at`` (the features hold no purchase after it).
        Spend to the cent: stores keep it so (and give back what they were given)."""
        return Snapshot(at, cell_of(at), features.orders, round(features.total_spend, 2))

    def mature(self, features: CustomerFeatures, pending: list[Snapshot],
               before: float) -> list[Label]:
        """Remove and label every pending snapshot whose horizon ends before ``before``.

        Call it before applying an event at ``before`` (event path) or with the clock
        (timer): the features then hold no event after any maturing horizon.
        """
        labels: list[Label] = []
        while pending and pending[0].at + self.horizon < before:
            snapshot = pending.pop(0)
            last = features.last_purchase
            labels.append(Label(snapshot, last is not None and last > snapshot.at,
                                round(max(0.0, features.total_spend - snapshot.spend), 2)))
        return labels

    @staticmethod
    def backdate(pending: list[Snapshot], time: float, amount: float, kind: str) -> None:
        """An event at ``time`` arrives late: it belongs to the past of every pending
        snapshot at or after ``time``, whose baseline it moves."""
        if kind != "purchase":
            return
        for snapshot in pending:
            if snapshot.at >= time:
                snapshot.orders += 1
                snapshot.spend = round(snapshot.spend + amount, 2)
