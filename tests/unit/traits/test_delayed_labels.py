"""Delayed labels on a hand-made stream (issue #13)."""

from __future__ import annotations

from streamseg.core.features import CustomerFeatures
from streamseg.core.state import CustomerState
from streamseg.traits.learner import TraitLearner
from streamseg.traits.schedule import Grid, phase_of

DAY = 86_400.0
H = 90.0


def _customer(cid: str) -> tuple[CustomerState, float]:
    """A customer whose grid (every 90 days) has a point right after their first purchase."""
    phase = phase_of(cid, H * DAY)
    state = CustomerState(cid, CustomerFeatures.empty(), partition="local")
    first = phase - DAY  # the first grid point is one day after the first purchase
    state.features.apply(first, 10.0, "purchase", half_life_days=90)
    return state, phase


def _buy(learner: TraitLearner, state: CustomerState, at: float, amount: float) -> None:
    learner.on_event(state, at, amount, "purchase")
    state.features.apply(at, amount, "purchase", half_life_days=90)


def _labels(learner: TraitLearner) -> tuple[int, int, float]:
    """(examples, positives, spend learned relative to the average order) over every
    partition (the first order of these customers is 10)."""
    stats = learner.total().stats
    return stats.examples, int(stats.sums[:, 1].sum()), round(float(stats.sums[:, 2].sum()), 6)


def test_buys_again_within_horizon_is_positive_once() -> None:
    learner = TraitLearner(horizon_days=H, every_days=H)
    learner.own("local", None)
    state, snap = _customer("a")
    learner.at_clock(state, snap + DAY)               # the grid point waits, unstored
    assert state.snapshots == []
    _buy(learner, state, snap + 30 * DAY, 25.0)       # within the horizon: now stored
    assert [s.at for s in state.snapshots] == [snap]
    assert _labels(learner) == (0, 0, 0.0)            # not learned before H has passed
    learner.at_clock(state, snap + H * DAY)           # exactly H: not yet past it
    assert _labels(learner) == (0, 0, 0.0)
    learner.at_clock(state, snap + (H + 1) * DAY)
    assert _labels(learner) == (1, 1, 2.5)  # 25 spent; average order 10
    learner.at_clock(state, snap + (H + 30) * DAY)    # later visits learn nothing again
    assert _labels(learner)[0] == 1
    assert learner.total().quality.examples == 1      # predicted before it was learned


def test_no_purchase_is_negative() -> None:
    learner = TraitLearner(horizon_days=H, every_days=H)
    learner.own("local", None)
    state, snap = _customer("b")
    learner.at_clock(state, snap + DAY)
    learner.at_clock(state, snap + (H + 1) * DAY)
    assert _labels(learner) == (1, 0, 0.0)


def test_purchase_after_the_horizon_does_not_count_however_late_the_timer() -> None:
    learner = TraitLearner(horizon_days=H, every_days=H)
    learner.own("local", None)
    state, snap = _customer("c")
    learner.at_clock(state, snap + DAY)
    # The timer never came between the horizon's end and this purchase: the event path
    # matures the snapshot before the purchase is applied.
    _buy(learner, state, snap + (H + 5) * DAY, 99.0)
    assert _labels(learner) == (1, 0, 0.0)
    assert [s.at for s in state.snapshots] == [snap + H * DAY]  # the next one, pending
    grid = Grid.of("c", H, H)
    assert grid.point(grid.first_at_or_after(state.features.first_purchase or 0)) == snap


def test_late_event_before_the_snapshot_is_not_future_spend() -> None:
    learner = TraitLearner(horizon_days=H, every_days=H)
    learner.own("local", None)
    state, snap = _customer("d")
    learner.at_clock(state, snap + 10 * DAY)
    _buy(learner, state, snap - 2 * DAY, 40.0)        # arrives late, happened before
    learner.at_clock(state, snap + (H + 1) * DAY)
    assert _labels(learner) == (1, 0, 0.0)


def test_labels_of_a_partition_not_owned_are_left_to_its_owner() -> None:
    learner = TraitLearner(horizon_days=H, every_days=H)
    learner.own("kafka:t:0", None)
    state, snap = _customer("e")
    state.partition = "kafka:t:1"
    learner.at_clock(state, snap + DAY)
    learner.at_clock(state, snap + (H + 1) * DAY)
    assert _labels(learner)[0] == 0


def test_shares_add_up_over_partitions() -> None:
    one = TraitLearner(horizon_days=H, every_days=H)
    one.own("p0", None)
    one.own("p1", None)
    for i, name in enumerate(["p0", "p1", "p0"]):
        state, snap = _customer(f"x{i}")
        state.partition = name
        one.at_clock(state, snap + DAY)
        one.at_clock(state, snap + (H + 1) * DAY)
    other = TraitLearner(horizon_days=H, every_days=H)
    other.own("p1", one.share_json("p1"))
    other.set_others({"p0": one.share_json("p0")})
    assert _labels(other) == _labels(one) == (3, 0, 0.0)
