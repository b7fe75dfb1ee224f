"""The store's memo: each customer's segment and chunk count as last loaded or written.

Write a batch needs both for every customer: the segment it had, to adjust the segment
sizes and the customer count, and the chunks it took, to delete those a shorter state
leaves behind. The memo spares a read of them before the transaction.
"""

from __future__ import annotations

import itertools
from typing import Any

#: The memo's segment of a customer known not to exist.
MISSING = object()
# At least this many entries are kept, and at least as many as the caller caches
# (``cached_customers``): a customer the caller writes without loading it again must
# still be in the memo, or the chunks of a longer earlier state would stay behind.
_MEMO_LIMIT = 250_000


class SegmentMemo:
    """Customer id -> (segment or :data:`MISSING`, chunk fields in Redis), least recently
    used first.

    >>> memo = SegmentMemo(cached_customers=0)
    >>> memo.put("a", 3, 2); memo.put("b", MISSING, 0)
    >>> memo.segment("a"), memo.chunks("a"), memo.chunks("nobody"), "b" in memo
    (3, 2, 0, True)
    """

    def __init__(self, cached_customers: int) -> None:
        self._entries: dict[str, tuple[Any, int]] = {}
        self.limit = max(_MEMO_LIMIT, cached_customers)

    def __contains__(self, cid: str) -> bool:
        return cid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def segment(self, cid: str) -> Any:
        """The segment (or :data:`MISSING`) of a customer in the memo."""
        return self._entries[cid][0]

    def chunks(self, cid: str) -> int:
        """The chunk fields a customer has in Redis, 0 if not in the memo."""
        return self._entries.get(cid, (None, 0))[1]

    def put(self, cid: str, segment: Any, chunks: int) -> None:
        self._entries.pop(cid, None)  # re-inserted last: the memo is least recent first
        self._entries[cid] = (segment, chunks)

    def trim(self) -> None:
        """Drop the least recently used entries above the limit."""
        excess = len(self._entries) - self.limit
        if excess > 0:
            for cid in list(itertools.islice(self._entries, excess)):
                del self._entries[cid]

    def clear(self) -> None:
        self._entries.clear()
