"""Redis store (``redis://HOST:PORT/DB``, ``rediss://`` for TLS): for production.

Memory shapes this layout: the budget is **250 bytes per customer** (growth of Redis
``used_memory`` per customer, measured on 20k simulated customers by
:func:`streamseg.bench_redis.measure_memory_per_customer`; this layout takes ~190 on
Redis 7.0). A top-level key costs ~95 bytes before it holds anything (dict entry, object
header, key name, table slot) and a sorted-set member ~112 (skip-list node, dict entry,
member string), so a hash per customer plus a sorted-set member per customer is over
210 bytes before any data, and ~385 with it. Customers are therefore kept in
*bucketed* hashes, three fields per customer, which Redis stores as compact listpacks
(every value <= ``hash-max-listpack-value`` = 64 bytes, at most
``hash-max-listpack-entries`` = 512 fields); the due-for-rescore index is a sorted set
of buckets. A customer's three fields live in one hash, so one ``HMGET`` reads and one
``HSET`` writes all of them atomically.

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
``{p}:c:{b}``          HASH    three fields per customer of the bucket:      worker /
                               ``<id>`` -> ``segment|updated_at|model_       worker,
                               version|name``, readable text (empty segment  SegmentReader
                               or updated_at = none; no 4th part = no name;  (apps)
                               updated_at = event-time epoch seconds, exact
                               float text); ``\\x01<id>`` -> packed features
                               (first/last purchase, reference time,
                               decayed orders and spend, total spend,
                               refunded, order and refund counts; see
                               ``_pack_features``); ``\\x02<id>`` -> packed
                               scoring state (next_rescore_at, model-space
                               vector as float32, applied offset per
                               stream; see ``_pack_scoring``). An id that
                               itself starts with byte 1, 2 or 3 gets a
                               ``\\x03`` in front of its readable field.
``{p}:due``            ZSET    member = bucket, score = a lower bound of     worker /
                               the earliest ``next_rescore_at`` in it:       worker
                               lowered on write (``ZADD LT``), set to the
                               exact minimum by the due scan (Lua).
``{p}:sizes``          HASH    segment id -> customers in it (``HINCRBY``    worker /
                               on every segment change)                      worker,
                                                                             SegmentReader
``{p}:n``              STRING  number of customers (``INCRBY`` on first      worker /
                               write)                                        worker
``{p}:model``          STRING  model checkpoint, JSON                        worker /
                                                                             worker
``{p}:pos``            HASH    source stream -> next position (e.g.          worker /
                               ``kafka:events:3`` -> ``1234``)               worker
``{p}:meta``           HASH    name -> JSON value (watermark, ...)           worker /
                                                                             worker
``{p}:streams``        HASH    source stream name -> small id, used in the   worker /
                               packed scoring state (ids never reused)       worker
``{p}:streams:next``   STRING  last stream id handed out                     worker
=====================  ======  ============================================  ============

Guarantees and assumptions

* :meth:`RedisStore.write_batch` is one ``MULTI``/``EXEC`` transaction sent in one round
  trip: customer records, the due index, segment sizes, the customer count, the model,
  the source positions and the metadata change together or not at all. Values are
  encoded before ``MULTI``, so an encoding error writes nothing; Redis does not roll
  back a command that fails *inside* ``EXEC``, which only happens if one of these keys
  was overwritten with another type. :meth:`RedisStore.get_many` is one round trip (one
  ``HMGET`` per bucket touched).
* **One worker owns a customer** (Kafka partitions by customer id and each partition is
  consumed by one worker): segment sizes and the customer count are kept with
  ``HINCRBY``/``INCRBY`` from the segment each customer had when this store loaded it in
  :meth:`RedisStore.get_many` (or, for a customer written without being loaded, asked
  for just before the transaction). Two workers writing the same customer at the same
  time would make the counters drift; the customer records stay consistent.
* Redis Cluster: a transaction may only touch one hash slot; use a hash-tagged prefix
  such as ``{streamseg}`` so that every key lands in the same slot.
* Sizing: choose ``buckets`` (``redis://...?buckets=N``, default 1024) of at least
  ``customers / 128``: a bucket above 170 customers (512 fields) turns into a hash
  table, which works but takes about three times the memory. Far fewer customers per
  bucket than ~10 wastes memory on per-key overhead.

>>> store = RedisStore.from_uri("redis://127.0.0.1:6379/0", prefix="doc")  # doctest: +SKIP
>>> store.get("c1").segment  # doctest: +SKIP
3
"""

