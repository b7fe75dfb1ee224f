"""The segmentation engine: a batch of records in, customer states and changes out."""

from streamseg.engine.batch import BatchOutcome
from streamseg.engine.engine import SegmentationEngine
from streamseg.engine.intake import MIN_EVENT_TIME

__all__ = ["MIN_EVENT_TIME", "BatchOutcome", "SegmentationEngine"]
