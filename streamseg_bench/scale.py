"""How the service scales with workers on real Kafka and Redis (``streamseg bench scale``).

One simulated stream (:data:`~streamseg_bench.simulate.SIXTY_DAYS` archetypes, keyed by
customer, the simulator's own event times: the service clock is event time) is
produced once to a topic with enough partitions for the most workers (8: 4 workers own
2 each). Then, for each repeat and within it for each worker count N (interleaved, so
that a slow spell of a shared machine hits every N alike), a fresh consumer group and
Redis prefix, and N ``streamseg run`` processes started together, configured as a
deployment would be (the defaults; only the topics, group, prefix, its bucket count
sized as documented, and a free metrics port are set; ``-v``: a log line per
refinement, none per event). The default 12,000 customers make about 245,000 events.

What is measured, per run:

* **events/s** -- from the stored positions, polled every :data:`POLL_S`: startup and
  the group join are not throughput, so the window opens at the first write after the
  consumer group is ``Stable`` with N members that all hold partitions (the broker's
  own view, asked with ``DescribeGroups``), and closes when the stored positions reach
  the topic's end offsets. events/s = events written in the window / its duration.
* **CPU s per 1,000 events** -- each worker's user + system time from
  ``/proc/PID/stat`` at both ends of the same window, summed over workers, per 1,000
  events of the window. The broker's and Redis' CPU are not counted.
* **quality** -- once the end is reached the workers are left until they are quiet
  (their version, changes and events counters unchanged for :func:`quiet_seconds`, longer
  than a refinement interval: the idle refinement and the sweeps that follow it are
  part of the service's result), then stopped with SIGTERM; each must exit 0. On what
  the store then holds: the inertia of the stored vectors at the stored centroids over
  scikit-learn's batch k-means inertia (k = ``model.n_clusters``), and the adjusted Rand
  index of the stored segments against the simulator's archetypes.

Each figure's median over the repeats is reported per N, with its ratio to one
worker's, and the issue's targets are checked against those medians; since a median
hides single runs, the runs outside the quality bars are listed as warnings. Every run
is in the JSON, with its window, startup and settling times, each worker's events,
batches (events / batches: how full they were) and CPU, and the workers' CPU while
quiet (``idle_cpu``, a fixed cost per worker that CPU per event includes).
"""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from streamseg.config import ModelSettings, StoreSettings
from streamseg.store import open_store
from streamseg.store.redis import _delete_prefix
from streamseg_bench.kafka import _create_topics, _produce, machine
from streamseg_bench.measures import batch_kmeans_inertia, inertia
from streamseg_bench.simulate import SIXTY_DAYS, STREAM_END, simulate_stream
from streamseg_bench.worker import Worker

#: Seconds between two reads of the stored positions (the window's resolution).
POLL_S = 0.1
#: Guard of every wait: a failure guard, never a performance figure.
DEADLINE_S = 900.0
#: The issue's targets.
MIN_SPEEDUP_2 = 1.3
MAX_CPU_RATIO = 1.15
MAX_INERTIA_RATIO = 1.10
MIN_ARI = 0.9
MAX_QUALITY_LOSS = 0.02


class BenchError(RuntimeError):
    """A run that cannot be measured (a worker failed, a wait timed out)."""


def quiet_seconds() -> float:
    """How long the counters must stay unchanged: past the default refinement interval,
    so that the idle refinement (and the sweeps after it) are waited for."""
    return ModelSettings().refine_interval_s * 1.5 + 1.0


@dataclass
class Run:
    """One measured run of N workers."""

    workers: int
    repeat: int
    prefix: str  # the run's Redis prefix, consumer group and log folder
    events_per_second: float
    cpu_per_1000_events: float
    inertia_ratio: float
    ari: float
    window_events: int = 0
    window_seconds: float = 0.0
    cpu_seconds: float = 0.0
    startup_seconds: float = 0.0  # from the start to the group Stable with N members
    bench_cpu_seconds: float = 0.0  # this process's own CPU in the window (its polling)
    settle_seconds: float = 0.0  # from the end of the stream to quiet
    quiet: bool = True
    idle_cpu: float = 0.0  # CPU s per s of all workers while quiet (scraped twice a second)
    all_joined: bool = True  # all N workers held partitions in the window
    customers_stored: int = 0
    model_version: int = 0
    events_by_worker: list[int] = field(default_factory=list)
    batches_by_worker: list[int] = field(default_factory=list)  # events / batches: fill
    cpu_by_worker: list[float] = field(default_factory=list)  # CPU s in the window


