"""What the Kafka source and the Kafka sink share: URIs, keys, timeouts, failures.

The source and the sink each open their own kafka-python client; this module holds the
settings and helpers both use, so that neither imports the other:

* :func:`parse_kafka_uri` -- ``kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]``;
* :func:`stream_key` / :func:`partition_of` -- a partition's position key and back;
* :data:`DEFAULT_BOOTSTRAP_TIMEOUT_MS`, :data:`REQUEST_TIMEOUT_MS`;
* :func:`bootstrap_error` -- the ``ConnectionError`` a client raises when no broker
  answers at start-up (the CLI reports any ``OSError`` to the user);
* :func:`broker_errors` -- turns kafka-python's ``KafkaError`` into
  :class:`~streamseg.errors.BrokerError` once the client is running, so that the
  pipeline counts it as the broker's failure and retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kafka import TopicPartition
from kafka.errors import KafkaError

from streamseg.config import KafkaSettings
from streamseg.errors import BrokerError

__all__ = [
    "DEFAULT_BOOTSTRAP_TIMEOUT_MS",
    "REQUEST_TIMEOUT_MS",
    "bootstrap_error",
    "broker_errors",
    "parse_kafka_uri",
    "partition_of",
    "stream_key",
]

#: How long a new client may take to reach a broker before start-up fails. Overridable
#: with ``kafka.consumer.bootstrap_timeout_ms`` / ``kafka.producer.bootstrap_timeout_ms``.
DEFAULT_BOOTSTRAP_TIMEOUT_MS = 15_000
#: Upper bound of a synchronous offset commit and of the source's lag queries.
REQUEST_TIMEOUT_MS = 30_000


def parse_kafka_uri(uri: str, settings: KafkaSettings) -> tuple[str, list[str]]:
    """``kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]`` -> (bootstrap servers, topics).

    Without hosts (``kafka:///TOPIC``) the servers come from
    ``settings.bootstrap_servers``.

    >>> parse_kafka_uri("kafka://a:9092,b:9092/events,more", KafkaSettings())
    ('a:9092,b:9092', ['events', 'more'])
    >>> parse_kafka_uri("kafka:///events", KafkaSettings(bootstrap_servers="k:9092"))
    ('k:9092', ['events'])
    """
    if not uri.startswith("kafka://"):
        raise ValueError(f"not a kafka:// URI: {uri!r}")
    servers, _, topic_part = uri.removeprefix("kafka://").partition("/")
    topics = [topic for topic in topic_part.split(",") if topic]
    if not topics:
        raise ValueError(f"{uri!r} names no topic: use kafka://HOST:PORT/TOPIC")
    return (servers or settings.bootstrap_servers), topics


def stream_key(topic: str, partition: int) -> str:
    """The position / stream key of a partition: ``kafka:<topic>:<partition>``.

    >>> stream_key("events", 3)
    'kafka:events:3'
    """
    return f"kafka:{topic}:{partition}"


def partition_of(key: str) -> TopicPartition | None:
    """Inverse of :func:`stream_key` (Kafka topic names cannot contain ``:``).

    >>> partition_of("kafka:events:3")
    TopicPartition(topic='events', partition=3)
    >>> partition_of("file:/data/events.jsonl") is None
    True
    """
    scheme, _, rest = key.partition(":")
    topic, _, partition = rest.rpartition(":")
    if scheme != "kafka" or not topic or not partition.isdigit():
        return None
    return TopicPartition(topic, int(partition))


def bootstrap_error(servers: str, error: Exception, topic: str | None = None) -> ConnectionError:
    """The start-up failure of a client that reached no broker.

    The sink names its ``topic``; the source, which may read several, names none.
    """
    if topic is not None:
        return ConnectionError(
            f"cannot reach the Kafka brokers at {servers} (topic {topic}): {error}. "
            "Is the broker running (scripts/services up kafka)?"
        )
    return ConnectionError(
        f"cannot reach the Kafka brokers at {servers}: {error}. Is the broker running "
        "(scripts/services up kafka) and are the kafka:// URI / kafka settings right?"
    )


@contextmanager
def broker_errors(what: str) -> Iterator[None]:
    """Raise kafka-python's ``KafkaError`` -- and only that -- as a ``BrokerError``.

    ``what`` names the operation in the message; the original error is its cause.

    >>> from kafka.errors import KafkaTimeoutError
    >>> try:
    ...     with broker_errors("Kafka topic t: send"):
    ...         raise KafkaTimeoutError("no metadata")
    ... except BrokerError as error:
    ...     print(error, "<-", type(error.__cause__).__name__)
    Kafka topic t: send: KafkaTimeoutError: no metadata <- KafkaTimeoutError
    """
    try:
        yield
    except KafkaError as error:
        raise BrokerError(f"{what}: {error}") from error
