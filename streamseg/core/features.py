"""Per-customer incremental features, O(1) per event.

Time is event time, in seconds since the epoch. For each customer we keep a handful of
running sums (:class:`CustomerFeatures`); at any instant ``now`` they give a
:class:`FeatureSnapshot` in original units, and from it the model-space vector.

Decay
    Orders and spend are exponentially time-decayed sums with a half-life (default 90
    days): an order ``t`` days old weighs ``0.5 ** (t / half_life)``. The sums are kept
    as of ``reference_time`` (the customer's latest event time) and decayed on read, so
    an update costs one multiplication.

Out-of-order events
    An event older than the customer's latest one is added with the weight it has at
    ``reference_time`` (``0.5 ** (age / half_life)``); the sums are *not* decayed again
    and ``reference_time`` does not move back. The decayed sum of a set of events is the
    same whatever order they arrive in. ``last_purchase`` only moves forward and
    ``first_purchase`` only backward, so recency is never negative and tenure never
    shrinks. A snapshot is never taken before ``reference_time``.

Rates per 90 days
    A decayed count divided by its effective window estimates a rate. For a customer
    known for ``tenure`` days the window is ``(1 - exp(-lam * tenure)) / lam`` days
    (``lam = ln 2 / half_life``), but at least 90 days, so that a first-time buyer counts
    as one order per 90 days rather than an infinite rate.

Days overdue
    Raw recency is a saw-tooth: a customer who buys every 45 days swings from 0 to 45
    days and back forever, and would cross a segment border twice per cycle. The model
    therefore sees *days overdue*: recency beyond ``grace_gaps`` (default 4) times the
    customer's own typical gap between orders (``(last - first) / (orders - 1)``), or
    beyond ``first_gap_days`` (default 60) for a one-order customer. Purchase gaps are
    roughly exponential, so a customer who keeps their rhythm exceeds 4 typical gaps
    about 2% of the time (1 in 7 for 2 gaps); overdue stays 0 while a customer keeps
    their rhythm and grows only when they are really late -- which is what "at risk"
    and "lapsed" mean. ``streamseg bench flapping`` measured the choice. Profiles still
    report plain recency.

The model-space vector (before online standardisation), see :data:`VECTOR_FIELDS`::

    [log1p(overdue_days), log1p(orders_90d), log1p(spend_90d),
     log1p(avg_order_value), log1p(tenure_days), refund_share]

``log1p`` tames the long right tails of money and counts so that one big spender does
not own a cluster; the refund share is already in [0, 1].

>>> day = 86_400.0
>>> f = CustomerFeatures.empty()
>>> f.apply(0.0, 100.0, "purchase", half_life_days=90)
>>> f.apply(90 * day, 50.0, "purchase", half_life_days=90)
>>> s = f.snapshot(90 * day, half_life_days=90)
>>> round(s.recency_days, 1), s.orders, round(s.decayed_orders, 3), round(s.avg_order_value, 2)
(0.0, 2, 1.5, 75.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SECONDS_PER_DAY = 86_400.0
#: Typical gap between orders assumed for a customer with a single order.
FIRST_GAP_DAYS = 60.0
#: A customer is overdue once recency exceeds this many of their typical gaps.
GRACE_GAPS = 4.0
RATE_WINDOW_DAYS = 90.0

#: Floor on the scale of each model-space coordinate (see streamseg.core.scaling): 0.25 on
#: the log1p coordinates (about a 28% difference), 0.05 on the refund share.
SCALE_FLOOR = np.array([0.25, 0.25, 0.25, 0.25, 0.25, 0.05])

#: Names of the model-space vector's coordinates, in order.
VECTOR_FIELDS: tuple[str, ...] = (
    "log_overdue_days",
    "log_orders_90d",
    "log_spend_90d",
    "log_avg_order_value",
    "log_tenure_days",
    "refund_share",
)


@dataclass(slots=True)
class FeatureSnapshot:
    """A customer's features at one instant, in original units."""

    recency_days: float
    overdue_days: float
    tenure_days: float
    orders: int
    decayed_orders: float
    orders_90d: float
    spend_90d: float
    avg_order_value: float
    total_spend: float
    refund_share: float

    def raw_vector(self) -> np.ndarray:
        """The model-space vector before standardisation (see module docstring)."""
        return np.array(
            [
                math.log1p(self.overdue_days),
                math.log1p(self.orders_90d),
                math.log1p(self.spend_90d),
                math.log1p(self.avg_order_value),
                math.log1p(self.tenure_days),
                self.refund_share,
            ]
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(slots=True)
class CustomerFeatures:
    """Running sums for one customer; :meth:`apply` is O(1)."""

    first_purchase: float | None
    last_purchase: float | None
    reference_time: float | None
    decayed_orders: float
    decayed_spend: float
    orders: int
    total_spend: float
    refunded: float
    refunds: int

    @classmethod
    def empty(cls) -> CustomerFeatures:
        return cls(None, None, None, 0.0, 0.0, 0, 0.0, 0.0, 0)

    @property
    def has_purchases(self) -> bool:
        return self.orders > 0

    def apply(self, time: float, amount: float, kind: str, *, half_life_days: float) -> None:
        """Add one purchase or refund that happened at ``time`` (epoch seconds)."""
        lam = math.log(2.0) / (half_life_days * SECONDS_PER_DAY)
        if self.reference_time is None or time >= self.reference_time:
            if self.reference_time is not None:
                decay = math.exp(-lam * (time - self.reference_time))
                self.decayed_orders *= decay
                self.decayed_spend *= decay
            self.reference_time = time
            weight = 1.0
        else:
            # Out of order: weigh the event as it stands at reference_time, no re-decay.
            weight = math.exp(-lam * (self.reference_time - time))

        if kind == "refund":
            self.refunded += amount
            self.refunds += 1
            self.decayed_spend = max(0.0, self.decayed_spend - amount * weight)
            return
        self.orders += 1
        self.total_spend += amount
        self.decayed_orders += weight
        self.decayed_spend += amount * weight
        if self.first_purchase is None or time < self.first_purchase:
            self.first_purchase = time
        if self.last_purchase is None or time > self.last_purchase:
            self.last_purchase = time

    def snapshot(
        self,
        now: float,
        *,
        half_life_days: float,
        first_gap_days: float = FIRST_GAP_DAYS,
        grace_gaps: float = GRACE_GAPS,
    ) -> FeatureSnapshot:
        """Features as of ``now``; requires at least one purchase."""
        if self.last_purchase is None or self.first_purchase is None:
            raise ValueError("a customer without purchases has no features yet")
        assert self.reference_time is not None
        now = max(now, self.reference_time)
        lam_day = math.log(2.0) / half_life_days
        decay = math.exp(-lam_day * (now - self.reference_time) / SECONDS_PER_DAY)
        tenure = (now - self.first_purchase) / SECONDS_PER_DAY
        window = max(RATE_WINDOW_DAYS, (1.0 - math.exp(-lam_day * tenure)) / lam_day)
        decayed_orders = self.decayed_orders * decay
        recency = (now - self.last_purchase) / SECONDS_PER_DAY
        if self.orders >= 2:
            typical_gap = (self.last_purchase - self.first_purchase) / SECONDS_PER_DAY / (
                self.orders - 1
            )
            allowed = grace_gaps * typical_gap
        else:
            allowed = first_gap_days
        return FeatureSnapshot(
            recency_days=recency,
            overdue_days=max(0.0, recency - allowed),
            tenure_days=tenure,
            orders=self.orders,
            decayed_orders=decayed_orders,
            orders_90d=decayed_orders * RATE_WINDOW_DAYS / window,
            spend_90d=self.decayed_spend * decay * RATE_WINDOW_DAYS / window,
            avg_order_value=self.total_spend / self.orders,
            total_spend=self.total_spend,
            refund_share=min(1.0, self.refunded / self.total_spend) if self.total_spend else 0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict: this runs for every stored state.
        return {
            "first_purchase": self.first_purchase,
            "last_purchase": self.last_purchase,
            "reference_time": self.reference_time,
            "decayed_orders": self.decayed_orders,
            "decayed_spend": self.decayed_spend,
            "orders": self.orders,
            "total_spend": self.total_spend,
            "refunded": self.refunded,
            "refunds": self.refunds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerFeatures:
        return cls(**data)
