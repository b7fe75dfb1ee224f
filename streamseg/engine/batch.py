"""One batch's working set and what it produced."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamseg.core.events import ChangeReason, DeadLetter, RiskBandChange, SegmentChange
from streamseg.core.state import CustomerState
from streamseg.store import SampleRow

__all__ = ["Batch", "BatchOutcome"]


@dataclass(slots=True)
class BatchOutcome:
    """What one batch produced, for the pipeline to write, publish and count."""

    states: list[CustomerState] = field(default_factory=list)
    changes: list[SegmentChange] = field(default_factory=list)
    #: Risk-band changes (streamseg.traits.bands): written and published with the
    #: segment changes, counted apart.
    risk_changes: list[RiskBandChange] = field(default_factory=list)
    rejected: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    rescored: int = 0
    #: Records of partitions this worker does not own (moved away mid-batch): left to
    #: their new owner, not applied.
    foreign: int = 0
    #: Per partition, the model's sample rows that changed (see ``PartitionWrite``).
    sample: dict[str, dict[str, SampleRow | None]] = field(default_factory=dict)


@dataclass(slots=True)
class Batch:
    """The customers one batch has read (``loaded``) and changed (``touched``)."""

    loaded: dict[str, CustomerState] = field(default_factory=dict)
    touched: dict[str, CustomerState] = field(default_factory=dict)
    #: Each loaded customer's segment when the batch loaded it (a customer the batch
    #: creates is absent): what the partitions' sizes change by.
    before: dict[str, int | None] = field(default_factory=dict)
    #: Each loaded customer's traits when the batch loaded them (what the partitions'
    #: per-segment sums of traits change by).
    before_traits: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    #: Customers to re-score at the end of the batch, with why.
    to_score: dict[str, tuple[CustomerState, ChangeReason]] = field(default_factory=dict)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)

    def state(self, customer_id: str) -> CustomerState | None:
        return self.touched.get(customer_id) or self.loaded.get(customer_id)

    def finish(self) -> BatchOutcome:
        self.outcome.states = list(self.touched.values())
        return self.outcome
