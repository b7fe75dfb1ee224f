"""Segment profiles in original units, for people and for marketing systems.

A profile describes the typical (median) customer of a segment as of the service clock:
how many days since their last purchase, how many orders and how much spend per 90
days, their average order value and tenure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streamseg.store import CustomerState

PROFILE_FIELDS = ("recency_days", "orders_90d", "spend_90d", "avg_order_value", "tenure_days",
                  "refund_share")


@dataclass(slots=True)
class SegmentProfile:
    """The median customer of one segment, in original units."""

    segment: int
    size: int
    share: float
    recency_days: float
    orders_90d: float
    spend_90d: float
    avg_order_value: float
    tenure_days: float
    refund_share: float
    name: str | None = None
    centroid_vector: list[float] | None = field(default=None)
    #: The mean predictive traits of its customers (see streamseg.traits), when known:
    #: ``{"purchase_probability", "expected_spend", "horizon_days"}``.
    traits: dict[str, float] | None = None

    def to_dict(self, with_centroid: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_centroid:
            data.pop("centroid_vector")
        return data


def profile_segments(
    states: Iterable[CustomerState],
    now: float,
    half_life_days: float,
    centroids: np.ndarray | None = None,
    names: dict[int, str] | None = None,
) -> list[SegmentProfile]:
    """Profiles of every segment from the customers' features at ``now``.

    >>> from streamseg.core.features import CustomerFeatures
    >>> f = CustomerFeatures.empty(); f.apply(0.0, 20.0, "purchase", half_life_days=90)
    >>> [p.size for p in profile_segments([CustomerState("a", f, segment=0)], 86400.0, 90)]
    [1]
    """
    columns: dict[int, list[list[float]]] = {}
    total = 0
    medians: dict[str, Any]
    for state in states:
        if state.segment is None or not state.features.has_purchases:
            continue
        snap = state.features.snapshot(now, half_life_days=half_life_days)
        columns.setdefault(state.segment, []).append(
            [getattr(snap, name) for name in PROFILE_FIELDS]
        )
        total += 1
    profiles = []
    for segment in sorted(columns):
        values = np.median(np.asarray(columns[segment]), axis=0)
        medians = {name: round(float(v), 2) for name, v in zip(PROFILE_FIELDS, values, strict=True)}
        profiles.append(
            SegmentProfile(
                segment=segment,
                size=len(columns[segment]),
                share=round(len(columns[segment]) / total, 4),
                name=(names or {}).get(segment),
                centroid_vector=(
                    centroids[segment].tolist()
                    if centroids is not None and segment < len(centroids) else None
                ),
                **medians,
            )
        )
    return profiles


def add_traits(profiles: list[SegmentProfile], means: dict[int, dict[str, float]],
               horizon_days: float) -> None:
    """Give each profile its segment's mean traits (``TraitShare.segment_means``)."""
    for profile in profiles:
        if profile.segment in means:
            profile.traits = {**means[profile.segment], "horizon_days": horizon_days}


def traits_sentence(profile: SegmentProfile) -> str | None:
    """The segment's mean traits in words.

    >>> p = SegmentProfile(4, 10, 0.1, 20, 1.5, 60, 32, 400, 0.0, name="VIP", traits={
    ...     "purchase_probability": 0.8123, "expected_spend": 54.2, "horizon_days": 90})
    >>> traits_sentence(p)
    'VIP: 81% likely to buy in 90 days, $54 expected'
    """
    if profile.traits is None:
        return None
    t = profile.traits
    return (f"{profile.name or f'segment {profile.segment}'}: "
            f"{t['purchase_probability']:.0%} likely to buy in {t['horizon_days']:g} days, "
            f"${t['expected_spend']:,.0f} expected")


def format_table(profiles: list[SegmentProfile]) -> str:
    """A plain-text table of profiles (``streamseg segments``), then each segment's mean
    traits in words."""
    header = (f"{'id':>3} {'name':<20} {'size':>7} {'share':>6} {'recency d':>9} "
              f"{'orders/90d':>10} {'spend/90d':>10} {'avg order':>9} {'tenure d':>8}")
    lines = [header, "-" * len(header)]
    for p in profiles:
        lines.append(
            f"{p.segment:>3} {(p.name or '-'):<20} {p.size:>7} {p.share:>6.1%} "
            f"{p.recency_days:>9.0f} {p.orders_90d:>10.2f} {p.spend_90d:>10.2f} "
            f"{p.avg_order_value:>9.2f} {p.tenure_days:>8.0f}"
        )
    sentences = [sentence for p in profiles if (sentence := traits_sentence(p))]
    if sentences:
        lines += ["", *sentences]
    return "\n".join(lines)
