"""Segment changes: what a customer's new assignment means for the change stream."""

from __future__ import annotations

from datetime import UTC, datetime

from streamseg.core.events import (
    ChangeReason,
    RiskBandChange,
    RiskBandChangeData,
    SegmentChange,
    SegmentChangeData,
)
from streamseg.core.state import CustomerState

__all__ = ["risk_change", "segment_change"]


def risk_change(state: CustomerState, from_band: str, to_band: str,
                horizon_days: float) -> RiskBandChange:
    """The event of a customer whose risk band changed, at their scoring time.

    >>> from streamseg.core.features import CustomerFeatures
    >>> state = CustomerState("c1", CustomerFeatures.empty(), updated_at=0.0,
    ...                       traits=(0.12, 3.5))
    >>> event = risk_change(state, "watch", "at_risk", 90)
    >>> event.type, event.subject, event.data.to_band, event.data.purchase_probability
    ('io.streamseg.risk.changed', 'c1', 'at_risk', 0.12)
    """
    assert state.traits is not None and state.updated_at is not None
    return RiskBandChange.create(RiskBandChangeData(
        customer_id=state.customer_id, from_band=from_band, to_band=to_band,
        purchase_probability=state.traits[0], expected_spend=state.traits[1],
        horizon_days=horizon_days, event_time=datetime.fromtimestamp(state.updated_at, tz=UTC)))


def segment_change(customer_id: str, previous: int | None, segment: int,
                   names: dict[int, str], reason: ChangeReason, by_model_update: bool,
                   at: float, model_version: int, *,
                   previous_name: str | None = None) -> SegmentChange:
    """The change event of a customer moving from ``previous`` to ``segment``.

    The reason is ``first_assignment`` for a customer who had no segment,
    ``model_update`` when the model moved them (a refinement), else ``reason``.
    ``at`` is the event time of the change (the customer's scoring time). The previous
    segment's name is ``names[previous]`` unless ``previous_name`` says otherwise (a
    reseed: the old segment belongs to another model).

    >>> change = segment_change("c1", None, 2, {2: "VIP"}, "behaviour", False, 0.0, 1)
    >>> change.data.reason, change.data.to_name
    ('first_assignment', 'VIP')
    """
    if previous is None:
        why: ChangeReason = "first_assignment"
    elif by_model_update:
        why = "model_update"
    else:
        why = reason
    return SegmentChange.create(
        SegmentChangeData(
            customer_id=customer_id,
            from_segment=previous,
            from_name=(previous_name if previous_name is not None
                       else names.get(previous) if previous is not None else None),
            to_segment=segment,
            to_name=names.get(segment),
            reason=why,
            event_time=datetime.fromtimestamp(at, tz=UTC),
            model_version=model_version,
        )
    )
