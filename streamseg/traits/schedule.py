"""When a customer is photographed, and when the photograph gets its label.

Snapshots are taken on a grid in event time, one every ``every`` seconds, whether or
not the customer buys: a snapshot at each purchase would only teach the model about
customers who just bought. The grid is shifted per customer by a phase derived from
the customer id (``crc32(id) % every``), so that snapshots fall at every age of a
customer's life alike and not all on the same day; grid point ``k`` is at
``phase + k * every`` (seconds since the epoch). A snapshot at ``t`` sees every event
at or before ``t``.

A snapshot's label is what the customer did in ``(t, t + horizon]``: whether they
bought (their last purchase is then after ``t``) and how much they spent (their total
spend then, less the total at ``t``). It *matures* once time has passed ``t + horizon``:

* in the event path, before an event at ``e`` is applied, every snapshot with
  ``t + horizon < e`` matures first, so a purchase after a snapshot's horizon is never
  counted in its label, however late the timer comes;
* on the inactivity timer (the customer is idle), once the clock is past
  ``t + horizon``: no event after the horizon was applied (it would have matured the
  snapshot first), so the totals are those at ``t + horizon``.

An event that arrives late, at or before ``t`` of a pending snapshot, moves that
snapshot's baseline (it belongs to the past the snapshot saw, not to its future).

Pending snapshots are consecutive grid points, at most ``ceil(horizon / every)`` of them
(:func:`max_pending`): a snapshot matures before the grid has gone ``horizon`` further.

>>> day = 86_400.0
>>> from streamseg.core.features import CustomerFeatures
>>> f = CustomerFeatures.empty()
>>> f.apply(0.0, 10.0, "purchase", half_life_days=90)
>>> grid = Grid(every=30 * day, horizon=90 * day, phase=0.0)
>>> pending: list[Snapshot] = []
>>> taken = grid.take(f, pending, since=None, until=65 * day, cell_of=lambda s: 0)
>>> [s.at / day for s in pending]   # grid points 0, 30 and 60 days
[0.0, 30.0, 60.0]
>>> grid.mature(f, pending, 91 * day)  # the snapshot at day 0: nothing bought since
[Label(snapshot=Snapshot(at=0.0, cell=0, orders=1, spend=10.0), bought=False, spend=0.0)]
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
    """The customer's shift of the grid: whole seconds in ``[0, every)``."""
    return float(zlib.crc32(customer_id.encode()) % max(1, int(every)))


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
        # Whole seconds: snapshot times are stored as integers.
        every = float(max(1, round(every_days * SECONDS_PER_DAY)))
        return cls(every, horizon_days * SECONDS_PER_DAY, phase_of(customer_id, every))

    def point(self, k: int) -> float:
        return self.phase + k * self.every

    def first_at_or_after(self, time: float) -> int:
        """The index of the first grid point at or after ``time``."""
        return math.ceil((time - self.phase) / self.every)

    def take(self, features: CustomerFeatures, pending: list[Snapshot], since: float | None,
             until: float, cell_of: Callable[[float], int]) -> int:
        """Append a snapshot for every grid point in ``[since, until)`` (``since`` None:
        from the customer's first purchase); return how many.

        ``since`` is where the last call stopped (a point at ``since`` is not taken yet:
        an event at that very time may still come). ``cell_of(t)`` gives the cell of the
        customer's features as of ``t``; the features must not hold events after ``t``
        (true in both paths: the event path takes points before the event's time).
        """
        if features.first_purchase is None:
            return 0
        start = features.first_purchase if since is None else max(since, features.first_purchase)
        k = self.first_at_or_after(start)
        taken = 0
        while (at := self.point(k)) < until:
            # Spend to the cent: stores keep it so (and give back what they were given).
            pending.append(Snapshot(at, cell_of(at), features.orders,
                                    round(features.total_spend, 2)))
            taken += 1
            k += 1
        return taken

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
