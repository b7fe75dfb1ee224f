"""The Kafka sink (``kafka://HOST:PORT[,HOST:PORT]/TOPIC``): one topic, one formatter.

A ``KafkaProducer`` with ``acks="all"`` and idempotence (kafka-python's default when
``acks`` is all), so a record is durable on every in-sync replica once :meth:`flush`
returns. The pipeline flushes before it writes the store and commits the source
offsets, so :meth:`flush` raises if any record of the batch failed: the batch is then
retried after a restart instead of being lost.

Each record's value is the formatter's text in UTF-8, with its key and headers
(:mod:`streamseg.io.formats`):

Segment changes (:func:`~streamseg.io.formats.change_record`)
    value = the CloudEvents JSON (``SegmentChange.to_json()``), key = the customer id
    (all changes of one customer land in one partition, in order; a compacted topic
    keeps each customer's latest segment), one header ``content-type:
    application/cloudevents+json`` (structured mode; no ``ce_*`` header, which would
    say binary mode).

Dead letters (:func:`~streamseg.io.formats.dead_letter_record`)
    value = ``DeadLetter.to_json()`` (reason, origin, time, the payload as text; of a
    payload over 64 KiB only its first 64 KiB and ``payload_truncated_from_bytes``, so
    that every letter fits a default 1 MB Kafka message), no key, headers ``reason``
    (UTF-8, cut to 1 KiB) and ``origin``.

Failures: no broker at start-up is a ``ConnectionError``; afterwards every failure is a
:class:`~streamseg.errors.BrokerError` (undelivered records: its subclass
:class:`SinkError`), which the pipeline counts as the broker's and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamseg.config import KafkaSettings
from streamseg.errors import BrokerError
from streamseg.io.kafka_client import (
    DEFAULT_BOOTSTRAP_TIMEOUT_MS,
    bootstrap_error,
    broker_errors,
    parse_kafka_uri,
)
from streamseg.io.sink import Formatter, Sink

log = logging.getLogger(__name__)

__all__ = ["KafkaSink", "SinkError"]

T = TypeVar("T")

#: Upper bound of one :meth:`KafkaSink.flush`, in seconds: the producer's
#: ``delivery_timeout_ms`` (120 s by default) plus ``FLUSH_MARGIN_S``, at most this.
FLUSH_TIMEOUT_S = 180.0
#: How long a flush waits beyond ``delivery_timeout_ms``. Records should have failed by
#: then, but kafka-python's idempotent producer stops expiring batches once it has lost
#: its producer id (after a batch it had sent expired) until a broker answers again: a
#: flush would wait for the broker however long it is away, and the pipeline would
#: neither count the failure nor retry (see tests/integration/test_outages.py).
FLUSH_MARGIN_S = 5.0


class SinkError(BrokerError):
    """Records of a batch could not be delivered; nothing after them is committed."""


class KafkaSink(Sink[T]):
    """A producer bound to one topic that remembers the sends of the current batch.

    Parameters
    ----------
    servers
        Bootstrap servers, ``HOST:PORT[,HOST:PORT]``.
    topic
        Topic every record goes to.
    settings
        Client id and security options (``settings.client_options()``) and
        ``settings.producer`` extras for ``KafkaProducer``, which win over the
        defaults here: ``acks="all"``, ``linger_ms=0`` and ``batch_size=262144``,
        ``compression_type=None``, and kafka-python's retries
        (``retries`` unbounded within ``delivery_timeout_ms``).
    formatter
        Turns each published item into its value, key and headers.

    After a failed :meth:`flush` the producer is closed and the next :meth:`publish`
    opens a new one: once a batch it had already sent expires, kafka-python's idempotent
    producer drops its producer id and may never get another, even when the broker is
    back, so every later flush would fail. The records of the failed flush are dropped
    with it; the pipeline sends them again (outbox, or the batch processed again).
    """

    def __init__(self, servers: str, topic: str, settings: KafkaSettings,
                 formatter: Formatter[T]) -> None:
        self.servers = servers
        self.topic = topic
        self._format = formatter
        options: dict[str, Any] = {
            "bootstrap_servers": servers.split(","),
            "acks": "all",
            # Records leave as soon as they are queued: the pipeline awaits their
            # acknowledgement only before its next write, so lingering would only add
            # to that wait (benchmarks showed lower latency with 0).
            "linger_ms": 0,
            # Bigger producer batches cost less per record than the 16 KiB default.
            "batch_size": 256 * 1024,
            "bootstrap_timeout_ms": DEFAULT_BOOTSTRAP_TIMEOUT_MS,
            **settings.client_options(),
            **settings.producer,
        }
        self._options = options
        try:
            producer = KafkaProducer(**options)
        except KafkaError as error:
            raise bootstrap_error(servers, error, topic) from None
        self._producer: KafkaProducer | None = producer
        self._pending: list[Any] = []
        delivery_s = float(producer.config["delivery_timeout_ms"]) / 1000
        self._flush_timeout = min(FLUSH_TIMEOUT_S, delivery_s + FLUSH_MARGIN_S)

    @classmethod
    def from_uri(cls, uri: str, formatter: Formatter[T],
                 settings: KafkaSettings | None = None, **_: Any) -> KafkaSink[T]:
        """Open ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``."""
        settings = settings or KafkaSettings.model_validate({})
        servers, topics = parse_kafka_uri(uri, settings)
        if len(topics) != 1:
            raise ValueError(f"{uri!r}: a sink writes to exactly one topic")
        return cls(servers, topics[0], settings, formatter)

    def _client(self) -> KafkaProducer:
        """The producer, a new one if the last flush failed."""
        if self._producer is None:
            try:
                self._producer = KafkaProducer(**self._options)
            except KafkaError as error:
                raise SinkError(f"Kafka topic {self.topic}: cannot reach the brokers at "
                                f"{self.servers}: {error}") from error
        return self._producer

    def publish(self, items: Sequence[T]) -> None:
        """Queue one record per item (sent within ``linger_ms``)."""
        with broker_errors(f"Kafka topic {self.topic}: send failed"):
            for item in items:
                record = self._format(item)
                self._pending.append(self._client().send(
                    self.topic, value=record.text.encode("utf-8"), key=record.key,
                    headers=record.headers))

    def flush(self) -> None:
        """Wait until every queued record is acknowledged; raise if any was not."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            try:
                self._client().flush(timeout=self._flush_timeout)
            except KafkaError as error:
                raise SinkError(f"Kafka topic {self.topic}: flush failed: {error}") from error
            failures = [future.exception for future in pending
                        if not future.is_done or future.exception is not None]
            if failures:
                first = failures[0] or "not acknowledged in time"
                raise SinkError(
                    f"Kafka topic {self.topic}: {len(failures)} of {len(pending)} records "
                    f"not delivered: {first}"
                )
        except SinkError:
            self._discard()
            raise

    def _discard(self) -> None:
        """Close the producer without waiting (see the class docstring)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=0)
        except KafkaError:
            # kafka-python's close() flushes first and raises while records are pending,
            # before it force-closes its I/O thread: do that here, or the thread and its
            # connections would live on, retrying.
            # (Joined briefly, so that the producer's __del__ finds nothing pending.)
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(2.0)

    def close(self) -> None:
        """Flush what is pending, then close the producer."""
        try:
            self.flush()
        finally:
            if self._producer is not None:
                with broker_errors(f"Kafka topic {self.topic}: close failed"):
                    self._producer.close(timeout=10)
