"""The read API's request/response bodies: the pydantic models the OpenAPI spec documents.

:mod:`streamseg.serve.api` serves them (and re-exports them); this module only defines
their shape and field descriptions.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)


# -- response bodies (these models are what the OpenAPI spec documents) -----------------
class Profile(BaseModel):
    """A typical customer in original units.

    Fields are those the pipeline records for segment centres; all optional, and new
    ones pass through, so the API follows the feature set without a change here.
    """

    model_config = ConfigDict(extra="allow")

    recency_days: float | None = Field(None, description="Days since the last purchase.")
    overdue_days: float | None = Field(
        None, description="Days since the last purchase beyond the customer's own usual gap."
    )
    orders_90d: float | None = Field(None, description="Orders per 90 days (decayed rate).")
    spend_90d: float | None = Field(None, description="Spend per 90 days (decayed rate).")
    avg_order_value: float | None = Field(None, description="Average order value.")
    tenure_days: float | None = Field(None, description="Days since the first purchase.")
    refund_share: float | None = Field(None, description="Share of spend refunded, 0..1.")

    # No return annotation on purpose: pydantic would take ``dict`` from it as the
    # serialisation schema, and the OpenAPI spec would lose the fields documented above.
    @model_serializer(mode="wrap")
    def _omit_unrecorded(self, handler: SerializerFunctionWrapHandler):
        """Leave out fields the pipeline did not record rather than send nulls."""
        return {k: v for k, v in handler(self).items() if v is not None}


class CustomerTraits(BaseModel):
    """Predictive traits of one customer (see the README, "Predictive traits")."""

    purchase_probability: float = Field(
        description="Probability of at least one purchase within the next horizon_days.")
    expected_spend: float = Field(description="Expected spend within the next horizon_days.")
    horizon_days: float = Field(description="The horizon (traits.horizon_days).")


class SegmentTraits(BaseModel):
    """The mean traits of a segment's customers (each as of their last scoring)."""

    purchase_probability: float = Field(
        description="Mean probability of a purchase within the next horizon_days.")
    expected_spend: float = Field(description="Mean expected spend within the horizon.")
    horizon_days: float = Field(description="The horizon (traits.horizon_days).")


class SegmentInfo(BaseModel):
    """One segment: who is in it and what its centre looks like."""

    segment: int = Field(description="Segment id (stable while the model runs).")
    name: str | None = Field(description="Plain-words name derived from the centre.")
    size: int = Field(description="Customers currently in the segment.")
    share: float = Field(description="size / customers in any segment, 0..1.")
    profile: Profile | None = Field(
        description="The segment's centre in original units (null if not recorded)."
    )
    traits: SegmentTraits | None = Field(
        None, description="Mean predictive traits of its customers (null without traits).")


class SegmentsResponse(BaseModel):
    """All segments, as of the last batch the pipeline wrote."""

    as_of: datetime | None = Field(description="Service clock of the figures (ISO 8601).")
    customers: int = Field(description="Customers in any segment (sum of the sizes).")
    segments: list[SegmentInfo]


class Features(BaseModel):
    """A customer's features at one instant, in original units.

    New snapshot fields pass through (``extra="allow"``) before they are documented here.
    """

    model_config = ConfigDict(extra="allow")

    recency_days: float = Field(description="Days since the last purchase.")
    overdue_days: float | None = Field(
        None, description="Days since the last purchase beyond the customer's own usual gap."
    )
    tenure_days: float = Field(description="Days since the first purchase.")
    orders: int = Field(description="Orders ever.")
    decayed_orders: float = Field(description="Orders, time-decayed (half-life weighting).")
    orders_90d: float = Field(description="Orders per 90 days (time-decayed rate).")
    spend_90d: float = Field(description="Spend per 90 days (time-decayed rate).")
    avg_order_value: float = Field(description="Average order value over all orders.")
    total_spend: float = Field(description="Spend ever (before refunds).")
    refund_share: float = Field(description="Share of spend refunded, 0..1.")


class CustomerResponse(BaseModel):
    """One customer's segment and features."""

    customer_id: str = Field(description="The id as requested.")
    segment: int | None = Field(description="Segment id; null until the model is seeded.")
    segment_name: str | None = Field(description="The segment's current name.")
    segment_profile: SegmentInfo | None = Field(description="The customer's segment.")
    features: Features | None = Field(
        description="Features at the service clock; null for a customer with no purchase."
    )
    as_of: datetime | None = Field(description="Service clock the features are taken at.")
    updated_at: datetime | None = Field(
        description="Event time of the customer's last scoring (ISO 8601)."
    )
    model_version: int = Field(description="Version of the model that last assigned them.")
    traits: CustomerTraits | None = Field(
        None, description="Predictive traits at the service clock (null with traits disabled "
        "or for a customer with no purchase).")


class Status(BaseModel):
    """Liveness or readiness."""

    status: str = Field(examples=["ok"])


class ErrorBody(BaseModel):
    """An error, FastAPI's usual shape."""

    detail: str = Field(examples=["customer 'x' not found"])
