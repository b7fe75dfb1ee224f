"""The segmentation engine: a batch of records in, customer states and changes out."""

from streamseg.engine.engine import MIN_EVENT_TIME, BatchOutcome, SegmentationEngine

__all__ = ["MIN_EVENT_TIME", "BatchOutcome", "SegmentationEngine"]
