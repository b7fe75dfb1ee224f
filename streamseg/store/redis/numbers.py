"""The numbers of a packed state (:mod:`.codec`): varints, and the feature floats.

Every float comes back exactly as it was written, in as few bytes as its value allows:
an amount in whole cents or an integral count as a varint, the last event time as the
microseconds before ``updated_at``, anything else as its float64.

>>> out = bytearray()
>>> features = CustomerFeatures(first_purchase=5.5, last_purchase=86_400.25,
...                             reference_time=86_400.25, decayed_orders=1.0,
...                             decayed_spend=19.99, orders=2, total_spend=39.98,
...                             refunded=0.0, refunds=0)
>>> _pack_features(features, out, updated_us=86_400_250_000)  # 3 bytes of tags, then
>>> len(out), _unpack_features(bytes(out), 0, True, 86_400.25)[0] == features
(13, True)

(five float64s and the tags would take 45 bytes).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from streamseg.core.features import CustomerFeatures


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

_FEATURE_FLOATS = (
    "reference_time", "last_purchase", "first_purchase", "decayed_orders", "decayed_spend",
    "total_spend", "refunded",
)
(_TAG_NONE, _TAG_ZERO, _TAG_INTEGRAL, _TAG_F64, _TAG_AS_REFERENCE, _TAG_AS_LAST, _TAG_CENTS,
 _TAG_BEFORE_UPDATED) = range(8)
#: Integers up to this size are exact floats (and microseconds or cents of them).
_EXACT_INT = 2**53


def _same(value: float, other: float | None) -> bool:
    """``value`` is ``other``: equal, and zeros of one sign (0.0 == -0.0, but a time
    stored as "the same as" another must read back with its own sign).

    >>> _same(0.0, -0.0), _same(-0.0, -0.0), _same(1.5, None)
    (False, True, False)
    """
    return (other is not None and value == other
            and math.copysign(1.0, value) == math.copysign(1.0, other))


def _pack_features(features: CustomerFeatures, out: bytearray,
                   updated_us: int | None = None) -> None:
    # The hot path of every write: plain locals and one pass (see the module docstring).
    # The floats go in the order of _FEATURE_FLOATS, which _unpack_features follows.
    # updated_us: updated_at in whole microseconds, when exactly that (for tag 7).
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
            if (index == 1 or index == 2) and _same(value, reference):
                tag = _TAG_AS_REFERENCE
            elif index == 2 and _same(value, last):
                tag = _TAG_AS_LAST
            elif value == 0.0:  # -0.0 keeps its sign: as a float64
                if math.copysign(1.0, value) > 0:
                    tag = _TAG_ZERO
                else:
                    tag = _TAG_F64
                    body += _F64.pack(value)
            elif (index == 0 and updated_us is not None
                  and (micros := _micros(value)) is not None):
                # The event time of the last event, usually updated_at or a little before.
                tag = _TAG_BEFORE_UPDATED
                _varint(_zigzag(updated_us - micros), body)
            elif value.is_integer() and -_EXACT_INT < value < _EXACT_INT:
                tag = _TAG_INTEGRAL
                _varint(_zigzag(int(value)), body)
            elif (cents := _cents(value)) is not None:
                tag = _TAG_CENTS
                _varint(_zigzag(cents), body)
            else:
                tag = _TAG_F64
                body += _F64.pack(value)
        tags |= tag << shift
        shift += 3
    out += tags.to_bytes(3, "little")
    out += body
    _varint(features.orders, out)
    _varint(features.refunds, out)


def _micros(value: float) -> int | None:
    """``value`` in whole microseconds, if it is exactly ``that / 1e6``.

    >>> _micros(1714931169.438999), _micros(0.1 + 0.2), _micros(math.inf)
    (1714931169438999, None, None)
    """
    if not math.isfinite(value) or abs(value) >= _EXACT_INT / 1e6:
        return None
    micros = round(value * 1e6)
    return micros if micros / 1e6 == value else None


def _cents(value: float) -> int | None:
    """``value`` in whole cents, if it is exactly ``that / 100``.

    >>> _cents(339.02), _cents(0.1 + 0.2), _cents(1e300)
    (33902, None, None)
    """
    if not math.isfinite(value) or abs(value) >= _EXACT_INT / 100:
        return None
    cents = round(value * 100)
    return cents if cents / 100 == value else None


def _unpack_features(data: bytes, pos: int, v3: bool,
                     updated_at: float | None) -> tuple[CustomerFeatures, int]:
    """The features at ``pos`` and the position after them; ``v3``: of codec version 3
    (version 2 has integral floats as i32 and no tags 6 and 7); ``updated_at``: of the
    customer's readable record."""
    tags = int.from_bytes(data[pos:pos + 3], "little")
    pos += 3
    values: dict[str, Any] = {}
    for index, name in enumerate(_FEATURE_FLOATS):
        tag = (tags >> (3 * index)) & 0x7
        if tag == _TAG_NONE:
            values[name] = None
        elif tag == _TAG_ZERO:
            values[name] = 0.0
        elif tag == _TAG_INTEGRAL and not v3:
            values[name] = float(_I32.unpack_from(data, pos)[0])
            pos += 4
        elif tag == _TAG_INTEGRAL:
            number, pos = _read_varint(data, pos)
            values[name] = float(_unzigzag(number))
        elif tag == _TAG_F64:
            values[name] = _F64.unpack_from(data, pos)[0]
            pos += 8
        elif tag == _TAG_AS_REFERENCE:
            values[name] = values["reference_time"]
        elif tag == _TAG_AS_LAST:
            values[name] = values["last_purchase"]
        elif tag == _TAG_CENTS and v3:
            number, pos = _read_varint(data, pos)
            values[name] = _unzigzag(number) / 100
        elif tag == _TAG_BEFORE_UPDATED and v3:
            updated_us = None if updated_at is None else _micros(float(updated_at))
            if updated_us is None:
                raise ValueError("the state's time is relative to updated_at, which the "
                                 "readable record does not hold as whole microseconds")
            number, pos = _read_varint(data, pos)
            values[name] = (updated_us - _unzigzag(number)) / 1e6
        else:
            raise ValueError(f"bad feature tag {tag}")
    values["orders"], pos = _read_varint(data, pos)
    values["refunds"], pos = _read_varint(data, pos)
    return CustomerFeatures(**values), pos
