"""Redis store (``redis://HOST:PORT/DB``, ``rediss://`` for TLS): for production.

Memory shapes this layout. The budget is **250 bytes per customer** (growth of Redis
``used_memory`` per customer, measured on 20k simulated customers by
:func:`streamseg.bench.redis_memory.measure_memory_per_customer`; this layout takes ~220 on
Redis 7.0). A top-level key costs ~95 bytes before it holds anything (dict entry, object
header, key name, table slot) and a sorted-set member ~112 (skip-list node, dict entry,
member string): a hash per customer plus a sorted-set member per customer is over 210
bytes before any data, and measured ~385 with it. So customers live in *bucketed* hashes, which
Redis keeps as compact listpacks while every value is <= ``hash-max-listpack-value``
(64 bytes) and a hash has <= ``hash-max-listpack-entries`` (512) fields; and the
due-for-rescore index is a sorted set of buckets. All fields of a customer are in one
hash, so one ``HMGET`` reads and one ``HSET`` writes a customer atomically.

Key schema (``{p}`` is the prefix, default ``streamseg``; ``{b}`` is the customer's
bucket, ``crc32(utf-8 customer id) % buckets``, in decimal):

=====================  ======  ============================================  ============
key                    type    content                                       written by /
                                                                             read by
=====================  ======  ============================================  ============
``{p}:layout``         STRING  ``v1 buckets=<n>``: layout version and        first store
                               bucket count, fixed when the prefix is first  on the
                               used (a different later setting is ignored    prefix /
                               with a warning).                              all
``{p}:c:{b}``          HASH    per customer of the bucket:                   worker /
                               ``<id>`` -> ``segment|updated_at|model_       worker,
                               version|name``: readable text (empty segment  SegmentReader
                               or updated_at = none; no 4th part = no name;  (apps)
                               updated_at = event-time epoch seconds, exact
                               float text); and ``\\x01<id>``, ``\\x02<id>``,
                               ... -> the packed state in 64-byte chunks
                               (next_rescore_at, features, model-space
                               vector as float32, applied offset per
                               stream, recent event-id hashes; see
                               ``_pack_state``). An id that starts with a
                               byte below 0x20 is stored as ``\\x1f<id>``.
``{p}:due``            ZSET    member = bucket, score = a lower bound of     worker /
                               the earliest ``next_rescore_at`` in it:       worker
                               lowered on write (``ZADD LT``), set to the
                               exact minimum by the due scan (Lua).
``{p}:sizes``          HASH    segment id -> customers in it (``HINCRBY``    worker /
                               on every segment change)                      worker,
                                                                             SegmentReader
``{p}:n``              STRING  number of customers (``INCRBY`` on first      worker /
                               write)                                        worker
``{p}:model``          HASH    model checkpoint: part name -> JSON (a part   worker /
                               is written only when it changed)              worker
``{p}:pos``            HASH    source stream -> next position (e.g.          worker /
                               ``kafka:events:3`` -> ``1234``)               worker
``{p}:meta``           HASH    name -> JSON value (watermark, ...)           worker /
                                                                             worker
``{p}:outbox``         LIST    the change events (CloudEvents JSON) of the   worker /
                               last batch, replaced by every batch           worker
``{p}:streams``        HASH    source stream name -> small id, used in the   worker /
                               packed state (ids are never reused)           worker
``{p}:streams:next``   STRING  last stream id handed out                     worker
=====================  ======  ============================================  ============

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
  table, which works but takes about three times the memory. Much fewer than ~10
  customers per bucket wastes memory on per-key overhead.

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
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import redis
from pydantic import SecretStr

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import BatchWrite, CustomerState, Store

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUCKETS", "RedisStore", "SegmentReader", "bucket_of", "redact_url"]

#: Seconds a Redis command may take before it fails (``?socket_timeout=`` overrides):
#: far above a batch write (milliseconds), far below forever.
DEFAULT_SOCKET_TIMEOUT_S = 30.0
#: Seconds to open a connection (``?socket_connect_timeout=`` overrides).
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: Buckets used when a prefix is first written and nothing else is asked for.
DEFAULT_BUCKETS = 1024
_LAYOUT_VERSION = "v1"
# Buckets per round trip in the due scan and in iter_customers.
_BUCKETS_PER_TRIP = 128
# The memo: each customer's segment and chunk count as last loaded or written by this
# store, least recently used first; at least this many entries are kept, and at least as
# many as the caller caches (``cached_customers``): a customer the caller writes without
# loading it again must still be in the memo, or the chunks of a longer earlier state
# would stay behind.
_MEMO_LIMIT = 250_000
_MISSING = object()  # memo segment: the customer is known not to exist

# --------------------------------------------------------------------- field names
# In a bucket hash, the readable record of a customer is under its id; chunk i of its
# packed state under bytes([1 + i]) + id. An id starting with a byte below 0x20 is
# stored as b"\x1f" + id, so that every field name decodes to exactly one (kind, id).
_CHUNK_BYTES = 64  # = hash-max-listpack-value: longer values would convert the hash
_MAX_CHUNKS = 30  # tags 0x01..0x1e
_ESCAPE = 0x1F
_CHUNKS_READ = 3  # chunks asked for up front (192 bytes; more costs a second trip)


def _public_field(cid: bytes) -> bytes:
    return bytes([_ESCAPE]) + cid if cid[:1] < b"\x20" else cid


def _chunk_field(cid: bytes, index: int) -> bytes:
    return bytes([1 + index]) + cid


def _split_field(field: bytes) -> tuple[int, bytes]:
    """(-1 for the readable record, else the chunk index; customer id) of a field."""
    first = field[0] if field else 0x20
    if first >= 0x20:
        return -1, field
    if first == _ESCAPE:
        return -1, field[1:]
    return first - 1, field[1:]


# -------------------------------------------------------------------------- codecs
def _varint(value: int, out: bytearray) -> None:
    if 0 <= value < 0x80:  # the common case: one byte
        out.append(value)
        return
    if value < 0:
        raise ValueError(f"varint must be >= 0, got {value}")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value // 2 if not value & 1 else -(value + 1) // 2


_F64 = struct.Struct("<d")
_I32 = struct.Struct("<i")

# The packed state of a customer (all integers little-endian):
#
#   u8        header: bit 0 next_rescore_at present, bit 1 vector present, bit 2 vector
#             as float64 (a vector that is not float32-exact is never rounded),
#             bits 6-7 codec version (1)
#   f64       next_rescore_at, if bit 0 -- at byte 1, where the due-scan script reads it
#   varint    length of everything after this varint (so that a chunk left over from a
#             longer earlier state is ignored)
#   3 bytes   features header: a 3-bit tag per float of _FEATURE_FLOATS, in order:
#             0 None, 1 +0.0, 2 integral (i32), 3 f64, 4 = reference_time, 5 =
#             last_purchase (no bytes for 0, 1, 4, 5)
#   ...       the feature floats the tags announce, then varints orders and refunds
#   vector    if bit 1: varint dimension, then that many f32 (f64 if bit 2)
#   applied   varint count, then (varint stream id, zigzag varint offset) pairs
#   recent    varint count, then that many u32 event-id hashes
#
# A typical customer packs into 110-130 bytes: two chunks. Every value comes back
# exactly as it was written.
_CODEC_VERSION = 1
_HAS_RESCORE = 0x01
_HAS_VECTOR = 0x02
_VECTOR_F64 = 0x04
_FEATURE_FLOATS = (
    "reference_time", "last_purchase", "first_purchase", "decayed_orders", "decayed_spend",
    "total_spend", "refunded",
)
_TAG_NONE, _TAG_ZERO, _TAG_I32, _TAG_F64, _TAG_AS_REFERENCE, _TAG_AS_LAST = range(6)


def _float32_exact(vector: Sequence[float]) -> bool:
    try:
        code = f"<{len(vector)}f"
        return struct.unpack(code, struct.pack(code, *vector)) == tuple(vector)
    except (OverflowError, struct.error):
        return False


def _pack_features(features: CustomerFeatures, out: bytearray) -> None:
    # The hot path of every write: plain locals and one pass (see the layout above).
    # The floats go in the order of _FEATURE_FLOATS, which _unpack_features follows.
    tags = 0
    body = bytearray()
    reference = features.reference_time
    last = features.last_purchase
    shift = 0
    for index, value in enumerate((
        reference, last, features.first_purchase, features.decayed_orders,
        features.decayed_spend, features.total_spend, features.refunded,
    )):
        if value is None:
            tag = _TAG_NONE
        else:
            value = float(value)
            if (index == 1 or index == 2) and value == reference:
                tag = _TAG_AS_REFERENCE
            elif index == 2 and value == last:
                tag = _TAG_AS_LAST
            elif value == 0.0 and math.copysign(1.0, value) > 0:
                tag = _TAG_ZERO
            elif value.is_integer() and -(2**31) <= value < 2**31:
                tag = _TAG_I32
                body += _I32.pack(int(value))
            else:
                tag = _TAG_F64
                body += _F64.pack(value)
        tags |= tag << shift
        shift += 3
    out += tags.to_bytes(3, "little")
    out += body
    _varint(features.orders, out)
    _varint(features.refunds, out)


def _unpack_features(data: bytes, pos: int) -> tuple[CustomerFeatures, int]:
    tags = int.from_bytes(data[pos:pos + 3], "little")
    pos += 3
    values: dict[str, Any] = {}
    for index, name in enumerate(_FEATURE_FLOATS):
        tag = (tags >> (3 * index)) & 0x7
        if tag == _TAG_NONE:
            values[name] = None
        elif tag == _TAG_ZERO:
            values[name] = 0.0
        elif tag == _TAG_I32:
            values[name] = float(_I32.unpack_from(data, pos)[0])
            pos += 4
        elif tag == _TAG_F64:
            values[name] = _F64.unpack_from(data, pos)[0]
            pos += 8
        elif tag == _TAG_AS_REFERENCE:
            values[name] = values["reference_time"]
        elif tag == _TAG_AS_LAST:
            values[name] = values["last_purchase"]
        else:
            raise ValueError(f"bad feature tag {tag}")
    values["orders"], pos = _read_varint(data, pos)
    values["refunds"], pos = _read_varint(data, pos)
    return CustomerFeatures(**values), pos


def _pack_state(state: CustomerState, stream_ids: dict[str, int]) -> bytes:
    """Everything but the readable record, as compact bytes (see the layout above)."""
    header = _CODEC_VERSION << 6
    head = bytearray()
    if state.next_rescore_at is not None:
        header |= _HAS_RESCORE
        head += _F64.pack(float(state.next_rescore_at))
    body = bytearray()
    _pack_features(state.features, body)
    if state.vector is not None:
        header |= _HAS_VECTOR
        vector = [float(x) for x in state.vector]
        _varint(len(vector), body)
        if _float32_exact(vector):
            body += struct.pack(f"<{len(vector)}f", *vector)
        else:
            header |= _VECTOR_F64
            body += struct.pack(f"<{len(vector)}d", *vector)
    applied = state.applied
    _varint(len(applied), body)
    for name, offset in (sorted(applied.items()) if len(applied) > 1 else applied.items()):
        _varint(stream_ids[name], body)
        _varint(_zigzag(int(offset)), body)
    recent = state.recent_ids
    _varint(len(recent), body)
    body += struct.pack(f"<{len(recent)}I", *recent)
    out = bytearray([header]) + head
    _varint(len(body), out)
    out += body
    if len(out) > _CHUNK_BYTES * _MAX_CHUNKS:
        raise ValueError(f"customer {state.customer_id!r}: packed state of {len(out)} bytes "
                         f"exceeds {_CHUNK_BYTES * _MAX_CHUNKS}")
    return bytes(out)


def _state_length(data: bytes) -> int | None:
    """Total length of a packed state from its first bytes (None: too few bytes)."""
    try:
        pos = 9 if data[0] & _HAS_RESCORE else 1
        length, pos = _read_varint(data, pos)
    except IndexError:
        return None
    return pos + length


def _unpack_state(
    cid: str, data: bytes, stream_name: Any
) -> tuple[float | None, CustomerFeatures, list[float] | None, dict[str, int], list[int]]:
    header = data[0]
    if header >> 6 != _CODEC_VERSION:
        raise ValueError(f"customer {cid!r}: unknown state codec version {header >> 6}")
    pos = 1
    next_rescore_at: float | None = None
    if header & _HAS_RESCORE:
        next_rescore_at = _F64.unpack_from(data, pos)[0]
        pos += 8
    _, pos = _read_varint(data, pos)
    features, pos = _unpack_features(data, pos)
    vector: list[float] | None = None
    if header & _HAS_VECTOR:
        dim, pos = _read_varint(data, pos)
        code, size = ("d", 8) if header & _VECTOR_F64 else ("f", 4)
        vector = list(struct.unpack_from(f"<{dim}{code}", data, pos))
        pos += size * dim
    applied: dict[str, int] = {}
    count, pos = _read_varint(data, pos)
    for _ in range(count):
        stream_id, pos = _read_varint(data, pos)
        offset, pos = _read_varint(data, pos)
        applied[stream_name(stream_id)] = _unzigzag(offset)
    count, pos = _read_varint(data, pos)
    recent = list(struct.unpack_from(f"<{count}I", data, pos))
    return next_rescore_at, features, vector, applied, recent


def _chunks(data: bytes) -> list[bytes]:
    return [data[i:i + _CHUNK_BYTES] for i in range(0, len(data), _CHUNK_BYTES)]


def _text(value: bytes | str) -> str:
    """A reply as text (the client returns bytes; typed as ``bytes | str``)."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _raw(value: bytes | str | None) -> bytes | None:
    """A reply as bytes, or None."""
    return value.encode("utf-8") if isinstance(value, str) else value


