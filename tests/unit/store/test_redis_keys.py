"""The Redis key schema, without a server: key names, field names, buckets, chunks."""

from __future__ import annotations

import pytest

from streamseg.store.redis.keys import (
    _CHUNK_BYTES,
    _MAX_CHUNKS,
    Keys,
    _chunk_field,
    _chunks,
    _leading,
    _parse_layout,
    _public_field,
    _split_field,
    bucket_of,
    by_bucket,
    group_buckets,
    group_size,
    layout_value,
)

IDS = [b"c1", b"cust-000042", "é-ü".encode(), b"", b" lead space", b"\x1f", b"\x1fx",
       *(bytes([byte]) + b"id" for byte in range(0x20))]


def test_key_names_follow_the_schema() -> None:
    keys = Keys("p")
    assert [keys.layout, keys.bucket(0), keys.bucket(1023), keys.parts, keys.part(7),
            keys.outbox(7), keys.due(7), keys.lease, keys.model, keys.meta, keys.streams,
            keys.streams_next] == [
        "p:layout", "p:c:0", "p:c:1023", "p:parts", "p:part:7", "p:outbox:7", "p:due:7",
        "p:lease", "p:model", "p:meta", "p:streams", "p:streams:next",
    ]
    assert [keys.v1_sizes, keys.v1_count, keys.v1_positions, keys.v1_outbox,
            keys.v1_due] == ["p:sizes", "p:n", "p:pos", "p:outbox", "p:due"]


def test_only_bucket_keys_match_the_bucket_pattern() -> None:
    import fnmatch

    keys = Keys("p")
    others = [keys.layout, keys.parts, keys.part(1), keys.outbox(1), keys.due(1), keys.lease,
              keys.model, keys.meta, keys.streams, keys.streams_next, keys.v1_due]
    assert not [key for key in others if fnmatch.fnmatchcase(key, keys.buckets_pattern)]
    assert fnmatch.fnmatchcase(keys.bucket(3), keys.buckets_pattern)


@pytest.mark.parametrize("buckets", [1, 4, 127, 128, 129, 256, 1000, 1024, 100_000])
def test_due_groups_cover_every_bucket_once_in_at_most_128_groups(buckets: int) -> None:
    size = group_size(buckets)
    groups = [list(group_buckets(group, buckets)) for group in range(-(-buckets // size))]
    assert len(groups) <= 128
    assert [bucket for members in groups for bucket in members] == list(range(buckets))
    assert all(bucket // size == group for group, members in enumerate(groups)
               for bucket in members)


def test_scan_patterns_escape_the_prefix() -> None:
    keys = Keys("{a*b}?[x]")
    assert keys.buckets_pattern == "{a\\*b}\\?\\[x\\]:c:*"
    assert keys.all_pattern == "{a\\*b}\\?\\[x\\]:*"


def test_bucket_is_crc32_of_the_utf8_id() -> None:
    assert bucket_of("c1", 1024) == 673  # the same in every process and language
    assert bucket_of("cust-000042", 1024) == 834
    assert all(0 <= bucket_of(f"c{i}", 7) < 7 for i in range(100))


def test_by_bucket_groups_distinct_ids_in_order() -> None:
    ids = [f"c{i}" for i in range(50)]
    groups = by_bucket([*ids, "c3", "c0"], 4)
    assert sorted(cid for cids in groups.values() for cid in cids) == sorted(ids)
    for bucket, cids in groups.items():
        assert all(bucket_of(cid, 4) == bucket for cid in cids)
        assert cids == sorted(cids, key=ids.index)


@pytest.mark.parametrize("cid", IDS)
def test_public_field_splits_back_to_its_id(cid: bytes) -> None:
    field = _public_field(cid)
    assert _split_field(field) == (-1, cid)
    assert field[:1] >= b"\x20" or field[:1] == b"\x1f"  # never a chunk tag


@pytest.mark.parametrize("cid", IDS)
def test_chunk_fields_split_back_to_index_and_id(cid: bytes) -> None:
    fields = [_chunk_field(cid, index) for index in range(_MAX_CHUNKS)]
    assert [_split_field(field) for field in fields] == [
        (index, cid) for index in range(_MAX_CHUNKS)]
    assert _public_field(cid) not in fields


def test_field_names_of_different_customers_never_collide() -> None:
    names = [_public_field(cid) for cid in IDS]
    names += [_chunk_field(cid, index) for cid in IDS for index in range(_MAX_CHUNKS)]
    assert len(set(names)) == len(names)


def test_chunks_keep_values_within_the_listpack_limit() -> None:
    data = bytes(range(256)) * 2
    chunks = _chunks(data)
    assert all(len(chunk) <= _CHUNK_BYTES for chunk in chunks)
    assert b"".join(chunks) == data
    assert _chunks(b"") == []
    assert list(_leading([b"a", b"b", None, b"d"])) == [b"a", b"b"]


def test_layout_round_trip_and_refusal() -> None:
    assert layout_value(1024) == "v2 buckets=1024"
    assert _parse_layout(b"v2 buckets=1024", "p:layout") == ("v2", 1024)
    assert _parse_layout(b"v1 buckets=64", "p:layout") == ("v1", 64)  # to migrate
    for bad in (None, b"", b"v3 buckets=8", b"v2 other=8", b"hello"):
        with pytest.raises(ValueError, match="not a streamseg layout"):
            _parse_layout(bad, "p:layout")
