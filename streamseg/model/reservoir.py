"""A uniform sample of customers with their current vector and segment.

Refinement runs Lloyd iterations over the customers of this sample; the others keep
their segment, and their contribution to the per-segment sums is held fixed. A sampled
customer's vector and segment are updated in place whenever the customer or the model
changes them, so the sample always describes the *current* population.

>>> rng = np.random.default_rng(0)
>>> res = Reservoir(capacity=2, dim=1)
>>> for i in range(5):
...     res.offer(f"c{i}", np.array([float(i)]), segment=0, rng=rng)
>>> len(res), res.n_seen, res.keys == [k for k in res.keys if k in res.index]
(2, 5, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamseg.model.stats import FloatArray

__all__ = ["Reservoir", "VectorLookup"]

#: Given customer keys, their current vectors (for restoring a light checkpoint).
#: ``lookup(keys) -> {key: (vector, segment)}``: each customer's current model-space
#: vector and segment as the caller's store holds them (see ``CustomerKMeans.to_state``).
VectorLookup = Callable[[list[str]], dict[str, tuple[Sequence[float], int]]]


class Reservoir:
    """Uniform sample (algorithm R) of distinct customers with their current state.

    Only customers offered for the first time go through :meth:`offer`; a sampled
    customer's vector and segment are updated in place, so the sample always describes
    the *current* population.
    """

    def __init__(self, capacity: int, dim: int) -> None:
        self.capacity = capacity
        self.n_seen = 0
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        # Arrays grow geometrically up to ``capacity``, so that a reservoir sized for
        # "every customer" costs nothing until the customers exist.
        initial = min(capacity, 1024)
        self.vectors = np.zeros((initial, dim))
        self.segments = np.zeros(initial, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def offer(self, key: str, vector: FloatArray, segment: int, rng: np.random.Generator) -> None:
        """Algorithm R step for a customer seen for the first time."""
        self.n_seen += 1
        if len(self.keys) < self.capacity:
            slot = len(self.keys)
            if slot == self.vectors.shape[0]:
                self._grow(min(self.capacity, 2 * slot))
            self.keys.append(key)
        else:
            slot = int(rng.integers(self.n_seen))
            if slot >= self.capacity:
                return
            # The evicted customer stays in the per-segment sums; it merely stops
            # being refined until it updates itself.
            del self.index[self.keys[slot]]
            self.keys[slot] = key
        self.index[key] = slot
        self.vectors[slot] = vector
        self.segments[slot] = segment

    def _grow(self, size: int) -> None:
        n = len(self.keys)
        vectors = np.zeros((size, self.vectors.shape[1]))
        vectors[:n] = self.vectors[:n]
        segments = np.zeros(size, dtype=np.int64)
        segments[:n] = self.segments[:n]
        self.vectors, self.segments = vectors, segments

    def to_state(self, with_vectors: bool = True) -> dict[str, Any]:
        n = len(self.keys)
        return {
            "capacity": self.capacity,
            "n_seen": self.n_seen,
            "keys": list(self.keys),
            "vectors": self.vectors[:n].tolist() if with_vectors else None,
            # A light checkpoint leaves the segments to the store too: they change with
            # nearly every batch, and the store writes each customer's with its vector.
            "segments": self.segments[:n].tolist() if with_vectors else None,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], dim: int, lookup: VectorLookup | None = None
    ) -> Reservoir:
        res = cls(int(state["capacity"]), dim)
        res.n_seen = int(state["n_seen"])
        res.keys = [str(k) for k in state["keys"]]
        res.index = {k: i for i, k in enumerate(res.keys)}
        n = len(res.keys)
        if n > res.vectors.shape[0]:
            res.vectors = np.zeros((n, dim))
            res.segments = np.zeros(n, dtype=np.int64)
        if n:
            vectors, segments = state["vectors"], state["segments"]
            if vectors is None or segments is None:
                # A light checkpoint: the caller's store holds every sampled customer's
                # current vector and segment (those the model last assigned), so fetch
                # them there.
                if lookup is None:
                    raise ValueError("light checkpoint (no reservoir vectors or segments): "
                                     "pass a lookup")
                found = lookup(res.keys)
                missing = [k for k in res.keys if k not in found]
                if missing:
                    raise ValueError(f"store lacks {len(missing)} sampled customers, "
                                     f"e.g. {missing[:3]}")
                if vectors is None:
                    vectors = [found[k][0] for k in res.keys]
                if segments is None:
                    segments = [found[k][1] for k in res.keys]
            res.vectors[:n] = np.asarray(vectors, dtype=np.float64).reshape(n, dim)
            res.segments[:n] = np.asarray(segments, dtype=np.int64)
        return res
