"""Sinks: where segment changes and dead letters go. ``open_*_sink(uri)`` picks one.

* a ``.jsonl`` path, or ``-`` for stdout: JSON Lines;
* ``kafka://HOST:PORT/TOPIC``: a Kafka topic (changes keyed by customer id).
"""

from __future__ import annotations

from typing import Any

from streamseg.sinks.base import ChangeSink, DeadLetterSink
from streamseg.sinks.file import JsonlChangeSink, JsonlDeadLetterSink

__all__ = [
    "ChangeSink",
    "DeadLetterSink",
    "JsonlChangeSink",
    "JsonlDeadLetterSink",
    "open_change_sink",
    "open_dead_letter_sink",
]


def open_change_sink(uri: str, **kafka: Any) -> ChangeSink:
    if uri.startswith("kafka://"):
        from streamseg.sinks.kafka import KafkaChangeSink

        return KafkaChangeSink.from_uri(uri, **kafka)
    return JsonlChangeSink(uri)


def open_dead_letter_sink(uri: str, **kafka: Any) -> DeadLetterSink:
    if uri.startswith("kafka://"):
        from streamseg.sinks.kafka import KafkaDeadLetterSink

        return KafkaDeadLetterSink.from_uri(uri, **kafka)
    return JsonlDeadLetterSink(uri)
