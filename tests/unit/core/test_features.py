"""Features against values computed by hand."""

from __future__ import annotations

import math

import pytest

from streamseg.core.features import SECONDS_PER_DAY, CustomerFeatures

DAY = SECONDS_PER_DAY


def test_decayed_sums_match_hand_computation() -> None:
    f = CustomerFeatures.empty()
    f.apply(0 * DAY, 100.0, "purchase", half_life_days=90)
    f.apply(90 * DAY, 50.0, "purchase", half_life_days=90)
    f.apply(180 * DAY, 10.0, "purchase", half_life_days=90)
    s = f.snapshot(270 * DAY, half_life_days=90)
    # weights at day 270: 0.125, 0.25, 0.5
    assert s.decayed_orders == pytest.approx(0.875)
    assert s.recency_days == pytest.approx(90.0)
    assert s.tenure_days == pytest.approx(270.0)
    assert s.avg_order_value == pytest.approx(160.0 / 3)
    assert s.total_spend == pytest.approx(160.0)
    lam = math.log(2) / 90
    window = (1 - math.exp(-lam * 270)) / lam
    assert s.orders_90d == pytest.approx(0.875 * 90 / window)
    assert s.spend_90d == pytest.approx((100 * 0.125 + 50 * 0.25 + 10 * 0.5) * 90 / window)


def test_first_time_buyer_counts_one_order_per_90_days() -> None:
    f = CustomerFeatures.empty()
    f.apply(10 * DAY, 30.0, "purchase", half_life_days=90)
    s = f.snapshot(10 * DAY, half_life_days=90)
    assert (s.orders_90d, s.spend_90d, s.recency_days, s.tenure_days) == (1.0, 30.0, 0.0, 0.0)


def test_out_of_order_event_gives_same_sums_as_in_order() -> None:
    in_order, shuffled = CustomerFeatures.empty(), CustomerFeatures.empty()
    times = [0.0, 10.0, 25.0, 40.0]
    for t in times:
        in_order.apply(t * DAY, t + 1, "purchase", half_life_days=30)
    for t in [0.0, 40.0, 10.0, 25.0]:
        shuffled.apply(t * DAY, t + 1, "purchase", half_life_days=30)
    a = in_order.snapshot(50 * DAY, half_life_days=30)
    b = shuffled.snapshot(50 * DAY, half_life_days=30)
    assert a.decayed_orders == pytest.approx(b.decayed_orders)
    assert a.spend_90d == pytest.approx(b.spend_90d)
    assert (a.recency_days, a.tenure_days) == (b.recency_days, b.tenure_days)
    assert shuffled.reference_time == 40 * DAY  # never moved back


def test_recency_never_negative_even_when_snapshot_is_earlier() -> None:
    f = CustomerFeatures.empty()
    f.apply(100 * DAY, 5.0, "purchase", half_life_days=90)
    assert f.snapshot(50 * DAY, half_life_days=90).recency_days == 0.0


def test_refunds_reduce_spend_and_set_refund_share() -> None:
    f = CustomerFeatures.empty()
    f.apply(0.0, 100.0, "purchase", half_life_days=90)
    f.apply(0.0, 25.0, "refund", half_life_days=90)
    s = f.snapshot(0.0, half_life_days=90)
    assert s.refund_share == pytest.approx(0.25)
    assert s.spend_90d == pytest.approx(75.0)
    assert s.orders == 1


def test_refund_only_customer_has_no_snapshot() -> None:
    f = CustomerFeatures.empty()
    f.apply(0.0, 10.0, "refund", half_life_days=90)
    assert not f.has_purchases
    with pytest.raises(ValueError):
        f.snapshot(0.0, half_life_days=90)


def test_raw_vector_is_log1p_of_features() -> None:
    f = CustomerFeatures.empty()
    f.apply(0.0, 99.0, "purchase", half_life_days=90)
    v = f.snapshot(40 * DAY, half_life_days=90, first_gap_days=30).raw_vector()
    assert v[0] == pytest.approx(math.log1p(10))  # 40 days since the only order, 30 allowed
    assert v[3] == pytest.approx(math.log(100))
    assert v[5] == 0.0


def test_overdue_days_measure_lateness_against_own_rhythm() -> None:
    f = CustomerFeatures.empty()
    for day in (0, 20, 40, 60):  # a 20-day rhythm
        f.apply(day * DAY, 10.0, "purchase", half_life_days=90)
    assert f.snapshot(75 * DAY, half_life_days=90, grace_gaps=1).overdue_days == 0.0
    late = f.snapshot(100 * DAY, half_life_days=90, grace_gaps=1)
    assert late.recency_days == pytest.approx(40.0)
    assert late.overdue_days == pytest.approx(20.0)
    assert f.snapshot(100 * DAY, half_life_days=90, grace_gaps=4).overdue_days == 0.0
    assert f.snapshot(150 * DAY, half_life_days=90, grace_gaps=4).overdue_days == pytest.approx(
        10.0
    )
