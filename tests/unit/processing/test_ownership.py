"""Ownership: the source's assignment changes applied in the pipeline's thread."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest

from streamseg.config import load_settings
from streamseg.core.events import RawRecord
from streamseg.engine import SegmentationEngine
from streamseg.io import Source, open_change_sink, open_dead_letter_sink
from streamseg.io.source import AssignmentChange
from streamseg.processing.commit import BatchCommit
from streamseg.processing.ownership import Ownership
from streamseg.store import MemoryStore, Partition


class _Source(Source):
    def __init__(self) -> None:
        self.changes: list[AssignmentChange] = []
        self.seeks: list[tuple[dict[str, int], set[str]]] = []

    def poll(self, max_records: int, timeout: float) -> list[RawRecord]:
        return []

    @property
    def exhausted(self) -> bool:
        return False

    def positions_after(self, records: Sequence[RawRecord]) -> dict[str, int]:
        return {}

    def assignment_changes(self) -> AssignmentChange | None:
        return self.changes.pop(0) if self.changes else None

    def partition_of(self, stream: str) -> str:
        return stream

    def seek(self, positions: dict[str, int],
             partitions: Collection[str] | None = None) -> None:
        self.seeks.append((positions, set(partitions or ())))


class _FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next_take = False

    def take_partition(self, name: str) -> Partition:
        if self.fail_next_take:
            self.fail_next_take = False
            raise ConnectionError("the store went away")
        return super().take_partition(name)


def _setup(tmp_path: object) -> tuple[Ownership, _Source, _FlakyStore, SegmentationEngine]:
    store, source = _FlakyStore(), _Source()
    commit = BatchCommit(store, source, open_change_sink(f"{tmp_path}/c.jsonl"),
                         open_dead_letter_sink(f"{tmp_path}/d.jsonl"))
    return Ownership(store, source, commit), source, store, SegmentationEngine(
        load_settings(), store)


def _record(partition: str) -> RawRecord:
    return RawRecord("{}", "t", partition, 0, partition=partition)


def test_records_of_partitions_not_owned_or_just_taken_are_dropped(tmp_path: object) -> None:
    ownership, source, _, engine = _setup(tmp_path)
    source.changes.append(AssignmentChange(assigned=["p0"]))
    assert ownership.follow(engine, [_record("p0"), _record("p9")]) == []
    assert source.seeks == [({}, {"p0"})]  # p0 comes again from where it was stored
    kept = ownership.follow(engine, [_record("p0"), _record("p9")])
    assert [r.partition for r in kept] == ["p0"]


def test_an_assignment_is_not_lost_when_the_store_fails_while_taking_it(
    tmp_path: object,
) -> None:
    ownership, source, store, engine = _setup(tmp_path)
    source.changes.append(AssignmentChange(assigned=["p0", "p1"]))
    store.fail_next_take = True
    with pytest.raises(ConnectionError):
        ownership.follow(engine, [])
    ownership.follow(engine, [])  # after the recovery
    assert sorted(ownership.epochs) == ["p0", "p1"] == sorted(engine.partitions)


def test_revoked_partitions_are_released(tmp_path: object) -> None:
    ownership, source, _, engine = _setup(tmp_path)
    source.changes.append(AssignmentChange(assigned=["p0", "p1"]))
    ownership.follow(engine, [])
    source.changes.append(AssignmentChange(revoked=["p1"]))
    ownership.follow(engine, [])
    assert list(ownership.epochs) == ["p0"] and list(engine.partitions) == ["p0"]
