"""Stores: where customer state lives. ``open_store(uri)`` picks the backend by scheme.

* ``memory://`` -- :class:`~streamseg.store.memory.MemoryStore`, in process.
* ``sqlite:///PATH`` -- :class:`~streamseg.store.sqlite.SQLiteStore`, the embedded default.
* ``redis://HOST:PORT/DB`` -- :class:`~streamseg.store.redis.RedisStore`, for production.
"""

from __future__ import annotations

from typing import Any

from streamseg.store.base import Checkpoint, CustomerState, Store
from streamseg.store.memory import MemoryStore
from streamseg.store.sqlite import SQLiteStore

__all__ = ["Checkpoint", "CustomerState", "MemoryStore", "SQLiteStore", "Store", "open_store"]


def open_store(uri: str, **options: Any) -> Store:
    """Open the store named by ``uri``; raise ValueError for an unknown scheme."""
    if uri.startswith("memory://"):
        return MemoryStore()
    if uri.startswith("sqlite:///"):
        return SQLiteStore(uri.removeprefix("sqlite:///"))
    if uri.startswith(("redis://", "rediss://", "unix://")):
        from streamseg.store.redis import RedisStore  # imported lazily: optional backend

        return RedisStore.from_uri(uri, **options)
    raise ValueError(
        f"unknown store URI {uri!r}: use memory://, sqlite:///PATH or redis://HOST:PORT/DB"
    )
