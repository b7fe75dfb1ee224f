"""Stores: where customer state lives. :func:`open_store` picks the backend by scheme.

* ``memory://`` -- :class:`~streamseg.store.memory.MemoryStore`, in process.
* ``sqlite:///PATH`` -- :class:`~streamseg.store.sqlite.SQLiteStore`, the embedded default.
* ``redis://HOST:PORT/DB`` -- :class:`~streamseg.store.redis.RedisStore`, for production.
"""

from __future__ import annotations

from streamseg.config import StoreSettings
from streamseg.core.state import CustomerState
from streamseg.store.base import (
    LOCAL_PARTITION,
    BatchWrite,
    FencedError,
    LeaseHeld,
    Partition,
    PartitionWrite,
    SampleRow,
    Store,
)
from streamseg.store.memory import MemoryStore
from streamseg.store.readonly import ReadOnlyError, ReadOnlyStore, open_reader
from streamseg.store.sqlite import SQLiteStore

__all__ = [
    "LOCAL_PARTITION",
    "BatchWrite",
    "CustomerState",
    "FencedError",
    "LeaseHeld",
    "MemoryStore",
    "Partition",
    "PartitionWrite",
    "ReadOnlyError",
    "ReadOnlyStore",
    "SQLiteStore",
    "SampleRow",
    "Store",
    "open_reader",
    "open_store",
]


def open_store(settings: StoreSettings, *, cached_customers: int = 0) -> Store:
    """Open the store ``settings.uri`` names, with the rest of ``settings``.

    ``cached_customers``: how many customer states the caller keeps between batches
    (the engine's ``pipeline.state_cache_size``; see the Redis store). Raises
    ``ValueError`` for an unknown scheme.
    """
    uri = settings.uri
    if uri.startswith("memory://"):
        return MemoryStore()
    if uri.startswith("sqlite:///"):
        return SQLiteStore(uri.removeprefix("sqlite:///"))
    if uri.startswith(("redis://", "rediss://", "unix://")):
        from streamseg.store.redis import RedisStore  # imported lazily: optional backend

        return RedisStore.from_uri(uri, password=settings.redis_password,
                                   prefix=settings.redis_prefix, buckets=settings.redis_buckets,
                                   cached_customers=cached_customers)
    raise ValueError(
        f"unknown store URI {uri!r}: use memory://, sqlite:///PATH or redis://HOST:PORT/DB"
    )
