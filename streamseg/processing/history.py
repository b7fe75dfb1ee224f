"""The segment-size history, kept in the store's metadata for the report.

A point (service-clock time, each segment's size and name) is added when the clock has
moved on by ``every_days`` since the last one. The history is bounded: when it holds
:data:`MAX_POINTS`, every other point is dropped, so it always spans the whole run at a
coarser step.

>>> history = SizeHistory([], every_days=1.0)
>>> history.record(0.0, [{"segment": 0, "size": 3, "name": "VIP"}])
True
>>> history.record(3600.0, [{"segment": 0, "size": 4, "name": "VIP"}])  # too soon
False
>>> [point["sizes"] for point in history.points]
[{'0': 3}]
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_POINTS", "SizeHistory"]

MAX_POINTS = 1000


class SizeHistory:
    """Points ``{"time", "sizes", "names"}``, oldest first."""

    def __init__(self, points: list[dict[str, Any]], every_days: float) -> None:
        self.points = points
        self.step_seconds = every_days * 86_400.0

    def record(self, now: float, summaries: list[dict[str, Any]], force: bool = False) -> bool:
        """Add a point for ``summaries`` (the engine's segment summaries) at ``now`` if
        the clock moved on enough (or ``force``); True when a point was added."""
        if not summaries:
            return False
        history = self.points
        if history and now - history[-1]["time"] < self.step_seconds and not force:
            return False
        if history and history[-1]["time"] == now:
            history.pop()  # same instant: the newer sizes replace the older
        history.append({
            "time": now,
            "sizes": {str(s["segment"]): s["size"] for s in summaries},
            "names": {str(s["segment"]): s["name"] for s in summaries},
        })
        if len(history) > MAX_POINTS:
            del history[::2]
        return True
