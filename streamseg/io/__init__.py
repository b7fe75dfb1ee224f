"""Input and output: where records come from and where changes and rejects go.

Sources (``open_source(uri)``):

* a path ending in ``.jsonl`` / ``.json`` / ``.csv``, or ``-`` for stdin:
  :class:`~streamseg.io.file.FileSource`;
* ``kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]``:
  :class:`~streamseg.io.kafka_source.KafkaSource`.

Sinks (``open_change_sink(uri)``, ``open_dead_letter_sink(uri)``): one
:class:`~streamseg.io.sink.Sink` per backend, given the formatter
(:mod:`streamseg.io.formats`) of what it publishes:

* a ``.jsonl`` path, or ``-`` for stdout: :class:`~streamseg.io.jsonl.JsonLinesSink`;
* ``kafka://HOST:PORT/TOPIC``: :class:`~streamseg.io.kafka_sink.KafkaSink` (changes
  keyed by customer id).

The Kafka modules share :mod:`streamseg.io.kafka_client`, and raise
:class:`~streamseg.errors.BrokerError` for kafka-python's failures.
"""

from __future__ import annotations

from typing import Any

from streamseg.io.file import CsvMapping, FileSource
from streamseg.io.formats import change_record, dead_letter_record
from streamseg.io.jsonl import JsonLinesSink
from streamseg.io.sink import ChangeSink, DeadLetterSink, Formatter, Sink, SinkRecord
from streamseg.io.source import Source

__all__ = [
    "ChangeSink",
    "CsvMapping",
    "DeadLetterSink",
    "FileSource",
    "Formatter",
    "JsonLinesSink",
    "Sink",
    "SinkRecord",
    "Source",
    "open_change_sink",
    "open_dead_letter_sink",
    "open_source",
]


def open_source(uri: str, *, csv_mapping: CsvMapping | None = None, **kafka: Any) -> Source:
    """Open the source named by ``uri``."""
    if uri.startswith("kafka://"):
        from streamseg.io.kafka_source import KafkaSource  # lazy: optional backend

        return KafkaSource.from_uri(uri, **kafka)
    return FileSource(uri, csv_mapping=csv_mapping)


def open_change_sink(uri: str, **kafka: Any) -> ChangeSink:
    if uri.startswith("kafka://"):
        from streamseg.io.kafka_sink import KafkaSink

        return KafkaSink.from_uri(uri, change_record, **kafka)
    return JsonLinesSink(uri, change_record)


def open_dead_letter_sink(uri: str, **kafka: Any) -> DeadLetterSink:
    if uri.startswith("kafka://"):
        from streamseg.io.kafka_sink import KafkaSink

        return KafkaSink.from_uri(uri, dead_letter_record, **kafka)
    return JsonLinesSink(uri, dead_letter_record)
