"""The Redis store's memo of segments and chunk counts."""

from __future__ import annotations

from streamseg.store.redis.memo import _MEMO_LIMIT, MISSING, SegmentMemo


def test_limit_is_at_least_what_the_caller_caches() -> None:
    assert SegmentMemo(0).limit == _MEMO_LIMIT
    assert SegmentMemo(_MEMO_LIMIT + 5).limit == _MEMO_LIMIT + 5


def test_least_recently_used_go_first() -> None:
    memo = SegmentMemo(0)
    memo.limit = 2
    memo.put("a", 1, 2)
    memo.put("b", MISSING, 0)
    memo.put("a", 3, 4)  # used again: now the most recent
    memo.put("c", None, 1)
    memo.trim()
    assert "b" not in memo and len(memo) == 2
    assert (memo.segment("a"), memo.chunks("a"), memo.chunks("b")) == (3, 4, 0)
    memo.clear()
    assert len(memo) == 0
