"""The Redis key schema of the store: key names, field names, buckets and chunks.

Memory shapes this layout. The budget is **250 bytes per customer** (growth of Redis
``used_memory`` per customer on simulated customers; ``python -m
streamseg_bench.redis_memory [URL] [CUSTOMERS]`` measures it on the Redis at hand, since
the figure depends on the Redis version and allocator). Every top-level key and every
member of a large sorted set carries a fixed overhead before it holds anything (dict
entry, object header, key name, table slot; a skip-list node for a sorted-set member): a
hash per customer plus a sorted-set member per customer would spend most of the budget
on that overhead alone. So customers live in *bucketed* hashes, which Redis keeps as
compact listpacks while every value is <= ``hash-max-listpack-value`` (64 bytes) and a
hash has <= ``hash-max-listpack-entries`` (512) fields; and the due-for-rescore index of
a partition is a sorted set of at most 128 *groups* of buckets, which Redis keeps as a
listpack too (``zset-max-listpack-entries``, 128): a set of every bucket per partition
would turn into a skip list and cost a node per bucket and partition (with 12 partitions
over 1,024 buckets, about 12,000 nodes). All fields of a customer are in one hash, so
one ``HMGET`` reads and one ``HSET`` writes a customer atomically.

Customers are addressed by id, not by partition: a reader (``SegmentReader``, the API,
``redis-cli``) finds a customer from its id alone, and the partition a customer belongs
to is recorded in its packed state (a small id, see :mod:`.codec`). Everything else a
partition owns is in keys of that partition, as absolute values (see
:mod:`streamseg.store.base`); totals are sums over partitions.

Key schema, layout v2 (``{p}`` is the prefix, default ``streamseg``; ``{b}`` is the
customer's bucket, ``crc32(utf-8 customer id) % buckets``; ``{i}`` a partition's small
id; all numbers in decimal):

======================  ======  ===========================================  ============
key                     type    content                                      written by /
                                                                             read by
======================  ======  ===========================================  ============
``{p}:layout``          STRING  ``v2 buckets=<n>``: layout version and       first store
                                bucket count, fixed when the prefix is       on the
                                first used (a different later setting is     prefix /
                                ignored with a warning). ``v1``: the         all
                                previous layout, migrated when a store
                                opens it (:mod:`.migrate`).
``{p}:c:{b}``           HASH    per customer of the bucket:                  owner of the
                                ``<id>`` -> ``segment|updated_at|model_      customer's
                                version|name``: readable text (empty         partition /
                                segment or updated_at = none; no 4th part =  workers,
                                no name; updated_at = event-time epoch       SegmentReader
                                seconds, exact float text); and              (apps)
                                ``\\x01<id>``, ``\\x02<id>``, ... -> the
                                packed state in 64-byte chunks
                                (next_rescore_at, the partition's id,
                                features, model-space vector, applied
                                offset per stream, recent event-id hashes;
                                see :mod:`.codec`). An id that starts with
                                a byte below 0x20 is stored as
                                ``\\x1f<id>``.
``{p}:parts``           HASH    partition name -> its small id: every        take_partition
                                partition taken so far                       / all
``{p}:part:{i}``        HASH    one partition: ``name``; ``epoch`` (owner    take_partition
                                epoch, ``HINCRBY`` by every take);           (epoch),
                                ``n`` (its customers); ``s:<segment>`` ->    owner (rest) /
                                its customers in that segment; ``pos:<       all,
                                stream>`` -> next position of a source       SegmentReader
                                stream; ``m`` -> its share of the model      (``s:``)
                                (JSON: per-segment sums, standardiser,
                                clock). All absolute values, written by
                                the owner's batch with its customers.
``{p}:sample:{i}``      HASH    the model's sample of the partition's        owner /
                                customers: ``<id>`` -> ``\x01``, segment    owner, the
                                (int16; -1 = warming up), the vector         refiner
                                (float64s), little-endian (earlier
                                releases: ``segment|x1,x2,..``, exact
                                float text; both read), changed with the
                                customers
``{p}:outbox:{i}``      LIST    the change events (CloudEvents JSON) of the  owner /
                                partition's last batch, replaced by its      owner, next
                                every batch                                  owner
``{p}:due:{i}``         ZSET    member = group of buckets (bucket //         owner /
                                :func:`group_size`), score = a lower bound   owner
                                (whole seconds) of the earliest
                                ``next_rescore_at`` of the partition's
                                customers in it: lowered on write (``ZADD
                                LT``), set to the exact bound by the due
                                scan (Lua, :mod:`.scripts`).
``{p}:lease``           STRING  the model lease's token (holder ``#``        lease holder /
                                random), with the lease's expiry (``PX``)    all writers
``{p}:model``           HASH    model checkpoint: part name -> JSON (a part  lease holder
                                unchanged since this store's last write      / workers
                                under the same lease is not rewritten). A
                                prefix written before parts existed holds
                                one JSON STRING here, replaced by the hash
                                at the next write.
``{p}:meta``            HASH    name -> JSON value (watermark, ...)          workers /
                                                                             workers
``{p}:streams``         HASH    source stream or partition name -> small     workers /
                                id, used in packed states and partition      workers
                                keys (ids are never reused; a Kafka
                                partition's stream and the partition have
                                one name, ``kafka:<topic>:<n>``, so one id)
``{p}:streams:next``    STRING  last id handed out                           workers
======================  ======  ===========================================  ============

Layout v1 (the previous version) had instead, for the whole prefix: ``{p}:sizes`` (HASH
segment -> customers, ``HINCRBY``), ``{p}:n`` (STRING, customers), ``{p}:pos`` (HASH
stream -> position), ``{p}:outbox`` (LIST) and ``{p}:due`` (ZSET of buckets); its packed
states (codec version 1) hold no partition. :mod:`.migrate` turns it into v2.

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
LAYOUT_VERSION = "v2"
#: The previous layout, read only to migrate it (and by ``SegmentReader``).
LAYOUT_V1 = "v1"

_CHUNK_BYTES = 64  # = hash-max-listpack-value: longer values would convert the hash
_MAX_CHUNKS = 30  # tags 0x01..0x1e
_ESCAPE = 0x1F
#: Buckets per round trip in the due scan and in whole-store iteration.
BUCKETS_PER_TRIP = 128
#: Most members of a partition's due index: Redis's default
#: ``zset-max-listpack-entries``, under which a sorted set stays a compact listpack.
DUE_GROUPS = 128
#: Chunks asked for up front: the typical state fits in them, a longer one costs a
#: second round trip (see ``RedisStore.get_many``).
_CHUNKS_READ = 3

# Fields of a partition hash ({p}:part:{i}).
F_NAME = "name"
F_EPOCH = "epoch"
F_COUNT = "n"
F_MODEL = "m"  # the partition's share of the model, JSON
SIZE_FIELD = "s:"  # + segment
POSITION_FIELD = "pos:"  # + source stream


@dataclass(frozen=True)
class Keys:
    """The key names of one prefix (see the table above).

    >>> keys = Keys("streamseg")
    >>> keys.bucket(17), keys.part(3), keys.due(3), keys.outbox(3), keys.lease
    ('streamseg:c:17', 'streamseg:part:3', 'streamseg:due:3', 'streamseg:outbox:3', \
'streamseg:lease')
    """

    prefix: str

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def bucket(self, bucket: int) -> str:
        return f"{self.prefix}:c:{bucket}"

    def part(self, partition_id: int) -> str:
        return f"{self.prefix}:part:{partition_id}"

    def outbox(self, partition_id: int) -> str:
        return f"{self.prefix}:outbox:{partition_id}"

    def due(self, partition_id: int) -> str:
        return f"{self.prefix}:due:{partition_id}"

    def sample(self, partition_id: int) -> str:
        return f"{self.prefix}:sample:{partition_id}"

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
    def parts(self) -> str:
        return self._key("parts")

    @property
    def lease(self) -> str:
        return self._key("lease")

    @property
    def model(self) -> str:
        return self._key("model")

    @property
    def meta(self) -> str:
        return self._key("meta")

    @property
    def streams(self) -> str:
        return self._key("streams")

    @property
    def streams_next(self) -> str:
        return self._key("streams:next")

    # -- layout v1, only to migrate it -------------------------------------------------
    @property
    def v1_sizes(self) -> str:
        return self._key("sizes")

    @property
    def v1_count(self) -> str:
        return self._key("n")

    @property
    def v1_positions(self) -> str:
        return self._key("pos")

    @property
    def v1_outbox(self) -> str:
        return self._key("outbox")

    @property
    def v1_due(self) -> str:
        return self._key("due")


def layout_value(buckets: int) -> str:
    """The content of ``{p}:layout``.

    >>> _parse_layout(layout_value(64).encode(), "p:layout")
    ('v2', 64)
    """
    return f"{LAYOUT_VERSION} buckets={buckets}"


def _parse_layout(value: bytes | None, key: str) -> tuple[str, int]:
    """(version, buckets) of a ``{p}:layout`` value of layout v2 or v1."""
    text = (value or b"").decode("utf-8", errors="replace")
    version, _, rest = text.partition(" ")
    if version not in (LAYOUT_VERSION, LAYOUT_V1) or not rest.startswith("buckets="):
        raise ValueError(f"{key} holds {text!r}: not a streamseg layout "
                         f"({LAYOUT_VERSION} or {LAYOUT_V1})")
    return version, int(rest.removeprefix("buckets="))


def bucket_of(customer_id: str, buckets: int) -> int:
    """The bucket of a customer: ``crc32(utf-8 id) % buckets`` (stable everywhere)."""
    return zlib.crc32(customer_id.encode("utf-8")) % buckets


def by_bucket(customer_ids: Iterable[str], buckets: int) -> dict[int, list[str]]:
    """The distinct ``customer_ids`` grouped by bucket, in the order first seen."""
    groups: dict[int, list[str]] = {}
    for cid in dict.fromkeys(customer_ids):
        groups.setdefault(bucket_of(cid, buckets), []).append(cid)
    return groups


def group_size(buckets: int) -> int:
    """Buckets per member of a due index: at most :data:`DUE_GROUPS` members.

    >>> group_size(4), group_size(128), group_size(256), group_size(1024), group_size(1000)
    (1, 1, 2, 8, 8)
    """
    return max(1, -(-buckets // DUE_GROUPS))


def group_buckets(group: int, buckets: int) -> range:
    """The buckets of a due index member.

    >>> list(group_buckets(0, 1024)), list(group_buckets(124, 1000))
    ([0, 1, 2, 3, 4, 5, 6, 7], [992, 993, 994, 995, 996, 997, 998, 999])
    """
    size = group_size(buckets)
    return range(group * size, min(buckets, (group + 1) * size))


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
