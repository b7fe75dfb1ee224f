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

import heapq
import itertools
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import redis
from pydantic import SecretStr

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import BatchWrite, CustomerState, Store
from streamseg.store.redis.codec import (
    _pack_public,
    _pack_state,
    _sizes,
    _state_length,
    _unpack_public,
    _unpack_state,
)
from streamseg.store.redis.connection import _connect, _raw, _split_options, _text
from streamseg.store.redis.keys import (
    _CHUNK_BYTES,
    _CHUNKS_READ,
    _MAX_CHUNKS,
    BUCKETS_PER_TRIP,
    DEFAULT_BUCKETS,
    _chunk_field,
    _chunks,
    _glob_escape,
    _leading,
    _parse_layout,
    _public_field,
    _split_field,
    bucket_of,
    layout_value,
)
from streamseg.store.redis.scripts import DUE_SCAN, Script

log = logging.getLogger(__name__)

__all__ = ["RedisStore"]

# The memo: each customer's segment and chunk count as last loaded or written by this
# store, least recently used first; at least this many entries are kept, and at least as
# many as the caller caches (``cached_customers``): a customer the caller writes without
# loading it again must still be in the memo, or the chunks of a longer earlier state
# would stay behind.
_MEMO_LIMIT = 250_000
_MISSING = object()  # memo segment: the customer is known not to exist


