"""KafkaSource without a broker: what it makes of a stub consumer's answers and failures.

Consuming, seeking and committing against a real broker is tested in
tests/integration/test_kafka.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaConnectionError, KafkaTimeoutError

import streamseg.io.kafka_source as kafka_source
from streamseg.config import KafkaSettings
from streamseg.core.events import RawRecord
from streamseg.errors import BrokerError
from streamseg.io.kafka_source import KafkaSource


class _Consumer:
    """Answers like a KafkaConsumer with one assigned partition; ``fail`` makes a call raise."""

    instances: list[_Consumer] = []
    fail: dict[str, Exception] = {}

    def __init__(self, **options: Any) -> None:
        if "init" in self.fail:
            raise self.fail["init"]
        self.options = options
        self.seeks: list[tuple[TopicPartition, int]] = []
        _Consumer.instances.append(self)

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise self.fail[name]

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self._maybe_fail("subscribe")

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self._maybe_fail("poll")
        return {}

    def assignment(self) -> set[TopicPartition]:
        self._maybe_fail("assignment")
        return {TopicPartition("t", 0)}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._maybe_fail("seek")
        self.seeks.append((partition, offset))

    def commit_async(self, offsets: Any, callback: Any) -> None:
        self._maybe_fail("commit_async")

    def commit(self, offsets: Any, timeout_ms: int) -> None:
        self._maybe_fail("commit")

    def highwater(self, partition: TopicPartition) -> int | None:
        return 10

    def position(self, partition: TopicPartition, timeout_ms: int) -> int:
        self._maybe_fail("position")
        return 4

    def close(self, autocommit: bool) -> None:
        self._maybe_fail("close")


@pytest.fixture(autouse=True)
def consumer(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Consumer]]:
    monkeypatch.setattr(kafka_source, "KafkaConsumer", _Consumer)
    _Consumer.instances, _Consumer.fail = [], {}
    yield _Consumer


def _source() -> KafkaSource:
    return KafkaSource.from_uri("kafka://h:1/t", settings=KafkaSettings(group_id="g"))


def test_the_source_fixes_the_options_its_guarantees_depend_on() -> None:
    settings = KafkaSettings(group_id="g", consumer={"enable_auto_commit": True,
                                                     "fetch_max_wait_ms": 100})
    KafkaSource.from_uri("kafka://h:1/t", settings=settings)
    options = _Consumer.instances[0].options
    assert options["enable_auto_commit"] is False
    assert options["fetch_max_wait_ms"] == 100  # extras win where nothing depends on it
    assert options["group_id"] == "g" and options["bootstrap_servers"] == ["h:1"]


def test_no_broker_at_start_up_is_a_connection_error() -> None:
    _Consumer.fail["init"] = KafkaConnectionError("refused")
    with pytest.raises(ConnectionError, match="cannot reach the Kafka brokers at h:1"):
        _source()


def test_positions_are_the_next_offset_of_each_partition() -> None:
    records = [RawRecord(b"", "o", "kafka:t:0", 4), RawRecord(b"", "o", "kafka:t:1", 9),
               RawRecord(b"", "o", "kafka:t:0", 7), RawRecord(b"", "o", "", 3)]
    assert _source().positions_after(records) == {"kafka:t:0": 8, "kafka:t:1": 10}


def test_seek_moves_assigned_partitions_of_its_topics_only() -> None:
    source = _source()
    source.seek({"kafka:t:0": 5, "kafka:other:0": 9, "file:/x": 1})
    assert _Consumer.instances[0].seeks == [(TopicPartition("t", 0), 5)]


def test_lag_is_the_distance_to_the_high_watermark() -> None:
    assert _source().lag() == {("t", 0): 6}


@pytest.mark.parametrize("method, call, args", [
    ("poll", "poll", (10, 0.1)),
    ("seek", "assignment", ({"kafka:t:0": 1},)),
    ("seek", "seek", ({"kafka:t:0": 1},)),
    ("commit", "commit_async", ({"kafka:t:0": 1},)),
    ("lag", "position", ()),
    ("close", "close", ()),
])
def test_a_kafka_error_is_a_broker_error(method: str, call: str, args: tuple[Any, ...]) -> None:
    source = _source()
    cause = KafkaTimeoutError(f"{call} timed out")
    _Consumer.fail[call] = cause
    with pytest.raises(BrokerError, match=f"^Kafka topics t: {method}") as info:
        getattr(source, method)(*args)
    assert info.value.__cause__ is cause


def test_a_failed_subscription_is_a_broker_error() -> None:
    _Consumer.fail["subscribe"] = KafkaTimeoutError("no")
    with pytest.raises(BrokerError, match="subscribe failed"):
        _source()


def test_a_refused_commit_is_retried_at_close_where_a_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = _source()
    _Consumer.fail["commit_async"] = CommitFailedError("rebalanced")
    with pytest.raises(BrokerError):
        source.commit({"kafka:t:0": 3})
    del _Consumer.fail["commit_async"]
    _Consumer.fail["commit"] = CommitFailedError("rebalanced")
    source.close()
    assert "final offset commit failed" in caplog.text


def test_errors_that_are_not_kafkas_pass_through() -> None:
    source = _source()
    _Consumer.fail["poll"] = OSError("not Kafka's")
    with pytest.raises(OSError, match="not Kafka's"):
        source.poll(10, 0.1)
