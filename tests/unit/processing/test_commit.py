"""The batch commit protocol, step by step, with recording sinks and source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from streamseg.core.events import DeadLetter, RawRecord, SegmentChange, SegmentChangeData
from streamseg.core.features import CustomerFeatures
from streamseg.core.state import CustomerState
from streamseg.engine import BatchOutcome
from streamseg.io import ChangeSink, DeadLetterSink, Source
from streamseg.processing.commit import BatchCommit
from streamseg.store import BatchWrite, FencedError, MemoryStore, Partition


class _Log:
    def __init__(self) -> None:
        self.steps: list[str] = []


class _Changes(ChangeSink):
    def __init__(self, log: _Log, fail_flush: bool = False) -> None:
        self.log, self.fail_flush = log, fail_flush

    def publish(self, changes: Sequence[SegmentChange]) -> None:
        self.log.steps.append(f"publish {len(changes)} changes")

    def flush(self) -> None:
        self.log.steps.append("flush changes")
        if self.fail_flush:
            raise RuntimeError("not acknowledged")


class _Letters(DeadLetterSink):
    def __init__(self, log: _Log) -> None:
        self.log = log

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.log.steps.append(f"publish {len(letters)} dead letters")

    def flush(self) -> None:
        self.log.steps.append("flush dead letters")


class _Source(Source):
    def __init__(self, log: _Log) -> None:
        self.log = log

    def poll(self, max_records: int, timeout: float) -> list[RawRecord]:
        return []

    @property
    def exhausted(self) -> bool:
        return True

    def positions_after(self, records: Sequence[RawRecord]) -> dict[str, int]:
        return {}

    def commit(self, positions: dict[str, int]) -> None:
        self.log.steps.append(f"commit {positions}")


class _Store(MemoryStore):
    def __init__(self, log: _Log) -> None:
        super().__init__()
        self.log = log

    def write_batch(self, write: BatchWrite) -> None:
        for part in write.partitions:
            self.log.steps.append(f"write {part.partition.name}: {len(part.states)} states, "
                                  f"outbox {len(part.partition.outbox)}")
        super().write_batch(write)


def _outcome(n: int, customer: str = "c", partition: str = "local") -> BatchOutcome:
    change = SegmentChange.create(SegmentChangeData(
        customer_id=customer, from_segment=None, from_name=None, to_segment=1,
        to_name=None, reason="first_assignment", event_time="2024-01-01T00:00:00Z",
        model_version=1))
    state = CustomerState(customer, CustomerFeatures.empty(), partition=partition)
    return BatchOutcome(states=[state], changes=[change] * n,
                        rejected=[DeadLetter("x", "bad", "t:1")])


def _commit(log: _Log, **changes: Any) -> tuple[BatchCommit, dict[str, Partition]]:
    store = _Store(log)
    owned = {"local": store.take_partition("local")}
    return BatchCommit(store, _Source(log), _Changes(log, **changes), _Letters(log)), owned


def test_the_steps_run_in_their_order_and_offsets_wait_for_the_next_settle() -> None:
    log = _Log()
    commit, owned = _commit(log)
    commit.commit(_outcome(2), {"s": 10}, owned, {}, {})
    commit.commit(_outcome(1), {"s": 20}, owned, {}, {})
    commit.settle()
    assert log.steps == [
        "publish 1 dead letters", "flush dead letters", "flush changes",
        "write local: 1 states, outbox 2", "publish 2 changes",
        "publish 1 dead letters", "flush dead letters", "flush changes", "commit {'s': 10}",
        "write local: 1 states, outbox 1", "publish 1 changes",
        "flush changes", "commit {'s': 20}",
    ]
    assert owned["local"].positions == {"s": 20}


def test_unacknowledged_changes_block_the_next_write() -> None:
    log = _Log()
    commit, owned = _commit(log)
    commit.commit(_outcome(1), {"s": 10}, owned, {}, {})
    commit.changes = _Changes(log, fail_flush=True)
    with pytest.raises(RuntimeError):
        commit.commit(_outcome(1), {"s": 20}, owned, {}, {})
    assert log.steps[-1] == "flush changes"  # nothing written, no offset committed


def test_each_partition_gets_its_own_outbox_and_an_old_one_is_emptied() -> None:
    log = _Log()
    commit, owned = _commit(log)
    owned["kafka:t:1"] = commit.store.take_partition("kafka:t:1")
    outcome = _outcome(1)
    other = _outcome(2, customer="d", partition="kafka:t:1")
    outcome.states += other.states
    outcome.changes += other.changes
    commit.commit(outcome, {}, owned, {}, {})
    assert commit.store.read_partition("local").outbox == [outcome.changes[0].to_json()]
    assert len(commit.store.read_partition("kafka:t:1").outbox) == 2
    log.steps.clear()
    commit.commit(_outcome(1), {}, owned, {}, {})  # only local's customers this time
    assert "write kafka:t:1: 0 states, outbox 0" in log.steps  # acknowledged: emptied
    assert commit.store.read_partition("kafka:t:1").outbox == []


def test_the_outbox_is_published_again_when_a_partition_is_taken() -> None:
    log = _Log()
    commit, owned = _commit(log)
    commit.commit(_outcome(3), {"s": 10}, owned, {}, {})
    again = BatchCommit(commit.store, commit.source, _Changes(log), _Letters(log))
    log.steps.clear()
    again.republish(commit.store.take_partition("local").outbox)
    assert log.steps == ["publish 3 changes", "flush changes"]


def test_a_fenced_writer_writes_nothing() -> None:
    log = _Log()
    commit, owned = _commit(log)
    commit.store.take_partition("local")  # another worker took it since
    with pytest.raises(FencedError):
        commit.commit(_outcome(1), {"s": 10}, owned, {}, {})
    assert commit.store.count() == 0 and commit.store.positions() == {}
