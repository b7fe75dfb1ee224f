"""KafkaSink without a broker: a stub producer records sends and raises on demand.

What reaches a real broker is tested in tests/integration/test_kafka.py; these tests
cover what the sink does with the producer's answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

import streamseg.io.kafka_sink as kafka_sink
from streamseg.config import KafkaSettings
from streamseg.errors import BrokerError
from streamseg.io.kafka_sink import KafkaSink, SinkError
from streamseg.io.sink import SinkRecord


class _Future:
    def __init__(self, exception: Exception | None = None, done: bool = True) -> None:
        self.exception = exception
        self.is_done = done


class _Producer:
    """Records what a KafkaProducer is asked to do; ``fail`` makes a call raise."""

    instances: list[_Producer] = []
    fail: dict[str, Exception] = {}
    future: _Future = _Future()

    def __init__(self, **options: Any) -> None:
        if "init" in self.fail:
            raise self.fail["init"]
        self.options = options
        self.config = {"delivery_timeout_ms": 120_000}
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []
        self.closed: list[float | None] = []
        _Producer.instances.append(self)

    def send(self, topic: str, value: bytes, key: bytes | None,
             headers: list[tuple[str, bytes]]) -> _Future:
        if "send" in self.fail:
            raise self.fail["send"]
        self.sent.append((topic, value, key, headers))
        return self.future

    def flush(self, timeout: float | None = None) -> None:
        if "flush" in self.fail:
            raise self.fail["flush"]

    def close(self, timeout: float | None = None) -> None:
        self.closed.append(timeout)
        if "close" in self.fail:
            raise self.fail["close"]


@pytest.fixture(autouse=True)
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Producer]]:
    monkeypatch.setattr(kafka_sink, "KafkaProducer", _Producer)
    _Producer.instances, _Producer.fail, _Producer.future = [], {}, _Future()
    yield _Producer


def _record(item: str) -> SinkRecord:
    return SinkRecord(f'{{"v": "{item}"}}', item.encode(), [("h", b"1")])


def _sink() -> KafkaSink[str]:
    return KafkaSink.from_uri("kafka://h:1,g:2/topic", _record, settings=KafkaSettings())


def test_each_item_is_sent_as_its_record_in_utf8() -> None:
    sink = _sink()
    sink.publish(["a", "ü"])
    sink.flush()
    (producer,) = _Producer.instances
    assert producer.sent == [
        ("topic", b'{"v": "a"}', b"a", [("h", b"1")]),
        ("topic", '{"v": "ü"}'.encode(), "ü".encode(), [("h", b"1")]),
    ]
    assert producer.options["bootstrap_servers"] == ["h:1", "g:2"]
    assert producer.options["acks"] == "all"


def test_the_configured_producer_options_win() -> None:
    sink = KafkaSink.from_uri("kafka://h:1/t", _record,
                              settings=KafkaSettings(producer={"linger_ms": 7}))
    assert _Producer.instances[0].options["linger_ms"] == 7
    sink.close()


def test_a_sink_writes_to_exactly_one_topic() -> None:
    with pytest.raises(ValueError, match="exactly one topic"):
        KafkaSink.from_uri("kafka://h:1/a,b", _record)


def test_no_broker_at_start_up_is_a_connection_error() -> None:
    _Producer.fail["init"] = KafkaConnectionError("refused")
    with pytest.raises(ConnectionError, match=r"h:1,g:2 \(topic topic\)"):
        _sink()


def test_a_failed_send_is_a_broker_error() -> None:
    sink = _sink()
    cause = KafkaTimeoutError("no metadata after 60000 ms")
    _Producer.fail["send"] = cause
    with pytest.raises(BrokerError, match="Kafka topic topic: send failed") as info:
        sink.publish(["a"])
    assert info.value.__cause__ is cause


def test_an_undelivered_record_fails_the_flush_once_and_renews_the_producer() -> None:
    sink = _sink()
    _Producer.future = _Future(KafkaTimeoutError("expired"))
    sink.publish(["a", "b"])
    with pytest.raises(SinkError, match="2 of 2 records not delivered") as info:
        sink.flush()
    assert isinstance(info.value, BrokerError)
    first = _Producer.instances[0]
    assert first.closed == [0]  # discarded without waiting
    sink.flush()  # reported once: nothing is pending any more

    _Producer.future = _Future()
    sink.publish(["c"])
    sink.flush()
    assert len(_Producer.instances) == 2 and _Producer.instances[1].sent[0][2] == b"c"


def test_a_record_not_acknowledged_in_time_fails_the_flush() -> None:
    sink = _sink()
    _Producer.future = _Future(done=False)
    sink.publish(["a"])
    with pytest.raises(SinkError, match="not acknowledged in time"):
        sink.flush()


def test_a_failing_producer_flush_is_a_sink_error() -> None:
    sink = _sink()
    sink.publish(["a"])
    _Producer.fail["flush"] = KafkaTimeoutError("flush timed out")
    with pytest.raises(SinkError, match="flush failed"):
        sink.flush()


def test_no_broker_for_a_new_producer_is_a_sink_error() -> None:
    sink = _sink()
    _Producer.future = _Future(KafkaTimeoutError("expired"))
    sink.publish(["a"])
    with pytest.raises(SinkError):
        sink.flush()
    _Producer.fail["init"] = KafkaConnectionError("refused")
    with pytest.raises(SinkError, match="cannot reach the brokers at h:1,g:2"):
        sink.publish(["b"])


def test_a_failing_close_is_a_broker_error() -> None:
    sink = _sink()
    _Producer.fail["close"] = KafkaTimeoutError("close timed out")
    with pytest.raises(BrokerError, match="Kafka topic topic: close failed"):
        sink.close()
    assert _Producer.instances[0].closed == [10]


def test_errors_that_are_not_kafkas_pass_through() -> None:
    sink = _sink()
    _Producer.fail["send"] = OSError("not Kafka's")
    with pytest.raises(OSError, match="not Kafka's"):
        sink.publish(["a"])
