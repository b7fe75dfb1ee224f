"""Segment profiles: the median customer of each segment, and the table."""

from __future__ import annotations

import numpy as np

from streamseg.core.features import SECONDS_PER_DAY, CustomerFeatures
from streamseg.core.profiles import format_table, profile_segments
from streamseg.core.state import CustomerState


def _customer(cid: str, segment: int | None, amounts: list[float]) -> CustomerState:
    features = CustomerFeatures.empty()
    for day, amount in enumerate(amounts):
        features.apply(day * SECONDS_PER_DAY, amount, "purchase", half_life_days=90)
    return CustomerState(cid, features, segment=segment)


def test_profiles_are_medians_and_shares_of_scored_customers() -> None:
    states = [_customer("a", 0, [10.0]), _customer("b", 0, [30.0]), _customer("c", 0, [20.0]),
              _customer("d", 1, [100.0, 100.0]), _customer("e", None, [5.0])]
    profiles = profile_segments(states, 10 * SECONDS_PER_DAY, 90.0,
                                centroids=np.zeros((2, 6)), names={0: "Small", 1: "Big"})
    assert [(p.segment, p.size, p.share, p.name) for p in profiles] == [
        (0, 3, 0.75, "Small"), (1, 1, 0.25, "Big")]
    assert profiles[0].avg_order_value == 20.0
    assert profiles[1].to_dict(with_centroid=True)["centroid_vector"] == [0.0] * 6
    assert "centroid_vector" not in profiles[1].to_dict()


def test_the_table_has_a_row_per_segment() -> None:
    profiles = profile_segments([_customer("a", 3, [10.0])], SECONDS_PER_DAY, 90.0)
    lines = format_table(profiles).splitlines()
    assert len(lines) == 3 and lines[2].split()[:2] == ["3", "-"]