from __future__ import annotations

import heapq
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

from streamseg.features import CustomerFeatures
from streamseg.store.base import Checkpoint, CustomerState, Store

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUCKETS", "RedisStore", "SegmentReader", "redact_url"]

#: Buckets used when a prefix is first written and nothing else is asked for.
DEFAULT_BUCKETS = 1024
_LAYOUT_VERSION = "v1"
# Buckets processed per round trip by the due scan and by iter_customers.
_CHUNK = 128
# get_many remembers each loaded customer's segment until it is written; past this many
# unwritten entries the memo is dropped (write_batch then asks Redis, one extra trip).
_MEMO_LIMIT = 200_000

_MISSING = object()  # memo value: the customer is known not to exist

# Field names in a bucket hash: the readable record under the plain id, the packed
# features under b"\x01" + id and the packed scoring state under b"\x02" + id. An id
# that starts with one of these bytes (or b"\x03") is written as b"\x03" + id, so that
# every field name decodes to exactly one (kind, id).
_FEATURES_TAG = 1
_SCORING_TAG = 2
_ESCAPE_TAG = 3


def _public_field(cid: bytes) -> bytes:
    return b"\x03" + cid if cid[:1] in (b"\x01", b"\x02", b"\x03") else cid


def _features_field(cid: bytes) -> bytes:
    return b"\x01" + cid


def _scoring_field(cid: bytes) -> bytes:
    return b"\x02" + cid


def _split_field(field: bytes) -> tuple[int, bytes]:
    """(0 for the readable record, or the tag; customer id) of a bucket field name."""
    first = field[0] if field else 0
    if first in (_FEATURES_TAG, _SCORING_TAG):
        return first, field[1:]
    if first == _ESCAPE_TAG:
        return 0, field[1:]
    return 0, field

# --------------------------------------------------------------------------- codecs
# Features (``\x01<id>``): a little-endian u16 header, then the values it announces.
#   bits 0-13: a 2-bit tag for each float of _FEATURE_FLOATS, in order:
#              0 = None, 1 = +0.0 (no bytes), 2 = integral, int32 (4 bytes), 3 = float64
#   bits 14-15: codec version (1)
# then ``orders`` and ``refunds`` as unsigned LEB128 varints. Typical size: 50-61 bytes,
# inside the 64-byte listpack limit; floats are kept exactly (float64 or exact int32).
_FEATURE_FLOATS = (
    "first_purchase", "last_purchase", "reference_time", "decayed_orders", "decayed_spend",
    "total_spend", "refunded",
)
_FEATURES_VERSION = 1
_INT32 = struct.Struct("<i")
_F64 = struct.Struct("<d")
_U16 = struct.Struct("<H")

# Scoring state (``\x02<id>``): one header byte, then the values it announces.
#   bit 0: next_rescore_at present (float64 follows)
#   bit 1: vector present (varint length n, then n float32 -- or float64 if bit 2)
#   bit 2: vector stored as float64 (a vector that is not float32-exact is never rounded)
#   bits 6-7: codec version (1)
# then (stream id varint, zigzag varint offset) pairs up to the end: ``applied``.
_SCORING_VERSION = 1
_HAS_RESCORE = 0x01
_HAS_VECTOR = 0x02
_VECTOR_F64 = 0x04


def _varint(value: int, out: bytearray) -> None:
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


def _pack_features(features: CustomerFeatures) -> bytes:
    """Features as compact bytes (see the layout comment above); exact round trip."""
    header = _FEATURES_VERSION << 14
    body = bytearray()
    for index, name in enumerate(_FEATURE_FLOATS):
        value = getattr(features, name)
        if value is None:
            tag = 0
        else:
            value = float(value)
            if value == 0.0 and math.copysign(1.0, value) > 0:
                tag = 1
            elif value.is_integer() and -(2**31) <= value < 2**31:
                tag = 2
                body += _INT32.pack(int(value))
            else:
                tag = 3
                body += _F64.pack(value)
        header |= tag << (2 * index)
    _varint(features.orders, body)
    _varint(features.refunds, body)
    return _U16.pack(header) + bytes(body)


