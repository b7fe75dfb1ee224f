"""Redis store (``redis://HOST:PORT/DB``): for production. See :mod:`.store`."""

from streamseg.store.redis.store import (
    DEFAULT_BUCKETS,
    RedisStore,
    SegmentReader,
    _delete_prefix,
    bucket_of,
    redact_url,
)

__all__ = ["DEFAULT_BUCKETS", "RedisStore", "SegmentReader", "_delete_prefix", "bucket_of",
           "redact_url"]
