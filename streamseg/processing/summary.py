"""What one run of the stream did: totals as it goes, a summary at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from streamseg.engine import BatchOutcome

__all__ = ["RunSummary", "RunTotals"]


@dataclass(slots=True)
class RunTotals:
    """Events processed, rejected, duplicates, changes and re-scorings of this run."""

    processed: int = 0
    rejected: int = 0
    duplicates: int = 0
    changes: int = 0
    rescored: int = 0
    #: Risk-band changes (published on the change stream too, counted apart).
    risk_changes: int = 0

    def add(self, outcome: BatchOutcome) -> None:
        self.processed += outcome.applied
        self.rejected += len(outcome.rejected)
        self.duplicates += outcome.duplicates
        self.changes += len(outcome.changes)
        self.risk_changes += len(outcome.risk_changes)
        self.rescored += outcome.rescored

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class RunSummary:
    """Totals of one run (this run only, not the store's history)."""

    processed: int
    rejected: int
    duplicates: int
    changes: int
    rescored: int
    customers: int
    segments: dict[int, int]
    seconds: float
    #: Risk-band changes published (besides the segment changes).
    risk_changes: int = 0

    @property
    def events_per_second(self) -> float:
        return (self.processed + self.rejected) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"processed {self.processed} events, rejected {self.rejected}, "
            f"duplicates skipped {self.duplicates}, segment changes {self.changes}, "
            f"customers {self.customers}, segments {len(self.segments)} "
            f"in {self.seconds:.1f}s ({self.events_per_second:,.0f} events/s)"
        )
