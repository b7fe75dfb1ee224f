"""The Redis key schema of the store: key names, field names, buckets and chunks.

Memory shapes this layout. The budget is **250 bytes per customer** (growth of Redis
``used_memory`` per customer on simulated customers; ``python -m
streamseg.bench.redis_memory [URL] [CUSTOMERS]`` measures it on the Redis at hand, since
the figure depends on the Redis version and allocator). Every top-level key and every
sorted-set member carries a fixed overhead before it holds anything (dict entry, object
header, key name, table slot; a skip-list node for a sorted-set member): a hash per
customer plus a sorted-set member per customer spends most of the budget on that
overhead alone. So customers live in *bucketed* hashes, which Redis keeps as compact
listpacks while every value is <= ``hash-max-listpack-value`` (64 bytes) and a hash has
<= ``hash-max-listpack-entries`` (512) fields; and the due-for-rescore index is a sorted
set of buckets. All fields of a customer are in one hash, so one ``HMGET`` reads and one
``HSET`` writes a customer atomically.

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
                               :mod:`.codec`). An id that starts with a
                               byte below 0x20 is stored as ``\\x1f<id>``.
``{p}:due``            ZSET    member = bucket, score = a lower bound of     worker /
                               the earliest ``next_rescore_at`` in it:       worker
                               lowered on write (``ZADD LT``), set to the
                               exact minimum by the due scan (Lua,
                               :mod:`.scripts`).
``{p}:sizes``          HASH    segment id -> customers in it (``HINCRBY``    worker /
                               on every segment change)                      worker,
                                                                             SegmentReader
``{p}:n``              STRING  number of customers (``INCRBY`` on first      worker /
                               write)                                        worker
``{p}:model``          HASH    model checkpoint: part name -> JSON (a part   worker /
                               is written only when it changed). A prefix    worker
                               written before parts existed holds one JSON
                               STRING here, replaced by the hash at the
                               next write.
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

Field names in a bucket hash: the readable record of a customer is under its id, chunk
``i`` of its packed state under ``bytes([1 + i]) + id``; an id starting with a byte below
0x20 is stored as ``b"\\x1f" + id``, so that every field name decodes to exactly one
(kind, id):

>>> _public_field(b"c1"), _chunk_field(b"c1", 0), _public_field(b"\\x01x")
(b'c1', b'\\x01c1', b'\\x1f\\x01x')
>>> _split_field(b"c1"), _split_field(b"\\x02c1"), _split_field(b"\\x1f\\x01x")
((-1, b'c1'), (1, b'c1'), (-1, b'\\x01x'))
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

#: Buckets used when a prefix is first written and nothing else is asked for.
DEFAULT_BUCKETS = 1024
LAYOUT_VERSION = "v1"

_CHUNK_BYTES = 64  # = hash-max-listpack-value: longer values would convert the hash
_MAX_CHUNKS = 30  # tags 0x01..0x1e
_ESCAPE = 0x1F
#: Buckets per round trip in the due scan and in whole-store iteration.
BUCKETS_PER_TRIP = 128
#: Chunks asked for up front: the typical state fits in them, a longer one costs a
#: second round trip (see ``RedisStore.get_many``).
_CHUNKS_READ = 3


@dataclass(frozen=True)
class Keys:
    """The key names of one prefix (see the table above).

    >>> keys = Keys("streamseg")
    >>> keys.bucket(17), keys.due, keys.streams_next
    ('streamseg:c:17', 'streamseg:due', 'streamseg:streams:next')
    """

    prefix: str

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def bucket(self, bucket: int) -> str:
        return f"{self.prefix}:c:{bucket}"

    @property
    def buckets_pattern(self) -> str:
        """SCAN pattern of every bucket key (the prefix's glob characters escaped)."""
        return _glob_escape(self.prefix) + ":c:*"

    @property
    def all_pattern(self) -> str:
        """SCAN pattern of every key of the prefix."""
        return _glob_escape(self.prefix) + ":*"

    @property
    def layout(self) -> str:
        return self._key("layout")

    @property
    def due(self) -> str:
        return self._key("due")

    @property
    def sizes(self) -> str:
        return self._key("sizes")

    @property
    def count(self) -> str:
        return self._key("n")

    @property
    def model(self) -> str:
        return self._key("model")

    @property
    def positions(self) -> str:
        return self._key("pos")

    @property
    def meta(self) -> str:
        return self._key("meta")

    @property
    def outbox(self) -> str:
        return self._key("outbox")

    @property
    def streams(self) -> str:
        return self._key("streams")

    @property
    def streams_next(self) -> str:
        return self._key("streams:next")


def layout_value(buckets: int) -> str:
    """The content of ``{p}:layout``.

    >>> _parse_layout(layout_value(64).encode(), "p:layout")
    64
    """
    return f"{LAYOUT_VERSION} buckets={buckets}"


def _parse_layout(value: bytes | None, key: str) -> int:
    text = (value or b"").decode("utf-8", errors="replace")
    version, _, rest = text.partition(" ")
    if version != LAYOUT_VERSION or not rest.startswith("buckets="):
        raise ValueError(f"{key} holds {text!r}: not a streamseg {LAYOUT_VERSION} layout")
    return int(rest.removeprefix("buckets="))


def bucket_of(customer_id: str, buckets: int) -> int:
    """The bucket of a customer: ``crc32(utf-8 id) % buckets`` (stable everywhere)."""
    return zlib.crc32(customer_id.encode("utf-8")) % buckets


def by_bucket(customer_ids: Iterable[str], buckets: int) -> dict[int, list[str]]:
    """The distinct ``customer_ids`` grouped by bucket, in the order first seen."""
    groups: dict[int, list[str]] = {}
    for cid in dict.fromkeys(customer_ids):
        groups.setdefault(bucket_of(cid, buckets), []).append(cid)
    return groups


def _public_field(cid: bytes) -> bytes:
    """Field of a customer's readable record."""
    return bytes([_ESCAPE]) + cid if cid[:1] < b"\x20" else cid


def _chunk_field(cid: bytes, index: int) -> bytes:
    """Field of chunk ``index`` of a customer's packed state."""
    return bytes([1 + index]) + cid


def _split_field(field: bytes) -> tuple[int, bytes]:
    """(-1 for the readable record, else the chunk index; customer id) of a field."""
    first = field[0] if field else 0x20
    if first >= 0x20:
        return -1, field
    if first == _ESCAPE:
        return -1, field[1:]
    return first - 1, field[1:]


def _chunks(data: bytes) -> list[bytes]:
    """``data`` cut into values that keep a bucket hash a listpack."""
    return [data[i:i + _CHUNK_BYTES] for i in range(0, len(data), _CHUNK_BYTES)]


def _leading(chunks: Sequence[bytes | None]) -> Iterator[bytes]:
    """The chunks up to the first missing one."""
    for chunk in chunks:
        if chunk is None:
            return
        yield chunk


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
