"""ReportData for the report's unit tests, without a store."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamseg.core.profiles import SegmentProfile
from streamseg.report.scan import ReportData


def profile(segment: int, spend: float = 50.0, name: str | None = None) -> SegmentProfile:
    return SegmentProfile(segment, 10, 0.5, 20.0, 1.5, spend, 30.0, 400.0, 0.0, name=name)


def report_data(**fields: Any) -> ReportData:
    values: dict[str, Any] = {
        "profiles": [], "names": {}, "population": {}, "spend_shares": {}, "history": [],
        "sample_vectors": np.zeros((0, 2)), "sample_segments": [], "sampled_from": 0,
        "centroids": None, "now": 0.0, "model_version": 0, "store_uri": "memory://",
        "currency": "$",
    }
    values.update(fields)
    return ReportData(**values)
