"""Plain-word names for segments, from configurable rules.

A segment's centroid in model space is already a set of z-scores: how far the segment's
centre lies from the whole population, in standard deviations, on each coordinate of
the feature vector (log recency, log orders per 90 days, ...). A rule scores a segment
by weighting those z-scores (``weights``) and may demand absolute bounds in original
units (``at_least`` / ``at_most``, e.g. "at least 90 days overdue": days since the last
order beyond the customer's usual gap between orders, see
:mod:`streamseg.core.features`). Names are then given by a maximum-score one-to-one
assignment (Hungarian), so names are unique at any time; a small bonus for keeping the
current name stops names from hopping between segments when two rules score alike. A
segment no rule fits is called "Segment N".

>>> import numpy as np
>>> namer = SegmentNamer()
>>> z = np.array([[-1, 2, 2, 1, 1, 0], [2, -1, -1, 0, 0.5, 0]], dtype=float)
>>> units = [dict(overdue_days=0, tenure_days=400), dict(overdue_days=300, tenure_days=500)]
>>> namer.name(z, units)
{0: 'VIP', 1: 'Lapsed'}
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment

from streamseg.core.scaling import OnlineStandardizer

#: Profile quantities a rule can refer to, in the order of the model-space vector.
RULE_FIELDS = ("overdue_days", "orders_90d", "spend_90d", "avg_order_value", "tenure_days",
               "refund_share")


class NameRule(BaseModel):
    """One candidate name and what a segment must look like to earn it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="The segment name.")
    weights: dict[str, float] = Field(
        description="Field -> weight on the segment's z-score (positive: high is good)."
    )
    at_least: dict[str, float] = Field(
        default_factory=dict, description="Field -> minimum value in original units."
    )
    at_most: dict[str, float] = Field(
        default_factory=dict, description="Field -> maximum value in original units."
    )


DEFAULT_RULES: tuple[NameRule, ...] = (
    NameRule(name="VIP", weights={"spend_90d": 2, "orders_90d": 1, "overdue_days": -1},
             at_most={"overdue_days": 60}),
    NameRule(name="Loyal regulars", weights={"orders_90d": 1, "tenure_days": 1,
                                             "overdue_days": -1},
             at_most={"overdue_days": 60}),
    NameRule(name="New", weights={"tenure_days": -2, "overdue_days": -1},
             at_most={"tenure_days": 90}),
    NameRule(name="Bargain hunters", weights={"avg_order_value": -2, "orders_90d": 1,
                                              "refund_share": 0.5},
             at_most={"overdue_days": 60}),
    NameRule(name="At risk", weights={"overdue_days": 1, "orders_90d": 0.5},
             at_least={"overdue_days": 14}, at_most={"overdue_days": 240}),
    NameRule(name="Lapsed", weights={"overdue_days": 2, "orders_90d": -1},
             at_least={"overdue_days": 90}),
    NameRule(name="Lapsed big spenders", weights={"avg_order_value": 2, "overdue_days": 1},
             at_least={"overdue_days": 90}),
    NameRule(name="Lapsed one-timers", weights={"avg_order_value": -1, "overdue_days": 1,
                                                "tenure_days": -0.5},
             at_least={"overdue_days": 90}),
)

# Score of an infeasible (bounds violated) pairing: never chosen over a feasible one.
_INFEASIBLE = -1e6


class SegmentNamer:
    """Assigns unique names to segments from their centroids.

    Parameters
    ----------
    rules
        Candidate names; more rules than segments is normal (the best fitting win).
    stickiness
        Score bonus for a segment keeping the name it has; prevents names from
        swapping on small centroid moves.

    """

    def __init__(self, rules: tuple[NameRule, ...] | list[NameRule] = DEFAULT_RULES,
                 stickiness: float = 0.5) -> None:
        for rule in rules:
            unknown = set(rule.weights) | set(rule.at_least) | set(rule.at_most)
            unknown -= set(RULE_FIELDS)
            if unknown:
                raise ValueError(f"rule {rule.name!r}: unknown field(s) {sorted(unknown)}; "
                                 f"use {RULE_FIELDS}")
        self.rules = list(rules)
        self.stickiness = stickiness

    def name(
        self,
        centroids_z: np.ndarray,
        centroids_units: list[dict[str, float]],
        current: dict[int, str] | None = None,
    ) -> dict[int, str]:
        """Segment id -> name, unique; segments that fit no rule get "Segment N"."""
        current = current or {}
        k = len(centroids_z)
        if k == 0 or not self.rules:
            return {segment: f"Segment {segment}" for segment in range(k)}
        scores = np.full((k, len(self.rules)), _INFEASIBLE)
        for segment in range(k):
            for index, rule in enumerate(self.rules):
                units = centroids_units[segment]
                if any(units.get(f, 0.0) < v for f, v in rule.at_least.items()) or any(
                    units.get(f, 0.0) > v for f, v in rule.at_most.items()
                ):
                    continue
                score = sum(weight * centroids_z[segment][RULE_FIELDS.index(field)]
                            for field, weight in rule.weights.items())
                if current.get(segment) == rule.name:
                    score += self.stickiness
                scores[segment, index] = score
        rows, cols = linear_sum_assignment(scores, maximize=True)
        names = {segment: f"Segment {segment}" for segment in range(k)}
        for segment, index in zip(rows, cols, strict=True):
            if scores[segment, index] > _INFEASIBLE:
                names[int(segment)] = self.rules[index].name
        return names


def centroid_units(centroids_z: np.ndarray, scaler: OnlineStandardizer) -> list[dict[str, Any]]:
    """Centroids back in original units (the inverse of standardisation and log1p)."""
    result = []
    for z in np.asarray(centroids_z):
        raw = scaler.inverse_transform_one(z)
        values = [float(np.expm1(v)) for v in raw[:5]] + [float(raw[5])]
        result.append({f: round(max(0.0, v), 4) for f, v in zip(RULE_FIELDS, values, strict=True)})
    return result
