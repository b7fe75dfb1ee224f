"""Predictive traits of every customer, learned online from delayed labels.

:class:`TraitLearner` is what the engine holds: for every partition it owns, the sums of
the trait model over that partition's labelled snapshots (:class:`~.cells.CellStats`) and
its progressive validation figures (:class:`~.quality.Quality`); the other partitions'
as last read from the store. The model every worker predicts with is the sum over all
partitions, so several workers predict with one model, and each label is learned once:
by the owner of its customer's partition, in the same fenced write that removes the
snapshot from the customer's state (the partition's share, :meth:`share_json`).

Per customer (:meth:`on_event`, :meth:`at_clock`): snapshots on the customer's grid and
their labels as in :mod:`.schedule`; each label is predicted first (progressive
validation), then learned.

>>> from streamseg.core.features import CustomerFeatures
>>> from streamseg.core.state import CustomerState
>>> day = 86_400.0
>>> learner = TraitLearner(horizon_days=90, every_days=30)
>>> learner.own("local", None)
>>> state = CustomerState("c1", CustomerFeatures.empty(), partition="local")
>>> state.features.apply(0.0, 20.0, "purchase", half_life_days=90)
>>> phase_of("c1", 30 * day) / day  # the customer's grid: days 17, 47, 77, ...
17.0
>>> learner.at_clock(state, 100 * day)       # three grid points wait, none stored
>>> learner.examples(), state.snapshots
(0, [])
>>> learner.on_event(state, 130 * day, 30.0, "purchase")  # before the event is applied
>>> state.features.apply(130 * day, 30.0, "purchase", half_life_days=90)
>>> learner.examples(), [s.at / day for s in state.snapshots]  # day 17 learned
(1, [47.0, 77.0, 107.0])
>>> learner.refresh()
>>> traits = learner.predict(state.features, 130 * day)
>>> 0 < traits.purchase_probability < 1, traits.horizon_days
(True, 90)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streamseg.core.features import SECONDS_PER_DAY, CustomerFeatures
from streamseg.core.state import CustomerState
from streamseg.store.base import Store
from streamseg.traits.cells import (
    CALIBRATION_MIN_EXAMPLES,
    CellStats,
    CellTable,
    cell_at,
    rate_of,
)
from streamseg.traits.quality import Quality
from streamseg.traits.schedule import Grid, Label, Snapshot, phase_of

__all__ = ["SHARE_FORMAT", "TraitLearner", "TraitShare", "Traits", "phase_of", "read_traits",
           "regroup_traits"]

SHARE_FORMAT = 1


@dataclass(slots=True, frozen=True)
class Traits:
    """A customer's predictive traits for the next ``horizon_days``."""

    purchase_probability: float
    expected_spend: float
    horizon_days: float

    def to_dict(self) -> dict[str, float]:
        """As ``streamseg export``, ``get`` and the API show them (these names)."""
        return {"purchase_probability": round(self.purchase_probability, 4),
                "expected_spend": round(self.expected_spend, 2),
                "horizon_days": self.horizon_days}


#: Units of the per-segment sums of traits (integers, so that adding and removing a
#: customer leaves them exact): probability in 1/1,000, spend in whole units (as the
#: customers' states keep them).
_P_UNIT, _SPEND_UNIT = 1000, 1