def _fmt_float(value: float) -> str:
    """Shortest exact text of a float (``1714557600`` rather than ``1714557600.0``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _pack_public(state: CustomerState) -> bytes:
    """The readable record of a customer: ``segment|updated_at|model_version[|name]``."""
    parts = [
        "" if state.segment is None else str(int(state.segment)),
        "" if state.updated_at is None else _fmt_float(state.updated_at),
        str(int(state.model_version)),
    ]
    if state.segment_name is not None:
        parts.append(state.segment_name)
    return "|".join(parts).encode("utf-8")


def _unpack_public(data: bytes) -> tuple[int | None, float | None, int, str | None]:
    parts = data.decode("utf-8").split("|", 3)
    segment = int(parts[0]) if parts[0] else None
    updated_at = float(parts[1]) if parts[1] else None
    model_version = int(parts[2])
    name = parts[3] if len(parts) > 3 else None
    return segment, updated_at, model_version, name


def bucket_of(customer_id: str, buckets: int) -> int:
    """The bucket of a customer: ``crc32(utf-8 id) % buckets`` (stable everywhere)."""
    return zlib.crc32(customer_id.encode("utf-8")) % buckets


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """Remove streamseg's own query options (``buckets``) from a Redis URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    ours = {name: query.pop(name)[-1] for name in ("buckets",) if name in query}
    rest = urlencode([(k, v) for k, values in query.items() for v in values])
    return urlunsplit(parts._replace(query=rest)), ours


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _connect(url: str, password: SecretStr | str | None) -> redis.Redis:
    """A client for ``url`` that has answered a PING; a clear error if it cannot."""
    secret = password.get_secret_value() if isinstance(password, SecretStr) else password
    # Without timeouts a Redis that stops answering (paused, a network partition that
    # drops packets) blocks the worker forever, and /readyz with it. With them the
    # batch fails, the pipeline reports not-ready and retries. A ``socket_timeout`` in
    # the URL's query string wins (redis-py applies URL options last).
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
    }
    if secret:
        options["password"] = secret  # a password in the URL itself takes precedence
    client = redis.Redis.from_url(url, **options)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        raise ConnectionError(
            f"cannot use Redis at {redact_url(url)}: {error}. Is redis-server running "
            "(scripts/services up redis) and are store.uri / store.redis_password right?"
        ) from None
    return client


