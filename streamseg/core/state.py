"""What the service keeps about one customer: :class:`CustomerState`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamseg.core.features import CustomerFeatures
from streamseg.traits.schedule import Snapshot

#: The partition of a source that one worker reads whole (a file, stdin); a Kafka
#: partition is named by its stream key, ``kafka:<topic>:<n>``.
LOCAL_PARTITION = "local"


@dataclass(slots=True)
class CustomerState:
    """Everything the service keeps about one customer."""

    customer_id: str
    features: CustomerFeatures
    segment: int | None = None
    segment_name: str | None = None
    # Model space, as last given to the model. Rounded to float32 precision so that
    # compact stores keep it exactly (the model must get back what it added).
    vector: list[float] | None = None
    updated_at: float | None = None  # event time (epoch seconds) of the last scoring
    model_version: int = 0
    next_rescore_at: float | None = None  # event time at which recency needs re-scoring
    applied: dict[str, int] = field(default_factory=dict)  # source stream -> last offset
    # 32-bit hashes of the customer's latest event ids (pipeline.dedupe_window of them):
    # an event produced twice under the same id is applied once.
    recent_ids: list[int] = field(default_factory=list)
    # The partition whose owner writes this customer (see streamseg.store.base): where
    # its events come from. None: not known (a state written before partitions were).
    partition: str | None = None
    #: Snapshots waiting for their label that had to be stored (a purchase followed
    #: them; streamseg.traits.schedule), oldest first.
    snapshots: list[Snapshot] = field(default_factory=list)
    #: Predictive traits as of ``updated_at``: (purchase probability, expected spend
    #: within the horizon); None before the first scoring with traits.
    traits: tuple[float, float] | None = None
    #: Risk band (its place in traits.risk_bands) when it is not the band its purchase
    #: probability falls in (hysteresis kept it): None = that band.
    risk_band: int | None = None
    #: The time up to which the traits' snapshot grid was processed; None: ``updated_at``
    #: (they differ only while a partition's consumer is behind).
    traits_since: float | None = field(default=None, compare=False, repr=False)
    # Not stored: the unstandardised vector the standardiser last learned for this
    # customer, kept while the state is cached so that it can be unlearned without
    # recomputing it (None: recompute from the features as they were at updated_at).
    scored_raw: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "features": self.features.to_dict(),
            "segment": self.segment,
            "segment_name": self.segment_name,
            "vector": self.vector,
            "updated_at": self.updated_at,
            "model_version": self.model_version,
            "next_rescore_at": self.next_rescore_at,
            "applied": self.applied,
            "recent_ids": self.recent_ids,
            "partition": self.partition,
            "snapshots": [[s.at, s.cell, s.orders, s.spend] for s in self.snapshots],
            "traits": None if self.traits is None else list(self.traits),
            "risk_band": self.risk_band,
            "traits_since": self.traits_since,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerState:
        return cls(
            customer_id=data["customer_id"],
            features=CustomerFeatures.from_dict(data["features"]),
            segment=data.get("segment"),
            segment_name=data.get("segment_name"),
            vector=data.get("vector"),
            updated_at=data.get("updated_at"),
            model_version=data.get("model_version", 0),
            next_rescore_at=data.get("next_rescore_at"),
            applied=data.get("applied") or {},
            recent_ids=data.get("recent_ids") or [],
            partition=data.get("partition"),
            snapshots=[Snapshot(float(at), int(cell), int(orders), float(spend))
                       for at, cell, orders, spend in data.get("snapshots") or []],
            traits=None if data.get("traits") is None else (float(data["traits"][0]),
                                                            float(data["traits"][1])),
            risk_band=data.get("risk_band"),
            traits_since=data.get("traits_since"),
        )

    def vector_array(self) -> np.ndarray | None:
        return None if self.vector is None else np.asarray(self.vector, dtype=float)
