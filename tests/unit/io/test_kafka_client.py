"""Kafka URIs, position keys, start-up errors and the KafkaError -> BrokerError rule."""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from streamseg.config import KafkaSettings
from streamseg.errors import BrokerError
from streamseg.io.kafka_client import (
    bootstrap_error,
    broker_errors,
    parse_kafka_uri,
    partition_of,
    stream_key,
)


def test_a_uri_names_servers_and_topics() -> None:
    settings = KafkaSettings()
    assert parse_kafka_uri("kafka://h:1/t", settings) == ("h:1", ["t"])
    assert parse_kafka_uri("kafka://h:1,g:2/a,,b,", settings) == ("h:1,g:2", ["a", "b"])


def test_a_uri_without_hosts_uses_the_configured_servers() -> None:
    settings = KafkaSettings(bootstrap_servers="k1:9092,k2:9092")
    assert parse_kafka_uri("kafka:///events", settings) == ("k1:9092,k2:9092", ["events"])


@pytest.mark.parametrize("uri, message", [
    ("redis://h:1/t", "not a kafka:// URI"),
    ("kafka://h:1", "names no topic"),
    ("kafka://h:1/", "names no topic"),
    ("kafka://h:1/,", "names no topic"),
])
def test_a_bad_uri_is_refused(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_kafka_uri(uri, KafkaSettings())


def test_a_stream_key_names_its_partition_and_back() -> None:
    assert stream_key("orders.v2", 11) == "kafka:orders.v2:11"
    assert partition_of(stream_key("orders.v2", 11)) == TopicPartition("orders.v2", 11)


@pytest.mark.parametrize("key", [
    "", "stdin", "file:/data/e.jsonl", "kafka:", "kafka::3", "kafka:t:", "kafka:t:x",
    "kafka:t:-1", "kafka_t:1",
])
def test_a_key_of_no_partition_gives_none(key: str) -> None:
    assert partition_of(key) is None


def test_the_start_up_error_names_the_servers_and_the_sinks_topic() -> None:
    cause = KafkaConnectionError("refused")
    source = bootstrap_error("h:1", cause)
    sink = bootstrap_error("h:1", cause, "changes")
    assert isinstance(source, ConnectionError) and isinstance(sink, ConnectionError)
    assert str(source).startswith(
        "cannot reach the Kafka brokers at h:1: KafkaConnectionError: refused")
    assert "kafka:// URI / kafka settings" in str(source)
    assert str(sink).startswith(
        "cannot reach the Kafka brokers at h:1 (topic changes): KafkaConnectionError: refused")


def test_a_kafka_error_becomes_a_broker_error_with_its_cause() -> None:
    cause = KafkaTimeoutError("no metadata")
    with (pytest.raises(BrokerError, match="^Kafka topic t: send failed: .*no metadata") as info,
          broker_errors("Kafka topic t: send failed")):
        raise cause
    assert info.value.__cause__ is cause


@pytest.mark.parametrize("error", [
    OSError("disk"), ValueError("bad"), BrokerError("already typed"),
])
def test_other_errors_pass_through_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as info, broker_errors("Kafka topic t: send failed"):
        raise error
    assert info.value is error


def test_no_error_means_no_change() -> None:
    with broker_errors("anything"):
        value = 1
    assert value == 1
