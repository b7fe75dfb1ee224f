"""The values of a customer in its bucket hash: the packed state and the readable record.

The **packed state** holds everything but the readable record, as compact bytes that
:mod:`.keys` cuts into 64-byte chunks (all integers little-endian):

=========  ==========================================================================
u8         header: bit 0 next_rescore_at present, bit 1 vector present, bit 2 vector
           as float64 (a vector that is not float32-exact is never rounded), bits
           6-7 codec version (3)
f64        next_rescore_at, if bit 0 -- at byte 1, where the due-scan script
           (:mod:`.scripts`) reads it
varint     the customer's partition: its small id in ``{p}:streams`` (0: none) --
           right after next_rescore_at, so that the due scan reads it from chunk 0
           with no more parsing than a varint
varint     length of everything after this varint (so that a chunk left over from a
           longer earlier state is ignored)
3 bytes    features header: a 3-bit tag per float of ``_FEATURE_FLOATS``, in order:
           0 None, 1 +0.0, 2 integral below 2**53 (zigzag varint), 3 f64, 4 =
           reference_time, 5 = last_purchase, 6 whole cents below 2**53 (zigzag
           varint of the cents), 7 (reference_time only) whole microseconds before
           ``updated_at`` of the readable record (zigzag varint; 0: the same time);
           no bytes for 0, 1, 4, 5
...        the feature floats the tags announce, then varints orders and refunds
vector     if bit 1: varint dimension, then that many f32 (f64 if bit 2)
applied    varint ``count << 1 | own``, then (varint stream id, zigzag varint offset)
           pairs; stream ids are the store's small ids of ``{p}:streams``. ``own``
           (count 1): the stream is the customer's partition, whose id is not repeated
           (the usual case, a Kafka partition's own stream): the offset alone follows
recent     varint count, then that many u32 event-id hashes
snapshots  if header bit 3: varint count, then per snapshot (oldest first) zigzag
           varints of the day of ``reference_time`` less its time (whole days since
           the epoch), its cell (a varint), ``orders`` less its orders, and
           ``total_spend`` less its total spend, in cents (the snapshots that wait for
           their label, :mod:`streamseg.traits.schedule`): a snapshot precedes the
           customer's last event by less than the horizon and one purchase or a few,
           so most take five bytes
band       if header bit 4: varint the risk band kept by hysteresis
           (:mod:`streamseg.traits.bands`)
since      if header bit 5: f64 the time the traits' grid was processed up to, when it
           is not ``updated_at``
=========  ==========================================================================

Earlier versions still decode; a state is written as version 3 the next time its
customer is written. Codec version 2 differs in three places: tag 2 is an i32 (no tags 6
and 7), the applied count is plain, and snapshots are absolute varints (days since the
epoch, cell, orders, cents). Codec version 1 (layout v1) is version 2 without the
partition varint; it decodes with partition none, and :func:`_upgrade_state` turns it
into version 2 by inserting the varint, which is what the migration of a v1 prefix does
(:mod:`.migrate`). The head (header, next_rescore_at, partition) is the same in versions
2 and 3: the due-scan script reads both.

Every value comes back exactly as it was written (a snapshot's spend is kept in whole
cents, as before). A state is decoded with its customer's readable record, which holds
``updated_at`` (tag 7): the two are written and read together, in one ``HSET`` and one
``HMGET``. Version 3 takes about 16 bytes less than version 2 for a typical customer
with a snapshot (one byte for the last event time when it is ``updated_at``, four when
it is seconds before; a whole-cent total spend in three bytes rather than eight; a
snapshot in five or six rather than eight or nine), which keeps nearly every customer
within two chunks. The **readable record** is text that
apps read without this codec (:class:`~streamseg.store.redis.SegmentReader`), in one of
two versions:

* version 1 (no traits): ``segment|updated_at|model_version[|name]``;
* version 2: ``v2|segment|updated_at|model_version|purchase_probability|expected_spend[|name]``
  (the traits empty when not predicted yet). The leading ``v2`` tells a reader of
  version 1 that it is not a segment; the name stays last, so it may hold ``|``.

A record of traits is written as version 2, one without as version 1.

Why hand-written rather than a kept library (msgpack, msgspec): size, which is memory
and round trips. ``python -m streamseg_bench.codec --redis redis://127.0.0.1:6379/0``
packs the same content with each and measures the Redis memory each would take: only
this codec keeps a typical customer within two chunks and the store within its budget
of 250 bytes per customer (:mod:`.keys`). msgpack writes every float as 9 bytes and
names every field and stream; even by position, the most compact layout msgspec offers,
most customers would take four chunks instead of two, each more field repeating the
customer id, and most would need the second round trip of ``RedisStore.get_many``. What
this codec saves is exactly what a general format cannot know: a vector that is
float32-exact, features that repeat ``reference_time`` or are integral, stream and
partition names replaced by small ids. The libraries are faster (C against this
Python); the store pays that CPU for memory, which is what limits how many customers
one Redis holds. The due-scan script also reads ``next_rescore_at`` and the partition at
fixed places of chunk 0, which a self-describing format does not give.

>>> data = _pack_public(CustomerState("c1", CustomerFeatures.empty(), segment=2,
...                                   segment_name="VIP", updated_at=1714557600.0))
>>> data, _unpack_public(data)
(b'2|1714557600|0|VIP', (2, 1714557600.0, 0, 'VIP', None))
>>> data = _pack_public(CustomerState("c1", CustomerFeatures.empty(), segment=2,
...                                   segment_name="VIP", updated_at=1714557600.0,
...                                   traits=(0.8123, 54.2)))
>>> data, _unpack_public(data)
(b'v2|2|1714557600|0|0.8123|54.2|VIP', (2, 1714557600.0, 0, 'VIP', (0.8123, 54.2)))
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import CustomerState
from streamseg.store.redis.keys import _CHUNK_BYTES, _MAX_CHUNKS
from streamseg.store.redis.numbers import (
    _F64,
    _micros,
    _pack_features,
    _read_varint,
    _unpack_features,
    _unzigzag,
    _varint,
    _zigzag,
)
from streamseg.traits.schedule import Snapshot

# The layout is in the module docstring; the hot paths below follow it in order.
_CODEC_VERSION = 3
_CODEC_V2 = 2  # integral floats as i32, snapshots and applied streams absolute: read
_CODEC_V1 = 1  # no partition: read, and upgraded by the migration of a v1 prefix
_HAS_RESCORE = 0x01
_HAS_VECTOR = 0x02
_VECTOR_F64 = 0x04
_HAS_SNAPSHOTS = 0x08
_HAS_BAND = 0x10
_HAS_SINCE = 0x20
def _float32_exact(vector: Sequence[float]) -> bool:
    try:
        code = f"<{len(vector)}f"
        return struct.unpack(code, struct.pack(code, *vector)) == tuple(vector)
    except (OverflowError, struct.error):
        return False


def _pack_state(state: CustomerState, stream_ids: dict[str, int]) -> bytes:
    """Everything but the readable record, as compact bytes (see the module docstring).

    ``stream_ids`` holds the small id of every stream of ``state.applied`` and of
    ``state.partition`` (the registry serves both). The state may refer to
    ``state.updated_at``, which the readable record holds: decode the two together.
    """
    header = _CODEC_VERSION << 6
    head = bytearray()
    if state.next_rescore_at is not None:
        header |= _HAS_RESCORE
        head += _F64.pack(float(state.next_rescore_at))
    partition_id = 0 if state.partition is None else stream_ids[state.partition]
    _varint(partition_id, head)
    body = bytearray()
    features = state.features
    updated_us = None if state.updated_at is None else _micros(float(state.updated_at))
    _pack_features(features, body, updated_us)
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
    if len(applied) == 1 and partition_id and stream_ids[next(iter(applied))] == partition_id:
        # The usual case, a Kafka partition's own stream: its id is the partition's.
        _varint(1 << 1 | 1, body)
        _varint(_zigzag(int(next(iter(applied.values())))), body)
    else:
        _varint(len(applied) << 1, body)
        for name, offset in (sorted(applied.items()) if len(applied) > 1
                             else applied.items()):
            _varint(stream_ids[name], body)
            _varint(_zigzag(int(offset)), body)
    recent = state.recent_ids
    _varint(len(recent), body)
    body += struct.pack(f"<{len(recent)}I", *recent)
    if state.snapshots:
        header |= _HAS_SNAPSHOTS
        _varint(len(state.snapshots), body)
        # Each relative to the customer's features now, which a snapshot precedes by
        # less than the horizon: one byte for days and orders, two for most spends.
        today, orders, cents = _snapshot_base(features)
        for snapshot in state.snapshots:
            if not math.isfinite(snapshot.at) or snapshot.at % 86_400:
                raise ValueError(f"customer {state.customer_id!r}: snapshot time "
                                 f"{snapshot.at} is not a whole day")
            _varint(_zigzag(today - int(snapshot.at) // 86_400), body)
            _varint(snapshot.cell, body)
            _varint(_zigzag(orders - snapshot.orders), body)
            _varint(_zigzag(cents - round(snapshot.spend * 100)), body)
    if state.risk_band is not None:
        header |= _HAS_BAND
        _varint(state.risk_band, body)
    if state.traits_since is not None and state.traits_since != state.updated_at:
        header |= _HAS_SINCE
        body += _F64.pack(float(state.traits_since))
    out = bytearray([header]) + head
    _varint(len(body), out)
    out += body
    if len(out) > _CHUNK_BYTES * _MAX_CHUNKS:
        raise ValueError(f"customer {state.customer_id!r}: packed state of {len(out)} bytes "
                         f"exceeds {_CHUNK_BYTES * _MAX_CHUNKS}")
    return bytes(out)


def _snapshot_base(features: CustomerFeatures) -> tuple[int, int, int]:
    """(day of the last event, orders, total spend in cents) that snapshots are stored
    relative to: zeros for what is missing or not finite.

    >>> f = CustomerFeatures.empty()
    >>> f.apply(86_400 * 3 + 5.5, 12.5, "purchase", half_life_days=90)
    >>> _snapshot_base(f), _snapshot_base(CustomerFeatures.empty())
    ((3, 1, 1250), (0, 0, 0))
    """
    reference = features.reference_time
    day = int(reference // 86_400) if reference is not None and math.isfinite(reference) else 0
    spend = features.total_spend * 100
    return day, features.orders, round(spend) if math.isfinite(spend) else 0


def _head(data: bytes) -> tuple[int, int]:
    """(partition id, position of the length varint) of a packed state of either
    version. Raises IndexError when ``data`` is too short."""
    header = data[0]
    pos = 9 if header & _HAS_RESCORE else 1
    if header >> 6 == _CODEC_V1:
        if pos > len(data):
            raise IndexError("packed state cut short")
        return 0, pos
    return _read_varint(data, pos)


def _state_length(data: bytes) -> int | None:
    """Total length of a packed state from its first bytes (None: too few bytes)."""
    try:
        _, pos = _head(data)
        length, pos = _read_varint(data, pos)
    except IndexError:
        return None
    return pos + length


def _state_partition(data: bytes) -> int:
    """The small id of the partition a packed state records (0: none, or version 1).

    >>> _state_partition(_pack_state(CustomerState("c", CustomerFeatures.empty(),
    ...                                            partition="kafka:t:0"), {"kafka:t:0": 5}))
    5
    """
    return _head(data)[0]


def _upgrade_state(data: bytes, partition_id: int) -> bytes:
    """A packed state of codec version 1 as version 2, recording ``partition_id``; a
    version 2 state is returned as it is. Only the head changes: the length varint
    counts the bytes after it, which stay the same.

    >>> old = bytes([_CODEC_V1 << 6 | _HAS_RESCORE]) + _F64.pack(5.0) + bytes([1, 0])
    >>> new = _upgrade_state(old, 300)
    >>> new[0] >> 6, _state_partition(new), _state_length(new) == len(new) == len(old) + 2
    (2, 300, True)
    """
    if data[0] >> 6 != _CODEC_V1:
        return data
    pos = 9 if data[0] & _HAS_RESCORE else 1
    out = bytearray([(data[0] & 0x3F) | _CODEC_V2 << 6]) + data[1:pos]
    _varint(partition_id, out)
    return bytes(out + data[pos:])


def _unpack_state(
    cid: str, data: bytes, stream_name: Callable[[int], str], updated_at: float | None
) -> tuple[float | None, CustomerFeatures, list[float] | None, dict[str, int], list[int]]:
    """The packed state's values but the partition (see :func:`_state_partition`) and
    the snapshots (:func:`_unpack_snapshots`). ``updated_at`` is the one of the
    customer's readable record, written with the state."""
    return _unpack_all(cid, data, stream_name, updated_at)[:5]


