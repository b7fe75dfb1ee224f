"""The read API's access to the store: serialised store calls and cached metadata.

:func:`streamseg.serve.api.create_app` reads through :class:`_StoreReader`: one lock
around every store call (a SQLite connection must not be shared by two threads at
once), the metadata the pipeline writes (watermark, segment summaries, trait model)
decoded once and reused for a short while, and the store key of a requested id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import HTTPException

from streamseg.config import Settings
from streamseg.serve.api_models import Profile, SegmentInfo, SegmentTraits
from streamseg.store import Store
from streamseg.traits.learner import TraitLearner, read_traits

# The API's logger, under the same name as before this module was split from it.
log = logging.getLogger("streamseg.serve.api")

_T = TypeVar("_T")


# -- reading the store ------------------------------------------------------------------
@dataclass(slots=True)
class _Meta:
    """What the pipeline last wrote besides customer states, decoded once."""

    watermark: float | None = None
    segments: dict[int, SegmentInfo] = field(default_factory=dict)
    read_at: float = float("-inf")  # time.monotonic() of the read
    #: The trait model (the sum of the partitions' shares); None: traits disabled.
    traits: TraitLearner | None = None


class _StoreReader:
    """Serialises store calls and caches the store's metadata for a short while.

    FastAPI runs plain ``def`` endpoints in a thread pool. A SQLite connection must not be
    used by two threads at once, so every store call takes one lock; store calls are
    point reads, so the lock is held for microseconds.
    """

    def __init__(self, store: Store, meta_ttl_seconds: float) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._meta_ttl = meta_ttl_seconds
        self._meta = _Meta()
        #: (horizon_days, snapshot_every_days) of the traits; None: disabled.
        self.traits_settings: tuple[float, float] | None = None

    def call(self, what: Callable[[Store], _T]) -> _T:
        """Run ``what(store)`` under the lock; a failing store becomes a 503."""
        try:
            with self._lock:
                return what(self.store)
        except Exception as error:  # noqa: BLE001 - any backend error means unavailable
            log.warning("store call failed: %s", error)
            raise HTTPException(503, f"store unavailable: {type(error).__name__}") from error

    def meta(self) -> _Meta:
        cached = self._meta
        if time.monotonic() - cached.read_at < self._meta_ttl:
            return cached
        raw = self.call(lambda store: store.meta())
        self._meta = _decode_meta(raw, self.call, self.traits_settings)
        return self._meta


def _decode_meta(raw: dict[str, Any], call: Callable[[Callable[[Store], Any]], Any],
                 traits_settings: tuple[float, float] | None = None) -> _Meta:
    """Segment summaries (id, name, size, centre) from the metadata the pipeline writes,
    and the trait model with each segment's mean traits from the partitions' shares."""
    summaries: list[dict[str, Any]] = list(raw.get("segments") or [])
    if summaries:
        sizes = {int(s["segment"]): int(s.get("size") or 0) for s in summaries}
    else:
        # A store written before summaries were recorded: sizes from the store itself
        # (one GROUP BY in SQLite), without profiles.
        sizes = call(lambda store: store.segment_sizes())
        summaries = [{"segment": segment} for segment in sorted(sizes)]
    total = sum(sizes.values())
    traits = means = None
    if traits_settings is not None:
        horizon, every = traits_settings
        traits = call(lambda store: read_traits(store, horizon, every))
        means = traits.total().segment_means()
    segments: dict[int, SegmentInfo] = {}
    for summary in summaries:
        segment = int(summary["segment"])
        centre = summary.get("centre")
        segments[segment] = SegmentInfo(
            segment=segment,
            name=summary.get("name"),
            size=sizes[segment],
            share=round(sizes[segment] / total, 4) if total else 0.0,
            profile=Profile.model_validate(centre) if centre else None,
            traits=(SegmentTraits(**means[segment], horizon_days=traits_settings[0])
                    if means and segment in means and traits_settings else None),
        )
    watermark = raw.get("watermark")
    return _Meta(
        watermark=None if watermark is None else float(watermark),
        segments=segments,
        read_at=time.monotonic(),
        traits=traits,
    )


def _lookup_key(customer_id: str, settings: Settings) -> str:
    """The store key of a requested customer id.

    The one place to pseudonymise: with ``privacy.pseudonymise_key`` set the pipeline
    stores a keyed hash instead of the id, so the API looks customers up by the same
    hash. Responses and errors echo the id as requested, never the key.

    >>> _lookup_key("0042", Settings())
    '0042'
    """
    return settings.customer_key(customer_id)


def _timestamp(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)
