"""The store interface: customers, partitions, the model checkpoint, the lease.

Every backend (memory, SQLite, Redis) implements :class:`Store`.

Partitions
    A *partition* is the unit of ownership: a Kafka partition (``kafka:<topic>:<n>``),
    or :data:`LOCAL_PARTITION` for a source that one worker reads whole (a file, stdin).
    Every customer belongs to the partition its events come from (producers key by
    customer id). Everything a batch writes that belongs to a partition -- its
    customers, its source positions, its share of the segment sizes and of the customer
    count, the change events of its last batch (the outbox) -- is stored per partition,
    as absolute values (:class:`Partition`), in the same atomic write as its customers.
    Totals (:meth:`Store.segment_sizes`, :meth:`Store.count`) are sums over partitions.

Fencing
    A worker takes a partition when it is assigned (:meth:`Store.take_partition`), which
    bumps the partition's owner *epoch*. Every write names the epoch its writer holds
    for each partition, and the store refuses the whole write (:class:`FencedError`) if
    another worker took one of them since: a worker that was paused and wakes up after
    its partitions moved cannot roll back customers, positions or counts.

The lease
    The model is one per store; one worker at a time holds it (:meth:`Store.acquire_lease`,
    renewed before it expires). A write that carries a lease token is refused unless the
    token is still the lease's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streamseg.core.state import LOCAL_PARTITION, CustomerState

#: A sampled customer's row: (segment, model-space vector); segment -1 = not assigned
#: yet (the model is warming up).
SampleRow = tuple[int, list[float]]

__all__ = [
    "LOCAL_PARTITION",
    "SampleRow",
    "BatchWrite",
    "FencedError",
    "LeaseHeld",
    "Partition",
    "PartitionWrite",
    "Store",
]

@dataclass(slots=True)
class Partition:
    """A partition's state besides its customers' records, as stored (absolute values)."""

    name: str
    #: The owner epoch: bumped by every :meth:`Store.take_partition`.
    epoch: int = 0
    #: Source stream -> next position (a Kafka partition has one stream; ``local`` has
    #: one per file).
    positions: dict[str, int] = field(default_factory=dict)
    #: Segment -> customers of this partition in it.
    sizes: dict[int, int] = field(default_factory=dict)
    #: Customers of this partition.
    customers: int = 0
    #: The change events (CloudEvents JSON) of its last batch: published after the write
    #: and again by the next owner or after a restart (the transactional outbox).
    outbox: list[str] = field(default_factory=list)
    #: Its share of the shared model (JSON-ready; see :mod:`streamseg.engine.shared`):
    #: its customers' per-segment sums, the standardiser's count, mean and M2, its clock.
    #: None in a write: unchanged.
    model: dict[str, Any] | None = None


@dataclass(slots=True)
class PartitionWrite:
    """One partition's part of a batch.

    ``partition`` holds the epoch the writer took, and the partition's state after the
    batch: its positions (merged into the stored ones), sizes and customer count
    (replacing the stored ones) and this batch's outbox (replacing the stored one).
    """

    partition: Partition
    states: list[CustomerState] = field(default_factory=list)
    #: Rows of the model's sample of this partition's customers that changed: customer
    #: -> (segment, vector), or None for a customer that left the sample.
    sample: dict[str, SampleRow | None] = field(default_factory=dict)


@dataclass(slots=True)
class BatchWrite:
    """One batch's write: applied atomically, or refused whole (:class:`FencedError`)."""

    partitions: list[PartitionWrite] = field(default_factory=list)
    #: The model checkpoint (the model's persisted state, see
    #: :mod:`streamseg.engine.checkpoint`); None: unchanged since the last write.
    model_checkpoint: dict[str, Any] | None = None
    #: Name -> JSON-ready value, merged into the store's metadata (watermark, ...).
    meta: dict[str, Any] = field(default_factory=dict)
    #: The lease token the writer holds; the write is refused unless it is the lease's
    #: (None: not checked).
    lease: str | None = None


class FencedError(RuntimeError):
    """A write was refused: another worker took a partition, or the lease, since."""

    def __init__(self, partitions: Iterable[str] = (), lease: bool = False) -> None:
        self.partitions = sorted(partitions)
        self.lease = lease
        what = []
        if self.partitions:
            what.append(f"partition(s) {', '.join(self.partitions)} taken by another worker")
        if lease:
            what.append("the model lease is held by another worker")
        super().__init__("write refused: " + "; ".join(what or ["fenced"]))


class LeaseHeld(RuntimeError):
    """Another live worker holds the store's model lease."""

    def __init__(self, holder: str, expires_in: float) -> None:
        self.holder = holder
        self.expires_in = expires_in
        super().__init__(f"another worker holds this store's model lease: {holder} (it "
                         f"expires in {expires_in:.1f} s unless renewed)")