def _unpack_snapshots(cid: str, data: bytes, updated_at: float | None) -> list[Snapshot]:
    """The snapshots of a packed state that wait for their label."""
    snapshots: list[Snapshot] = _unpack_all(cid, data, lambda _: "", updated_at)[5]
    return snapshots


def _unpack_all(cid: str, data: bytes, stream_name: Callable[[int], str],
                updated_at: float | None) -> tuple[Any, ...]:
    header = data[0]
    version = header >> 6
    if version not in (_CODEC_VERSION, _CODEC_V2, _CODEC_V1):
        raise ValueError(f"customer {cid!r}: unknown state codec version {version}")
    try:
        return _unpack_body(data, version, stream_name, updated_at)
    except ValueError as error:
        raise ValueError(f"customer {cid!r}: {error}") from error


def _unpack_body(data: bytes, version: int, stream_name: Callable[[int], str],
                 updated_at: float | None) -> tuple[Any, ...]:
    header = data[0]
    next_rescore_at: float | None = None
    if header & _HAS_RESCORE:
        next_rescore_at = _F64.unpack_from(data, 1)[0]
    partition_id, pos = _head(data)
    _, pos = _read_varint(data, pos)
    features, pos = _unpack_features(data, pos, version == _CODEC_VERSION, updated_at)
    vector: list[float] | None = None
    if header & _HAS_VECTOR:
        dim, pos = _read_varint(data, pos)
        code, size = ("d", 8) if header & _VECTOR_F64 else ("f", 4)
        vector = list(struct.unpack_from(f"<{dim}{code}", data, pos))
        pos += size * dim
    applied: dict[str, int] = {}
    count, pos = _read_varint(data, pos)
    if version == _CODEC_VERSION:
        count, implicit = count >> 1, count & 1
        if implicit:  # the partition's own stream
            offset, pos = _read_varint(data, pos)
            applied[stream_name(partition_id)] = _unzigzag(offset)
            count = 0
    for _ in range(count):
        stream_id, pos = _read_varint(data, pos)
        offset, pos = _read_varint(data, pos)
        applied[stream_name(stream_id)] = _unzigzag(offset)
    count, pos = _read_varint(data, pos)
    recent = list(struct.unpack_from(f"<{count}I", data, pos))
    pos += 4 * count
    snapshots: list[Snapshot] = []
    if header & _HAS_SNAPSHOTS:
        count, pos = _read_varint(data, pos)
        relative = version == _CODEC_VERSION
        today, orders_now, cents_now = _snapshot_base(features) if relative else (0, 0, 0)
        sign = -1 if relative else 1  # version 2: absolute, not zigzagged
        for _ in range(count):
            at, pos = _read_varint(data, pos)
            cell, pos = _read_varint(data, pos)
            orders, pos = _read_varint(data, pos)
            cents, pos = _read_varint(data, pos)
            if relative:
                at, orders, cents = _unzigzag(at), _unzigzag(orders), _unzigzag(cents)
            snapshots.append(Snapshot((today + sign * at) * 86_400.0, cell,
                                      orders_now + sign * orders, (cents_now + sign * cents) / 100))
    band: int | None = None
    if header & _HAS_BAND:
        band, pos = _read_varint(data, pos)
    since: float | None = None
    if header & _HAS_SINCE:
        since = _F64.unpack_from(data, pos)[0]
    return next_rescore_at, features, vector, applied, recent, snapshots, band, since


