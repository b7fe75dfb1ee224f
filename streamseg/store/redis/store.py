"""The Redis store itself: :class:`RedisStore`, for production.

Its key schema and the memory budget that shapes it are in :mod:`.keys`, the values in
:mod:`.codec`; this module ties them into the :class:`~streamseg.store.base.Store`
contract.

Guarantees and assumptions

* :meth:`RedisStore.write_batch` is **one call of a Lua script** (:mod:`.scripts`), which
  Redis runs atomically: it checks the writer's lease token and the epoch of every
  partition of the batch, and if one is stale writes nothing (:class:`~streamseg.store.
  base.FencedError`); otherwise it writes the customers' records, the due indexes, each
  partition's hash (count, sizes, positions) and outbox, the model and the metadata. A
  worker that was paused, lost its partitions and wakes up cannot roll anything back.
  Values are encoded before the call, so an encoding error writes nothing; Redis does
  not undo the calls a script made before one fails, which only happens if one of these
  keys was overwritten with another type. :meth:`RedisStore.get_many` is one round trip
  (one ``HMGET`` per bucket), two for a customer whose state exceeds 192 bytes.
* **Absolute values.** A partition's customer count and segment sizes are the values the
  engine computed for it, written as they are: nothing is derived from a memo of what
  this process wrote before, so a replayed or competing write cannot double-count. The
  store remembers only how many chunk fields each customer has (:mod:`.memo`), to delete
  those a shorter state leaves; and model parts it wrote under the current lease token
  (:mod:`.model`).
* Customers are found by id alone (readers need not know partitions); each records its
  partition in its packed state, which the due scan reads to serve one partition.
* Redis Cluster: every key a script or transaction touches must be in one hash slot;
  use a hash-tagged prefix such as ``{streamseg}``. Every key of a script call is passed
  in ``KEYS``, none built inside a script.
* Sizing: choose ``buckets`` (``redis://...?buckets=N``, default 1024) of about
  ``customers / 50``, and at least ``customers / 150``: a customer takes three fields
  (readable record and two chunks), and a bucket above 512 fields turns into a hash
  table, which works but takes several times the memory (an allocated entry per field
  rather than a few bytes of listpack). Much fewer than ~10 customers per bucket wastes
  memory on per-key overhead.
* A prefix of layout v1 (the previous version) is migrated to v2 when a store opens it
  (:mod:`.migrate`); stop the workers of the previous version first.

Example, with ``scripts/services up`` running (tests/integration runs the same)::

    store = RedisStore.from_uri("redis://127.0.0.1:6379/0", prefix="doc")
    store.get("c1").segment  # -> 3
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any, cast

import redis
from pydantic import SecretStr

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import (
    BatchWrite,
    CustomerState,
    FencedError,
    Partition,
    SampleRow,
    Store,
)
from streamseg.store.redis.batch import encode_batch
from streamseg.store.redis.codec import _state_partition, _unpack_all, _unpack_public
from streamseg.store.redis.connection import _connect, _raw, _split_options, _text
from streamseg.store.redis.due import due_customers, partition_page
from streamseg.store.redis.keys import (
    DEFAULT_BUCKETS,
    LAYOUT_V1,
    Keys,
    _parse_layout,
    by_bucket,
    layout_value,
)
from streamseg.store.redis.lease import Lease
from streamseg.store.redis.memo import ChunkMemo
from streamseg.store.redis.migrate import Migration
from streamseg.store.redis.model import ModelParts
from streamseg.store.redis.partitions import Partitions
from streamseg.store.redis.records import read_records
from streamseg.store.redis.scan import _delete_prefix, iter_records
from streamseg.store.redis.scripts import DUE_SCAN, FENCED_EXEC, Script
from streamseg.store.redis.streams import StreamIds

log = logging.getLogger(__name__)

__all__ = ["RedisStore"]


class RedisStore(Store):
    """Customer state in Redis, laid out for memory (see :mod:`.keys`).

    Parameters
    ----------
    client
        A connected ``redis.Redis`` client returning bytes (``decode_responses=False``).
    prefix
        Prefix of every key; several services or tests can share one Redis with
        different prefixes.
    buckets
        Number of customer buckets when the prefix is new; an existing prefix keeps the
        count it was created with (stored in ``{prefix}:layout``).
    cached_customers
        How many customer states the caller keeps between batches (the engine's
        ``pipeline.state_cache_size``): the store's memo of chunk counts keeps at least
        as many.

    Not thread-safe: one store per worker thread (the client underneath is).
    """

    def __init__(self, client: redis.Redis, prefix: str = "streamseg",
                 buckets: int = DEFAULT_BUCKETS, cached_customers: int = 0,
                 *, read_only: bool = False) -> None:
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self._redis = client
        self.prefix = prefix
        self._keys = Keys(prefix)
        self._streams = StreamIds(client, self._keys)
        self.buckets = self._read_layout(buckets) if read_only else self._layout(buckets)
        self._memo = ChunkMemo(cached_customers)
        self._model = ModelParts(client, self._keys.model)
        self._partitions = Partitions(client, self._keys, self._streams)
        self._lease = Lease(client, self._keys.lease)
        self._write = Script(client, FENCED_EXEC)
        self._due_scan = Script(client, DUE_SCAN)

    @classmethod
    def from_uri(
        cls,
        uri: str,
        password: SecretStr | str | None = None,
        prefix: str = "streamseg",
        buckets: int | None = None,
        cached_customers: int = 0,
        *,
        read_only: bool = False,
    ) -> RedisStore:
        """Open ``redis://[user:pass@]HOST:PORT/DB[?buckets=N]`` (or ``rediss://``, ``unix://``).

        ``password`` (a pydantic ``SecretStr``) is used unless the URI has its own; it
        never appears in logs or errors. TLS (``rediss://``) and other connection options
        in the query string (``socket_timeout``, ``ssl_cert_reqs``, ...) are redis-py's.
        ``buckets`` (argument, or ``?buckets=`` in the URI) only matters for a new prefix.
        ``read_only``: write nothing, not even the layout of a new prefix.
        Raises ``ConnectionError`` (naming the server, never the password) when Redis
        does not answer.
        """
        url, ours = _split_options(uri)
        if buckets is None:
            buckets = int(ours["buckets"]) if "buckets" in ours else DEFAULT_BUCKETS
        return cls(_connect(url, password), prefix=prefix, buckets=buckets,
                   cached_customers=cached_customers, read_only=read_only)

    def _layout(self, buckets: int) -> int:
        """The prefix's bucket count: set if new, migrated to layout v2 if v1."""
        key = self._keys.layout
        self._redis.set(key, layout_value(buckets), nx=True)
        version, stored = _parse_layout(_raw(self._redis.get(key)), key)
        if version == LAYOUT_V1:
            Migration(self._redis, self._keys, stored, self._streams).run()
        if stored != buckets:
            log.warning("Redis prefix %r was created with %d buckets; using that rather than %d",
                        self.prefix, stored, buckets)
        return stored

    def _read_layout(self, buckets: int) -> int:
        """The prefix's bucket count, read without writing anything (a reader must not
        pin the layout of a prefix no worker has written yet: ``buckets`` then)."""
        key = self._keys.layout
        value = _raw(self._redis.get(key))
        if value is None:
            return buckets
        version, stored = _parse_layout(value, key)
        if version == LAYOUT_V1:
            raise ValueError(f"Redis prefix {self.prefix!r} has the layout of an earlier "
                             "version of streamseg: start one worker of this version on it "
                             "once to migrate it")
        return stored

    # -- customers --------------------------------------------------------------------
    def _decode(self, cid: str, public: bytes, packed: bytes | None) -> CustomerState:
        segment, updated_at, model_version, name, traits = _unpack_public(public)
        state = CustomerState(customer_id=cid, features=CustomerFeatures.empty(),
                              segment=segment, segment_name=name, updated_at=updated_at,
                              model_version=model_version, traits=traits)
        if packed:
            (state.next_rescore_at, state.features, state.vector, state.applied,
             state.recent_ids, state.snapshots, state.risk_band,
             state.traits_since) = _unpack_all(
                 cid, packed, self._streams.name, updated_at)
            partition_id = _state_partition(packed)
            state.partition = self._streams.name(partition_id) if partition_id else None
        return state

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """One round trip: an HMGET per bucket, which reads each customer atomically.

        A customer whose packed state is longer than three chunks (192 bytes) needs a
        second round trip for the rest.
        """
        requested = list(dict.fromkeys(customer_ids))
        groups = by_bucket(requested, self.buckets)
        if not groups:
            return {}
        records = read_records(self._redis, self._keys, self.buckets, groups)
        found: dict[str, CustomerState] = {}
        for cid in requested:  # in the order asked for, as the other stores do
            record = records.get(cid)
            if record is None:
                self._memo.put(cid, 0)
                continue
            found[cid] = self._decode(cid, record.public, record.packed)
            self._memo.put(cid, record.chunks)
        self._memo.trim()
        return found

    def iter_customers(self) -> Iterator[CustomerState]:
        """Every customer, bucket by bucket (SCAN over ``{p}:c:*``; not in id order)."""
        for cid, public, packed in iter_records(self._redis, self._keys):
            yield self._decode(cid, public, packed)

    # -- partitions -------------------------------------------------------------------
    def take_partition(self, name: str) -> Partition:
        """Bump the partition's epoch and read it, in one atomic script call."""
        return self._partitions.take(name)

    def read_partition(self, name: str) -> Partition:
        return self._partitions.read(name)

    def partition_names(self) -> list[str]:
        return sorted(self._partitions.ids())

    def read_partitions(self, names: Iterable[str] | None = None) -> dict[str, Partition]:
        """One ``MULTI``: the partitions describe one instant."""
        ids = self._partitions.ids()
        if names is not None:
            wanted = list(names)
            found = {name: ids[name] for name in wanted if name in ids}
            read = {part.name: part for part in self._partitions.read_all(found, False)}
            return {name: read.get(name, Partition(name)) for name in wanted}
        return {part.name: part for part in self._partitions.read_all(ids, False)}

    def read_sample(self, names: Iterable[str]) -> dict[str, dict[str, SampleRow]]:
        return self._partitions.snapshot(names)[1]

    def snapshot(self, names: Iterable[str]) -> tuple[dict[str, Partition],
                                                      dict[str, dict[str, SampleRow]]]:
        """One ``MULTI`` over the partitions' hashes and sample rows."""
        return self._partitions.snapshot(names)

    def customers_page(self, partition: str, cursor: str, limit: int) -> tuple[list[str], str]:
        """The partition's customers in the next groups of buckets of its due index
        (whole groups: about ``limit``, at least one group); the cursor is the last
        group read."""
        partition_id = self._partitions.id_of(partition)
        if partition_id is None:
            return [], ""
        return partition_page(self._redis, self._keys, self._due_scan, self.buckets,
                              partition_id, cursor, limit)

    # -- the batch write --------------------------------------------------------------
    def write_batch(self, write: BatchWrite) -> None:
        """The whole batch in one call of the fenced-write script (see the module
        docstring); every value is encoded before it."""
        names = [part.partition.name for part in write.partitions]
        partition_ids = {name: self._partitions.id_of(name) for name in names}
        never_taken = [name for name, pid in partition_ids.items() if pid is None]
        if never_taken:
            raise FencedError(never_taken)  # nobody holds an epoch of it
        stream_ids = self._streams.ids_for(
            [*names, *(stream for part in write.partitions for state in part.states
                       for stream in state.applied)])
        model_parts = self._model.changed(write.model_checkpoint, write.lease)
        encoded = encode_batch(write, self._keys, self.buckets,
                               cast("dict[str, int]", partition_ids), stream_ids,
                               self._memo.chunks, model_parts, self._model.legacy)
        commands = encoded.commands
        try:
            reply = self._write(commands.keys, commands.script_args(write.lease))
        except Exception:
            # The call may or may not have been applied: forget, ask Redis again.
            self.forget_cached()
            raise
        if int(reply[0]) != 0:
            self.forget_cached()  # another worker writes these customers now
            raise FencedError([encoded.partitions[int(index) - 1] for index in reply[2:]],
                              lease=bool(int(reply[1])))
        for cid, chunks in encoded.written_chunks.items():
            self._memo.put(cid, chunks)
        self._memo.trim()
        self._model.written(write.model_checkpoint, model_parts, write.lease)

    def forget_cached(self) -> None:
        self._memo.clear()
        self._model.forget()

    def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
        """The ``limit`` customers of ``partition`` due earliest (``next_rescore_at <=
        until``); see :func:`.due.due_customers` for the scan and its round trips."""
        partition_id = self._partitions.id_of(partition)
        if partition_id is None:
            return []
        return due_customers(self._redis, self._keys, self._due_scan, self.buckets,
                             partition_id, until, limit)

    # -- the model and metadata -------------------------------------------------------
    def load_model(self) -> dict[str, Any] | None:
        return self._model.load()

    def model_stamp(self) -> Any:
        return self._model.part("stamp")

    def meta(self) -> dict[str, Any]:
        table = self._redis.hgetall(self._keys.meta)
        return {_text(name): json.loads(value) for name, value in table.items()}

    # -- the lease --------------------------------------------------------------------
    def acquire_lease(self, holder: str, ttl_s: float, *, replace_own: bool = False) -> str:
        return self._lease.acquire(holder, ttl_s, replace_own)

    def renew_lease(self, token: str, ttl_s: float) -> bool:
        return self._lease.renew(token, ttl_s)

    def release_lease(self, token: str) -> None:
        self._lease.release(token)

    # -- totals over partitions, each read in one MULTI ---------------------------------
    def count(self) -> int:
        return sum(part.customers for part in self._partitions.read_all(outboxes=False))

    def segment_sizes(self) -> dict[int, int]:
        """The sum of the partitions' sizes: O(partitions x segments), no scan."""
        sizes: dict[int, int] = {}
        for part in self._partitions.read_all(outboxes=False):
            for segment, n in part.sizes.items():
                sizes[segment] = sizes.get(segment, 0) + n
        return {segment: n for segment, n in sorted(sizes.items()) if n > 0}

    def positions(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for part in self._partitions.read_all(outboxes=False):
            merged.update(part.positions)
        return merged

    def outbox(self) -> list[str]:
        return [item for part in self._partitions.read_all() for item in part.outbox]

    # -- the connection ---------------------------------------------------------------
    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._redis.close()

    def delete_all(self) -> int:
        """Delete every key of this prefix (tests, benchmarks); returns how many."""
        return _delete_prefix(self._redis, self.prefix)
