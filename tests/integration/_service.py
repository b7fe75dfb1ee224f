"""Helpers for the tests that break things for real: ``streamseg run`` as a subprocess,
bounded waits, Prometheus scraping, and whole-topic reads.

The service runs exactly as in production -- ``python -m streamseg.cli run --config
cfg.yaml --no-progress`` -- in its own temporary working directory, with its log (INFO,
``-v``) in a file that every failure message quotes. Nothing here asserts on wall-clock
durations: every wait is a poll loop with a deadline that only guards against hangs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamseg_bench.simulate import SIXTY_DAYS, simulate_stream

#: Guard of every wait (a failure guard, never a performance assertion).
DEADLINE_S = 120.0

STREAM_END = datetime(2024, 12, 31, tzinfo=UTC)


def sixty_day_stream(customers: int, seed: int) -> list[dict[str, Any]]:
    """Events of ``customers`` simulated customers over 60 days, sorted by time
    (5,000 customers give ~102k events, 8,000 ~164k)."""
    events, _ = simulate_stream(customers=customers, seed=seed, archetypes=SIXTY_DAYS,
                                end=STREAM_END)
    return events


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ the subprocess --
class Service:
    """``streamseg run`` as a subprocess, restartable, with its config in ``workdir``.

    ``config`` is the YAML content (a dict). If ``metrics_port`` is given, metrics are
    enabled on it (the same port across restarts, so the probes keep working).
    """

    def __init__(self, workdir: Path, name: str, config: dict[str, Any],
                 metrics_port: int | None = None) -> None:
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        #: Environment variables added to its own (a fail point, ...).
        self.env: dict[str, str] = {}
        self.metrics_port = metrics_port
        if metrics_port is not None:
            config = {**config, "metrics": {"enabled": True, "host": "127.0.0.1",
                                            "port": metrics_port}}
        self.config_path = self.workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = self.workdir / "service-0.log"

    # -- lifecycle ------------------------------------------------------------------
    def start(self, *, stdin_pipe: bool = False) -> Service:
        """Start it; with ``stdin_pipe``, its stdin is a pipe the test writes to
        (``self.process.stdin``) and holds open as long as it likes."""
        assert not self.alive(), f"{self.name}: already running"
        self.starts += 1
        self.log_path = self.workdir / f"service-{self.starts}.log"
        # The service reads STREAMSEG_* settings from the environment: give it none but
        # its config file, whatever the test runner's environment holds.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSEG_")}
        env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack (see hang_dump)
        env.update(self.env)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamseg.cli", "run", "--config",
                 str(self.config_path), "--no-progress", "-v"],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL, env=env,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE_S)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = DEADLINE_S) -> int:
        """The exit code; fails the test (and kills the service) if it does not exit."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(DEADLINE_S)
            pytest.fail(f"{self.name}: did not exit within {timeout:.0f}s\n{self.log_tail()}",
                        pytrace=False)

    def stop_quietly(self) -> None:
        """Cleanup: SIGKILL if still running (fixtures' teardown)."""
        if self.alive():
            with contextlib.suppress(Exception):
                self.kill()
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def hang_dump(self) -> str:
        """Abort a hung service so that faulthandler writes every thread's stack to its
        log; return those stacks (for the failure message)."""
        if not self.alive():
            return ""
        assert self.process is not None
        self.process.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.stop_quietly()
        text = self.log_path.read_text(errors="replace")
        start = text.rfind("Fatal Python error")
        return f"--- {self.name}: thread stacks at the timeout\n{text[start:]}" \
            if start >= 0 else ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"--- {self.log_path}: no log"
        return f"--- last lines of {self.log_path}:\n" + "\n".join(text[-lines:])

    def log_text(self) -> str:
        return "\n".join(
            (self.workdir / f"service-{i}.log").read_text(errors="replace")
            for i in range(1, self.starts + 1)
            if (self.workdir / f"service-{i}.log").exists()
        )

    # -- health and metrics -----------------------------------------------------------
    def _get(self, path: str) -> tuple[int, str] | None:
        assert self.metrics_port is not None, "metrics are not enabled for this service"
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (OSError, urllib.error.URLError):
            return None  # not listening (yet, or any more)

    def readyz(self) -> int | None:
        """HTTP status of /readyz, None when the server does not answer."""
        answer = self._get("/readyz")
        return None if answer is None else answer[0]

    def metrics(self) -> dict[str, float] | None:
        """Every sample of /metrics, ``name{labels}`` -> value (None if not answering)."""
        answer = self._get("/metrics")
        if answer is None or answer[0] != 200:
            return None
        samples: dict[str, float] = {}
        for line in answer[1].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def metric(self, name: str) -> float | None:
        samples = self.metrics()
        return None if samples is None else samples.get(name)


