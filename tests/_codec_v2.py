"""The packed state as codec version 2 wrote it (the release before version 3), for
tests that read states of earlier versions: a copy of that writer, kept as it was.

>>> from streamseg.core.features import CustomerFeatures
>>> from streamseg.store.base import CustomerState
>>> pack_state_v2(CustomerState("c", CustomerFeatures.empty()), {}).hex()
'80000700920400000000'
"""

from __future__ import annotations

import math
import struct

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import CustomerState
from streamseg.store.redis.numbers import _F64, _I32, _varint, _zigzag

_HAS_RESCORE, _HAS_VECTOR, _VECTOR_F64, _HAS_SNAPSHOTS, _HAS_BAND, _HAS_SINCE = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20)


def _pack_features_v2(features: CustomerFeatures, out: bytearray) -> None:
    tags = 0
    body = bytearray()
    reference = features.reference_time
    last = features.last_purchase
    for index, value in enumerate((
        reference, last, features.first_purchase, features.decayed_orders,
        features.decayed_spend, features.total_spend, features.refunded,
    )):
        if value is None:
            tag = 0
        else:
            value = float(value)
            if (index == 1 or index == 2) and value == reference:
                tag = 4
            elif index == 2 and value == last:
                tag = 5
            elif value == 0.0 and math.copysign(1.0, value) > 0:
                tag = 1
            elif value.is_integer() and -(2**31) <= value < 2**31:
                tag = 2
                body += _I32.pack(int(value))
            else:
                tag = 3
                body += _F64.pack(value)
        tags |= tag << (3 * index)
    out += tags.to_bytes(3, "little")
    out += body
    _varint(features.orders, out)
    _varint(features.refunds, out)


def pack_state_v2(state: CustomerState, stream_ids: dict[str, int]) -> bytes:
    """``state`` packed as codec version 2 did."""
    header = 2 << 6
    head = bytearray()
    if state.next_rescore_at is not None:
        header |= _HAS_RESCORE
        head += _F64.pack(float(state.next_rescore_at))
    _varint(0 if state.partition is None else stream_ids[state.partition], head)
    body = bytearray()
    _pack_features_v2(state.features, body)
    if state.vector is not None:
        header |= _HAS_VECTOR
        vector = [float(x) for x in state.vector]
        _varint(len(vector), body)
        try:
            exact = struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f",
                                                                  *vector)) == tuple(vector)
        except (OverflowError, struct.error):
            exact = False
        if exact:
            body += struct.pack(f"<{len(vector)}f", *vector)
        else:
            header |= _VECTOR_F64
            body += struct.pack(f"<{len(vector)}d", *vector)
    applied = state.applied
    _varint(len(applied), body)
    for name, offset in (sorted(applied.items()) if len(applied) > 1 else applied.items()):
        _varint(stream_ids[name], body)
        _varint(_zigzag(int(offset)), body)
    _varint(len(state.recent_ids), body)
    body += struct.pack(f"<{len(state.recent_ids)}I", *state.recent_ids)
    if state.snapshots:
        header |= _HAS_SNAPSHOTS
        _varint(len(state.snapshots), body)
        for snapshot in state.snapshots:
            _varint(int(snapshot.at) // 86_400, body)
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
    return bytes(out + body)
