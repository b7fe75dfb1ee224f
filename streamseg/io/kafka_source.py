"""Kafka source (``kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]``), with kafka-python 3.x.

Records come out as raw bytes -- the engine parses them, so a malformed message becomes
a dead letter rather than an exception here. Each record names its partition as its
*stream* (``kafka:<topic>:<partition>``) and its Kafka offset as its *offset*; offsets
grow strictly within a partition, which is what the engine's redelivery check relies on.

Where a worker resumes
    The store is the source of truth: the pipeline writes the next offset of every
    partition (``positions_after``) atomically with the batch's customer states, and
    commits it to Kafka (:meth:`KafkaSource.commit`) only after the store write, so the
    group's committed offsets only show progress. Partitions are assigned during a poll;
    the rebalance listener only notes the change (:meth:`KafkaSource.assignment_changes`),
    and the pipeline, in its own thread after the poll, takes each newly assigned
    partition in the store, drops the records that poll returned for it, and seeks it to
    its stored position (:meth:`KafkaSource.seek`); a partition without one starts where
    the group left it (its committed offset, or the earliest for a new group).

    After a failed batch the pipeline calls :meth:`KafkaSource.seek` again (recovery):
    every assigned partition then goes back to its stored position, or else to the first
    offset this source returned from it, so a batch that failed before anything was
    stored is read again rather than skipped.

``max_poll_interval_ms``
    The consumer must call ``poll`` at least every ``max_poll_interval_ms`` (kafka-python
    default 300 s) or the group considers it dead and gives its partitions away; offsets
    committed after that fail with ``CommitFailedError`` (commits are asynchronous and a
    refusal is logged, not raised: the store keeps the positions, and redelivered
    records are skipped as duplicates). One
    pipeline batch -- ``source.batch_size`` records, the store write, the sinks' flush --
    must stay well inside it; raise it with ``kafka.consumer: {max_poll_interval_ms:
    ...}`` if batches are slow. Heartbeats run on kafka-python's own IO thread, so slow
    batches do not affect ``session_timeout_ms``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamseg.config import KafkaSettings
from streamseg.core.events import RawRecord
from streamseg.io.kafka_client import (
    DEFAULT_BOOTSTRAP_TIMEOUT_MS,
    REQUEST_TIMEOUT_MS,
    bootstrap_error,
    broker_errors,
    parse_kafka_uri,
    partition_of,
    stream_key,
)
from streamseg.io.source import AssignmentChange, Source

log = logging.getLogger(__name__)

__all__ = ["KafkaSource"]

# Consumer options the source's guarantees depend on; extras cannot change them.
_FORCED_CONSUMER_OPTIONS: dict[str, Any] = {
    "enable_auto_commit": False,  # offsets are committed after the store write, only
    "value_deserializer": None,  # raw bytes: the engine parses (and rejects) payloads
    "key_deserializer": None,
}


class _NoteChanges(ConsumerRebalanceListener):
    """Notes kafka-python's rebalance callbacks for the pipeline, and does nothing else.

    kafka-python runs them on its own thread, in the middle of a poll; neither the
    engine nor the store is thread-safe, so the pipeline handles the changes itself
    after the poll (:meth:`KafkaSource.assignment_changes`).
    """

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._source._note(revoked, "revoked")

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._source._note(assigned, "assigned")

    def on_partitions_lost(self, lost: Any) -> None:
        self._source._note(lost, "lost")


class KafkaSource(Source):
    """Consumes topics as a member of ``settings.group_id``; see the module docstring.

    Parameters
    ----------
    servers
        Bootstrap servers, ``HOST:PORT[,HOST:PORT]``.
    topics
        Topics to subscribe to.
    settings
        Group id, client id and security options (``settings.client_options()``) plus
        ``settings.consumer`` extras for ``KafkaConsumer``. ``enable_auto_commit`` and
        the deserializers are fixed by the source.
    """

    finite = False
    shared = True

    def __init__(self, servers: str, topics: Sequence[str], settings: KafkaSettings) -> None:
        self.servers = servers
        self.topics = list(topics)
        self._name = f"Kafka topics {','.join(self.topics)}"  # in BrokerError messages
        self._lock = threading.Lock()
        # Rebalance changes noted since the pipeline last asked (see _NoteChanges).
        self._changes = AssignmentChange()
        # Where each assigned partition would go back to when no position is stored:
        # the first offset this source returned from it since it was assigned.
        self._positions: dict[TopicPartition, int] = {}
        # Offsets handed to commit_async and not yet confirmed by the broker.
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        options: dict[str, Any] = {
            "bootstrap_servers": servers.split(","),
            "group_id": settings.group_id,
            "auto_offset_reset": "earliest",
            # How long the broker may hold a fetch that finds no new records (500 by
            # default). Live traffic arrives in a trickle, and with the default records
            # waited out much of that hold before the fetch returned: a short hold cut
            # end-to-end latency in the Kafka benchmark (streamseg bench kafka; figures
            # in the README, not here, as they move with the machine's load). The price
            # is an empty fetch every few milliseconds while idle; kafka.consumer can set
            # it back.
            "fetch_max_wait_ms": 5,
            "bootstrap_timeout_ms": DEFAULT_BOOTSTRAP_TIMEOUT_MS,
            **settings.client_options(),
            **settings.consumer,
        }
        for name, value in _FORCED_CONSUMER_OPTIONS.items():
            if name in settings.consumer and settings.consumer[name] != value:
                log.warning("kafka.consumer.%s=%r ignored: the source needs %r",
                            name, settings.consumer[name], value)
            options[name] = value
        try:
            self._consumer = KafkaConsumer(**options)
        except KafkaError as error:
            raise bootstrap_error(servers, error) from None
        with broker_errors(f"{self._name}: subscribe failed"):
            self._consumer.subscribe(topics=self.topics, listener=_NoteChanges(self))
        log.info("consuming %s from %s as group %r", ",".join(self.topics), servers,
                 settings.group_id)

    @classmethod
    def from_uri(cls, uri: str, settings: KafkaSettings | None = None,
                 **_: Any) -> KafkaSource:
        """Open ``kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC]``.

        Raises ``ConnectionError`` naming the bootstrap servers when no broker answers
        within ``bootstrap_timeout_ms`` (15 s unless set in ``kafka.consumer``).
        """
        settings = settings or KafkaSettings.model_validate({})
        servers, topics = parse_kafka_uri(uri, settings)
        return cls(servers, topics, settings)

    # -- reading ----------------------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        return False

    def poll(self, max_records: int, timeout: float) -> list[RawRecord]:
        """Up to ``max_records`` records, in offset order within each partition."""
        with broker_errors(f"{self._name}: poll failed"):
            batches = self._consumer.poll(timeout_ms=max(0, int(timeout * 1000)),
                                          max_records=max_records)
        records: list[RawRecord] = []
        for partition, messages in batches.items():
            if messages:
                with self._lock:  # where a rewind goes while nothing is stored/committed
                    self._positions.setdefault(partition, messages[0].offset)
            stream = stream_key(partition.topic, partition.partition)
            for message in messages:
                timestamp = message.timestamp
                records.append(
                    RawRecord(
                        payload=message.value if message.value is not None else b"",
                        origin=f"kafka:{message.topic}/{message.partition}@{message.offset}",
                        stream=stream,
                        offset=message.offset,
                        produced_at=timestamp / 1000 if timestamp is not None
                        and timestamp >= 0 else None,
                        partition=stream,
                    )
                )
        return records

    # -- this worker's share -------------------------------------------------------------
    def _note(self, partitions: Any, kind: str) -> None:
        names = [stream_key(p.topic, p.partition) for p in partitions or ()]
        with self._lock:
            getattr(self._changes, kind).extend(names)
            if kind != "assigned":
                for partition in partitions or ():
                    self._positions.pop(partition, None)
                    # Its new owner commits from now on; an old offset must not follow.
                    self._uncommitted.pop(partition, None)

    def assignment_changes(self) -> AssignmentChange | None:
        """The rebalance changes since the last call (see :class:`AssignmentChange`)."""
        with self._lock:
            changes, self._changes = self._changes, AssignmentChange()
        if not (changes.assigned or changes.revoked or changes.lost):
            return None
        return changes

    def partition_of(self, stream: str) -> str:
        """A Kafka partition is its own stream (``kafka:<topic>:<n>``)."""
        return stream

    def partition_counts(self) -> dict[str, int]:
        """Topic -> partitions, from the brokers' metadata."""
        counts: dict[str, int] = {}
        with broker_errors(f"{self._name}: metadata query failed"):
            for topic in self.topics:
                partitions = self._consumer.partitions_for_topic(topic)
                if partitions:
                    counts[topic] = len(partitions)
        return counts

    def positions_after(self, records: Sequence[RawRecord]) -> dict[str, int]:
        """``{stream: last offset + 1}`` for every partition in ``records``."""
        positions: dict[str, int] = {}
        for record in records:
            if record.stream.startswith("kafka:"):
                positions[record.stream] = max(positions.get(record.stream, 0),
                                               record.offset + 1)
        return positions

    # -- resuming ---------------------------------------------------------------------
    def seek(self, positions: dict[str, int],
             partitions: Collection[str] | None = None) -> None:
        """Send the assigned ``partitions`` (all: None) back to their position in
        ``positions`` (the stored one), or else to the first offset this source returned
        from them since they were assigned (so that a batch that failed before anything
        was stored is read again); a partition with neither stays where it is (its
        committed offset, or the earliest for a new group)."""
        wanted: dict[TopicPartition, int] = {}
        for key, offset in positions.items():
            partition = partition_of(key)
            if partition is not None and partition.topic in self.topics:
                wanted[partition] = int(offset)
        with broker_errors(f"{self._name}: seek failed"):
            assigned = {p for p in self._consumer.assignment() or ()
                        if partitions is None
                        or stream_key(p.topic, p.partition) in partitions}
            with self._lock:
                targets = {p: o for p, o in self._positions.items() if p in assigned}
                targets.update({p: o for p, o in wanted.items() if p in assigned})
                self._positions.update(targets)
            for partition, offset in targets.items():
                log.info("partition %s:%d resumes at offset %d",
                         partition.topic, partition.partition, offset)
                self._consumer.seek(partition, offset)

    def commit(self, positions: dict[str, int]) -> None:
        """Commit the positions of the partitions this worker still owns, asynchronously.

        The store already holds the positions, and a restarted worker resumes from
        them, so the group's committed offsets only show progress (lag monitoring) and
        serve a worker that takes a partition without stored positions. Waiting for the
        broker's answer on every batch would add a round trip to each batch's latency:
        the commit is sent without waiting, a refusal (a rebalance, the broker away) is
        logged, and :meth:`close` commits the last positions synchronously.
        """
        with broker_errors(f"{self._name}: commit failed"):
            self._commit_async(positions)

    def _commit_async(self, positions: dict[str, int]) -> None:
        assigned = self._consumer.assignment() or set()
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for key, offset in positions.items():
            partition = partition_of(key)
            if partition is not None and partition in assigned:
                offsets[partition] = OffsetAndMetadata(int(offset), "", -1)
        if not offsets:
            return
        with self._lock:
            for partition, meta in offsets.items():
                self._positions[partition] = meta.offset
            self._uncommitted.update(offsets)
            # Offsets a refused commit left behind, of partitions still ours, go along.
            offsets = {p: m for p, m in self._uncommitted.items() if p in assigned}
        self._consumer.commit_async(offsets, callback=self._committed)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata],
                   response: Any) -> None:
        if isinstance(response, Exception):
            log.warning("offset commit not done (%s: %s); the store keeps the positions "
                        "and the next commit sends them again", type(response).__name__,
                        response)
            return
        with self._lock:
            for partition, meta in offsets.items():
                if self._uncommitted.get(partition) == meta:
                    del self._uncommitted[partition]

    def _commit_pending(self) -> None:
        """Commit, and wait for, what the last asynchronous commits may not have done."""
        assigned = self._consumer.assignment() or set()
        with self._lock:
            offsets = {p: m for p, m in self._uncommitted.items() if p in assigned}
        if not offsets:
            return
        try:
            self._consumer.commit(offsets, timeout_ms=REQUEST_TIMEOUT_MS)
        except (KafkaError, OSError) as error:
            log.warning("final offset commit failed (%s); the store keeps the positions",
                        error)

    # -- health -----------------------------------------------------------------------
    def ready(self) -> bool:
        """True while the consumer holds at least one live broker connection.

        kafka-python 3.x's ``bootstrap_connected()`` is only true *during* a bootstrap,
        so the connection table is looked at instead.
        """
        with broker_errors(f"{self._name}: readiness check failed"):
            try:
                connections = self._consumer._client._manager._conns  # kafka-python 3.x
                return any(getattr(conn, "connected", False)
                           for conn in connections.values())
            except AttributeError:  # pragma: no cover - other kafka-python versions
                return bool(self._consumer.bootstrap_connected())

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each assigned partition: ``{(topic, partition): n}``.

        The end is the high watermark the broker sent with the last fetch response, so
        this makes no request: a ListOffsets round trip here stalled the batch in progress
        every time the gauges refreshed. A partition not fetched yet is asked for once.
        Call it from the thread that polls (the consumer is not thread-safe).
        """
        with broker_errors(f"{self._name}: lag query failed"):
            return self._lag()

    def behind(self) -> set[str]:
        """Assigned partitions whose high watermark (from the last fetch response) is
        past this consumer's position; one not fetched yet counts as behind. No
        request. Call it from the thread that polls."""
        names: set[str] = set()
        with broker_errors(f"{self._name}: position query failed"):
            for partition in list(self._consumer.assignment() or ()):
                end = self._consumer.highwater(partition)
                position = self._consumer.position(partition, timeout_ms=REQUEST_TIMEOUT_MS)
                if end is None or position is None or position < end:
                    names.add(stream_key(partition.topic, partition.partition))
        return names

    def _lag(self) -> dict[tuple[str, int], int]:
        assigned = list(self._consumer.assignment() or ())
        if not assigned:
            return {}
        unknown = [p for p in assigned if self._consumer.highwater(p) is None]
        ends = (self._consumer.end_offsets(unknown, timeout_ms=REQUEST_TIMEOUT_MS)
                if unknown else {})
        lags: dict[tuple[str, int], int] = {}
        for partition in assigned:
            position = self._consumer.position(partition, timeout_ms=REQUEST_TIMEOUT_MS)
            end = self._consumer.highwater(partition)
            if end is None:
                end = ends.get(partition)
            if position is not None and end is not None:
                lags[(partition.topic, partition.partition)] = max(0, end - position)
        return lags

    def close(self) -> None:
        """Commit the last positions given to :meth:`commit`, then leave the group."""
        with broker_errors(f"{self._name}: close failed"):
            self._commit_pending()
            self._consumer.close(autocommit=False)