def service_config(
    *, kafka: str, redis_url: str, topic: str, prefix: str, group: str,
    changes_topic: str, dlq_topic: str, batch_size: int = 500,
    consumer: dict[str, Any] | None = None, producer: dict[str, Any] | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """The YAML config of a service on real Kafka and Redis."""
    config: dict[str, Any] = {
        "source": {"uri": f"kafka://{kafka}/{topic}", "batch_size": batch_size,
                   "poll_timeout_s": 0.2},
        "kafka": {"bootstrap_servers": kafka, "group_id": group, "client_id": group,
                  "consumer": consumer or {}, "producer": producer or {}},
        "store": {"uri": redis_url, "redis_prefix": prefix, "redis_buckets": 128},
        "sinks": {"changes": f"kafka://{kafka}/{changes_topic}",
                  "dead_letter": f"kafka://{kafka}/{dlq_topic}"},
    }
    config.update(sections)
    return config


# ------------------------------------------------------------------------ waiting --
def wait_until(condition: Callable[[], bool], what: str, *,
               services: Iterable[Service] = (), timeout: float = DEADLINE_S,
               interval: float = 0.2) -> None:
    """Poll ``condition`` until true; fail (with the services' logs) on timeout or if a
    service that should be running exits."""
    watched = [service for service in services]
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        for service in watched:
            if not service.alive():
                code = service.process.returncode if service.process else None
                pytest.fail(f"{service.name} exited (code {code}) while waiting for {what}\n"
                            f"{service.log_tail()}", pytrace=False)
        if time.monotonic() >= deadline:
            logs = "\n".join(service.log_tail() for service in watched)
            stacks = "\n".join(service.hang_dump() for service in watched)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}\n{stacks}",
                        pytrace=False)
        time.sleep(interval)


def quiet(services: list[Service], seconds: float = 6.0, interval: float = 0.5
          ) -> Callable[[], bool]:
    """A condition, polled every ``interval``, that holds once the workers' model
    versions, segment changes and processed events stayed the same for ``seconds``.

    The default is longer than ``model.refine_interval_s`` (5 s): a worker whose input
    went idle refines once more with the complete restart search when any update was not
    refined over yet, at most that long after its last refinement -- so a window longer
    than it cannot close before that refinement (quality measured before it is quality
    in the middle of a backlog, not at rest). The services need ``metrics_port``.
    """
    rounds = max(2, math.ceil(seconds / interval) + 1)
    seen: list[tuple[float, ...]] = []

    def condition() -> bool:
        values: list[float] = []
        for service in services:
            samples = service.metrics() or {}
            values += [samples.get("streamseg_model_version", -1.0),
                       sum(v for k, v in samples.items()
                           if k.startswith("streamseg_segment_changes_total")),
                       samples.get("streamseg_events_processed_total", -1.0)]
        seen.append(tuple(values))
        return len(seen) >= rounds and len(set(seen[-rounds:])) == 1
    return condition


# -------------------------------------------------------------------------- kafka --
def produce(servers: str, topic: str, events: Iterable[dict[str, Any]]) -> int:
    """Send events keyed by customer id, as fast as one producer goes; returns count."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=50,
                             batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    count = 0
    try:
        for event in events:
            producer.send(topic, key=event["customer_id"].encode(),
                          value=json.dumps(event).encode())
            count += 1
        producer.flush(timeout=DEADLINE_S)
    finally:
        producer.close(timeout=10)
    return count


class Feeder(threading.Thread):
    """Produces ``events`` in the background at about ``per_second``, so that events keep
    flowing while something else is broken; :meth:`finish` waits and re-raises."""

    def __init__(self, servers: str, topic: str, events: list[dict[str, Any]],
                 per_second: float, chunk: int = 100) -> None:
        super().__init__(daemon=True, name=f"feeder-{topic}")
        self.servers, self.topic, self.events = servers, topic, events
        self.pause = chunk / per_second
        self.chunk = chunk
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.servers, acks="all", linger_ms=20)
            try:
                for start in range(0, len(self.events), self.chunk):
                    for event in self.events[start:start + self.chunk]:
                        producer.send(self.topic, key=event["customer_id"].encode(),
                                      value=json.dumps(event).encode())
                    producer.flush(timeout=DEADLINE_S)
                    self.sent = min(len(self.events), start + self.chunk)
                    time.sleep(self.pause)
            finally:
                producer.close(timeout=10)
        except BaseException as error:  # noqa: BLE001 - re-raised by finish()
            self.error = error

    def finish(self) -> None:
        self.join(DEADLINE_S)
        assert not self.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error
        assert self.sent == len(self.events)


def end_offsets(servers: str, topic: str) -> dict[int, int]:
    """``{partition: end offset}`` of every partition of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        consumer.close()


