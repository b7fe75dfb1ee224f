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
    layout_value,
)

IDS = [b"c1", b"cust-000042", "é-ü".encode(), b"", b" lead space", b"\x1f", b"\x1fx",
       *(bytes([byte]) + b"id" for byte in range(0x20))]


def test_key_names_follow_the_schema() -> None:
    keys = Keys("p")
    assert [keys.layout, keys.bucket(0), keys.bucket(1023), keys.due, keys.sizes, keys.count,
            keys.model, keys.positions, keys.meta, keys.outbox, keys.streams,
            keys.streams_next] == [
        "p:layout", "p:c:0", "p:c:1023", "p:due", "p:sizes", "p:n", "p:model", "p:pos",
        "p:meta", "p:outbox", "p:streams", "p:streams:next",
    ]


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
    assert layout_value(1024) == "v1 buckets=1024"
    assert _parse_layout(b"v1 buckets=1024", "p:layout") == 1024
    for bad in (None, b"", b"v2 buckets=8", b"v1 other=8", b"hello"):
        with pytest.raises(ValueError, match="not a streamseg v1 layout"):
            _parse_layout(bad, "p:layout")