def _unpack_features(data: bytes) -> CustomerFeatures:
    (header,) = _U16.unpack_from(data, 0)
    if header >> 14 != _FEATURES_VERSION:
        raise ValueError(f"unknown features codec version {header >> 14}")
    pos = 2
    values: dict[str, Any] = {}
    for index, name in enumerate(_FEATURE_FLOATS):
        tag = (header >> (2 * index)) & 0x3
        if tag == 0:
            values[name] = None
        elif tag == 1:
            values[name] = 0.0
        elif tag == 2:
            values[name] = float(_INT32.unpack_from(data, pos)[0])
            pos += 4
        else:
            values[name] = _F64.unpack_from(data, pos)[0]
            pos += 8
    values["orders"], pos = _read_varint(data, pos)
    values["refunds"], pos = _read_varint(data, pos)
    return CustomerFeatures(**values)


def _float32_exact(vector: Sequence[float]) -> bool:
    return all(struct.unpack("<f", struct.pack("<f", x))[0] == x for x in vector)


def _pack_scoring(
    next_rescore_at: float | None, vector: Sequence[float] | None, applied: dict[int, int]
) -> bytes:
    """next_rescore_at, vector and applied offsets (by stream id) as compact bytes."""
    header = _SCORING_VERSION << 6
    body = bytearray()
    if next_rescore_at is not None:
        header |= _HAS_RESCORE
        body += _F64.pack(float(next_rescore_at))
    if vector is not None:
        header |= _HAS_VECTOR
        _varint(len(vector), body)
        try:
            exact = _float32_exact(vector)
        except OverflowError:
            exact = False
        if exact:
            body += struct.pack(f"<{len(vector)}f", *vector)
        else:
            header |= _VECTOR_F64
            body += struct.pack(f"<{len(vector)}d", *vector)
    for stream_id, offset in sorted(applied.items()):
        _varint(stream_id, body)
        _varint(_zigzag(offset), body)
    return bytes([header]) + bytes(body)


def _unpack_scoring(data: bytes) -> tuple[float | None, list[float] | None, dict[int, int]]:
    header = data[0]
    if header >> 6 != _SCORING_VERSION:
        raise ValueError(f"unknown scoring codec version {header >> 6}")
    pos = 1
    next_rescore_at: float | None = None
    vector: list[float] | None = None
    if header & _HAS_RESCORE:
        next_rescore_at = _F64.unpack_from(data, pos)[0]
        pos += 8
    if header & _HAS_VECTOR:
        length, pos = _read_varint(data, pos)
        code, size = ("d", 8) if header & _VECTOR_F64 else ("f", 4)
        vector = list(struct.unpack_from(f"<{length}{code}", data, pos))
        pos += size * length
    applied: dict[int, int] = {}
    while pos < len(data):
        stream_id, pos = _read_varint(data, pos)
        offset, pos = _read_varint(data, pos)
        applied[stream_id] = _unzigzag(offset)
    return next_rescore_at, vector, applied


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
    options: dict[str, Any] = {"health_check_interval": 30}
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


# Due scan of one bucket, atomic on the server: return the customers of the bucket whose
# next_rescore_at <= ARGV[2] (id, time as %.17g text) and set the bucket's score in the
# due index to the exact minimum of its customers' times (or remove it if none has one).
# Scoring fields are those whose name starts with byte 2; their first value byte has bit
# 0 set when a float64 next_rescore_at follows (see _pack_scoring).
# KEYS[1] = {p}:c:{b}, KEYS[2] = {p}:due; ARGV[1] = bucket, ARGV[2] = until.
_DUE_SCAN = """
local cutoff = tonumber(ARGV[2])
local values = redis.call('HGETALL', KEYS[1])
local due = {}
local lowest = nil
for i = 1, #values, 2 do
  local field = values[i]
  local record = values[i + 1]
  if string.byte(field, 1) == 2 and bit.band(string.byte(record, 1), 1) == 1 then
    local at = struct.unpack('<d', record, 2)
    if lowest == nil or at < lowest then lowest = at end
    if at <= cutoff then
      due[#due + 1] = string.sub(field, 2)
      due[#due + 1] = string.format('%.17g', at)
    end
  end
end
if lowest == nil then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], string.format('%.17g', lowest), ARGV[1])
end
return due
"""