def read_topic(servers: str, topic: str, timeout: float = DEADLINE_S) -> list[Any]:
    """Every message of ``topic`` up to its current end, in offset order per partition."""
    from kafka import KafkaConsumer, TopicPartition

    ends = end_offsets(servers, topic)
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None,
                             enable_auto_commit=False, max_poll_records=5000)
    partitions = [TopicPartition(topic, p) for p in ends]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while any(consumer.position(tp) < ends[tp.partition] for tp in partitions):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out reading topic {topic} to its end {ends}",
                            pytrace=False)
            for batch in consumer.poll(timeout_ms=500).values():
                messages += [m for m in batch if m.offset < ends[m.partition]]
    finally:
        consumer.close()
    return messages


def stream_positions(positions: dict[str, int], topic: str) -> dict[int, int]:
    """The store's positions of ``topic`` as ``{partition: next offset}``."""
    prefix = f"kafka:{topic}:"
    return {int(key.removeprefix(prefix)): offset for key, offset in positions.items()
            if key.startswith(prefix)}


def last_changes(messages: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """The last change event of each customer (per-partition order = per-customer order,
    since changes are keyed by customer id)."""
    last: dict[str, dict[str, Any]] = {}
    for message in messages:
        change = json.loads(message.value)
        assert message.key.decode() == change["subject"] == change["data"]["customer_id"]
        if change["type"] == "io.streamseg.segment.changed":  # not a risk band's change
            last[change["subject"]] = change["data"]
    return last


# ------------------------------------------------------------------- scripts/services --
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = REPO_ROOT / "scripts" / "services"


def services(command: str, *names: str, env: dict[str, str],
             timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/services COMMAND NAMES...`` with ``env`` added; fail clearly if it
    fails."""
    result = subprocess.run(
        [str(SERVICES), command, *names], env={**os.environ, **env}, capture_output=True,
        text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"`scripts/services {command} {' '.join(names)}` with {env} failed "
                    f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}",
                    pytrace=False)
    return result


def committed_offsets(servers: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offsets of ``topic``: ``{partition: offset}``
    (kafka-python 3.x: ``KafkaAdminClient.list_group_offsets``)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: int(meta.offset) for tp, meta in offsets.items()
            if tp.topic == topic and meta.offset >= 0}


# -------------------------------------------------------------------------- model --
def assert_model_matches_store(config_path: Path, store: Any, label: str = "") -> None:
    """The model in the store counts every stored customer exactly once.

    Its segment sizes are the stored segments' counts, and its standardiser has learned
    exactly one raw vector per scored customer -- the one the customer was last scored
    with, which the engine recomputes from the features at ``updated_at`` -- so ``n`` and
    the mean match. A model checkpoint that holds part of a batch whose states were never
    written (and that is then applied again) breaks both.

    The sizes are exact whatever the population: each partition's share holds the sums
    and counts of exactly its stored customers (:mod:`streamseg.engine.shared`).
    """
    from collections import Counter

    import numpy as np

    from streamseg.config import load_settings
    from streamseg.engine import SegmentationEngine

    settings = load_settings(config_path)
    engine = SegmentationEngine(settings, store)
    states = list(store.iter_customers())
    stored = Counter(s.segment for s in states if s.segment is not None)
    model = {segment: int(n) for segment, n in enumerate(engine.model.sizes) if n}
    assert model == dict(stored), \
        f"{label}: model sizes {model} != stored segments {dict(sorted(stored.items()))}"
    raws = np.array([settings.features.snapshot(s.features, s.updated_at).raw_vector()
                     for s in states if s.updated_at is not None and s.features.has_purchases])
    assert engine.scaler.n == len(raws), \
        f"{label}: standardiser learned {engine.scaler.n} customers, {len(raws)} are scored"
    assert np.allclose(engine.scaler.mean, raws.mean(axis=0), rtol=1e-6, atol=1e-6), \
        (label, engine.scaler.mean, raws.mean(axis=0))
