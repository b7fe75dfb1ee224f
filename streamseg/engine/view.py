"""A worker's view of the model several workers share, kept up to date.

Every ``pipeline.view_refresh_s`` a worker reads the shares of the partitions it does
not own (:mod:`.shared`) and gives their statistics to its model, so that its centroids
are the means over every customer; a worker that does not refine adopts the version the
refiner last published (its centroids, names, the moves of this worker's sampled
customers, and its adjustable parameters). The refiner derives the segments' names
and writes the model checkpoint the others adopt. :class:`SharedView` is that part of
:class:`~streamseg.engine.SegmentationEngine`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from streamseg.config import Settings
from streamseg.core.features import SCALE_FLOOR, VECTOR_FIELDS
from streamseg.core.naming import SegmentNamer, centroid_units
from streamseg.core.scaling import OnlineStandardizer
from streamseg.engine.checkpoint import model_checkpoint, restore_model
from streamseg.engine.shared import Share, Shares
from streamseg.engine.stored_settings import apply_adjustable
from streamseg.model import Assignment, CustomerKMeans, SegmentModel
from streamseg.model.stats import ClusterStats
from streamseg.store import Partition, Store
from streamseg.traits.learner import TraitLearner

log = logging.getLogger(__name__)

__all__ = ["SharedView"]


class SharedView:
    """Refreshing the view of the shared model (a mixin of the engine)."""

    settings: Settings
    store: Store
    model: SegmentModel
    shares: Shares
    partitions: dict[str, Partition]
    refiner: bool
    segment_names: dict[int, str]
    relabels: dict[str, tuple[int, int]]
    refined_at: Any
    _published_stamp: str | None
    _followed: dict[str, Any]
    _pending: list[Assignment]
    traits: TraitLearner | None
    namer: SegmentNamer

    if TYPE_CHECKING:  # the engine's
        @property
        def scaler(self) -> OnlineStandardizer: ...

    def refresh_view(self) -> None:
        """Read the other partitions' shares, and adopt the refiner's last version."""
        names = [n for n in self.store.partition_names() if n not in self.partitions]
        dim = len(VECTOR_FIELDS)
        parts = self.store.read_partitions(names)
        shares = {name: Share.from_json(part.model, dim, SCALE_FLOOR)
                  for name, part in parts.items()}
        self.shares.set_others(shares)
        if getattr(self, "traits", None) is not None:  # None while the engine starts
            self.traits.set_others(  # type: ignore[union-attr]
                {name: (part.model or {}).get("traits") for name, part in parts.items()})
        self.sync_others()
        if not self.refiner:
            self.adopt_published()

    def sync_others(self) -> None:
        """Give the model the other partitions' statistics, as last read."""
        if isinstance(self.model, CustomerKMeans) and self.model.ready:
            stats = self.shares.others_stats
            if stats is None:  # no other partition has statistics (any more)
                stats = ClusterStats.zeros(self.settings.model.n_clusters, len(VECTOR_FIELDS))
            self.model.set_others(stats)

    def adopt_published(self, force: bool = False) -> None:
        """Take the version the refiner last published: its centroids, names and the
        moves of this worker's sampled customers (applied by the next batch)."""
        stamp = self.store.model_stamp()
        if stamp == self._published_stamp and not force:
            return
        self._published_stamp = stamp
        checkpoint = self.store.load_model()
        restored = restore_model(checkpoint, self.settings)
        if not self.refiner:
            self._follow_params(((checkpoint or {}).get("model") or {}).get("params") or {})
        self.segment_names = restored.names
        self.relabels, self.refined_at = restored.relabels, restored.refined_at
        published = restored.model
        if not isinstance(self.model, CustomerKMeans) or not published.ready:
            return
        assert isinstance(published, CustomerKMeans)
        if published.version > self.model.version or not self.model.ready:
            moved = self.model.adopt(published.version, published.centroids,
                                     published.sample_rate, restored.relabels,
                                     pinned=published.pinned)
            self._pending += moved
            self.sync_others()
            log.info("adopted version %d of the shared model: %d of this worker's "
                     "customers moved", published.version, len(moved))

    def _follow_params(self, published: dict[str, Any]) -> None:
        """Score and learn with the adjustable parameters the refiner published, not
        this worker's own: workers never mix two hysteresis values (say so once)."""
        if not isinstance(self.model, CustomerKMeans):
            return
        adjust = {name: published[name] for name in CustomerKMeans.ADJUSTABLE
                  if name in published and published[name] != getattr(self.model, name)}
        if not adjust:
            return
        mine = {name: getattr(self.settings.model, name) for name in adjust}
        if adjust != self._followed:
            different = {n: v for n, v in adjust.items() if mine[n] != v}
            if different:
                log.warning(
                    "this worker's settings differ from the shared model's: %s; it uses "
                    "the model's, as every worker does. To change them, restart the worker "
                    "that holds the model lease (streamseg_refiner 1) with the new values: "
                    "the others adopt them", ", ".join(
                        f"model.{n} is {mine[n]} here, {v} in the model"
                        for n, v in sorted(different.items())))
            self._followed = dict(adjust)
        self.model.adjust(**adjust)

    def lead(self) -> None:
        """This worker refines now: the model learns with its own settings again."""
        self.refiner = True
        apply_adjustable(self.model, self.settings)

    # -- what this worker publishes, or shows ---------------------------------------
    def refresh_segment_names(self) -> None:
        """Re-derive segment names from the current centroids (O(k^2), cheap)."""
        if not self.model.ready:
            return
        centroids = self.model.centroids
        self.segment_names = self.namer.name(centroids, centroid_units(centroids, self.scaler),
                                             self.segment_names)

    def segment_summaries(self) -> list[dict[str, Any]]:
        """Each segment's id, name, size and centre in original units (from the model)."""
        if not self.model.ready:
            return []
        centroids = self.model.centroids
        sizes = self.model.sizes
        return [
            {"segment": segment, "name": self.segment_names.get(segment),
             "size": int(sizes[segment]), "centre": units}
            for segment, units in enumerate(centroid_units(centroids, self.scaler))
        ]

    def model_checkpoint(self) -> dict[str, Any]:
        """The model checkpoint this worker publishes (see :mod:`.checkpoint`)."""
        return model_checkpoint(self.settings.model.kind, self.model, self.segment_names,
                                self.relabels, self.refined_at)