class RedisStore(Store):
    """Customer state in Redis, laid out for memory (see the module docstring).

    Parameters
    ----------
    client
        A connected ``redis.Redis`` client (raw bytes, ``decode_responses=False``).
    prefix
        Prefix of every key; several services or tests can share one Redis with
        different prefixes.
    buckets
        Number of customer buckets when the prefix is new; an existing prefix keeps the
        count it was created with (stored in ``{prefix}:layout``).
    """

    def __init__(self, client: redis.Redis, prefix: str = "streamseg",
                 buckets: int = DEFAULT_BUCKETS) -> None:
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self._redis = client
        self.prefix = prefix
        self.buckets = self._layout(buckets)
        self._memo: dict[str, Any] = {}  # customer id -> segment as loaded, or _MISSING
        self._stream_ids: dict[str, int] = {}
        self._stream_names: dict[int, str] = {}
        self._due_scan_sha = str(client.script_load(_DUE_SCAN))

    @classmethod
    def from_uri(
        cls,
        uri: str,
        password: SecretStr | str | None = None,
        prefix: str = "streamseg",
        buckets: int | None = None,
    ) -> RedisStore:
        """Open ``redis://[user:pass@]HOST:PORT/DB[?buckets=N]`` (or ``rediss://``, ``unix://``).

        ``password`` (a pydantic ``SecretStr``) is used unless the URI has its own; it
        never appears in logs or errors. TLS (``rediss://``) and other connection options
        in the query string (``socket_timeout``, ``ssl_cert_reqs``, ...) are redis-py's.
        ``buckets`` (argument or ``?buckets=`` in the URI) only matters for a new prefix.
        """
        url, ours = _split_options(uri)
        if buckets is None:
            buckets = int(ours["buckets"]) if "buckets" in ours else DEFAULT_BUCKETS
        return cls(_connect(url, password), prefix=prefix, buckets=buckets)

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
        table = self._redis.hgetall(self._key("streams"))
        for name, value in table.items():
            self._stream_ids[_text(name)] = int(value)
            self._stream_names[int(value)] = _text(name)

    def _ids_for(self, names: Iterable[str]) -> dict[str, int]:
        """Small ids of source streams, registering new ones (outside any batch)."""
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
    def _decode(self, cid: str, public: bytes, features: bytes | None,
                scoring: bytes | None) -> CustomerState:
        segment, updated_at, model_version, name = _unpack_public(public)
        feats = _unpack_features(features) if features else CustomerFeatures.empty()
        next_rescore_at, vector, applied = (
            _unpack_scoring(scoring) if scoring else (None, None, {})
        )
        return CustomerState(
            customer_id=cid,
            features=feats,
            segment=segment,
            segment_name=name,
            vector=vector,
            updated_at=updated_at,
            model_version=model_version,
            next_rescore_at=next_rescore_at,
            applied={self._stream_name(sid): offset for sid, offset in applied.items()},
        )

    def _by_bucket(self, customer_ids: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for cid in dict.fromkeys(customer_ids):
            groups.setdefault(bucket_of(cid, self.buckets), []).append(cid)
        return groups

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        """One round trip: one HMGET per bucket, which reads a customer atomically."""
        groups = self._by_bucket(customer_ids)
        if not groups:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for bucket, cids in groups.items():
            fields: list[bytes] = []
            for cid in cids:
                raw = cid.encode("utf-8")
                fields += (_public_field(raw), _features_field(raw), _scoring_field(raw))
            pipe.hmget(self._bucket_key(bucket), fields)
        if len(self._memo) > _MEMO_LIMIT:
            self._memo.clear()
        found: dict[str, CustomerState] = {}
        for cids, values in zip(groups.values(), pipe.execute(), strict=True):
            for index, cid in enumerate(cids):
                public, features, scoring = values[3 * index:3 * index + 3]
                if public is None:
                    self._memo[cid] = _MISSING
                    continue
                state = self._decode(cid, public, features, scoring)
                self._memo[cid] = state.segment
                found[cid] = state
        return found

    def _previous(self, customer_ids: Sequence[str]) -> dict[str, Any]:
        """Segment each customer has in Redis (or _MISSING): the memo, else one query."""
        previous = {cid: self._memo[cid] for cid in customer_ids if cid in self._memo}
        unknown = [cid for cid in customer_ids if cid not in previous]
        if unknown:
            groups = self._by_bucket(unknown)
            pipe = self._redis.pipeline(transaction=False)
            for bucket, cids in groups.items():
                pipe.hmget(self._bucket_key(bucket),
                           [_public_field(cid.encode("utf-8")) for cid in cids])
            for cids, publics in zip(groups.values(), pipe.execute(), strict=True):
                for cid, public in zip(cids, publics, strict=True):
                    previous[cid] = _MISSING if public is None else _unpack_public(public)[0]
        return previous

    # -- the batch write --------------------------------------------------------------
    def write_batch(self, states: Sequence[CustomerState], checkpoint: Checkpoint) -> None:
        """Everything of a batch in one MULTI/EXEC, sent in one round trip.

        All values are encoded before the transaction starts, so an encoding error
        writes nothing. Segment sizes and the customer count are adjusted from the
        segment each customer had when :meth:`get_many` loaded it (see the module
        docstring for the single-owner assumption).
        """
        latest = {state.customer_id: state for state in states}  # last write of an id wins
        stream_ids = self._ids_for(
            name for state in latest.values() for name in state.applied
        )
        previous = self._previous(list(latest))

        records: dict[int, dict[bytes, bytes]] = {}
        due: dict[str, float] = {}
        size_delta: dict[int, int] = {}
        new_customers = 0
        for cid, state in latest.items():
            bucket = bucket_of(cid, self.buckets)
            fields = records.setdefault(bucket, {})
            raw = cid.encode("utf-8")
            fields[_public_field(raw)] = _pack_public(state)
            fields[_features_field(raw)] = _pack_features(state.features)
            fields[_scoring_field(raw)] = _pack_scoring(
                state.next_rescore_at, state.vector,
                {stream_ids[name]: offset for name, offset in state.applied.items()},
            )
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
        model = None if checkpoint.model_state is None else json.dumps(checkpoint.model_state)
        meta = {name: json.dumps(value) for name, value in checkpoint.meta.items()}

        pipe = self._redis.pipeline(transaction=True)
        for bucket, fields in records.items():
            pipe.hset(self._bucket_key(bucket), mapping=fields)  # type: ignore[arg-type]
        if due:
            pipe.zadd(self._key("due"), due, lt=True)
        for segment, delta in size_delta.items():
            if delta:
                pipe.hincrby(self._key("sizes"), str(segment), delta)
        if new_customers:
            pipe.incrby(self._key("n"), new_customers)
        if model is not None:
            pipe.set(self._key("model"), model)
        if checkpoint.positions:
            pipe.hset(self._key("pos"), mapping=checkpoint.positions)  # type: ignore[arg-type]
        if meta:
            pipe.hset(self._key("meta"), mapping=meta)  # type: ignore[arg-type]
        if len(pipe):
            pipe.execute()
        for cid in latest:  # the memo only bridges one get_many -> write_batch
            self._memo.pop(cid, None)

    # -- the due index ----------------------------------------------------------------
    def due_for_rescore(self, until: float, limit: int) -> list[str]:
        """The ``limit`` customers due earliest (``next_rescore_at <= until``).

        Buckets are visited in order of their lower bound; each visit is one atomic Lua
        call that lists the bucket's due customers and sets its bound to the exact
        minimum. The scan stops once no remaining bucket can hold a customer due earlier
        than the ``limit`` found so far. Round trips: one, plus one per 128 buckets
        visited.
        """
        if limit <= 0:
            return []
        cutoff = repr(float(until))
        due_key = self._key("due")
        candidates = cast(
            "list[tuple[bytes, float]]",
            self._redis.zrange(due_key, "-inf", cutoff, byscore=True, withscores=True),
        )
        best: list[tuple[float, str]] = []  # heap of the `limit` earliest, times negated
        for start in range(0, len(candidates), _CHUNK):
            chunk = candidates[start:start + _CHUNK]
            if len(best) >= limit:
                kth = -best[0][0]
                chunk = [(member, bound) for member, bound in chunk if bound <= kth]
                if not chunk:
                    break
            for reply in self._scan_buckets_due([int(member) for member, _ in chunk], cutoff):
                for index in range(0, len(reply), 2):
                    item = (-float(reply[index + 1]), _text(reply[index]))
                    if len(best) < limit:
                        heapq.heappush(best, item)
                    elif item > best[0]:
                        heapq.heapreplace(best, item)
        return [cid for _, cid in sorted(best, key=lambda item: (-item[0], item[1]))]

    def _scan_buckets_due(self, buckets: Sequence[int], cutoff: str) -> list[list[bytes]]:
        """Run the due-scan script on ``buckets`` in one round trip (reloading it if the
        server lost its script cache, e.g. after a restart)."""
        for attempt in (1, 2):
            pipe = self._redis.pipeline(transaction=False)
            for bucket in buckets:
                pipe.evalsha(self._due_scan_sha, 2, self._bucket_key(bucket),
                             self._key("due"), bucket, cutoff)
            try:
                return cast("list[list[bytes]]", pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self._due_scan_sha = str(self._redis.script_load(_DUE_SCAN))
        raise AssertionError("unreachable")

    # -- checkpoint reads -------------------------------------------------------------
    def load_model(self) -> dict[str, Any] | None:
        data = self._redis.get(self._key("model"))
        return None if data is None else cast("dict[str, Any]", json.loads(data))

    def positions(self) -> dict[str, int]:
        table = self._redis.hgetall(self._key("pos"))
        return {_text(name): int(value) for name, value in table.items()}

    def meta(self) -> dict[str, Any]:
        table = self._redis.hgetall(self._key("meta"))
        return {_text(name): json.loads(value) for name, value in table.items()}

    # -- whole-store reads ------------------------------------------------------------
    def _scan_buckets(self) -> list[int]:
        pattern = _glob_escape(self.prefix) + ":c:*"
        head = len(self.prefix) + 3
        found: set[int] = set()
        for key in self._redis.scan_iter(match=pattern, count=1000):
            suffix = key[head:].decode("utf-8", errors="replace")
            if suffix.isdigit():
                found.add(int(suffix))
        return sorted(found)

    def iter_customers(self) -> Iterator[CustomerState]:
        """Every customer, bucket by bucket (SCAN over ``{p}:c:*``; not in id order)."""
        buckets = self._scan_buckets()
        for start in range(0, len(buckets), _CHUNK):
            pipe = self._redis.pipeline(transaction=False)
            for bucket in buckets[start:start + _CHUNK]:
                pipe.hgetall(self._bucket_key(bucket))
            for table in pipe.execute():
                parts: dict[bytes, list[bytes | None]] = {}
                for field, value in table.items():
                    kind, raw = _split_field(field)
                    parts.setdefault(raw, [None, None, None])[kind] = value
                for raw, (public, features, scoring) in parts.items():
                    if public is not None:
                        yield self._decode(raw.decode("utf-8"), public, features, scoring)

    def count(self) -> int:
        return int(self._redis.get(self._key("n")) or 0)

    def segment_sizes(self) -> dict[int, int]:
        """From the ``{p}:sizes`` counters: O(segments)."""
        table = self._redis.hgetall(self._key("sizes"))
        sizes = {int(seg): int(n) for seg, n in table.items()}
        return {seg: n for seg, n in sorted(sizes.items()) if n > 0}

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


def _parse_layout(value: bytes | None, key: str) -> int:
    text = (value or b"").decode("utf-8", errors="replace")
    version, _, rest = text.partition(" ")
    if version != _LAYOUT_VERSION or not rest.startswith("buckets="):
        raise ValueError(f"{key} holds {text!r}: not a streamseg {_LAYOUT_VERSION} layout")
    return int(rest.removeprefix("buckets="))


def _delete_prefix(client: redis.Redis, prefix: str) -> int:
    deleted = 0
    batch: list[bytes] = []
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

    >>> reader = SegmentReader("redis://127.0.0.1:6379/0", prefix="streamseg")  # doctest: +SKIP
    >>> reader.segment_of("cust-000042")  # doctest: +SKIP
    {'segment': 2, 'name': 'Loyal regulars', 'updated_at': 1735603200.5, 'model_version': 7}
    >>> reader.segment_of("nobody") is None  # doctest: +SKIP
    True
    >>> reader.sizes()  # doctest: +SKIP
    {0: 4120, 1: 2210, 2: 5893}
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
        table = self._redis.hgetall(f"{self.prefix}:sizes")
        sizes = {int(seg): int(n) for seg, n in table.items()}
        return {seg: n for seg, n in sorted(sizes.items()) if n > 0}

    def close(self) -> None:
        self._redis.close()
