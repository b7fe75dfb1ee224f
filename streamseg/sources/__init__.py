"""Sources: where transaction records come from. ``open_source(uri)`` picks one.

* a path ending in ``.jsonl`` / ``.json`` / ``.csv``, or ``-`` for stdin:
  :class:`~streamseg.sources.file.FileSource`;
* ``kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]``: :class:`~streamseg.sources.kafka.KafkaSource`.
"""

from __future__ import annotations

from typing import Any

from streamseg.sources.base import Source
from streamseg.sources.file import CsvMapping, FileSource

__all__ = ["CsvMapping", "FileSource", "Source", "open_source"]


def open_source(uri: str, *, csv_mapping: CsvMapping | None = None, **kafka: Any) -> Source:
    """Open the source named by ``uri``."""
    if uri.startswith("kafka://"):
        from streamseg.sources.kafka import KafkaSource  # lazy: optional backend

        return KafkaSource.from_uri(uri, **kafka)
    return FileSource(uri, csv_mapping=csv_mapping)
