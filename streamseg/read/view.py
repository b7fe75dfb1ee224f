"""A read-only view of a store and its model: what the read commands stand on.

:class:`ReadView` restores what a worker would see -- the published model (centroids,
names), every partition's standardiser share and clock -- from reads alone, without
building the engine (which takes partitions, caches states and may write). Where the
store and the model (or the settings) disagree it raises :class:`ReadError`, whose
message is one line that says what is wrong and what to do.

>>> from streamseg.config import load_settings
>>> from streamseg.store import MemoryStore
>>> from streamseg.store.readonly import ReadOnlyStore
>>> view = ReadView(load_settings(), ReadOnlyStore(MemoryStore()))
>>> view.model.ready, view.now(), view.segment_names
(False, 0.0, {})
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from streamseg.config import ConfigError, Settings
from streamseg.core.features import SCALE_FLOOR, VECTOR_FIELDS
from streamseg.core.scaling import OnlineStandardizer
from streamseg.core.state import CustomerState
from streamseg.engine.checkpoint import is_legacy, restore_model
from streamseg.engine.reseed import reseed_in_progress
from streamseg.engine.shared import Share, Shares
from streamseg.engine.stored_settings import check_stored_settings, record_from_checkpoint
from streamseg.engine.vectors import raw_vectors, standardise
from streamseg.report.scan import redact_uri
from streamseg.store import Store
from streamseg.store.readonly import ReadOnlyStore, open_reader
from streamseg.traits.learner import TraitLearner

__all__ = ["ReadError", "ReadView", "open_view"]


class ReadError(Exception):
    """The store cannot be read as asked; the message is one line: what and what to do."""


def describe_store(settings: Settings) -> str:
    """The store as messages name it: its URI without secrets, and a Redis prefix.

    >>> from streamseg.config import load_settings
    >>> describe_store(load_settings(overrides={"store": {"uri": "redis://:pw@r:6379/0"}}))
    "redis://:***@r:6379/0 (prefix 'streamseg')"
    """
    where = redact_uri(settings.store.uri)
    if settings.store.uri.startswith(("redis://", "rediss://", "unix://")):
        where += f" (prefix {settings.store.redis_prefix!r})"
    return where


def open_view(settings: Settings) -> ReadView:
    """A :class:`ReadView` of the store ``settings.store`` names, opened to read only;
    every failure to open it is a :class:`ReadError`. Close it with :meth:`ReadView.close`."""
    where = describe_store(settings)
    try:
        store = open_reader(settings.store)
    except (OSError, ValueError) as error:
        raise ReadError(f"cannot read store {where}: {error}") from None
    try:
        return ReadView(settings, store)
    except BaseException:
        store.close()
        raise


class ReadView:
    """The model and clock of ``store`` as its workers last wrote them, read only."""

    def __init__(self, settings: Settings, store: ReadOnlyStore | Store) -> None:
        self.settings = settings
        self.store = store
        self.where = describe_store(settings)
        self.meta: dict[str, Any] = store.meta()
        interrupted = reseed_in_progress(self.meta)
        if interrupted:
            raise ReadError(f"{self.where}: {interrupted}")
        checkpoint = store.load_model()
        if is_legacy(checkpoint):
            raise ReadError(f"{self.where} was written by an earlier version of streamseg: "
                            "start one worker of this version on it once to upgrade it")
        stored = self.meta.get("settings") or record_from_checkpoint(checkpoint)
        try:
            check_stored_settings(stored, settings, where=self.where)
        except ConfigError as error:
            lines = [line.strip().rstrip(":") for line in str(error).splitlines()
                     if line.strip()]
            raise ReadError(": ".join(lines[:1]) + ": " + "; ".join(lines[1:])
                            + " (read commands need the store's settings: "
                            "use the configuration the service runs with)") from None
        try:
            restored = restore_model(checkpoint, settings)
        except (ValueError, KeyError, TypeError) as error:
            raise ReadError(f"{self.where}: the stored model cannot be read ({error}); "
                            "was it written by a newer version of streamseg?") from None
        self.model = restored.model
        names = dict(restored.names)
        # The summaries are written with every batch, the checkpoint now and then.
        names.update({int(s["segment"]): s["name"] for s in self.meta.get("segments") or []
                      if s.get("name")})
        self.segment_names: dict[int, str] = names
        dim = len(VECTOR_FIELDS)
        shares = Shares(dim, SCALE_FLOOR)
        partitions = store.read_partitions()
        shares.set_others({name: Share.from_json(part.model, dim, SCALE_FLOOR)
                           for name, part in partitions.items()})
        #: Customers the partitions count (what their owners wrote with every batch).
        self.counted = sum(part.customers for part in partitions.values())
        #: The standardiser over every partition's customers (what workers score with).
        self.scaler: OnlineStandardizer = shares.view()
        #: The trait model, the sum of every partition's share (None: traits disabled).
        self.traits: TraitLearner | None = None
        if settings.traits.enabled:
            self.traits = TraitLearner(settings.traits.horizon_days,
                                       settings.traits.snapshot_every_days)
            self.traits.set_others({name: (part.model or {}).get("traits")
                                    for name, part in partitions.items()})
        watermark = shares.watermark()
        if watermark is None and self.meta.get("watermark") is not None:
            watermark = float(self.meta["watermark"])
        self.watermark: float | None = watermark

    def now(self) -> float:
        """The service clock: the event-time watermark (every partition's latest event
        time), or the machine's clock with ``pipeline.clock: wall``."""
        if self.settings.pipeline.clock == "wall":
            return time.time()
        return self.watermark if self.watermark is not None else 0.0

    @property
    def centroids(self) -> np.ndarray | None:
        """The published centroids, or None before the model was seeded."""
        return np.asarray(self.model.centroids, dtype=float) if self.model.ready else None

    def customers(self) -> Iterator[CustomerState]:
        """Every stored customer. Raises :class:`ReadError` up front when the store counts
        customers in its partitions but holds no customer record (deleted keys)."""
        self.check_customers()
        return self.store.iter_customers()

    def check_customers(self) -> None:
        """:class:`ReadError` when the partitions count customers whose records are gone."""
        counted = self.counted
        if counted and next(iter(self.store.iter_customers()), None) is None:
            raise ReadError(
                f"{self.where} counts {counted} customers in its partitions (and its model "
                "was fitted on them) but holds no customer record: the customers' keys were "
                "deleted, or store.uri / store.redis_prefix point at the wrong place; "
                "restore the store from a backup, or replay the events into a new store")

    def vectors(self, states: Sequence[CustomerState]) -> np.ndarray:
        """The customers' model-space vectors recomputed from their stored features at
        the service clock with the current standardiser (one space for all of them,
        whatever the age of their stored vectors)."""
        raws = raw_vectors([s.features for s in states], self.now(), self.settings.features)
        return standardise(self.scaler, raws)

    def close(self) -> None:
        self.store.close()
