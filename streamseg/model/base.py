"""The interface every segmentation model offers the engine.

The unit of a segmentation model is the *customer*, not the event: the engine keeps each
customer's current model-space vector and segment in its store and hands them back to the
model when the customer changes, so that the model can take the customer's old vector out
of its old segment before placing the new one. The model answers with a list of
:class:`Assignment` objects, which the engine must write back to its store.

>>> import numpy as np
>>> a = Assignment(key="c1", segment=2, vector=np.array([0.5, -1.0]), by_model_update=False)
>>> a.segment, a.vector.tolist()
(2, [0.5, -1.0])
>>> a == Assignment("c1", 2, np.array([0.5, -1.0]), False)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Assignment", "SegmentModel"]


@dataclass(frozen=True, eq=False)
class Assignment:
    """A customer's segment, as the caller must now store it.

    Parameters
    ----------
    key
        The customer's key, as given to ``update_customer``.
    segment
        The segment id, in ``range(n_clusters)``. Ids keep their meaning across
        refinements and re-seeds (new centroids are matched to the old ids).
    vector
        The vector the segment was computed for: the customer's current vector as the
        model knows it. Store it together with the segment; it is what the model expects
        back as ``previous`` on the customer's next update.
    by_model_update
        True when the customer was (re)assigned because the model changed (seeding,
        refinement, re-seed) rather than because of its own update.

    """

    key: str
    segment: int
    vector: np.ndarray
    by_model_update: bool

    # The generated __eq__ would compare the arrays element-wise and then fail on
    # ``bool(array)``; compare them as values instead. Assignments are not hashable.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Assignment):
            return NotImplemented
        return (
            self.key == other.key
            and self.segment == other.segment
            and self.by_model_update == other.by_model_update
            and np.array_equal(self.vector, other.vector)
        )

    __hash__ = None  # type: ignore[assignment]


@runtime_checkable
class SegmentModel(Protocol):
    """What the engine may rely on, whichever model kind it was built with.

    Contract with the caller:

    - ``update_customer(key, vector, previous, previous_segment)`` is called each time a
      customer's vector changes. ``previous``/``previous_segment`` are what the caller
      stored from the last :class:`Assignment` for that key (``None`` for a customer the
      model never assigned). Every returned assignment must be stored, including those
      of *other* customers (``by_model_update=True``), or the model's per-segment sums
      drift away from the store.
    - ``flush()`` is called at the end of a finite stream (or at shutdown); its
      assignments must be stored too.
    - ``nearest(vector)`` scores a vector without learning from it; it raises
      ``RuntimeError`` while ``ready`` is False.
    - ``version`` increases each time centroids are refined or re-seeded, i.e. when
      segments of customers who did not update may have changed meaning slightly.
    - ``to_state()`` is JSON-serialisable; ``type(model).from_state(state)`` restores a
      model that behaves identically on the same subsequent input. Checkpoint the state
      together with the customer store, so that both describe the same instant.

    """

    @property
    def ready(self) -> bool:
        """Whether the model has centroids and assigns customers."""
        ...

    @property
    def centroids(self) -> np.ndarray:
        """Centroids as a ``(n_clusters, dim)`` array (a copy)."""
        ...

    @property
    def sizes(self) -> np.ndarray:
        """Number of customers in each segment, as a ``(n_clusters,)`` array."""
        ...

    @property
    def version(self) -> int:
        """Incremented each time centroids are refined or re-seeded."""
        ...

    def update_customer(
        self,
        key: str,
        vector: np.ndarray,
        previous: np.ndarray | None,
        previous_segment: int | None,
    ) -> list[Assignment]:
        """Learn a customer's new vector; return the assignments the caller must store."""
        ...

    def update_customers(
        self,
        keys: Sequence[str],
        vectors: np.ndarray,
        previous: Sequence[np.ndarray | None],
        previous_segments: Sequence[int | None],
    ) -> list[Assignment]:
        """``update_customer`` for many distinct customers at once (one batch)."""
        ...

    def flush(self) -> list[Assignment]:
        """Finish pending work (end of a finite stream); return assignments to store."""
        ...

    def nearest(self, vector: np.ndarray) -> int:
        """The segment whose centroid is nearest to ``vector``; learns nothing."""
        ...

    def to_state(self, with_vectors: bool = True) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the model.

        ``with_vectors=False`` may leave out per-customer vectors that the caller's store
        already holds (a light checkpoint); ``from_state`` then fetches them through
        ``lookup(keys) -> {key: (vector, segment)}``.
        """
        ...

    @classmethod
    def from_state(
        cls, state: dict[str, Any], lookup: Any = None
    ) -> SegmentModel:
        """Restore a model from :meth:`to_state` output."""
        ...