# ------------------------------------------------------------------ pure parts --
def summarise(runs: Sequence[Run]) -> dict[int, dict[str, float]]:
    """Per worker count: the median of each figure over its runs, and the ratios of the
    events/s and CPU medians to one worker's (when one worker was measured)."""
    figures = ("events_per_second", "cpu_per_1000_events", "inertia_ratio", "ari")
    summary: dict[int, dict[str, float]] = {}
    for n in sorted({run.workers for run in runs}):
        mine = [run for run in runs if run.workers == n]
        summary[n] = {name: float(statistics.median(getattr(r, name) for r in mine))
                      for name in figures}
        summary[n]["runs"] = len(mine)
    if 1 in summary:
        for row in summary.values():
            row["speedup"] = row["events_per_second"] / summary[1]["events_per_second"]
            row["cpu_ratio"] = row["cpu_per_1000_events"] / summary[1]["cpu_per_1000_events"]
    return summary


def check_targets(summary: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    """The issue's targets on the medians: each with its value, limit and verdict. A
    target whose figures were not measured (no 1 or 2 workers) is left out."""
    checks: list[dict[str, Any]] = []

    def check(what: str, n: int, value: float, limit: float, at_least: bool) -> None:
        passed = value >= limit if at_least else value <= limit
        checks.append({"target": what, "workers": n, "value": round(value, 4),
                       "limit": limit, "passed": bool(passed)})

    one = summary.get(1)
    if one is not None and 2 in summary:
        check("events/s over one worker's >= 1.3", 2, summary[2]["speedup"],
              MIN_SPEEDUP_2, True)
    for n, row in summary.items():
        if n == 1:
            continue
        if one is not None:
            check("CPU per event over one worker's <= 1.15", n, row["cpu_ratio"],
                  MAX_CPU_RATIO, False)
        check("inertia ratio <= 1.10", n, row["inertia_ratio"], MAX_INERTIA_RATIO, False)
        check("ARI >= 0.9", n, row["ari"], MIN_ARI, True)
        if one is not None:
            check("inertia ratio at most 0.02 above one worker's", n,
                  row["inertia_ratio"] - one["inertia_ratio"], MAX_QUALITY_LOSS, False)
            check("ARI at most 0.02 below one worker's", n, one["ari"] - row["ari"],
                  MAX_QUALITY_LOSS, False)
    return checks


def format_table(summary: dict[int, dict[str, float]]) -> str:
    """The medians as a text table (ratios to one worker: '-' when not measured)."""
    def ratio(row: dict[str, float], name: str) -> str:
        return f"{row[name]:.2f}x" if name in row else "-"

    lines = [f"{'workers':>7}  {'events/s':>9}  {'vs 1':>6}  {'CPU s/1k ev':>11}  "
             f"{'vs 1':>6}  {'inertia ratio':>13}  {'ARI':>6}  {'runs':>4}"]
    for n, row in sorted(summary.items()):
        lines.append(f"{n:>7}  {row['events_per_second']:>9,.0f}  {ratio(row, 'speedup'):>6}  "
                     f"{row['cpu_per_1000_events']:>11.3f}  {ratio(row, 'cpu_ratio'):>6}  "
                     f"{row['inertia_ratio']:>13.4f}  {row['ari']:>6.4f}  {int(row['runs']):>4}")
    return "\n".join(lines)


def format_targets(checks: Sequence[dict[str, Any]]) -> str:
    """One line per target: PASS or FAIL, the worker count, the value against its limit."""
    return "\n".join(f"{'PASS' if c['passed'] else 'FAIL'}  {c['workers']} workers: "
                     f"{c['target']} (value {c['value']:.4f}, limit {c['limit']})"
                     for c in checks)


def warnings_of(runs: Sequence[Run], summary: dict[int, dict[str, float]]) -> list[str]:
    """What the medians hide: single runs outside the quality bars, runs that did not
    settle, and a one-worker reference that is itself outside the bars (the targets
    "no worse than one worker's" then compare to a poor reference)."""
    notes = [f"{r.workers} worker(s), repeat {r.repeat + 1}: inertia ratio "
             f"{r.inertia_ratio:.4f}, ARI {r.ari:.4f}, outside the bars"
             for r in runs if r.inertia_ratio > MAX_INERTIA_RATIO or r.ari < MIN_ARI]
    notes += [f"{r.workers} worker(s), repeat {r.repeat + 1}: not quiet within "
              f"{DEADLINE_S:.0f}s of the end; quality read anyway" for r in runs if not r.quiet]
    notes += [f"{r.workers} workers, repeat {r.repeat + 1}: the stream ended before all "
              "held partitions, measured from its first write (raise --customers)"
              for r in runs if not r.all_joined]
    one = summary.get(1)
    if one is not None and (one["inertia_ratio"] > MAX_INERTIA_RATIO or one["ari"] < MIN_ARI):
        notes.append("one worker's median quality is itself outside the bars: the targets "
                     "relative to it compare to a poor reference")
    return notes


# ------------------------------------------------------------------- one run --
def _counters(worker: Worker) -> tuple[float, ...]:
    samples = worker.metrics()
    changes = sum(v for k, v in samples.items()
                  if k.startswith("streamseg_segment_changes_total"))
    return (samples.get("streamseg_model_version", -1.0), changes,
            samples.get("streamseg_events_processed_total", -1.0),
            samples.get("streamseg_inactivity_rescored_total", -1.0),
            samples.get("streamseg_batch_duration_seconds_count", -1.0))


def _check_alive(workers: Sequence[Worker], what: str) -> None:
    for worker in workers:
        if not worker.alive():
            raise BenchError(f"a worker exited (code {worker.process.returncode}) while "
                             f"waiting for {what}\n{worker.log_tail()}")


def _group_ready(admin: KafkaAdminClient, group: str, n: int) -> bool:
    """The broker's view: the group is Stable with ``n`` members, each holding partitions."""
    described = admin.describe_groups([group]).get(group) or {}
    members = described.get("members") or []
    return described.get("group_state") == "Stable" and len(members) == n and all(
        any(t["partitions"] for t in (m.get("member_assignment") or {}).get(
            "assigned_partitions", [])) for m in members)


def _progress(store: Any, topic: str) -> int:
    prefix = f"kafka:{topic}:"
    return sum(offset for key, offset in store.positions().items() if key.startswith(prefix))


def _measure(workers: Sequence[Worker], store: Any, admin: KafkaAdminClient, group: str,
             topic: str, total: int, started: float) -> dict[str, Any]:
    """Poll until the stored positions reach ``total``; the window of the module docstring.
    A stream so short that it ends before all workers hold partitions is measured from
    its first write instead, with ``all_joined`` False (a warning says so)."""
    stable: float | None = None
    stable_done = 0
    first: tuple[float, int, list[float], float] | None = None  # the first write
    window: tuple[float, int, list[float], float] | None = None  # the first after Stable
    deadline = started + DEADLINE_S
    while True:
        _check_alive(workers, "the end of the topic")
        if stable is None and _group_ready(admin, group, len(workers)):
            stable, stable_done = time.monotonic(), _progress(store, topic)
        now, done = time.monotonic(), _progress(store, topic)
        if done >= total:
            cpu_end, own_end = [w.cpu_seconds() for w in workers], time.process_time()
            break
        mark = (now, done, [w.cpu_seconds() for w in workers], time.process_time())
        first = first or (mark if done > 0 else None)
        if window is None and stable is not None and done > stable_done:
            window = mark
        if now > deadline:
            raise BenchError(f"{done} of {total} events after {DEADLINE_S:.0f}s\n"
                             + "\n".join(w.log_tail() for w in workers))
        time.sleep(POLL_S)
    opened, base, cpu_start, own_start = window or first or (now, total, cpu_end, own_end)
    if now <= opened:
        raise BenchError("the stream ended before a second write: too few events to "
                         "measure (raise --customers)")
    return {"window_events": total - base, "window_seconds": now - opened,
            "cpu_seconds": sum(cpu_end) - sum(cpu_start), "all_joined": window is not None,
            "cpu_by_worker": [end - start for start, end in zip(cpu_start, cpu_end, strict=True)],
            "startup_seconds": (stable or now) - started,
            "bench_cpu_seconds": own_end - own_start}


def _settle(workers: Sequence[Worker]) -> tuple[float, bool, list[tuple[float, ...]], float]:
    """Wait until the workers' counters stay unchanged for :func:`quiet_seconds` (at
    most :data:`DEADLINE_S`); (seconds, quiet?, each worker's last counters, the CPU
    the workers spent while quiet, in CPU seconds per second: their cost when idle)."""
    started = time.monotonic()
    last: tuple[float, float, tuple[tuple[float, ...], ...]] | None = None
    while True:
        _check_alive(workers, "the workers to settle")
        now, cpu = time.monotonic(), sum(w.cpu_seconds() for w in workers)
        counters = tuple(_counters(w) for w in workers)
        if last is None or last[2] != counters:
            last = (now, cpu, counters)
        elif now - last[0] >= quiet_seconds() or now - started > DEADLINE_S:
            quiet = now - last[0] >= quiet_seconds()
            return last[0] - started, quiet, list(counters), (cpu - last[1]) / (now - last[0])
        time.sleep(0.5)


def _stop(workers: Sequence[Worker]) -> None:
    """SIGTERM every worker; each must exit 0 (they finish their batch and write it)."""
    for worker in workers:
        if worker.alive():
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            code = worker.process.wait(120)
        except subprocess.TimeoutExpired:
            raise BenchError(f"a worker did not exit within 120s of SIGTERM\n"
                             f"{worker.log_tail()}") from None
        if code != 0:
            raise BenchError(f"a worker exited {code} after SIGTERM\n{worker.log_tail()}")


def _quality(store: Any, truth: dict[str, str], seed: int) -> tuple[float, float, int, int]:
    """(inertia ratio, ARI, customers stored, model version) of what the store holds."""
    from sklearn.metrics import adjusted_rand_score

    states = {s.customer_id: s for s in store.iter_customers()}
    model = (store.load_model() or {})["model"]
    centroids = np.asarray(model["centroids"], dtype=np.float64)
    x = np.array([s.vector for s in states.values() if s.vector is not None])
    ratio = inertia(x, centroids) / batch_kmeans_inertia(x, k=len(centroids), seed=seed)
    ids = sorted(truth)
    segments = [states[i].segment if i in states and states[i].segment is not None else -1
                for i in ids]
    ari = float(adjusted_rand_score([truth[i] for i in ids], segments))
    return ratio, ari, len(states), int(model.get("version") or 0)


def run_once(n: int, repeat: int, *, kafka: str, redis_url: str, topic: str, total: int,
             truth: dict[str, str], partitions: int, seed: int, folder: Path,
             admin: KafkaAdminClient) -> Run:
    """N workers on the whole topic from a fresh group and prefix; one :class:`Run`."""
    tag = f"scale-{n}w{repeat}-{uuid.uuid4().hex[:8]}"
    changes, dlq = f"{tag}-changes", f"{tag}-dlq"
    _create_topics(kafka, [changes, dlq], partitions)
    config: dict[str, Any] = {
        "source": {"uri": f"kafka://{kafka}/{topic}"},
        "kafka": {"bootstrap_servers": kafka, "group_id": tag, "client_id": tag},
        # Bucket count as config.py documents it: about customers / 50.
        "store": {"uri": redis_url, "redis_prefix": tag,
                  "redis_buckets": max(1, len(truth) // 50)},
        "sinks": {"changes": f"kafka://{kafka}/{changes}",
                  "dead_letter": f"kafka://{kafka}/{dlq}"},
    }
    workers: list[Worker] = []
    store = None
    try:
        started = time.monotonic()
        for i in range(n):  # one by one: those started are stopped if the next fails
            workers.append(Worker(folder / tag / f"w{i}", config))
        store = open_store(StoreSettings(**config["store"]))
        measured = _measure(workers, store, admin, tag, topic, total, started)
        settle, quiet, counters, idle_cpu = _settle(workers)
        _stop(workers)
        ratio, ari, stored, version = _quality(store, truth, seed)
    finally:
        for worker in workers:
            if worker.alive():
                worker.process.kill()
                worker.process.wait(30)
        if store is not None:
            store.close()
        client = redis.Redis.from_url(redis_url)
        _delete_prefix(client, tag)
        client.close()
        with contextlib.suppress(Exception):
            admin.delete_groups([tag])
        with contextlib.suppress(Exception):
            admin.delete_topics([changes, dlq])
    seconds, window_events = measured["window_seconds"], measured["window_events"]
    return Run(
        workers=n, repeat=repeat, prefix=tag, events_per_second=window_events / seconds,
        cpu_per_1000_events=measured["cpu_seconds"] / window_events * 1000,
        inertia_ratio=ratio, ari=ari, window_events=window_events, window_seconds=seconds,
        cpu_seconds=measured["cpu_seconds"], startup_seconds=measured["startup_seconds"],
        bench_cpu_seconds=measured["bench_cpu_seconds"], all_joined=measured["all_joined"],
        settle_seconds=settle, quiet=quiet, idle_cpu=idle_cpu, customers_stored=stored,
        model_version=version,
        events_by_worker=[int(c[2]) for c in counters],
        batches_by_worker=[int(c[4]) for c in counters],
        cpu_by_worker=[round(c, 2) for c in measured["cpu_by_worker"]])


# -------------------------------------------------------------------- the bench --
def _end_offsets(servers: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        consumer.close()


def run(customers: int = 12_000, partitions: int = 8, workers: Sequence[int] = (1, 2, 4),
        repeats: int = 3, kafka: str = "127.0.0.1:9092",
        redis_url: str = "redis://127.0.0.1:6379/0", seed: int = 0,
        logs: Path | None = None,
        say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """The whole benchmark (module docstring); ``say`` reports progress; the workers'
    configs and logs are kept in ``logs`` if given. Returns the JSON-ready result:
    machine, parameters, the medians, the targets, warnings and every run."""
    if max(workers) > partitions:
        raise BenchError(f"{max(workers)} workers need at least as many partitions "
                         f"(--partitions {partitions})")
    events, truth = simulate_stream(customers=customers, seed=seed, archetypes=SIXTY_DAYS,
                                    end=STREAM_END)
    topic = f"scale-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    runs: list[Run] = []
    try:
        _create_topics(kafka, [topic], partitions)
        say(f"producing {len(events):,} events of {customers:,} customers to {topic}")
        produce_started = time.monotonic()
        _produce(kafka, topic, [(e["customer_id"].encode(), json.dumps(e).encode())
                                 for e in events])
        produce_seconds = time.monotonic() - produce_started
        ends = _end_offsets(kafka, topic)
        total = sum(ends.values())
        if total != len(events):
            raise BenchError(f"{topic} holds {total} events, {len(events)} were produced")
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="streamseg-scale-") as tmp:
            for repeat in range(repeats):
                for n in workers:
                    one = run_once(n, repeat, kafka=kafka, redis_url=redis_url, topic=topic,
                                   total=total, truth=truth, partitions=partitions,
                                   seed=seed, folder=logs or Path(tmp), admin=admin)
                    runs.append(one)
                    say(f"repeat {repeat + 1}/{repeats}, {n} worker(s): "
                        f"{one.events_per_second:,.0f} events/s, "
                        f"{one.cpu_per_1000_events:.3f} CPU s/1k events, inertia ratio "
                        f"{one.inertia_ratio:.4f}, ARI {one.ari:.4f}"
                        + ("" if one.quiet else " (did not settle)"))
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])
        admin.close()
    summary = summarise(runs)
    return {
        "machine": machine(),
        "parameters": {"customers": customers, "events": total, "partitions": partitions,
                       "workers": list(workers), "repeats": repeats, "seed": seed,
                       "archetypes": "SIXTY_DAYS", "poll_seconds": POLL_S,
                       "quiet_seconds": quiet_seconds(),
                       "produce_seconds": round(produce_seconds, 1)},
        "summary": {str(n): {k: round(v, 4) for k, v in row.items()}
                    for n, row in summary.items()},
        "targets": check_targets(summary),
        "warnings": warnings_of(runs, summary),
        "runs": [{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(r).items()}
                 for r in runs],
    }
