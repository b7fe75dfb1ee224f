"""The customer states a worker keeps between batches, and when it must forget them.

A worker owns its customers: Kafka partitions events by customer id and gives each
partition to one worker, so the state a worker last wrote is the stored state, and
reading it back every batch would only repeat the write. The cache keeps the states it
was given, least recently written first, up to a limit.

It forgets them, here and only here, when that ownership may have changed:

* a partition moved (:meth:`StateCache.forget_partitions`): revoked, its customers may
  be written by another worker from now on; assigned, another worker may have written
  them since this one last did;
* a new engine starts (recovery after a failed batch): a new, empty cache, so a
  half-applied batch is never reused.

Forgetting also clears what the store itself remembers of the customers it wrote (the
Redis store's memo of chunk counts).

>>> from streamseg.core.features import CustomerFeatures
>>> from streamseg.core.state import CustomerState
>>> cache = StateCache(limit=2)
>>> cache.put_many([CustomerState(c, CustomerFeatures.empty(), partition=c.upper())
...                 for c in "abc"])
>>> sorted(cache.keys()), cache.get("a")
(['b', 'c'], None)
>>> cache.forget_partitions({"B"}); sorted(cache.keys())
['c']
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, KeysView

from streamseg.core.state import CustomerState

__all__ = ["StateCache"]


class StateCache:
    """Customer states by id, least recently written first; see the module docstring.

    Parameters
    ----------
    limit
        Most states kept (``pipeline.state_cache_size``); 0 keeps none.
    forget_store_memo
        Called whenever states are forgotten, so that the store forgets too.
    """

    def __init__(self, limit: int, forget_store_memo: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self._states: dict[str, CustomerState] = {}
        self._forget_store_memo = forget_store_memo

    def __len__(self) -> int:
        return len(self._states)

    def keys(self) -> KeysView[str]:
        return self._states.keys()

    def get(self, customer_id: str) -> CustomerState | None:
        return self._states.get(customer_id)

    def put_many(self, states: Iterable[CustomerState]) -> None:
        """Keep ``states`` (about to be written), evicting the least recently written."""
        if self.limit <= 0:
            return
        cache = self._states
        for state in states:
            cache.pop(state.customer_id, None)
            cache[state.customer_id] = state
        excess = len(cache) - self.limit
        if excess > 0:
            for cid in list(itertools.islice(cache, excess)):
                del cache[cid]

    def forget_partitions(self, partitions: Collection[str]) -> None:
        """Forget the states of customers of ``partitions`` (they moved)."""
        if not partitions:
            return
        for cid in [cid for cid, s in self._states.items() if s.partition in partitions]:
            del self._states[cid]
        if self._forget_store_memo is not None:
            self._forget_store_memo()

    def clear(self) -> None:
        """Forget every state, and make the store forget what it remembers of them."""
        self._states.clear()
        if self._forget_store_memo is not None:
            self._forget_store_memo()