class Store(ABC):
    """Where customer states, partitions, the model and the lease live."""

    # -- customers --------------------------------------------------------------------
    @abstractmethod
    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """States of the given customers that exist (missing ids are absent)."""

    @abstractmethod
    def iter_customers(self) -> Iterator[CustomerState]:
        """Every customer state (for export and reports)."""

    def get(self, customer_id: str) -> CustomerState | None:
        return self.get_many([customer_id]).get(customer_id)

    # -- partitions -------------------------------------------------------------------
    @abstractmethod
    def take_partition(self, name: str) -> Partition:
        """Bump the partition's owner epoch; return its stored state with the new epoch."""

    @abstractmethod
    def read_partition(self, name: str) -> Partition:
        """The partition's stored state (epoch 0 and nothing else if it is unknown)."""

    @abstractmethod
    def partition_names(self) -> list[str]:
        """Every partition written so far."""

    def read_partitions(self, names: Iterable[str] | None = None) -> dict[str, Partition]:
        """Several partitions (default: all) as one consistent read, without outboxes."""
        return {name: self.read_partition(name)
                for name in (self.partition_names() if names is None else names)}

    @abstractmethod
    def read_sample(self, names: Iterable[str]) -> dict[str, dict[str, SampleRow]]:
        """The sample rows of the partitions ``names``: partition -> customer -> row."""

    def snapshot(self, names: Iterable[str]) -> tuple[dict[str, Partition],
                                                      dict[str, dict[str, SampleRow]]]:
        """Partitions and their sample rows read together, so that each partition's
        model share and its rows describe the same write (what a refinement reads)."""
        names = list(names)
        return self.read_partitions(names), self.read_sample(names)

    @abstractmethod
    def customers_page(self, partition: str, cursor: str, limit: int) -> tuple[list[str], str]:
        """About ``limit`` customers of ``partition`` after ``cursor`` ('' = from the
        start), and the cursor to go on from ('' once the partition is done). A pass
        from '' to '' lists every customer stored in the partition when it started and
        not moved since (the re-assignment sweep)."""

    # -- the batch --------------------------------------------------------------------
    @abstractmethod
    def write_batch(self, write: BatchWrite) -> None:
        """Write the batch atomically; raise :class:`FencedError` (writing nothing) when
        a partition's epoch or the lease is no longer the writer's."""

    @abstractmethod
    def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
        """Up to ``limit`` customers of ``partition`` whose ``next_rescore_at`` is <=
        ``until``, earliest first (ties by id)."""

    # -- the model and metadata -------------------------------------------------------
    @abstractmethod
    def load_model(self) -> dict[str, Any] | None:
        """The last model checkpoint written, or None."""

    def model_stamp(self) -> Any:
        """The ``stamp`` part of the model checkpoint: it changes whenever the model's
        version or names do, so that a worker can tell cheaply whether to read the rest."""
        return (self.load_model() or {}).get("stamp")

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """The metadata (watermark, settings, segment summaries, ...)."""

    # -- the lease --------------------------------------------------------------------
    @abstractmethod
    def acquire_lease(self, holder: str, ttl_s: float, *, replace_own: bool = False) -> str:
        """Take the model lease for ``ttl_s`` seconds; return its token. Raises
        :class:`LeaseHeld` when another holder's lease has not expired. With
        ``replace_own``, a lease held under the same ``holder`` name is taken over (the
        same worker, restarted: the process that held it is gone, or will find its
        writes refused)."""

    @abstractmethod
    def renew_lease(self, token: str, ttl_s: float) -> bool:
        """Extend the lease if ``token`` still holds it; False when it does not."""

    @abstractmethod
    def release_lease(self, token: str) -> None:
        """Give the lease up if ``token`` holds it."""

    # -- totals over partitions ---------------------------------------------------------
    def count(self) -> int:
        """Customers stored: the sum over partitions."""
        return sum(self.read_partition(name).customers for name in self.partition_names())

    def segment_sizes(self) -> dict[int, int]:
        """Customers per segment: the sum over partitions (empty segments left out)."""
        sizes: dict[int, int] = {}
        for name in self.partition_names():
            for segment, n in self.read_partition(name).sizes.items():
                sizes[segment] = sizes.get(segment, 0) + n
        return {segment: n for segment, n in sorted(sizes.items()) if n > 0}

    def positions(self) -> dict[str, int]:
        """Every partition's source positions."""
        merged: dict[str, int] = {}
        for name in self.partition_names():
            merged.update(self.read_partition(name).positions)
        return merged

    def outbox(self) -> list[str]:
        """Every partition's outbox (the change events of its last batch)."""
        return [item for name in self.partition_names()
                for item in self.read_partition(name).outbox]

    # -- the connection ---------------------------------------------------------------
    def ping(self) -> bool:
        """True when the backend answers (readiness)."""
        return True

    def forget_cached(self) -> None:  # noqa: B027 - optional hook
        """Drop what the store remembers of customers it loaded or wrote (a rebalance:
        another worker may write them now)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release connections."""
