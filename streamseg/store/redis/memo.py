"""The store's memo of how many chunk fields each customer has in Redis.

A customer whose state is now shorter than when it was last written leaves chunk fields
behind; they are ignored on read (the state records its length, :mod:`.codec`) but take
memory. The memo remembers the chunks of the customers this store loaded or wrote, so
that a batch deletes the fields a shorter state leaves behind, with no read before the
write. A wrong count costs nothing but memory (a left-over chunk, or the deletion of a
field that is not there), so the memo needs no fencing; it is cleared whenever the
store's picture of its customers may be out of date (a refused or failed write, a
rebalance).

Segment sizes and customer counts are not derived from a memo: they are absolute values
the engine computes (see :mod:`streamseg.store.base`).
"""

from __future__ import annotations

import itertools

# At least this many entries are kept, and at least as many as the caller caches
# (``cached_customers``): a customer the caller writes without loading it again must
# still be in the memo, or the chunks of a longer earlier state would stay behind.
_MEMO_LIMIT = 250_000


class ChunkMemo:
    """Customer id -> chunk fields in Redis, least recently used first.

    >>> memo = ChunkMemo(cached_customers=0)
    >>> memo.put("a", 2); memo.put("b", 0)
    >>> memo.chunks("a"), memo.chunks("nobody"), "b" in memo
    (2, 0, True)
    """

    def __init__(self, cached_customers: int) -> None:
        self._entries: dict[str, int] = {}
        self.limit = max(_MEMO_LIMIT, cached_customers)

    def __contains__(self, cid: str) -> bool:
        return cid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def chunks(self, cid: str) -> int:
        """The chunk fields a customer has in Redis, 0 if not in the memo."""
        return self._entries.get(cid, 0)

    def put(self, cid: str, chunks: int) -> None:
        self._entries.pop(cid, None)  # re-inserted last: the memo is least recent first
        self._entries[cid] = chunks

    def trim(self) -> None:
        """Drop the least recently used entries above the limit."""
        excess = len(self._entries) - self.limit
        if excess > 0:
            for cid in list(itertools.islice(self._entries, excess)):
                del self._entries[cid]

    def clear(self) -> None:
        self._entries.clear()
