"""Part b of ``bench redis`` (:mod:`.redis_limits`): writer processes and Redis's CPU.

:func:`measure_writes` starts ``P`` writer processes (``fork``: each inherits the
:class:`~streamseg_bench.redis_workload.Workload` without pickling it). Each takes its
partitions (every ``P``-th of the 12, fencing any earlier writer), loads its customers
from the store, prepares (in ``replay`` mode: encodes its batches, recording the script
calls instead of sending them) and reports ready. Once all are ready the parent reads
redis-server's CPU (``INFO cpu``) and the machine's (``/proc/stat``) and lets them go;
each writes for ``T`` seconds and reports what it wrote, its batch latencies and its
own CPU time; the parent reads the CPU again. :func:`summarize` turns that into the
figures of one run.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from typing import Any

import numpy as np
import redis

from streamseg.store.redis import RedisStore
from streamseg.store.redis.scripts import FENCED_EXEC, Script
from streamseg_bench.redis_workload import PARTITIONS, Workload, owned_partitions

__all__ = ["machine_ticks", "measure_writes", "redis_cpu", "summarize"]

#: Customers a replay writer encodes up front (it sends them over and over).
REPLAY_CUSTOMERS = 20_000


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds redis-server's main thread (every command) has used; the whole
    process's where Redis does not report its main thread."""
    info = client.info("cpu")
    if "used_cpu_user_main_thread" in info:
        return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot, from ``/proc/stat`` ((0, 0) when
    unreadable)."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _writer(url: str, prefix: str, buckets: int, customers: int, writer: int, writers: int,
            batch: int, seconds: float, replay: bool, workload: Workload, go: Any,
            out: Any) -> None:
    """One writer process: take its partitions, load its customers, wait for ``go``,
    write for ``seconds``, put its figures on ``out``."""
    try:
        store = RedisStore.from_uri(url, prefix=prefix, buckets=buckets)
        names = owned_partitions(writer, writers)
        parts = {name: store.take_partition(name) for name in names}
        mine = {int(name.rsplit(":", 1)[-1]) for name in names}
        ids = [f"cust-{n:06d}" for n in range(customers) if n % PARTITIONS in mine]
        rng = np.random.default_rng(1000 + writer)
        ids = [ids[int(i)] for i in rng.permutation(len(ids))]
        states = []
        for start in range(0, len(ids), 1000):
            found = store.get_many(ids[start:start + 1000])
            states += [found[cid] for cid in ids[start:start + 1000]]
        calls = _record(store, workload, parts, states, batch) if replay else []
        script = Script(store._redis, FENCED_EXEC)
        out.put(("ready", writer, None))
        go.wait()
        cpu, began = time.process_time(), time.perf_counter()
        deadline = began + seconds
        latencies: list[float] = []
        written = at = 0
        while time.perf_counter() < deadline:
            if replay:
                keys, args, count = calls[len(latencies) % len(calls)]
                t0 = time.perf_counter()
                if int(script(keys, args)[0]) != 0:
                    raise RuntimeError("fenced: another process took a partition")
            else:
                chunk = states[at:at + batch]
                write = workload.next_batch(parts, chunk)
                states[at:at + batch] = chunk
                at = at + batch if at + batch < len(states) else 0
                count = len(chunk)
                t0 = time.perf_counter()
                store.write_batch(write)
            latencies.append(time.perf_counter() - t0)
            written += count
        elapsed = time.perf_counter() - began
        out.put(("done", writer, {
            "customers": written, "batches": len(latencies), "seconds": elapsed,
            "cpu_s": time.process_time() - cpu, "latencies": latencies}))
        store.close()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", writer, traceback.format_exc()))


def _record(store: RedisStore, workload: Workload, parts: dict[str, Any],
            states: list[Any], batch: int) -> list[tuple[list[str], list[Any], int]]:
    """The script calls of the batches of up to :data:`REPLAY_CUSTOMERS` customers,
    encoded by ``write_batch`` but not sent."""
    calls: list[tuple[list[str], list[Any], int]] = []
    sent = store._write

    def keep(keys: list[str], args: list[Any]) -> list[int]:
        calls.append((list(keys), list(args), count))
        return [0]

    store._write = keep  # type: ignore[assignment]
    try:
        for start in range(0, min(len(states), REPLAY_CUSTOMERS), batch):
            chunk = states[start:start + batch]
            count = len(chunk)
            store.write_batch(workload.next_batch(parts, chunk))
    finally:
        store._write = sent
    return calls


