"""A uniform sample of customers, chosen by a hash of their id, with their current state.

Refinement runs Lloyd iterations over the sampled customers; the others keep their
segment, and their contribution to the per-segment sums is held fixed. A sampled
customer's vector and segment are updated in place whenever the customer or the model
changes them, so the sample always describes the *current* population.

Who is sampled depends on the customer's id alone: a customer is in the sample when the
hash of its id, as a number in ``[0, 1)``, is below the sampling :attr:`Sample.rate`.
So every worker knows, without asking anyone, which of its customers are sampled; the
samples of several workers add up to the sample of the whole population; and the sample
is the same after a restart. The rate starts at 1 (everyone) and is halved whenever the
sample outgrows its capacity, which drops the customers whose hash is in the upper half:
the sample stays uniform and its size between half and all of the capacity.

Each row remembers the data partition its customer belongs to (whoever owns the
partition writes the row), and the rows changed since the last
:meth:`Sample.take_changes` are kept, so that a store can write the sample
incrementally, partition by partition.

>>> sample = Sample(capacity=3, dim=1)
>>> for i in range(5):
...     _ = sample.offer(f"c{i}", "p0", np.array([float(i)]), segment=0)
>>> len(sample) <= 3, sample.rate < 1.0
(True, True)
>>> all(sample.hash_of(key) < sample.rate for key in sample.keys)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from streamseg.model.stats import FloatArray, IntArray

__all__ = ["Sample", "hash_of"]

#: The segment of a sampled customer the model has not assigned yet (warm-up).
UNASSIGNED = -1


def hash_of(key: str) -> float:
    """The customer's place in ``[0, 1)``: the first 8 bytes of BLAKE2b of its id.

    >>> 0.0 <= hash_of("c1") < 1.0, hash_of("c1") == hash_of("c1")
    (True, True)
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Sample:
    """Sampled customers: key -> (data partition, vector, segment), in arrays."""

    def __init__(self, capacity: int, dim: int, rate: float = 1.0) -> None:
        self.capacity = capacity
        self.rate = rate
        self.keys: list[str] = []
        self.partitions: list[str] = []
        self.index: dict[str, int] = {}
        initial = min(max(capacity, 1), 1024)
        self.vectors = np.zeros((initial, dim))
        self.segments = np.zeros(initial, dtype=np.int64)
        # Partition -> keys whose row changed (or left) since take_changes().
        self._changed: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    hash_of = staticmethod(hash_of)

    def wants(self, key: str) -> bool:
        """Whether ``key`` belongs in the sample at the current rate."""
        return hash_of(key) < self.rate

    # -- rows -------------------------------------------------------------------------
    def offer(self, key: str, partition: str, vector: FloatArray, segment: int) -> bool:
        """Add a customer seen for the first time if its hash is below the rate; keep
        the sample within its capacity. True if it was added."""
        if key in self.index or not self.wants(key):
            return False
        slot = len(self.keys)
        if slot == self.vectors.shape[0]:
            self._grow(max(2 * slot, 1))
        self.keys.append(key)
        self.partitions.append(partition)
        self.index[key] = slot
        self.vectors[slot] = vector
        self.segments[slot] = segment
        self._changed.setdefault(partition, set()).add(key)
        while len(self.keys) > self.capacity:
            self.thin(self.rate / 2)
        return key in self.index

    def update(self, slot: int, vector: FloatArray, segment: int) -> None:
        """A sampled customer's new vector and segment."""
        self.vectors[slot] = vector
        self.segments[slot] = segment
        self._changed.setdefault(self.partitions[slot], set()).add(self.keys[slot])

    def update_many(self, slots: IntArray, vectors: FloatArray, segments: IntArray) -> None:
        self.vectors[slots] = vectors
        self.segments[slots] = segments
        for slot in slots.tolist():
            self._changed.setdefault(self.partitions[slot], set()).add(self.keys[slot])

    def set_segment(self, slot: int, segment: int) -> None:
        self.segments[slot] = segment
        self._changed.setdefault(self.partitions[slot], set()).add(self.keys[slot])

    def load(self, partition: str, rows: Iterable[tuple[str, Sequence[float], int]]) -> None:
        """Rows of a partition as a store keeps them (no change to write back)."""
        for key, vector, segment in rows:
            if key in self.index or not self.wants(key):
                continue
            slot = len(self.keys)
            if slot == self.vectors.shape[0]:
                self._grow(max(2 * slot, 1))
            self.keys.append(key)
            self.partitions.append(partition)
            self.index[key] = slot
            self.vectors[slot] = np.asarray(vector, dtype=np.float64)
            self.segments[slot] = segment

    # -- shrinking --------------------------------------------------------------------
    def thin(self, rate: float) -> None:
        """Lower the rate to ``rate``: customers whose hash is above it leave."""
        self.rate = min(self.rate, rate)
        keep = [i for i, key in enumerate(self.keys) if hash_of(key) < self.rate]
        for i, key in enumerate(self.keys):
            if hash_of(key) >= self.rate:
                self._changed.setdefault(self.partitions[i], set()).add(key)
        self._keep(keep)

    def drop_partition(self, partition: str) -> None:
        """Forget the rows of a partition (another worker owns it now)."""
        self._keep([i for i, p in enumerate(self.partitions) if p != partition])
        self._changed.pop(partition, None)

    def _keep(self, slots: list[int]) -> None:
        n = len(slots)
        self.vectors[:n] = self.vectors[slots]
        self.segments[:n] = self.segments[slots]
        self.keys = [self.keys[i] for i in slots]
        self.partitions = [self.partitions[i] for i in slots]
        self.index = {key: i for i, key in enumerate(self.keys)}

    def _grow(self, size: int) -> None:
        n = len(self.keys)
        vectors = np.zeros((size, self.vectors.shape[1]))
        vectors[:n] = self.vectors[:n]
        segments = np.zeros(size, dtype=np.int64)
        segments[:n] = self.segments[:n]
        self.vectors, self.segments = vectors, segments

    # -- reading ----------------------------------------------------------------------
    def rows(self) -> tuple[FloatArray, IntArray]:
        """The vectors (a view) and segments (a copy) of every row."""
        n = len(self.keys)
        return self.vectors[:n], self.segments[:n].copy()

    def take_changes(self) -> dict[str, dict[str, tuple[int, list[float]] | None]]:
        """Per partition, the rows changed since the last call: key -> (segment, vector),
        or None for a customer that left the sample."""
        changes: dict[str, dict[str, tuple[int, list[float]] | None]] = {}
        for partition, keys in self._changed.items():
            out: dict[str, tuple[int, list[float]] | None] = {}
            for key in keys:
                slot = self.index.get(key)
                out[key] = None if slot is None else (int(self.segments[slot]),
                                                       self.vectors[slot].tolist())
            changes[partition] = out
        self._changed = {}
        return changes
