"""The model several workers share: each partition's share of it, and a worker's view.

Everything of the model that describes customers is kept per data partition, by the
partition's owner, as absolute values written with the partition's customers in the same
fenced write (a :class:`Share`, stored as ``Partition.model``):

- the per-segment sums, square sums and counts of its customers (the model's
  ``partition_stats``);
- the standardiser's count, mean and M2 over its customers' current raw vectors;
- its *clock*: the latest event time applied from it;
- how many customer scorings it has had (the refiner's cadence counts them).

The global model is the sum over partitions: statistics add, standardisers merge
(Chan et al.), clocks take the maximum. A worker's *view* (:class:`Shares`) is its own
partitions' live shares plus the other partitions' shares as last read from the store
(:meth:`Shares.set_others`, every ``pipeline.view_refresh_s``). Every worker scores with
its view, so all of them standardise and assign with the same statistics, up to the
refresh interval and each one's own updates since.

The service clock (the watermark) is the latest clock over all partitions. A partition
whose consumer is behind (records waiting in Kafka) has its idle customers re-scored at
its own clock, not the service clock: their purchases may still be queued, and the
inactivity timer must not call them lapsed for it (see
:meth:`Shares.inactivity_clock`).

>>> shares = Shares(dim=1, floor=0.0)
>>> shares.scaler_of("p0").learn_many(np.array([[1.0], [3.0]]))
>>> shares.advance("p0", 100.0)
>>> other = Share(OnlineStandardizer(1), clock=250.0, updates=2)
>>> other.scaler.learn_many(np.array([[5.0], [7.0]]))
>>> shares.set_others({"p1": Share.from_json(other.to_json(), dim=1)})
>>> shares.view().mean.tolist(), shares.watermark(), shares.inactivity_clock("p0", {"p0"})
([4.0], 250.0, 100.0)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamseg.core.scaling import OnlineStandardizer
from streamseg.model.stats import ClusterStats

__all__ = ["SHARE_FORMAT", "Share", "Shares"]

#: The stored format of a share (``Partition.model``).
SHARE_FORMAT = 1


@dataclass
class Share:
    """One partition's share of the model (see the module docstring)."""

    scaler: OnlineStandardizer
    clock: float | None = None
    #: Per-segment statistics of its customers; None before seeding, and for a model
    #: kind that keeps none.
    stats: ClusterStats | None = None
    updates: int = 0
    #: Its customers waiting in the model's warm-up buffer (the refiner seeds once the
    #: buffers of every partition hold ``model.warmup`` customers).
    buffered: int = 0
    #: The model version at which the re-assignment sweep last placed all its customers
    #: again (-1: never); the refiner releases a reorganisation's held centroids once
    #: every partition swept at it.
    swept: int = -1

    def to_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "format": SHARE_FORMAT,
            "scaler": {"n": self.scaler.n, "mean": self.scaler.mean.tolist(),
                       "m2": self.scaler.m2.tolist()},
            "clock": self.clock,
            "updates": self.updates,
            "buffered": self.buffered,
            "swept": self.swept,
            "stats": None if stats is None else {
                "sums": stats.sums.tolist(), "sqsums": stats.sqsums.tolist(),
                "counts": stats.counts.tolist()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, dim: int,
                  floor: np.ndarray | float = 0.0) -> Share:
        """A stored share (an empty one for ``None``: a partition never written)."""
        scaler = OnlineStandardizer(dim, floor)
        if data is None:
            return cls(scaler)
        if data.get("format") != SHARE_FORMAT:
            raise ValueError(f"unsupported model share format {data.get('format')!r}")
        stored = data["scaler"]
        scaler.n = int(stored["n"])
        scaler.mean = np.asarray(stored["mean"], dtype=np.float64).reshape(dim)
        scaler.m2 = np.asarray(stored["m2"], dtype=np.float64).reshape(dim)
        stats = data.get("stats")
        return cls(
            scaler,
            None if data.get("clock") is None else float(data["clock"]),
            None if stats is None else ClusterStats(
                np.asarray(stats["sums"], dtype=np.float64).reshape(len(stats["counts"]), -1),
                np.asarray(stats["sqsums"], dtype=np.float64),
                np.asarray(stats["counts"], dtype=np.int64)),
            int(data.get("updates", 0)),
            int(data.get("buffered", 0)),
            int(data.get("swept", -1)),
        )


