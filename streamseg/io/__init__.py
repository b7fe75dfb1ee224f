"""Input and output: where records come from and where changes and rejects go.

Sources (``open_source(uri)``):

* a path ending in ``.jsonl`` / ``.json`` / ``.csv``, or ``-`` for stdin:
  :class:`~streamseg.io.file.FileSource`;
* ``kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]``:
  :class:`~streamseg.io.kafka_source.KafkaSource`.

Sinks (``open_change_sink(uri)``, ``open_dead_letter_sink(uri)``):

* a ``.jsonl`` path, or ``-`` for stdout: JSON Lines;
* ``kafka://HOST:PORT/TOPIC``: a Kafka topic (changes keyed by customer id).
"""

from __future__ import annotations

from typing import Any

from streamseg.io.base import Source
from streamseg.io.file import CsvMapping, FileSource
from streamseg.io.jsonl import JsonlChangeSink, JsonlDeadLetterSink
from streamseg.io.sink_base import ChangeSink, DeadLetterSink

__all__ = [
    "ChangeSink",
    "CsvMapping",
    "DeadLetterSink",
    "FileSource",
    "JsonlChangeSink",
    "JsonlDeadLetterSink",
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
        from streamseg.io.kafka_sink import KafkaChangeSink

        return KafkaChangeSink.from_uri(uri, **kafka)
    return JsonlChangeSink(uri)


def open_dead_letter_sink(uri: str, **kafka: Any) -> DeadLetterSink:
    if uri.startswith("kafka://"):
        from streamseg.io.kafka_sink import KafkaDeadLetterSink

        return KafkaDeadLetterSink.from_uri(uri, **kafka)
    return JsonlDeadLetterSink(uri)
