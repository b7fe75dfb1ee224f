"""Redis store (``redis://HOST:PORT/DB``, ``rediss://`` for TLS): for production.

One module per job:

* :mod:`.keys` -- the key schema (with the memory budget that shapes it), field names,
  buckets and chunks;
* :mod:`.codec` -- the packed customer state and the readable record (and why the codec
  is hand-written, with measured figures);
* :mod:`.connection` -- URLs, their options, timeouts, connecting;
* :mod:`.scripts` -- the Lua due-scan script and how it is called;
* :mod:`.store` -- :class:`RedisStore`, with the legacy single-string model checkpoint,
  helped by :mod:`.streams` (stream ids), :mod:`.memo` (segments and chunk counts),
  :mod:`.records` (reading customers), :mod:`.batch` (encoding a batch), :mod:`.due`
  (the due scan) and :mod:`.scan` (whole-store iteration);
* :mod:`.reader` -- :class:`SegmentReader`, read-only access for apps.
"""

from streamseg.store.redis.connection import redact_url
from streamseg.store.redis.keys import DEFAULT_BUCKETS, bucket_of
from streamseg.store.redis.reader import SegmentReader
from streamseg.store.redis.store import RedisStore, _delete_prefix

__all__ = ["DEFAULT_BUCKETS", "RedisStore", "SegmentReader", "_delete_prefix", "bucket_of",
           "redact_url"]
