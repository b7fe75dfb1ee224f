"""The values of a customer in its bucket hash: the packed state and the readable record.

The **packed state** holds everything but the readable record, as compact bytes that
:mod:`.keys` cuts into 64-byte chunks (all integers little-endian):

=========  ==========================================================================
u8         header: bit 0 next_rescore_at present, bit 1 vector present, bit 2 vector
           as float64 (a vector that is not float32-exact is never rounded), bits
           6-7 codec version (2)
f64        next_rescore_at, if bit 0 -- at byte 1, where the due-scan script
           (:mod:`.scripts`) reads it
varint     the customer's partition: its small id in ``{p}:streams`` (0: none) --
           right after next_rescore_at, so that the due scan reads it from chunk 0
           with no more parsing than a varint
varint     length of everything after this varint (so that a chunk left over from a
           longer earlier state is ignored)
3 bytes    features header: a 3-bit tag per float of ``_FEATURE_FLOATS``, in order:
           0 None, 1 +0.0, 2 integral (i32), 3 f64, 4 = reference_time, 5 =
           last_purchase (no bytes for 0, 1, 4, 5)
...        the feature floats the tags announce, then varints orders and refunds
vector     if bit 1: varint dimension, then that many f32 (f64 if bit 2)
applied    varint count, then (varint stream id, zigzag varint offset) pairs; stream
           ids are the store's small ids of ``{p}:streams``
recent     varint count, then that many u32 event-id hashes
snapshots  if header bit 3: varint count, then per snapshot (oldest first) varints of
           its time (whole days since the epoch), cell, orders and total spend in cents (the
           snapshots that wait for their label, :mod:`streamseg.traits.schedule`)
band       if header bit 4: varint the risk band kept by hysteresis
           (:mod:`streamseg.traits.bands`)
since      if header bit 5: f64 the time the traits' grid was processed up to, when it
           is not ``updated_at``
=========  ==========================================================================

Codec version 1 (layout v1) is the same without the partition varint; it still decodes
(partition none), and :func:`_upgrade_state` turns it into version 2 by inserting the
varint, which is what the migration of a v1 prefix does (:mod:`.migrate`).

Every value comes back exactly as it was written. The **readable record** is text that
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
from streamseg.traits.schedule import Snapshot


# ------------------------------------------------------------------------ integers
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

# The layout is in the module docstring; the hot paths below follow it in order.
_CODEC_VERSION = 2
_CODEC_V1 = 1  # no partition: read, and upgraded by the migration of a v1 prefix
_HAS_RESCORE = 0x01
_HAS_VECTOR = 0x02
_VECTOR_F64 = 0x04
_HAS_SNAPSHOTS = 0x08
_HAS_BAND = 0x10
_HAS_SINCE = 0x20
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
    # The hot path of every write: plain locals and one pass (see the module docstring).
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
    """Everything but the readable record, as compact bytes (see the module docstring).

    ``stream_ids`` holds the small id of every stream of ``state.applied`` and of
    ``state.partition`` (the registry serves both).
    """
    header = _CODEC_VERSION << 6
    head = bytearray()
    if state.next_rescore_at is not None:
        header |= _HAS_RESCORE
        head += _F64.pack(float(state.next_rescore_at))
    _varint(0 if state.partition is None else stream_ids[state.partition], head)
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
    if state.snapshots:
        header |= _HAS_SNAPSHOTS
        _varint(len(state.snapshots), body)
        for snapshot in state.snapshots:
            days, rest = divmod(int(snapshot.at), 86_400)
            if rest or snapshot.at != int(snapshot.at):
                raise ValueError(f"customer {state.customer_id!r}: snapshot time "
                                 f"{snapshot.at} is not a whole day")
            _varint(days, body)
            _varint(snapshot.cell, body)
            _varint(snapshot.orders, body)
            _varint(round(snapshot.spend * 100), body)
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
    out = bytearray([(data[0] & 0x3F) | _CODEC_VERSION << 6]) + data[1:pos]
    _varint(partition_id, out)
    return bytes(out + data[pos:])


def _unpack_state(
    cid: str, data: bytes, stream_name: Callable[[int], str]
) -> tuple[float | None, CustomerFeatures, list[float] | None, dict[str, int], list[int]]:
    """The packed state's values but the partition (see :func:`_state_partition`) and
    the snapshots (:func:`_unpack_snapshots`)."""
    return _unpack_all(cid, data, stream_name)[:5]


def _unpack_snapshots(cid: str, data: bytes) -> list[Snapshot]:
    """The snapshots of a packed state that wait for their label."""
    snapshots: list[Snapshot] = _unpack_all(cid, data, lambda _: "")[5]
    return snapshots


def _unpack_all(cid: str, data: bytes, stream_name: Callable[[int], str]) -> tuple[Any, ...]:
    header = data[0]
    if header >> 6 not in (_CODEC_VERSION, _CODEC_V1):
        raise ValueError(f"customer {cid!r}: unknown state codec version {header >> 6}")
    next_rescore_at: float | None = None
    if header & _HAS_RESCORE:
        next_rescore_at = _F64.unpack_from(data, 1)[0]
    _, pos = _head(data)
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
    pos += 4 * count
    snapshots: list[Snapshot] = []
    if header & _HAS_SNAPSHOTS:
        count, pos = _read_varint(data, pos)
        for _ in range(count):
            at, pos = _read_varint(data, pos)
            cell, pos = _read_varint(data, pos)
            orders, pos = _read_varint(data, pos)
            cents, pos = _read_varint(data, pos)
            snapshots.append(Snapshot(at * 86_400.0, cell, orders, cents / 100))
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
