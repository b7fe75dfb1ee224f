"""Segment names from rules: unique, sticky, bounded by absolute conditions."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.core.naming import DEFAULT_RULES, NameRule, SegmentNamer, centroid_units
from streamseg.core.scaling import OnlineStandardizer

VIP_LIKE = [-1.0, 2.0, 2.0, 1.0, 1.0, 0.0]
LAPSED_LIKE = [2.0, -1.0, -1.0, 0.0, 0.5, 0.0]


def test_names_are_unique_even_when_two_segments_fit_the_same_rule() -> None:
    z = np.array([VIP_LIKE, VIP_LIKE, LAPSED_LIKE])
    units = [{"overdue_days": 0, "tenure_days": 400}] * 2 + [{"overdue_days": 300}]
    names = SegmentNamer().name(z, units)
    assert len(set(names.values())) == 3 and names[2] in {"Lapsed", "Lapsed big spenders",
                                                          "Lapsed one-timers", "At risk"}


def test_a_segment_no_rule_fits_is_called_by_its_number() -> None:
    only_vip = SegmentNamer([DEFAULT_RULES[0]])
    names = only_vip.name(np.array([LAPSED_LIKE]), [{"overdue_days": 300}])
    assert names == {0: "Segment 0"}


def test_stickiness_keeps_a_name_when_two_rules_score_alike() -> None:
    rules = [NameRule(name="A", weights={"orders_90d": 1.0}),
             NameRule(name="B", weights={"orders_90d": 1.01})]
    z = np.array([[0, 1.0, 0, 0, 0, 0]])
    assert SegmentNamer(rules, stickiness=0.0).name(z, [{}]) == {0: "B"}
    assert SegmentNamer(rules, stickiness=0.5).name(z, [{}], current={0: "A"}) == {0: "A"}


def test_a_rule_on_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        SegmentNamer([NameRule(name="X", weights={"colour": 1.0})])


def test_centroid_units_invert_standardisation_and_log1p() -> None:
    scaler = OnlineStandardizer(6)
    raw = np.log1p(np.array([[10.0, 1.0, 50.0, 20.0, 300.0, 0.0],
                             [30.0, 3.0, 150.0, 40.0, 500.0, 0.0]]))
    raw[:, 5] = [0.0, 0.2]
    scaler.learn_many(raw)
    units = centroid_units(scaler.transform_many(raw), scaler)
    assert units[1]["overdue_days"] == pytest.approx(30.0, rel=1e-6)
    assert units[1]["refund_share"] == pytest.approx(0.2, rel=1e-6)
