"""The re-assignment sweep: every stored customer put at its nearest centroid again.

A refinement moves the centroids and re-assigns the sampled customers; a customer
outside the sample keeps the segment it got when it was last scored, which may no longer
be its nearest. After each new model version, the owner of each partition goes through
its stored customers, page by page (``model.sweep_page`` customers), and the model
re-places each one at its unchanged vector (``CustomerKMeans.replace``, with the
hysteresis rule); those that move get a ``model_update`` change like any other. So the
segmentation follows the centroids for the whole population, not only for the sample,
while the memory stays that of one page.

:class:`Sweep` only remembers where the sweep is: the model version its pass started
at, and a cursor per partition. A pass that finishes with the version unchanged leaves
nothing to do until the next version.

>>> sweep = Sweep()
>>> sweep.pending(version=1)
True
>>> sweep.begin_if_needed(1, ["p0"]); sweep.next_partition()
'p0'
>>> sweep.advance("p0", ""); sweep.pending(1), sweep.pending(2)
(False, True)
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Sweep"]


class Sweep:
    """Progress of the re-assignment sweep over the partitions a worker owns."""

    def __init__(self) -> None:
        #: The model version the last complete pass started at (None: no pass yet).
        self.done: int | None = None
        #: The version the pass in progress started at, and its cursors.
        self.started: int | None = None
        self.cursors: dict[str, str] = {}
        #: Customers the pass in progress (or the last one) moved.
        self.moved = 0

    def pending(self, version: int) -> bool:
        """Whether a pass is due or in progress for model ``version``."""
        return self.done != version

    def begin_if_needed(self, version: int, partitions: Iterable[str]) -> None:
        """Start a pass over ``partitions`` unless one for ``version`` is in progress."""
        if self.started == version and self.cursors:
            return
        self.started = version
        self.cursors = {name: "" for name in sorted(partitions)}
        self.moved = 0

    def next_partition(self) -> str | None:
        """The partition to read the next page from (None: the pass is over)."""
        return next(iter(self.cursors), None)

    def advance(self, partition: str, cursor: str) -> None:
        """A page of ``partition`` was read; ``cursor`` is where it goes on ('' = done)."""
        if cursor:
            self.cursors[partition] = cursor
            return
        self.cursors.pop(partition, None)
        if not self.cursors:
            self.done = self.started

    def forget(self, partitions: Iterable[str]) -> None:
        """Partitions moved away (or came in): start the next pass afresh."""
        del partitions
        self.started = None
        self.cursors = {}
        self.done = None