# Due scan of a set of buckets, atomic on the server: return the customers whose
# next_rescore_at <= ARGV[1], as a flat list (id, time as %.17g text, ...), and set each
# bucket's score in the due index to the exact minimum of its customers' times (or
# remove the bucket if none has one). Chunk 0 of a packed state is under a field that
# starts with byte 1; its first byte has bit 0 set when a float64 next_rescore_at follows
# (see _pack_state).
# KEYS[1] = {p}:due, KEYS[2..n] = {p}:c:{b}; ARGV[1] = until, ARGV[2..n] = the buckets.
_DUE_SCAN = """
local cutoff = tonumber(ARGV[1])
local due = {}
for k = 2, #KEYS do
  local values = redis.call('HGETALL', KEYS[k])
  local lowest = nil
  for i = 1, #values, 2 do
    local field = values[i]
    local chunk = values[i + 1]
    if string.byte(field, 1) == 1 and bit.band(string.byte(chunk, 1), 1) == 1 then
      local at = struct.unpack('<d', chunk, 2)
      if lowest == nil or at < lowest then lowest = at end
      if at <= cutoff then
        due[#due + 1] = string.sub(field, 2)
        due[#due + 1] = string.format('%.17g', at)
      end
    end
  end
  if lowest == nil then
    redis.call('ZREM', KEYS[1], ARGV[k])
  else
    redis.call('ZADD', KEYS[1], string.format('%.17g', lowest), ARGV[k])
  end
end
return due
"""


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
        self._due_scan_sha = str(client.script_load(_DUE_SCAN))

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
        self._redis.set(key, f"{_LAYOUT_VERSION} buckets={buckets}", nx=True)
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
        for start in range(0, len(candidates), _BUCKETS_PER_TRIP):
            chunk = candidates[start:start + _BUCKETS_PER_TRIP]
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
        """The due-scan script over ``buckets``: one command, one round trip (the script
        is loaded again if the server lost its script cache, e.g. after a restart)."""
        keys = [self._key("due"), *(self._bucket_key(bucket) for bucket in buckets)]
        args = [cutoff, *(str(bucket) for bucket in buckets)]
        try:
            reply = self._redis.evalsha(self._due_scan_sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._due_scan_sha = str(self._redis.script_load(_DUE_SCAN))
            reply = self._redis.evalsha(self._due_scan_sha, len(keys), *keys, *args)
        return cast("list[bytes]", reply)

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
        for start in range(0, len(buckets), _BUCKETS_PER_TRIP):
            pipe = self._redis.pipeline(transaction=False)
            for bucket in buckets[start:start + _BUCKETS_PER_TRIP]:
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


def _leading(chunks: Sequence[bytes | None]) -> Iterator[bytes]:
    """The chunks up to the first missing one."""
    for chunk in chunks:
        if chunk is None:
            return
        yield chunk


def _sizes(table: Any) -> dict[int, int]:
    sizes = {int(seg): int(n) for seg, n in table.items()}
    return {seg: n for seg, n in sorted(sizes.items()) if n > 0}


def _parse_layout(value: bytes | None, key: str) -> int:
    text = (value or b"").decode("utf-8", errors="replace")
    version, _, rest = text.partition(" ")
    if version != _LAYOUT_VERSION or not rest.startswith("buckets="):
        raise ValueError(f"{key} holds {text!r}: not a streamseg {_LAYOUT_VERSION} layout")
    return int(rest.removeprefix("buckets="))


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


class SegmentReader:
    """Read-only access to the segments a streamseg worker keeps in Redis, for apps.

    Parameters
    ----------
    url
        ``redis://HOST:PORT/DB`` (``rediss://`` for TLS) of the store.
    prefix
        The worker's ``store.redis_prefix``.
    password
        Redis password, unless the URL carries one.

    Each call is one round trip (the bucket count is read once, when first needed).

    Example, with a Redis the service writes to (tests/integration runs the same)::

        reader = SegmentReader("redis://127.0.0.1:6379/0", prefix="streamseg")
        reader.segment_of("cust-000042")
        # -> {'segment': 2, 'name': 'Loyal regulars', 'updated_at': 1735603200.5,
        #     'model_version': 7}
        reader.segment_of("nobody")  # -> None
        reader.sizes()  # -> {0: 4120, 1: 2210, 2: 5893}
    """

    def __init__(self, url: str, prefix: str = "streamseg",
                 password: SecretStr | str | None = None) -> None:
        self._redis = _connect(_split_options(url)[0], password)
        self.prefix = prefix
        self._buckets: int | None = None

    def _bucket_count(self) -> int | None:
        if self._buckets is None:
            key = f"{self.prefix}:layout"
            value = _raw(self._redis.get(key))
            if value is None:
                return None  # nothing written under this prefix yet
            self._buckets = _parse_layout(value, key)
        return self._buckets

    def segment_of(self, customer_id: str) -> dict[str, Any] | None:
        """``{"segment", "name", "updated_at", "model_version"}``, or None if unknown."""
        buckets = self._bucket_count()
        if buckets is None:
            return None
        bucket = bucket_of(customer_id, buckets)
        field = _public_field(customer_id.encode("utf-8"))
        public = _raw(self._redis.hget(f"{self.prefix}:c:{bucket}", field))
        if public is None:
            return None
        segment, updated_at, model_version, name = _unpack_public(public)
        return {"segment": segment, "name": name, "updated_at": updated_at,
                "model_version": model_version}

    def sizes(self) -> dict[int, int]:
        """Customers per segment (segments without customers are left out)."""
        return _sizes(self._redis.hgetall(f"{self.prefix}:sizes"))

    def close(self) -> None:
        self._redis.close()