@dataclass(slots=True)
class TraitShare:
    """One partition's share: its model sums, its validation sums, and per segment the
    count and sums of its customers' traits (absolute values, as its sizes)."""

    stats: CellStats = field(default_factory=CellStats)
    quality: Quality = field(default_factory=Quality)
    segments: dict[int, list[int]] = field(default_factory=dict)

    def add(self, other: TraitShare) -> None:
        self.stats.add(other.stats)
        self.quality.add(other.quality)
        for segment, sums in other.segments.items():
            mine = self.segments.setdefault(segment, [0, 0, 0])
            for i, value in enumerate(sums):
                mine[i] += value

    def count(self, segment: int | None, traits: tuple[float, float] | None,
              sign: int) -> None:
        """Add (``sign`` 1) or remove (-1) a customer's traits in their segment."""
        if segment is None or traits is None:
            return
        sums = self.segments.setdefault(segment, [0, 0, 0])
        sums[0] += sign
        sums[1] += sign * round(traits[0] * _P_UNIT)
        sums[2] += sign * round(traits[1] * _SPEND_UNIT)
        if sums[0] <= 0:
            del self.segments[segment]

    def segment_means(self) -> dict[int, dict[str, float]]:
        """Per segment: the mean purchase probability and expected spend of its customers
        (as of their last scoring)."""
        return {segment: {"purchase_probability": round(p / n / _P_UNIT, 4),
                          "expected_spend": round(spend / n / _SPEND_UNIT, 2)}
                for segment, (n, p, spend) in sorted(self.segments.items()) if n > 0}

    def to_json(self, learned: tuple[dict[str, Any], dict[str, Any]] | None = None
                ) -> dict[str, Any]:
        """As stored; ``learned``: the model and quality parts, when already encoded."""
        stats, quality = learned or (self.stats.to_json(), self.quality.to_json())
        return {"format": SHARE_FORMAT, "stats": stats, "quality": quality,
                "segments": {str(k): v for k, v in sorted(self.segments.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TraitShare:
        if not data:
            return cls()
        if data.get("format") != SHARE_FORMAT:
            raise ValueError(f"unsupported trait share format {data.get('format')!r}")
        return cls(CellStats.from_json(data.get("stats")), Quality.from_json(data.get("quality")),
                   {int(k): [int(x) for x in v]
                    for k, v in (data.get("segments") or {}).items()})


def _at(snapshot: Snapshot) -> float:
    return snapshot.at


def regroup_traits(data: dict[str, Any], states: Iterable[CustomerState]) -> dict[str, Any]:
    """A partition's stored share with its per-segment sums recomputed from its
    customers ``states`` (after ``streamseg reseed`` moved them all)."""
    share = TraitShare.from_json(data)
    share.segments = {}
    for state in states:
        share.count(state.segment, state.traits, 1)
    return share.to_json()


def read_traits(store: Store, horizon_days: float, every_days: float) -> TraitLearner:
    """The trait model of a store, as the sum of every partition's share (for readers:
    ``streamseg get`` / ``export`` / ``segments``, the API)."""
    learner = TraitLearner(horizon_days, every_days)
    learner.set_others({name: (part.model or {}).get("traits")
                        for name, part in store.read_partitions().items()})
    return learner


class TraitLearner:
    """Snapshots, delayed labels and the trait model of every partition (see above)."""

    def __init__(self, horizon_days: float, every_days: float) -> None:
        self.horizon_days = horizon_days
        self.every_days = every_days
        self.own_shares: dict[str, TraitShare] = {}
        self.others = TraitShare()
        self._table: CellTable | None = None
        # Labels learned since the table was fitted: refitted at the next refresh(), not
        # at every label (a fit costs about a millisecond).
        self._dirty = False
        #: Per own partition, its model and quality parts as last encoded.
        self._encoded: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    # -- partitions -----------------------------------------------------------------
    def own(self, name: str, data: dict[str, Any] | None) -> None:
        """This worker owns ``name`` now, whose stored share is ``data``."""
        self.own_shares[name] = TraitShare.from_json(data)
        self._encoded.pop(name, None)
        self._table = None

    def release(self, name: str) -> None:
        """``name`` moved to another worker: its share counts among the others' (as last
        known here) until the next read of the store."""
        share = self.own_shares.pop(name, None)
        if share is not None:
            self.others.add(share)
        self._table = None

    def set_others(self, shares: dict[str, dict[str, Any] | None]) -> None:
        """The other partitions' shares, as just read from the store."""
        total = TraitShare()
        for data in shares.values():
            total.add(TraitShare.from_json(data))
        self.others = total
        self._table = None

    def count(self, state: CustomerState, before: tuple[int | None, tuple[float, float] | None]
              ) -> None:
        """A written customer's traits move from what they were (segment, traits) when
        the batch loaded them to what they are now, in their partition's sums."""
        share = self.own_shares.get(state.partition or "")
        if share is None or before == (state.segment, state.traits):
            return
        share.count(before[0], before[1], -1)
        share.count(state.segment, state.traits, 1)

    def share_json(self, name: str) -> dict[str, Any] | None:
        """The partition's share as stored (its model and quality parts are encoded
        again only after it learned)."""
        share = self.own_shares.get(name)
        if share is None:
            return None
        learned = self._encoded.get(name)
        if learned is None:
            learned = self._encoded[name] = (share.stats.to_json(), share.quality.to_json())
        return share.to_json(learned)

    def total(self) -> TraitShare:
        """The sum over every partition (this worker's view)."""
        total = TraitShare()
        total.add(self.others)
        for share in self.own_shares.values():
            total.add(share)
        return total

    def table(self) -> CellTable:
        if self._table is None:
            self._table = self.total().stats.table(self.horizon_days)
        return self._table

    def examples(self) -> int:
        return self.total().quality.examples

    # -- per customer ---------------------------------------------------------------
    def _grid(self, customer_id: str) -> Grid:
        return Grid.of(customer_id, self.every_days, self.horizon_days)

    def on_event(self, state: CustomerState, time: float, amount: float, kind: str) -> None:
        """Before an event at ``time`` is applied: the waiting grid points before it are
        materialised (a purchase follows them), what ended before it matures, and the
        baseline of snapshots it is late for moves (:mod:`.schedule`)."""
        features = state.features
        if not features.has_purchases:
            return
        grid = self._grid(state.customer_id)
        since = self._progress(state)
        # A purchase follows the waiting grid points before it: they must be stored now,
        # while the features are still those of their time (a refund changes neither
        # the recency, the orders nor the spend they need).
        due = ([t for t in grid.implicit(features, since, time) if t < time]
               if kind == "purchase" else [])
        if due:
            state.snapshots += [grid.snapshot(features, t, partial(cell_at, features))
                                for t in due]
            state.snapshots.sort(key=_at)
        self._learn(state, grid.mature(features, state.snapshots, time))
        grid.backdate(state.snapshots, time, amount, kind)
        state.traits_since = time if since is None else max(since, time)

    def at_clock(self, state: CustomerState, until: float) -> None:
        """The customer is scored with their partition's clock at ``until``: what ended
        before it matures, the stored snapshots and the implicit grid points (those
        after the last purchase: labelled "did not buy")."""
        features = state.features
        if not features.has_purchases:
            return
        grid = self._grid(state.customer_id)
        since = self._progress(state)
        self._learn(state, grid.mature(features, state.snapshots, until))
        matured = [t for t in grid.implicit(features, since, until) if t + grid.horizon < until]
        if matured:
            self._learn(state, [Label(grid.snapshot(features, t, partial(cell_at, features)),
                                      False, 0.0) for t in matured])
        state.traits_since = until if since is None else max(since, until)

    @staticmethod
    def _progress(state: CustomerState) -> float | None:
        """The time up to which the customer's grid was processed."""
        return state.traits_since if state.traits_since is not None else state.updated_at

    def _learn(self, state: CustomerState, labels: list[Label]) -> None:
        if not labels:
            return
        share = self.own_shares.get(state.partition or "")
        if share is None:  # not this worker's partition: its owner learns it
            return
        table = self.table()
        first = state.features.first_purchase
        assert first is not None  # snapshots are of customers with purchases
        for label in labels:
            snapshot = label.snapshot
            # The snapshot's purchase rate: its orders over its tenure then (the first
            # purchase is the customer's, and a late one moved the orders it keeps).
            tenure = max(0.0, snapshot.at - first) / SECONDS_PER_DAY
            rate = rate_of(snapshot.orders, tenure)
            p = table.probability_of_cell(snapshot.cell)
            spend = table.spend_of_cell(snapshot.cell, p, snapshot.orders, snapshot.avg_order,
                                        rate, tenure)
            share.quality.update(table.calibrated(p), label.bought,
                                 table.calibrated_spend(spend), label.spend)
            # The calibration compares the model's own predictions with the outcomes; not
            # those of a model that has hardly learned (in a replay, the first batch's
            # labels all meet the empty model, whose guesses would weigh for months).
            if table.examples >= CALIBRATION_MIN_EXAMPLES:
                share.stats.calibration.learn(snapshot.at, p, label.bought, spend, label.spend)
            share.stats.learn(snapshot.cell, snapshot.avg_order, label.bought, label.spend,
                              rate, table.value(snapshot.orders, snapshot.avg_order),
                              self._history(state, snapshot))
        self._dirty = True
        self._encoded.pop(state.partition or "", None)

    def _history(self, state: CustomerState, snapshot: Snapshot) -> tuple[int, float, float]:
        """The customer's purchase history as of the end of the snapshot's horizon: their
        repeat purchases, and days from the first purchase to the last and to the
        horizon's end. A snapshot matures before any event after its horizon is applied
        (:mod:`.schedule`), so the features are those of then."""
        features = state.features
        assert features.first_purchase is not None and features.last_purchase is not None
        end = snapshot.at + self.horizon_days * SECONDS_PER_DAY
        first = features.first_purchase
        last = min(features.last_purchase, end)
        return (max(0, features.orders - 1), max(0.0, last - first) / SECONDS_PER_DAY,
                max(0.0, end - first) / SECONDS_PER_DAY)

    def refresh(self) -> None:
        """Predict with what was learned so far (the engine calls it before scoring)."""
        if self._dirty:
            self._table, self._dirty = None, False

    def predict(self, features: CustomerFeatures, now: float) -> Traits:
        """The traits of a customer (with purchases) as of ``now``."""
        assert features.last_purchase is not None and features.first_purchase is not None
        recency = max(0.0, now - features.last_purchase) / SECONDS_PER_DAY
        tenure = max(0.0, now - features.first_purchase) / SECONDS_PER_DAY
        table = self.table()
        p = table.probability(recency, features.orders, tenure)
        spend = table.spend(p, recency, features.orders,
                            features.total_spend / features.orders, tenure)
        return Traits(table.calibrated(p), table.calibrated_spend(spend), self.horizon_days)
