"""Garbage collection between batches, so that no batch pays for a full collection.

Python's full (generation 2) collection walks every tracked object: with hundreds of
thousands of cached customer states it pauses the loop for tens of milliseconds at
unpredictable moments, which is what sets the tail latency. Instead, every second
between batches, :meth:`GarbagePolicy.tick` collects and freezes the survivors
(``gc.freeze``: they are no longer scanned), so each collection only walks the objects
made since the last freeze. Objects are still freed by reference counting when dropped;
only garbage *cycles* among frozen objects would stay, so every ten minutes everything
is unfrozen and collected once.

``gc.freeze`` is process-wide: :meth:`GarbagePolicy.close` unfreezes, so that a process
that goes on without the loop collects normally again.
"""

from __future__ import annotations

import gc
import time

__all__ = ["FREEZE_EVERY_SECONDS", "FULL_EVERY_SECONDS", "GarbagePolicy"]

FREEZE_EVERY_SECONDS = 1.0
FULL_EVERY_SECONDS = 600.0


class GarbagePolicy:
    """Collect-and-freeze every :data:`FREEZE_EVERY_SECONDS`, everything every
    :data:`FULL_EVERY_SECONDS` (monotonic time)."""

    def start(self) -> None:
        """Collect and freeze what start-up allocated (the model, whatever was loaded)
        now, before traffic, rather than in the first batch."""
        gc.collect()
        gc.freeze()
        self._last_freeze = self._last_full = time.monotonic()

    def tick(self) -> None:
        """Between batches: collect young garbage and freeze the survivors when due."""
        now = time.monotonic()
        if now - self._last_freeze < FREEZE_EVERY_SECONDS:
            return
        self._last_freeze = now
        if now - self._last_full >= FULL_EVERY_SECONDS:
            self._last_full = now
            gc.unfreeze()  # frozen garbage cycles, if any, are collected too
        gc.collect()
        gc.freeze()

    def close(self) -> None:
        gc.unfreeze()
