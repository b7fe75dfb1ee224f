"""The input boundary: raw records become events, or dead letters with a reason.

A record is rejected when the source could not decode it, when it is not a valid
:class:`~streamseg.core.events.TransactionEvent`, or when its time lies before 1970 or
more than :data:`MAX_FUTURE_SECONDS` ahead of the service clock (or of the machine's
clock, whichever is later). With a pseudonymisation key, the customer id is replaced by
its keyed hash here, before anything else sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from streamseg.core.events import (
    DeadLetter,
    InvalidEvent,
    RawRecord,
    TransactionEvent,
    parse_event,
)
from streamseg.core.features import SECONDS_PER_DAY
from streamseg.core.privacy import payload_digest, pseudonymise, scrub_payload

__all__ = ["MAX_FUTURE_SECONDS", "MIN_EVENT_TIME", "Intake"]

#: Events more than this far ahead of the service clock are rejected: one bad clock on a
#: producer must not drag the event-time watermark years into the future.
MAX_FUTURE_SECONDS = 7 * SECONDS_PER_DAY
#: Events before this are certainly wrong (and would overflow the decay arithmetic).
MIN_EVENT_TIME = datetime(1970, 1, 2, tzinfo=UTC).timestamp()


class Intake:
    """Parses, checks and pseudonymises the records of a batch.

    >>> intake = Intake(pseudonym_key=None)
    >>> events, rejected = intake.parse(
    ...     [RawRecord('{"event_id": "1", "customer_id": "c", "timestamp": "2024-01-01", '
    ...                '"amount": 5}', "doc:1"), RawRecord("{", "doc:2")], now=0.0, wall=2e9)
    >>> [e.customer_id for e, _ in events], [r.origin for r in rejected]
    (['c'], ['doc:2'])
    """

    def __init__(self, pseudonym_key: bytes | None) -> None:
        self._key = pseudonym_key

    def parse(self, records: Sequence[RawRecord], now: float, wall: float
              ) -> tuple[list[tuple[TransactionEvent, RawRecord]], list[DeadLetter]]:
        """``(events with their records, dead letters)`` at service clock ``now``."""
        events: list[tuple[TransactionEvent, RawRecord]] = []
        rejected: list[DeadLetter] = []
        horizon = max(now, wall) + MAX_FUTURE_SECONDS
        key = self._key
        for record in records:
            if record.error is not None:
                rejected.append(self.reject(record, record.error))
                continue
            try:
                event = record.event or parse_event(record.payload)
            except InvalidEvent as error:
                rejected.append(self.reject(record, error.reason))
                continue
            epoch = event.epoch
            if epoch < MIN_EVENT_TIME or epoch > horizon:
                rejected.append(self.reject(record,
                                            f"timestamp out of range: {event.timestamp}"))
                continue
            if key is not None:
                # From here on only the keyed hash exists: state, changes, logs, metrics.
                event = event.model_copy(
                    update={"customer_id": pseudonymise(event.customer_id, key)}
                )
            events.append((event, record))
        return events, rejected

    def reject(self, record: RawRecord, reason: str) -> DeadLetter:
        """The dead letter of ``record``; with a key, no clear customer id is left in it
        (the payload is scrubbed, or withheld: see :func:`scrub_payload`)."""
        letter = DeadLetter.from_record(record, reason)
        if self._key is None:
            return letter
        scrubbed = None if letter.truncated_from is not None else scrub_payload(
            letter.payload, self._key)
        if scrubbed is not None:
            letter.payload = scrubbed
            return letter
        raw = record.payload
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        letter.withheld = (payload_digest(data, self._key), len(data))
        letter.payload = ""
        return letter