class Shares:
    """A worker's view: its own partitions' standardisers, clocks and update counts,
    live, and the other partitions' shares as last read."""

    def __init__(self, dim: int, floor: np.ndarray | float) -> None:
        self.dim = dim
        self.floor = floor
        self.scalers: dict[str, OnlineStandardizer] = {}
        self.clocks: dict[str, float] = {}
        self.updates: dict[str, int] = {}
        #: Own partitions: the model version their last complete sweep started at.
        self.swept: dict[str, int] = {}
        #: The other partitions' shares, as last read (see :meth:`set_others`).
        self.others: dict[str, Share] = {}
        self._others_scaler = OnlineStandardizer(dim, floor)
        #: The sum of the other partitions' statistics (None: none has any).
        self.others_stats: ClusterStats | None = None
        self._view: OnlineStandardizer | None = None

    # -- own partitions ------------------------------------------------------------------
    def own(self, name: str, share: Share) -> None:
        """This worker owns partition ``name`` now, with its stored ``share``."""
        if name in self.others:
            self.set_others({n: s for n, s in self.others.items() if n != name})
        self.scalers[name] = share.scaler
        if share.clock is not None:
            self.clocks[name] = share.clock
        else:
            self.clocks.pop(name, None)
        self.updates[name] = share.updates
        self.swept[name] = share.swept
        self._view = None

    def release(self, name: str) -> None:
        """Partition ``name`` is another worker's now (its share comes with the next
        refresh)."""
        self.scalers.pop(name, None)
        self.clocks.pop(name, None)
        self.updates.pop(name, None)
        self.swept.pop(name, None)
        self._view = None

    def scaler_of(self, name: str) -> OnlineStandardizer:
        """The partition's standardiser, to learn and unlearn its customers with."""
        scaler = self.scalers.get(name)
        if scaler is None:
            scaler = self.scalers[name] = OnlineStandardizer(self.dim, self.floor)
        self._view = None  # about to change
        return scaler

    def advance(self, name: str, at: float) -> None:
        """An event of partition ``name`` at ``at`` was applied."""
        if at > self.clocks.get(name, -np.inf):
            self.clocks[name] = at

    def scored(self, name: str, customers: int) -> None:
        self.updates[name] = self.updates.get(name, 0) + customers

    def share(self, name: str, stats: ClusterStats | None) -> Share:
        """The partition's share as its owner writes it."""
        return Share(self.scalers.get(name) or OnlineStandardizer(self.dim, self.floor),
                     self.clocks.get(name), stats, self.updates.get(name, 0),
                     swept=self.swept.get(name, -1))

    # -- the others ------------------------------------------------------------------
    def set_others(self, shares: dict[str, Share]) -> None:
        """The other partitions' shares, as just read (those of partitions this worker
        owns are left out)."""
        self.others = {name: share for name, share in shares.items()
                       if name not in self.scalers}
        scaler = OnlineStandardizer(self.dim, self.floor)
        stats: ClusterStats | None = None
        for name in sorted(self.others):
            share = self.others[name]
            scaler.merge(share.scaler)
            if share.stats is not None:
                stats = share.stats.copy() if stats is None else stats + share.stats
        self._others_scaler = scaler
        self.others_stats = stats
        self._view = None

    def buffered(self) -> int:
        """Customers in the other partitions' warm-up buffers, as last read."""
        return sum(share.buffered for share in self.others.values())

    # -- the view ----------------------------------------------------------------------
    def view(self) -> OnlineStandardizer:
        """The standardiser of every customer: own partitions' and the others'.

        One partition and no others: its own standardiser itself, so that a worker on
        its own computes exactly what it always did.
        """
        if self._view is not None:
            return self._view
        if len(self.scalers) == 1 and self._others_scaler.n == 0:
            self._view = next(iter(self.scalers.values()))
            return self._view
        view = OnlineStandardizer(self.dim, self.floor)
        for name in sorted(self.scalers):
            view.merge(self.scalers[name])
        view.merge(self._others_scaler)
        self._view = view
        return view

    def watermark(self) -> float | None:
        """The service clock: the latest clock of every partition (None: no event yet)."""
        clocks = [*self.clocks.values(),
                  *(share.clock for share in self.others.values() if share.clock is not None)]
        return max(clocks) if clocks else None

    def inactivity_clock(self, name: str, behind: Collection[str]) -> float | None:
        """The time up to which the idle customers of partition ``name`` are re-scored:
        the service clock, or the partition's own clock while its consumer is
        ``behind`` (its customers' purchases may still be waiting in the log)."""
        if name in behind:
            return self.clocks.get(name)
        return self.watermark()

    def total_updates(self) -> int:
        """Customer scorings over every partition (own live, others as read)."""
        return sum(self.updates.values()) + sum(s.updates for s in self.others.values())
