"""The Redis store itself: :class:`RedisStore`, for production.

Its key schema and the memory budget that shapes it are in :mod:`.keys`, the values in
:mod:`.codec`; this module ties them into the :class:`~streamseg.store.base.Store`
contract.

Guarantees and assumptions

* :meth:`RedisStore.write_batch` is one ``MULTI``/``EXEC`` transaction sent in one round
  trip: customer records, the due index, segment sizes, the customer count, the model,
  the source positions, the metadata and the outbox change together or not at all.
  Values are encoded before ``MULTI``, so an encoding error writes nothing; Redis does
  not roll back a command that fails *inside* ``EXEC``, which only happens if one of
  these keys was overwritten with another type. :meth:`RedisStore.get_many` is one round
  trip (one ``HMGET`` per bucket), two for a customer whose state exceeds 192 bytes.
* **One worker owns a customer** (Kafka partitions by customer id and each partition is
  consumed by one worker): segment sizes and the customer count are kept with
  ``HINCRBY``/``INCRBY`` from the segment each customer had when this store last loaded
  (:meth:`RedisStore.get_many`) or wrote it (a customer it has no memo of is looked up
  just before the transaction). Two workers writing the same customer at the same time
  would make the counters drift; the customer records stay consistent.
* Several workers on one prefix share the due index: :meth:`RedisStore.due_for_rescore`
  returns due customers whatever partition they belong to, so inactivity re-scoring is
  only single-owner with one worker per prefix (or a partition-aware engine).
* Redis Cluster: a transaction may only touch one hash slot; use a hash-tagged prefix
  such as ``{streamseg}`` so that every key lands in the same slot.
* Sizing: choose ``buckets`` (``redis://...?buckets=N``, default 1024) of about
  ``customers / 50``, and at least ``customers / 150``: a customer takes three fields
  (readable record and two chunks), and a bucket above 512 fields turns into a hash
  table, which works but takes several times the memory (an allocated entry per field
  rather than a few bytes of listpack). Much fewer than ~10 customers per bucket wastes
  memory on per-key overhead.

Example, with ``scripts/services up`` running (tests/integration runs the same)::

    store = RedisStore.from_uri("redis://127.0.0.1:6379/0", prefix="doc")
    store.get("c1").segment  # -> 3
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import redis
from pydantic import SecretStr
from redis.client import Pipeline

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import BatchWrite, CustomerState, Store
from streamseg.store.redis.batch import encode_customers
from streamseg.store.redis.codec import _sizes, _unpack_public, _unpack_state
from streamseg.store.redis.connection import _connect, _raw, _split_options, _text
from streamseg.store.redis.due import due_customers
from streamseg.store.redis.keys import DEFAULT_BUCKETS, Keys, _parse_layout, by_bucket, layout_value
from streamseg.store.redis.memo import MISSING, SegmentMemo
from streamseg.store.redis.records import read_records, read_segments
from streamseg.store.redis.scan import _delete_prefix, iter_records
from streamseg.store.redis.scripts import DUE_SCAN, Script
from streamseg.store.redis.streams import StreamIds

log = logging.getLogger(__name__)

__all__ = ["RedisStore"]


class _ModelParts:
    """The model checkpoint in ``{p}:model``: a hash of parts, each JSON, a part written
    only when it differs from what this store last wrote (the reservoir's ids, most of
    the checkpoint, rarely change).

    A single worker writes it: with several on one prefix the parts could come from
    different workers' models. Before the model was a hash of parts it was one JSON
    string: that legacy string is read as it is, and replaced by the hash at the next
    write that has parts.
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key
        self.legacy = _text(client.type(key)) == "string"
        self._written: dict[str, Any] = {}  # parts as last written or loaded

    def changed(self, checkpoint: dict[str, Any] | None) -> dict[str, str]:
        """The parts of ``checkpoint`` to write, as JSON (all of them over a legacy string)."""
        return {
            name: json.dumps(value) for name, value in (checkpoint or {}).items()
            if self.legacy or name not in self._written or self._written[name] != value
        }

    def queue(self, pipe: Pipeline, parts: dict[str, str]) -> None:
        if parts:
            if self.legacy:
                pipe.delete(self._key)  # the old single-string checkpoint
            pipe.hset(self._key, mapping=parts)  # type: ignore[arg-type]

    def written(self, checkpoint: dict[str, Any] | None, parts: dict[str, str]) -> None:
        """After the transaction: ``parts`` of ``checkpoint`` are in Redis."""
        if parts:
            self.legacy = False
        if checkpoint:
            self._written.update(checkpoint)

    def load(self) -> dict[str, Any] | None:
        if self.legacy:
            data = self._redis.get(self._key)
            return None if data is None else cast("dict[str, Any]", json.loads(data))
        parts = self._redis.hgetall(self._key)
        if not parts:
            return None
        model = {_text(name): json.loads(value) for name, value in parts.items()}
        self._written = dict(model)
        return model

    def forget(self) -> None:
        self._written.clear()


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
        ``pipeline.state_cache_size``): the store's memo of segments and chunk counts
        keeps at least as many.

    Not thread-safe: one store per worker thread (the client underneath is).
    """

    def __init__(self, client: redis.Redis, prefix: str = "streamseg",
                 buckets: int = DEFAULT_BUCKETS, cached_customers: int = 0) -> None:
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self._redis = client
        self.prefix = prefix
        self._keys = Keys(prefix)
        self.buckets = self._layout(buckets)
        self._memo = SegmentMemo(cached_customers)
        self._model = _ModelParts(client, self._keys.model)
        self._streams = StreamIds(client, self._keys)
        self._due_scan = Script(client, DUE_SCAN)

    @classmethod
    def from_uri(
        cls,
        uri: str,
        password: SecretStr | str | None = None,
        prefix: str = "streamseg",
        buckets: int | None = None,
        cached_customers: int = 0,
    ) -> RedisStore:
        """Open ``redis://[user:pass@]HOST:PORT/DB[?buckets=N]`` (or ``rediss://``, ``unix://``).

        ``password`` (a pydantic ``SecretStr``) is used unless the URI has its own; it
        never appears in logs or errors. TLS (``rediss://``) and other connection options
        in the query string (``socket_timeout``, ``ssl_cert_reqs``, ...) are redis-py's.
        ``buckets`` (argument, or ``?buckets=`` in the URI) only matters for a new prefix.
        Raises ``ConnectionError`` (naming the server, never the password) when Redis
        does not answer.
        """
        url, ours = _split_options(uri)
        if buckets is None:
            buckets = int(ours["buckets"]) if "buckets" in ours else DEFAULT_BUCKETS
        return cls(_connect(url, password), prefix=prefix, buckets=buckets,
                   cached_customers=cached_customers)

    def _layout(self, buckets: int) -> int:
        key = self._keys.layout
        self._redis.set(key, layout_value(buckets), nx=True)
        stored = _parse_layout(_raw(self._redis.get(key)), key)
        if stored != buckets:
            log.warning("Redis prefix %r was created with %d buckets; using that rather than %d",
                        self.prefix, stored, buckets)
        return stored

    # -- reads ------------------------------------------------------------------------
    def _decode(self, cid: str, public: bytes, packed: bytes | None) -> CustomerState:
        segment, updated_at, model_version, name = _unpack_public(public)
        state = CustomerState(customer_id=cid, features=CustomerFeatures.empty(),
                              segment=segment, segment_name=name, updated_at=updated_at,
                              model_version=model_version)
        if packed:
            (state.next_rescore_at, state.features, state.vector, state.applied,
             state.recent_ids) = _unpack_state(cid, packed, self._streams.name)
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
                self._memo.put(cid, MISSING, 0)
                continue
            state = self._decode(cid, record.public, record.packed)
            self._memo.put(cid, state.segment, record.chunks)
            found[cid] = state
        self._memo.trim()
        return found

    def _previous(self, customer_ids: Sequence[str]) -> dict[str, Any]:
        """Segment each customer has in Redis (or MISSING): the memo, else one query."""
        memo = self._memo
        previous = {cid: memo.segment(cid) for cid in customer_ids if cid in memo}
        unknown = [cid for cid in customer_ids if cid not in previous]
        if unknown:
            previous.update(read_segments(self._redis, self._keys,
                                          by_bucket(unknown, self.buckets)))
        return previous

    # -- the batch write --------------------------------------------------------------
    def write_batch(self, states: Sequence[CustomerState], write: BatchWrite) -> None:
        """Everything of a batch in one MULTI/EXEC, sent in one round trip.

        All values are encoded before the transaction starts, so an encoding error
        writes nothing. Segment sizes and the customer count are adjusted from the
        segment each customer had when :meth:`get_many` loaded it (see the module
        docstring for the single-owner assumption).
        """
        latest = {state.customer_id: state for state in states}  # last write of an id wins
        stream_ids = self._streams.ids_for(
            name for state in latest.values() for name in state.applied)
        customers = encode_customers(latest, self.buckets, stream_ids,
                                     self._previous(list(latest)), self._memo.chunks)
        model_parts = self._model.changed(write.model_checkpoint)
        meta = {name: json.dumps(value) for name, value in write.meta.items()}

        keys = self._keys
        pipe = self._redis.pipeline(transaction=True)
        customers.queue(pipe, keys)
        self._model.queue(pipe, model_parts)
        if write.positions:
            pipe.hset(keys.positions, mapping=write.positions)  # type: ignore[arg-type]
        if meta:
            pipe.hset(keys.meta, mapping=meta)  # type: ignore[arg-type]
        pipe.delete(keys.outbox)
        if write.outbox:
            pipe.rpush(keys.outbox, *write.outbox)
        try:
            pipe.execute()
        except Exception:
            # The transaction may or may not have been applied: forget, ask Redis again.
            self.forget_cached()
            raise
        # This worker owns these customers: what it just wrote is what the next batch
        # would load, so the memo keeps it (and spares a read of the previous segment).
        for cid, state in latest.items():
            self._memo.put(cid, state.segment, customers.written_chunks[cid])
        self._memo.trim()
        self._model.written(write.model_checkpoint, model_parts)

    def forget_cached(self) -> None:
        self._memo.clear()
        self._model.forget()

    def due_for_rescore(self, until: float, limit: int) -> list[str]:
        """The ``limit`` customers due earliest (``next_rescore_at <= until``); see
        :func:`.due.due_customers` for the scan and its round trips."""
        return due_customers(self._redis, self._keys, self._due_scan, until, limit)

    # -- checkpoint reads -------------------------------------------------------------
    def load_model(self) -> dict[str, Any] | None:
        return self._model.load()

    def outbox(self) -> list[str]:
        return [_text(item) for item in self._redis.lrange(self._keys.outbox, 0, -1)]

    def positions(self) -> dict[str, int]:
        table = self._redis.hgetall(self._keys.positions)
        return {_text(name): int(value) for name, value in table.items()}

    def meta(self) -> dict[str, Any]:
        table = self._redis.hgetall(self._keys.meta)
        return {_text(name): json.loads(value) for name, value in table.items()}

    # -- whole-store reads ------------------------------------------------------------
    def iter_customers(self) -> Iterator[CustomerState]:
        """Every customer, bucket by bucket (SCAN over ``{p}:c:*``; not in id order)."""
        for cid, public, packed in iter_records(self._redis, self._keys):
            yield self._decode(cid, public, packed)

    def count(self) -> int:
        return int(self._redis.get(self._keys.count) or 0)

    def segment_sizes(self) -> dict[int, int]:
        """From the ``{p}:sizes`` counters: O(segments), no scan."""
        return _sizes(self._redis.hgetall(self._keys.sizes))

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
