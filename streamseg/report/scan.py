"""What the report shows, read from the store in one pass (:func:`read_report_data`).

The profiles come from :func:`~streamseg.core.profiles.profile_segments`; on the same
pass :class:`CustomerScan` notes every profiled customer's metrics (for the all-customer
medians), each segment's recent spend and a random sample of vectors for the map.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np

from streamseg.config import Settings
from streamseg.core.profiles import (
    PROFILE_FIELDS,
    SegmentProfile,
    add_traits,
    profile_segments,
)
from streamseg.store import CustomerState

if TYPE_CHECKING:
    from streamseg.evaluate.evaluation import Evaluation, Reservoir
    from streamseg.read.view import ReadView

__all__ = ["QUALITY_KS", "CustomerScan", "ReportData", "read_report_data", "redact_uri"]

#: The k the report's curve shows (and the model's own k).
QUALITY_KS = tuple(range(2, 11))


def read_report_data(settings: Settings, view: ReadView, sample: int, seed: int,
                     currency: str) -> ReportData:
    """Everything the page shows, from ``view`` (left open) as ``settings`` describe it.

    ``sample`` customers (at most) are drawn at random with ``seed`` for the map; the
    quality figures use ``evaluate.sample`` customers (see :mod:`streamseg.evaluate`).
    """
    from streamseg.evaluate.evaluation import Reservoir, evaluate, sample_of

    meta = view.meta
    now = view.now()
    names = dict(view.segment_names)
    draw = Reservoir(settings.evaluate.sample, settings.evaluate.seed)
    scan = CustomerScan(view.customers(), now, settings.features.half_life_days,
                        sample, seed, draw)
    profiles = profile_segments(scan, now, settings.features.half_life_days, names=names)
    if view.traits is not None:  # each segment's mean predictive traits
        add_traits(profiles, view.traits.total().segment_means(), settings.traits.horizon_days)
    centroids = view.centroids
    quality = None
    if centroids is not None and len(draw.states()) > len(centroids):
        drawn = sample_of(view, draw.states(), draw.seen)
        ks = sorted({*QUALITY_KS, len(centroids)})
        quality = evaluate(view, drawn, settings.evaluate.seed, ks)
    return ReportData(
        profiles=sorted(profiles, key=lambda p: (-p.spend_90d, p.segment)),
        names=names,
        population=scan.population_medians(),
        spend_shares=scan.spend_shares(),
        history=list(meta.get("size_history") or []),
        sample_vectors=np.asarray([v for _, v in scan.reservoir], dtype=float),
        sample_segments=[s for s, _ in scan.reservoir],
        sampled_from=scan.seen,
        centroids=centroids,
        now=now,
        model_version=view.model.version,
        store_uri=redact_uri(settings.store.uri),
        currency=currency,
        quality=quality,
    )


class CustomerScan:
    """Passes customers through to :func:`profile_segments`, noting on the way what
    the report needs besides profiles: every profiled customer's metrics (for the
    all-customer medians) and a uniform random sample of vectors (reservoir sampling:
    one pass, memory bounded by ``sample``, the same draw for the same seed and store).
    """

    def __init__(self, states: Iterable[CustomerState], now: float, half_life_days: float,
                 sample: int, seed: int, draw: Reservoir | None = None) -> None:
        self._states = states
        self._draw = draw  # customers drawn for the quality measures, on the same pass
        self._now = now
        self._half_life = half_life_days
        self._sample = max(0, sample)
        self._rng = np.random.default_rng(seed)
        self.rows: list[list[float]] = []
        self.spend: dict[int, float] = {}  # segment -> sum of spend per 90 days
        self.reservoir: list[tuple[int, list[float]]] = []
        self.seen = 0  # customers eligible for the sample

    def __iter__(self) -> Iterator[CustomerState]:
        for state in self._states:
            if state.segment is not None and state.features.has_purchases:
                snap = state.features.snapshot(self._now, half_life_days=self._half_life)
                self.rows.append([getattr(snap, name) for name in PROFILE_FIELDS])
                self.spend[state.segment] = self.spend.get(state.segment, 0.0) + snap.spend_90d
            if state.segment is not None and state.vector is not None:
                self._offer(state.segment, state.vector)
            if self._draw is not None:
                self._draw.offer(state)
            yield state

    def _offer(self, segment: int, vector: list[float]) -> None:
        self.seen += 1
        if len(self.reservoir) < self._sample:
            self.reservoir.append((segment, vector))
            return
        slot = int(self._rng.integers(0, self.seen))
        if slot < self._sample:
            self.reservoir[slot] = (segment, vector)

    def spend_shares(self) -> dict[int, float]:
        """Each segment's share of the customers' recent (decayed, per 90 days) spend."""
        total = sum(self.spend.values())
        return {k: v / total for k, v in self.spend.items()} if total > 0 else {}

    def population_medians(self) -> dict[str, float]:
        """All profiled customers' median of each profile metric."""
        if not self.rows:
            return {}
        medians = np.median(np.asarray(self.rows), axis=0)
        return {name: float(v) for name, v in zip(PROFILE_FIELDS, medians, strict=True)}


@dataclass(slots=True)
class ReportData:
    """What the page shows: profiles, medians, shares, history, the map's sample."""

    profiles: list[SegmentProfile]  # ordered for display: highest spend first
    names: dict[int, str]
    population: dict[str, float]
    spend_shares: dict[int, float]
    history: list[dict[str, Any]]
    sample_vectors: np.ndarray
    sample_segments: list[int]
    sampled_from: int
    centroids: np.ndarray | None
    now: float
    model_version: int
    store_uri: str
    currency: str
    quality: Evaluation | None = None  # the live segments measured, and the k sweep
    generated: datetime = field(default_factory=lambda: datetime.now(UTC))

    def name(self, segment: int) -> str:
        """The segment's current name, or "Segment <id>" when it has none."""
        return self.names.get(segment) or f"Segment {segment}"


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (user info or query string).

    >>> redact_uri("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    >>> redact_uri("rediss://cache:6380/0?password=s3cret&ssl_cert_reqs=none")
    'rediss://cache:6380/0?password=%2A%2A%2A&ssl_cert_reqs=none'
    >>> redact_uri("sqlite:////var/lib/streamseg/state.db")
    'sqlite:////var/lib/streamseg/state.db'
    """
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any("pass" in key.lower() for key, _ in query)
    if parts.password is None and not secret_query:
        return uri  # rebuilt URIs lose sqlite's empty host ("////"): leave as is
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}"
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        text += "?" + urlencode([(k, "***" if "pass" in k.lower() else v) for k, v in query])
    return text
