"""Redis store (``redis://HOST:PORT/DB``, ``rediss://`` for TLS): for production.

One module per job:

* :mod:`.keys` -- the key schema (with the memory budget that shapes it), field names,
  buckets, due groups and chunks;
* :mod:`.codec` -- the packed customer state and the readable record (and why the codec
  is hand-written);
* :mod:`.connection` -- URLs, their options, timeouts, connecting;
* :mod:`.scripts` -- the Lua scripts (fenced write, take a partition, due scan, lease)
  and how they are called;
* :mod:`.store` -- :class:`RedisStore`, helped by :mod:`.batch` (a batch as the commands
  of one fenced script call), :mod:`.partitions` (partition ids, take, read),
  :mod:`.lease` (the model lease), :mod:`.model` (the model checkpoint's parts),
  :mod:`.streams` (the name registry), :mod:`.memo` (chunk counts), :mod:`.records`
  (reading customers), :mod:`.due` (the due scan), :mod:`.scan` (whole-store
  iteration) and :mod:`.migrate` (a prefix of the previous layout, v1, to v2);
* :mod:`.reader` -- :class:`SegmentReader`, read-only access for apps.
"""

from streamseg.store.redis.connection import redact_url
from streamseg.store.redis.keys import DEFAULT_BUCKETS, bucket_of
from streamseg.store.redis.reader import SegmentReader
from streamseg.store.redis.store import RedisStore, _delete_prefix

__all__ = ["DEFAULT_BUCKETS", "RedisStore", "SegmentReader", "_delete_prefix", "bucket_of",
           "redact_url"]