def measure_writes(url: str, prefix: str, buckets: int, customers: int, writers: int,
                   batch: int, seconds: float, replay: bool, workload: Workload
                   ) -> dict[str, Any]:
    """One run: ``writers`` processes writing batches of ``batch`` for ``seconds``."""
    context = multiprocessing.get_context("fork")
    go, out = context.Event(), context.Queue()
    processes = [context.Process(target=_writer, daemon=True, args=(
        url, prefix, buckets, customers, w, writers, batch, seconds, replay, workload, go, out))
        for w in range(writers)]
    for process in processes:
        process.start()
    client = redis.Redis.from_url(url)
    try:
        _collect(out, processes, "ready")
        cpu0, ticks0, began = redis_cpu(client), machine_ticks(), time.perf_counter()
        go.set()
        results = _collect(out, processes, "done", timeout=seconds + 120)
        wall = time.perf_counter() - began
        cpu1, ticks1 = redis_cpu(client), machine_ticks()
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
        client.close()
    return summarize(writers, batch, replay, wall, cpu1 - cpu0, results,
                     (ticks1[0] - ticks0[0], ticks1[1] - ticks0[1]))


def _collect(out: Any, processes: list[Any], what: str, timeout: float = 600.0
             ) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(results) < len(processes):
        try:
            kind, writer, value = out.get(timeout=1.0)
        except queue.Empty:
            if time.monotonic() > deadline or not all(p.is_alive() for p in processes):
                raise RuntimeError(f"writers did not report {what!r}") from None
            continue
        if kind == "error":
            raise RuntimeError(f"writer {writer} failed:\n{value}")
        results.append(value or {})
    return results


def summarize(writers: int, batch: int, replay: bool, wall: float, redis_cpu_s: float,
              results: list[dict[str, Any]], ticks: tuple[int, int]) -> dict[str, Any]:
    """The figures of one run from the writers' reports and the CPU read around it.

    >>> r = summarize(2, 500, False, 10.0, 4.0, [
    ...     {"customers": 30_000, "batches": 60, "seconds": 10.0, "cpu_s": 9.0,
    ...      "latencies": [0.01] * 60},
    ...     {"customers": 10_000, "batches": 20, "seconds": 10.0, "cpu_s": 9.0,
    ...      "latencies": [0.03] * 20}], (180, 200))
    >>> r["writes_per_s"], r["redis_cpu_s_per_1000_writes"], r["redis_cpu_pct"]
    (4000, 0.1, 40.0)
    >>> r["redis_bound_writes_per_s"], r["clients_cpu_pct"], r["machine_busy_pct"]
    (10000, 180.0, 90.0)
    >>> r["clients_cpu_s_per_1000_writes"], r["latency_ms_p50"], r["latency_ms_p99"]
    (0.45, 10.0, 30.0)
    """
    written = sum(r["customers"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    clients_cpu = sum(r["cpu_s"] for r in results)
    per_1000 = redis_cpu_s / written * 1000 if written else float("nan")
    return {
        "mode": "replay" if replay else "store", "writers": writers, "batch": batch,
        "seconds": round(wall, 2), "customer_writes": written,
        "writes_per_s": round(written / wall),
        "batches_per_s": round(sum(r["batches"] for r in results) / wall, 1),
        "latency_ms_p50": _ms(latencies, 0.5), "latency_ms_p99": _ms(latencies, 0.99),
        "redis_cpu_s_per_1000_writes": round(per_1000, 4),
        "redis_cpu_pct": round(100 * redis_cpu_s / wall, 1),
        "redis_bound_writes_per_s": round(1000 / per_1000) if per_1000 > 0 else None,
        "clients_cpu_pct": round(100 * clients_cpu / wall, 1),
        "clients_cpu_s_per_1000_writes": round(clients_cpu / written * 1000, 4)
        if written else None,
        "machine_busy_pct": round(100 * ticks[0] / ticks[1], 1) if ticks[1] else None,
    }


def _ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
