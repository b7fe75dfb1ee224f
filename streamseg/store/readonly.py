"""Stores opened to read only: what ``segments``, ``get``, ``export``, ``report``,
``evaluate`` and the read API use (:func:`open_reader`).

Two guards, one inside the other:

* the backend is opened so that it writes nothing when it opens (SQLite: ``mode=ro``,
  no schema, no upgrade, no new file; Redis: the layout key is read, never set, so a
  reader run before the first worker does not pin a bucket count);
* :class:`ReadOnlyStore` forwards only the reading methods; every writing one raises
  :class:`ReadOnlyError`, so a read command that reached a write path would fail loudly
  rather than change the store.

>>> from streamseg.store import MemoryStore
>>> reader = ReadOnlyStore(MemoryStore())
>>> reader.count(), reader.meta()
(0, {})
>>> reader.take_partition("local")
Traceback (most recent call last):
...
streamseg.store.readonly.ReadOnlyError: take_partition: this store was opened to read only
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from streamseg.config import StoreSettings
from streamseg.core.state import CustomerState
from streamseg.store.base import BatchWrite, Partition, SampleRow, Store
from streamseg.store.memory import MemoryStore
from streamseg.store.sqlite import SQLiteStore

__all__ = ["ReadOnlyError", "ReadOnlyStore", "open_reader"]


class ReadOnlyError(RuntimeError):
    """A write was attempted through a store opened to read only (a bug of the caller)."""


def _refuse(what: str) -> NoReturn:
    raise ReadOnlyError(f"{what}: this store was opened to read only")


class ReadOnlyStore(Store):
    """The reading half of ``store``; the writing half raises :class:`ReadOnlyError`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- reads: forwarded ---------------------------------------------------------------
    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        return self._store.get_many(customer_ids)

    def iter_customers(self) -> Iterator[CustomerState]:
        return self._store.iter_customers()

    def read_partition(self, name: str) -> Partition:
        return self._store.read_partition(name)

    def partition_names(self) -> list[str]:
        return self._store.partition_names()

    def read_partitions(self, names: Iterable[str] | None = None) -> dict[str, Partition]:
        return self._store.read_partitions(names)

    def read_sample(self, names: Iterable[str]) -> dict[str, dict[str, SampleRow]]:
        return self._store.read_sample(names)

    def snapshot(self, names: Iterable[str]) -> tuple[dict[str, Partition],
                                                      dict[str, dict[str, SampleRow]]]:
        return self._store.snapshot(names)

    def customers_page(self, partition: str, cursor: str, limit: int) -> tuple[list[str], str]:
        return self._store.customers_page(partition, cursor, limit)

    def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
        return self._store.due_for_rescore(partition, until, limit)

    def load_model(self) -> dict[str, Any] | None:
        return self._store.load_model()

    def model_stamp(self) -> Any:
        return self._store.model_stamp()

    def meta(self) -> dict[str, Any]:
        return self._store.meta()

    def count(self) -> int:
        return self._store.count()

    def segment_sizes(self) -> dict[int, int]:
        return self._store.segment_sizes()

    def positions(self) -> dict[str, int]:
        return self._store.positions()

    def outbox(self) -> list[str]:
        return self._store.outbox()

    def ping(self) -> bool:
        return self._store.ping()

    def close(self) -> None:
        self._store.close()

    # -- writes: refused --------------------------------------------------------------
    def take_partition(self, name: str) -> Partition:
        _refuse("take_partition")

    def write_batch(self, write: BatchWrite) -> None:
        _refuse("write_batch")

    def acquire_lease(self, holder: str, ttl_s: float, *, replace_own: bool = False) -> str:
        _refuse("acquire_lease")

    def renew_lease(self, token: str, ttl_s: float) -> bool:
        _refuse("renew_lease")

    def release_lease(self, token: str) -> None:
        _refuse("release_lease")


def open_reader(settings: StoreSettings) -> ReadOnlyStore:
    """The store ``settings.uri`` names, opened to read only.

    Raises ``FileNotFoundError`` for a SQLite file that does not exist (a reader does
    not create one), ``ConnectionError`` when Redis does not answer, ``ValueError`` for
    an unknown scheme or a store of an earlier version (a worker upgrades it, not a
    reader). A Redis prefix nothing was written under reads as empty, with
    ``store.redis_buckets`` buckets.
    """
    uri = settings.uri
    if uri.startswith("memory://"):
        return ReadOnlyStore(MemoryStore())  # a new process's memory holds nothing
    if uri.startswith("sqlite:///"):
        return ReadOnlyStore(SQLiteStore(uri.removeprefix("sqlite:///"), read_only=True))
    if uri.startswith(("redis://", "rediss://", "unix://")):
        from streamseg.store.redis import RedisStore  # imported lazily: optional backend

        return ReadOnlyStore(RedisStore.from_uri(
            uri, password=settings.redis_password, prefix=settings.redis_prefix,
            buckets=settings.redis_buckets, read_only=True))
    raise ValueError(
        f"unknown store URI {uri!r}: use memory://, sqlite:///PATH or redis://HOST:PORT/DB"
    )