class RedisStore(Store):
    """Customer state in Redis, laid out for memory (see the module docstring).

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
        self.buckets = self._layout(buckets)
        # customer id -> (segment or _MISSING, chunk fields in Redis); see _MEMO_LIMIT
        self._memo: dict[str, tuple[Any, int]] = {}
        self._memo_limit = max(_MEMO_LIMIT, cached_customers)
        # Before the model was a hash of parts it was one JSON string: read it, and
        # replace it with the hash at the next write.
        self._legacy_model = _text(client.type(self._key("model"))) == "string"
        self._stream_ids: dict[str, int] = {}
        # Model checkpoint parts as last written by this store (see write_batch).
        self._model_written: dict[str, Any] = {}
        self._stream_names: dict[int, str] = {}
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

    # -- keys -------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def _bucket_key(self, bucket: int) -> str:
        return f"{self.prefix}:c:{bucket}"

    def _layout(self, buckets: int) -> int:
        key = self._key("layout")
        self._redis.set(key, layout_value(buckets), nx=True)
        stored = _parse_layout(_raw(self._redis.get(key)), key)
        if stored != buckets:
            log.warning("Redis prefix %r was created with %d buckets; using that rather than %d",
                        self.prefix, stored, buckets)
        return stored

    # -- stream ids -------------------------------------------------------------------
    def _refresh_streams(self) -> None:
        for name, value in self._redis.hgetall(self._key("streams")).items():
            self._stream_ids[_text(name)] = int(value)
            self._stream_names[int(value)] = _text(name)

    def _ids_for(self, names: Iterable[str]) -> dict[str, int]:
        """Small ids of source streams, registering new ones (before, not in, a batch)."""
        wanted = set(names)
        if wanted - self._stream_ids.keys():
            self._refresh_streams()
        new = sorted(wanted - self._stream_ids.keys())
        if new:
            pipe = self._redis.pipeline(transaction=False)
            for _ in new:
                pipe.incr(self._key("streams:next"))
            candidates = pipe.execute()
            pipe = self._redis.pipeline(transaction=False)
            for name, candidate in zip(new, candidates, strict=True):
                pipe.hsetnx(self._key("streams"), name, candidate)  # first writer wins
            pipe.execute()
            self._refresh_streams()
        return {name: self._stream_ids[name] for name in wanted}

    def _stream_name(self, stream_id: int) -> str:
        if stream_id not in self._stream_names:
            self._refresh_streams()
        return self._stream_names[stream_id]

    # -- reads ------------------------------------------------------------------------
    def _decode(self, cid: str, public: bytes, packed: bytes | None) -> CustomerState:
        segment, updated_at, model_version, name = _unpack_public(public)
        state = CustomerState(customer_id=cid, features=CustomerFeatures.empty(),
                              segment=segment, segment_name=name, updated_at=updated_at,
                              model_version=model_version)
        if packed:
            (state.next_rescore_at, state.features, state.vector, state.applied,
             state.recent_ids) = _unpack_state(cid, packed, self._stream_name)
        return state

    def _by_bucket(self, customer_ids: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for cid in dict.fromkeys(customer_ids):
            groups.setdefault(bucket_of(cid, self.buckets), []).append(cid)
        return groups

    def _read(self, groups: dict[int, list[str]], first_chunk: int, chunks: int
              ) -> list[list[bytes | None]]:
        """Per bucket, per customer: [readable record (first_chunk == 0 only), chunks...]."""
        width = chunks + (first_chunk == 0)
        pipe = self._redis.pipeline(transaction=False)
        for bucket, cids in groups.items():
            fields: list[bytes] = []
            for cid in cids:
                raw = cid.encode("utf-8")
                if first_chunk == 0:
                    fields.append(_public_field(raw))
                fields += [_chunk_field(raw, first_chunk + i) for i in range(chunks)]
            pipe.hmget(self._bucket_key(bucket), fields)
        rows: list[list[bytes | None]] = []
        for values in pipe.execute():
            rows += [values[i:i + width] for i in range(0, len(values), width)]
        return rows

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """One round trip: an HMGET per bucket, which reads each customer atomically.

        A customer whose packed state is longer than three chunks (192 bytes) needs a
        second round trip for the rest.
        """
        requested = list(dict.fromkeys(customer_ids))
        groups = self._by_bucket(requested)
        if not groups:
            return {}
        ordered = [cid for cids in groups.values() for cid in cids]
        rows = self._read(groups, 0, _CHUNKS_READ)
        publics: dict[str, bytes] = {}
        packed: dict[str, bytes] = {}
        chunks_found: dict[str, int] = {}
        longer: dict[str, int] = {}  # customer -> chunks still to read
        for cid, row in zip(ordered, rows, strict=True):
            public = row[0]
            if public is None:
                continue
            publics[cid] = public
            present = list(_leading(row[1:]))
            data = b"".join(present)
            chunks_found[cid] = len(present)
            length = _state_length(data) if data else None
            if length is not None and length > len(data):
                longer[cid] = -(-length // _CHUNK_BYTES) - _CHUNKS_READ
            packed[cid] = data[:length] if length is not None else data
        if longer:
            groups = self._by_bucket(longer)
            extra = self._read(groups, _CHUNKS_READ, max(longer.values()))
            for cid, row in zip([c for cs in groups.values() for c in cs], extra,
                                strict=True):
                present = list(_leading(row))
                chunks_found[cid] += len(present)
                data = packed[cid] + b"".join(present)
                packed[cid] = data[:_state_length(data) or len(data)]
        found: dict[str, CustomerState] = {}
        for cid in requested:  # in the order asked for, as the other stores do
            if cid not in publics:
                self._memo_put(cid, _MISSING, 0)
                continue
            state = self._decode(cid, publics[cid], packed.get(cid))
            self._memo_put(cid, state.segment, chunks_found.get(cid, 0))
            found[cid] = state
        self._memo_trim()
        return found

    def _memo_put(self, cid: str, segment: Any, chunks: int) -> None:
        self._memo.pop(cid, None)  # re-inserted last: the memo is least recent first
        self._memo[cid] = (segment, chunks)

    def _memo_trim(self) -> None:
        excess = len(self._memo) - self._memo_limit
        if excess > 0:
            for cid in list(itertools.islice(self._memo, excess)):
                del self._memo[cid]

    def _previous(self, customer_ids: Sequence[str]) -> dict[str, Any]:
        """Segment each customer has in Redis (or _MISSING): the memo, else one query."""
        memo = self._memo
        previous = {cid: memo[cid][0] for cid in customer_ids if cid in memo}
        unknown = [cid for cid in customer_ids if cid not in previous]
        if unknown:
            groups = self._by_bucket(unknown)
            pipe = self._redis.pipeline(transaction=False)
            for bucket, cids in groups.items():
                pipe.hmget(self._bucket_key(bucket),
                           [_public_field(cid.encode("utf-8")) for cid in cids])
            for cids, values in zip(groups.values(), pipe.execute(), strict=True):
                for cid, public in zip(cids, values, strict=True):
                    previous[cid] = _MISSING if public is None else _unpack_public(public)[0]
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
        stream_ids = self._ids_for(name for state in latest.values() for name in state.applied)
        previous = self._previous(list(latest))

        records: dict[int, dict[bytes, bytes]] = {}
        stale: dict[int, list[bytes]] = {}  # chunks of a longer earlier state, to delete
        due: dict[str, float] = {}
        size_delta: dict[int, int] = {}
        new_customers = 0
        written_chunks: dict[str, int] = {}
        for cid, state in latest.items():
            bucket = bucket_of(cid, self.buckets)
            fields = records.setdefault(bucket, {})
            raw = cid.encode("utf-8")
            fields[_public_field(raw)] = _pack_public(state)
            chunks = _chunks(_pack_state(state, stream_ids))
            for index, chunk in enumerate(chunks):
                fields[_chunk_field(raw, index)] = chunk
            written_chunks[cid] = len(chunks)
            for index in range(len(chunks), self._memo.get(cid, (None, 0))[1]):
                stale.setdefault(bucket, []).append(_chunk_field(raw, index))
            if state.next_rescore_at is not None:
                member = str(bucket)
                due[member] = min(due.get(member, math.inf), float(state.next_rescore_at))
            before = previous[cid]
            if before is _MISSING:
                new_customers += 1
                before = None
            if before != state.segment:
                if before is not None:
                    size_delta[before] = size_delta.get(before, 0) - 1
                if state.segment is not None:
                    size_delta[state.segment] = size_delta.get(state.segment, 0) + 1
        # The model checkpoint is a hash of parts; a part equal to what this store last
        # wrote is not written again (the reservoir's ids, most of it, rarely change).
        # A single worker writes it: with several on one prefix (see above) the parts
        # could come from different workers' models.
        model_parts: dict[str, str] = {}
        for name, value in (write.model_checkpoint or {}).items():
            if (self._legacy_model or name not in self._model_written
                    or self._model_written[name] != value):
                model_parts[name] = json.dumps(value)
        meta = {name: json.dumps(value) for name, value in write.meta.items()}

        pipe = self._redis.pipeline(transaction=True)
        for bucket, fields in records.items():
            pipe.hset(self._bucket_key(bucket), mapping=fields)  # type: ignore[arg-type]
        for bucket, names in stale.items():
            pipe.hdel(self._bucket_key(bucket), *names)
        if due:
            pipe.zadd(self._key("due"), due, lt=True)
        for segment, delta in size_delta.items():
            if delta:
                pipe.hincrby(self._key("sizes"), str(segment), delta)
        if new_customers:
            pipe.incrby(self._key("n"), new_customers)
        if model_parts:
            if self._legacy_model:
                pipe.delete(self._key("model"))  # the old single-string checkpoint
            pipe.hset(self._key("model"), mapping=model_parts)  # type: ignore[arg-type]
        if write.positions:
            pipe.hset(self._key("pos"), mapping=write.positions)  # type: ignore[arg-type]
        if meta:
            pipe.hset(self._key("meta"), mapping=meta)  # type: ignore[arg-type]
        pipe.delete(self._key("outbox"))
        if write.outbox:
            pipe.rpush(self._key("outbox"), *write.outbox)
        try:
            pipe.execute()
        except Exception:
            # The transaction may or may not have been applied: forget, ask Redis again.
            self.forget_cached()
            raise
        # This worker owns these customers: what it just wrote is what the next batch
        # would load, so the memo keeps it (and spares a read of the previous segment).
        for cid, state in latest.items():
            self._memo_put(cid, state.segment, written_chunks[cid])
        self._memo_trim()
        if model_parts:
            self._legacy_model = False
        if write.model_checkpoint:
            self._model_written.update(write.model_checkpoint)

    def forget_cached(self) -> None:
        self._memo.clear()
        self._model_written.clear()

    # -- the due index ----------------------------------------------------------------
    def due_for_rescore(self, until: float, limit: int) -> list[str]:
        """The ``limit`` customers due earliest (``next_rescore_at <= until``).

        Buckets are visited in order of their lower bound, 128 per atomic Lua call that
        lists their due customers and sets their bounds to the exact minimum. The scan
        stops once no remaining bucket can hold a customer due earlier than the
        ``limit`` found so far. Round trips: one, plus one per 128 buckets visited.
        """
        if limit <= 0:
            return []
        cutoff = repr(float(until))
        candidates = cast(
            "list[tuple[bytes, float]]",
            self._redis.zrange(self._key("due"), "-inf", cutoff, byscore=True,
                               withscores=True),
        )
        best: list[tuple[float, str]] = []  # the `limit` earliest (time, id) so far, sorted
        for start in range(0, len(candidates), BUCKETS_PER_TRIP):
            chunk = candidates[start:start + BUCKETS_PER_TRIP]
            if len(best) >= limit:
                kth = best[-1][0]
                chunk = [(member, bound) for member, bound in chunk if bound <= kth]
                if not chunk:
                    break
            reply = self._scan_due([int(member) for member, _ in chunk], cutoff)
            found = [(float(reply[i + 1]), _text(reply[i])) for i in range(0, len(reply), 2)]
            best = heapq.nsmallest(limit, best + found)  # ties: by id, as the other stores
        return [cid for _, cid in best]

    def _scan_due(self, buckets: Sequence[int], cutoff: str) -> list[bytes]:
        """The due-scan script over ``buckets``: one command, one round trip."""
        keys = [self._key("due"), *(self._bucket_key(bucket) for bucket in buckets)]
        return self._due_scan(keys, [cutoff, *(str(bucket) for bucket in buckets)])

    # -- checkpoint reads -------------------------------------------------------------
    def load_model(self) -> dict[str, Any] | None:
        if self._legacy_model:
            data = self._redis.get(self._key("model"))
            return None if data is None else cast("dict[str, Any]", json.loads(data))
        parts = self._redis.hgetall(self._key("model"))
        if not parts:
            return None
        model = {_text(name): json.loads(value) for name, value in parts.items()}
        self._model_written = dict(model)
        return model

    def outbox(self) -> list[str]:
        return [_text(item) for item in self._redis.lrange(self._key("outbox"), 0, -1)]

    def positions(self) -> dict[str, int]:
        table = self._redis.hgetall(self._key("pos"))
        return {_text(name): int(value) for name, value in table.items()}

    def meta(self) -> dict[str, Any]:
        table = self._redis.hgetall(self._key("meta"))
        return {_text(name): json.loads(value) for name, value in table.items()}

    # -- whole-store reads ------------------------------------------------------------
    def _scan_buckets(self) -> list[int]:
        head = len(self.prefix) + 3
        found: set[int] = set()
        for key in self._redis.scan_iter(match=_glob_escape(self.prefix) + ":c:*", count=1000):
            suffix = _text(key)[head:]
            if suffix.isdigit():
                found.add(int(suffix))
        return sorted(found)

    def iter_customers(self) -> Iterator[CustomerState]:
        """Every customer, bucket by bucket (SCAN over ``{p}:c:*``; not in id order)."""
        buckets = self._scan_buckets()
        for start in range(0, len(buckets), BUCKETS_PER_TRIP):
            pipe = self._redis.pipeline(transaction=False)
            for bucket in buckets[start:start + BUCKETS_PER_TRIP]:
                pipe.hgetall(self._bucket_key(bucket))
            for table in pipe.execute():
                publics: dict[bytes, bytes] = {}
                chunks: dict[bytes, dict[int, bytes]] = {}
                for field, value in table.items():
                    index, raw = _split_field(field)
                    if index < 0:
                        publics[raw] = value
                    else:
                        chunks.setdefault(raw, {})[index] = value
                for raw, public in publics.items():
                    parts = chunks.get(raw, {})
                    data = b"".join(_leading([parts.get(i) for i in range(_MAX_CHUNKS)]))
                    length = _state_length(data) if data else None
                    yield self._decode(raw.decode("utf-8"), public,
                                       data[:length] if length else data)

    def count(self) -> int:
        return int(self._redis.get(self._key("n")) or 0)

    def segment_sizes(self) -> dict[int, int]:
        """From the ``{p}:sizes`` counters: O(segments), no scan."""
        return _sizes(self._redis.hgetall(self._key("sizes")))

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


def _delete_prefix(client: redis.Redis, prefix: str) -> int:
    deleted = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=_glob_escape(prefix) + ":*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted
