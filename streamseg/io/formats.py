"""What a segment change or a dead letter looks like in a sink.

Every sink writes ``SinkRecord.text``; Kafka also sends the key and headers.

Segment changes (:func:`change_record`)
    text = the CloudEvents JSON (``SegmentChange.to_json()``), key = the customer id
    (all changes of one customer land in one Kafka partition, in order; a compacted
    topic keeps each customer's latest segment), one header ``content-type:
    application/cloudevents+json``. Structured mode, and nothing that says otherwise:
    in the CloudEvents Kafka protocol binding ``ce_*`` headers mean binary mode, so a
    consumer that detects the mode (the CloudEvents SDK's ``from_kafka``) would read the
    event's attributes from the headers and fail on those that are only in the body.

Dead letters (:func:`dead_letter_record`)
    text = ``DeadLetter.to_json()`` (reason, origin, time, the payload as text; of a
    payload over 64 KiB only its first 64 KiB and ``payload_truncated_from_bytes``, so
    that every letter fits a default 1 MB Kafka message), no key, headers ``reason``
    (UTF-8, cut to :data:`MAX_REASON_HEADER_BYTES` on a character boundary) and
    ``origin``.
"""

from __future__ import annotations

from streamseg.core.events import ChangeEvent, DeadLetter
from streamseg.io.sink import SinkRecord

__all__ = ["MAX_REASON_HEADER_BYTES", "change_record", "dead_letter_record"]

#: Longest ``reason`` header of a dead letter, in bytes (the value keeps it all).
MAX_REASON_HEADER_BYTES = 1024

_CLOUDEVENTS_JSON = b"application/cloudevents+json"


def change_record(change: ChangeEvent) -> SinkRecord:
    """A segment (or risk-band) change as a keyed, structured-mode CloudEvents record."""
    return SinkRecord(
        change.to_json(),
        change.subject.encode("utf-8"),
        # No ce_* header besides: it would make the record binary mode (module docstring).
        [("content-type", _CLOUDEVENTS_JSON)],
    )


def dead_letter_record(letter: DeadLetter) -> SinkRecord:
    """A rejected payload with its reason and origin, unkeyed.

    >>> record = dead_letter_record(DeadLetter(payload="{oops", reason="é" * 600,
    ...                                        origin="kafka:t/0@5"))
    >>> record.key, len(dict(record.headers)["reason"]), dict(record.headers)["origin"]
    (None, 1024, b'kafka:t/0@5')
    """
    reason = letter.reason.encode("utf-8")
    if len(reason) > MAX_REASON_HEADER_BYTES:
        reason = reason[:MAX_REASON_HEADER_BYTES].decode("utf-8", "ignore").encode()
    return SinkRecord(
        letter.to_json(),
        None,
        [("reason", reason), ("origin", letter.origin.encode("utf-8"))],
    )