# ------------------------------------------------------------------ readable record
def _fmt_float(value: float) -> str:
    """Shortest exact text of a float (``1714557600`` rather than ``1714557600.0``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


#: The first field of a readable record of version 2 (see the module docstring).
PUBLIC_V2 = "v2"


def _pack_public(state: CustomerState) -> bytes:
    """The readable record of a customer (see the module docstring): version 2 with
    traits, version 1 without."""
    parts = [
        "" if state.segment is None else str(int(state.segment)),
        "" if state.updated_at is None else _fmt_float(state.updated_at),
        str(int(state.model_version)),
    ]
    if state.traits is not None:
        parts = [PUBLIC_V2, *parts, _fmt_float(state.traits[0]), _fmt_float(state.traits[1])]
    if state.segment_name is not None:
        parts.append(state.segment_name)
    return "|".join(parts).encode("utf-8")


def _unpack_public(data: bytes) -> tuple[int | None, float | None, int, str | None,
                                          tuple[float, float] | None]:
    """(segment, updated_at, model_version, name, traits) of a record of either version."""
    text = data.decode("utf-8")
    traits: tuple[float, float] | None = None
    if text.startswith(PUBLIC_V2 + "|"):
        parts = text.split("|", 6)
        segment_text, updated_text, version_text, p, spend = parts[1:6]
        name = parts[6] if len(parts) > 6 else None
        if p and spend:
            traits = (float(p), float(spend))
    else:
        parts = text.split("|", 3)
        segment_text, updated_text, version_text = parts[:3]
        name = parts[3] if len(parts) > 3 else None
    segment = int(segment_text) if segment_text else None
    updated_at = float(updated_text) if updated_text else None
    return segment, updated_at, int(version_text), name, traits


def _sizes(table: Any) -> dict[int, int]:
    """Customers per segment from a v1 ``{p}:sizes`` hash, empty segments left out."""
    sizes = {int(seg): int(n) for seg, n in table.items()}
    return {seg: n for seg, n in sorted(sizes.items()) if n > 0}
