"""Read-only access for apps: :class:`SegmentReader`.

It needs neither the codec nor the partitions of a customer: the readable record is
text under the customer's id in its bucket (:mod:`.keys`), and the sizes are the sums of
the partitions' ``s:<segment>`` fields. A prefix of layout v1 (not yet migrated, see
:mod:`.migrate`) is read too.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from streamseg.store.redis.codec import _sizes, _unpack_public
from streamseg.store.redis.connection import _connect, _raw, _split_options, _text
from streamseg.store.redis.keys import (
    LAYOUT_V1,
    SIZE_FIELD,
    Keys,
    _parse_layout,
    _public_field,
    bucket_of,
)


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

    :meth:`segment_of` is one round trip (the bucket count is read once, when first
    needed), :meth:`sizes` two.

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
        self._keys = Keys(prefix)
        self._buckets: int | None = None
        self._horizon_days: float | None = None

    def _bucket_count(self) -> int | None:
        if self._buckets is None:
            key = self._keys.layout
            value = _raw(self._redis.get(key))
            if value is None:
                return None  # nothing written under this prefix yet
            self._buckets = _parse_layout(value, key)[1]  # fixed: cached
        return self._buckets

    def _horizon(self) -> float | None:
        """The store's traits.horizon_days (from its settings record; read once)."""
        if self._horizon_days is None:
            settings = _raw(self._redis.hget(self._keys.meta, "settings"))
            if settings is not None:
                value = json.loads(settings).get("traits.horizon_days")
                self._horizon_days = None if value is None else float(value)
        return self._horizon_days

    def segment_of(self, customer_id: str) -> dict[str, Any] | None:
        """``{"segment", "name", "updated_at", "model_version", "traits"}``, or None if
        unknown. ``traits`` is ``{"purchase_probability", "expected_spend",
        "horizon_days"}`` as of ``updated_at`` (None for a record without traits: written
        with traits disabled, or by a version before them)."""
        buckets = self._bucket_count()
        if buckets is None:
            return None
        bucket = bucket_of(customer_id, buckets)
        field = _public_field(customer_id.encode("utf-8"))
        public = _raw(self._redis.hget(self._keys.bucket(bucket), field))
        if public is None:
            return None
        segment, updated_at, model_version, name, traits = _unpack_public(public)
        return {"segment": segment, "name": name, "updated_at": updated_at,
                "model_version": model_version,
                "traits": None if traits is None else {
                    "purchase_probability": traits[0], "expected_spend": traits[1],
                    "horizon_days": self._horizon()}}

    def sizes(self) -> dict[int, int]:
        """Customers per segment (segments without customers are left out): the sum over
        partitions, read in one ``MULTI``."""
        keys = self._keys
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(keys.layout)
        pipe.hvals(keys.parts)
        pipe.hgetall(keys.v1_sizes)
        layout, ids, v1_sizes = pipe.execute()
        if layout is not None and _parse_layout(_raw(layout), keys.layout)[0] == LAYOUT_V1:
            return _sizes(v1_sizes)
        pipe = self._redis.pipeline(transaction=True)
        for partition_id in ids:
            pipe.hgetall(keys.part(int(partition_id)))
        totals: dict[int, int] = {}
        for table in pipe.execute():
            for field, value in table.items():
                name = _text(field)
                if name.startswith(SIZE_FIELD):
                    segment = int(name.removeprefix(SIZE_FIELD))
                    totals[segment] = totals.get(segment, 0) + int(value)
        return _sizes(totals)

    def close(self) -> None:
        self._redis.close()
