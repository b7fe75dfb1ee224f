"""The Redis store's memo of chunk counts."""

from __future__ import annotations

from streamseg.store.redis.memo import _MEMO_LIMIT, ChunkMemo


def test_limit_is_at_least_what_the_caller_caches() -> None:
    assert ChunkMemo(0).limit == _MEMO_LIMIT
    assert ChunkMemo(_MEMO_LIMIT + 5).limit == _MEMO_LIMIT + 5


def test_least_recently_used_go_first() -> None:
    memo = ChunkMemo(0)
    memo.limit = 2
    memo.put("a", 2)
    memo.put("b", 0)
    memo.put("a", 4)  # used again: now the most recent
    memo.put("c", 1)
    memo.trim()
    assert "b" not in memo and len(memo) == 2
    assert (memo.chunks("a"), memo.chunks("b"), memo.chunks("c")) == (4, 0, 1)
    memo.clear()
    assert len(memo) == 0
