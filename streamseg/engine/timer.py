"""The inactivity timer: when an idle customer is re-scored, and who is due now.

Time moves on without events: recency grows, decayed rates shrink. Each scoring sets the
customer's ``next_rescore_at`` to ``growth x recency`` days later, clamped to
``[rescore_min_days, rescore_max_days]`` (recency is on a log scale in the model, so
re-scoring can grow sparser as a customer stays idle). The store indexes that time; the
timer asks it who is due.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamseg.config import FeatureSettings
from streamseg.core.features import SECONDS_PER_DAY
from streamseg.store import Store

__all__ = ["RESCORE_CHECK_SECONDS", "InactivityTimer", "next_rescore_at"]

#: Customers become due after hours or days of service time; asking the store who is
#: due more often than this (per service-clock seconds) only adds a query to every small
#: batch of live traffic.
RESCORE_CHECK_SECONDS = 60.0


def next_rescore_at(now: float, recency_days: float, features: FeatureSettings) -> float:
    """When a customer scored at ``now`` with ``recency_days`` is next re-scored.

    >>> next_rescore_at(0.0, 10.0, FeatureSettings()) / SECONDS_PER_DAY
    5.0
    """
    wait_days = min(
        features.rescore_max_days,
        max(features.rescore_min_days, features.rescore_growth * recency_days),
    )
    return now + wait_days * SECONDS_PER_DAY


class InactivityTimer:
    """Asks the store which customers of the partitions this worker owns are due, at most
    every :data:`RESCORE_CHECK_SECONDS` of service time unless the last answer was full.

    Each idle customer is re-scored by exactly one worker: the owner of its partition.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        # The service clock at the last query, and whether it hit its limit.
        self._checked_at: float | None = None
        self._backlog = False

    def due(self, until: Mapping[str, float | None], limit: int) -> list[str]:
        """Up to ``limit`` customers due, of each partition of ``until`` at the time
        given for it (``[]`` when asked too recently; a partition at None is skipped)."""
        times = [at for at in until.values() if at is not None]
        if not times:
            return []
        now = max(times)
        if (self._checked_at is not None and self._backlog is False
                and 0 <= now - self._checked_at < RESCORE_CHECK_SECONDS):
            return []  # asked recently and nothing was left over: spare the store a query
        found: list[str] = []
        for partition in sorted(until):
            at = until[partition]
            if at is None:
                continue
            found += self._store.due_for_rescore(partition, at, limit - len(found))
            if len(found) >= limit:
                break
        self._checked_at = now
        self._backlog = len(found) >= limit
        return found

    def ask_again(self) -> None:
        """The owned partitions changed: the next :meth:`due` asks the store."""
        self._checked_at = None
