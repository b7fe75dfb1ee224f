"""The limits of one Redis for the store (``streamseg bench redis``).

Two figures, for sizing:

a. **Customers per GiB.** ``N`` realistic customers (:mod:`.redis_workload`) are written
   through :meth:`RedisStore.write_batch` as workers write them: batches of
   ``source.batch_size`` over 12 partitions, each with its partitions' counters, model
   shares, the sampled customers' rows (``model.reservoir_size`` over all partitions)
   and the outbox of the batch's change events. Redis ``used_memory`` is read before
   (``m0``) and after (``m1``); then the parts that do not grow with customers -- the
   model shares, the sample, the outboxes, the metadata -- are deleted and it is read
   again (``m2``). Bytes per customer: ``(m1 - m0) / N`` with that fixed overhead
   amortised over the ``N`` customers, ``(m2 - m0) / N`` without it (what every further
   customer adds); customers per GiB = ``2**30 / bytes``. Buckets default to ``N / 50``,
   as :mod:`streamseg.store.redis.keys` recommends: the figure holds for larger
   populations whose bucket count is sized the same way.

b. **Customer writes per second.** ``P`` writer processes (1, 2, 4: as several workers)
   each own distinct partitions (every ``P``-th of the 12) and write batches of ``B``
   customers -- existing customers again with one more purchase, as a live stream does
   -- for ``T`` seconds. Two modes:

   * ``store``: each batch is built and written through ``write_batch`` (encoding and
     all), as a worker's store does; a worker also parses, scores and publishes, so the
     real service offers Redis less load per worker than this.
   * ``replay``: the writer first encodes its batches with the same code (the script
     calls are recorded, not sent), then only sends the recorded script calls: the
     least client work per write, to load Redis as hard as a few client processes can.

   For each run: customer writes/s, batches/s, write latency, and redis-server's CPU
   from ``INFO cpu`` (its main thread, which runs every command: Redis executes commands
   on one thread) as CPU seconds per 1,000 customer writes and as utilisation of one
   core. Near 100 % of one core, that is the limit of one Redis; below it, the limit
   is about ``1000 / (CPU s per 1,000 writes)`` writes/s, if clients could offer that
   much. The writers' own CPU and the machine's (``/proc/stat``, every core, other
   processes included) show whether the clients or the machine ran out first.

Use a Redis nothing else writes to: by default a private ``redis-server`` (no
persistence) is started on a free port and stopped afterwards; with ``--redis URL`` the
keys go under a fresh prefix that is deleted afterwards, but any other traffic there
counts in ``used_memory`` and in Redis's CPU.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from streamseg.store.redis import RedisStore
from streamseg_bench.redis_workload import Workload, generate_states
from streamseg_bench.redis_writers import measure_writes

__all__ = ["bytes_per", "measure_memory", "parse_counts", "parse_options", "private_redis",
           "reading", "run", "table"]

GIB = 2**30


# -- the Redis -------------------------------------------------------------------------
@contextmanager
def private_redis(binary: str = "redis-server") -> Iterator[str]:
    """A redis-server of our own on a free loopback port, without persistence; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="streamseg-bench-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(f"{binary} exited with {process.returncode}") from None
                time.sleep(0.1)
        client.close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def server_facts(client: redis.Redis) -> dict[str, Any]:
    """Version, allocator and the encoding thresholds the layout relies on."""
    facts: dict[str, Any] = {
        "version": client.info("server").get("redis_version"),
        "allocator": client.info("memory").get("mem_allocator")}
    try:
        for name in ("hash-max-listpack-entries", "hash-max-listpack-value",
                     "zset-max-listpack-entries"):
            facts.update({str(k): v for k, v in client.config_get(name).items()})
    except redis.RedisError:
        pass  # CONFIG may be disabled (managed Redis)
    return facts


# -- a. memory ---------------------------------------------------------------------------
def bytes_per(total: int, customers: int) -> dict[str, float]:
    """Bytes per customer and customers per GiB of a growth of ``total`` bytes.

    >>> bytes_per(250_000, 1000)
    {'bytes_per_customer': 250.0, 'customers_per_gib': 4294967}
    """
    per = total / max(1, customers)
    return {"bytes_per_customer": round(per, 1),
            "customers_per_gib": int(GIB / per) if per > 0 else 0}


def measure_memory(url: str, prefix: str, customers: int, batch: int, buckets: int,
                   sample_size: int, seed: int) -> tuple[dict[str, Any], Workload]:
    """Write ``customers`` as workers do under ``prefix`` and measure (see the module
    docstring); the customers stay for the write benchmark."""
    states = generate_states(customers, seed=seed)
    workload = Workload.of(states, sample_size=sample_size, seed=seed)
    client = redis.Redis.from_url(url)
    m0 = used_memory(client)
    store = RedisStore.from_uri(url, prefix=prefix, buckets=buckets)
    try:
        parts = {name: store.take_partition(name)
                 for name in sorted({state.partition or "" for state in states})}
        for start in range(0, len(states), batch):
            store.write_batch(workload.first_batch(parts, states[start:start + batch]))
        m1 = used_memory(client)
        by_kind = memory_by_kind(client, prefix)
        ids = {name: store._partitions.id_of(name) for name in parts}
        pipe = client.pipeline(transaction=False)
        for pid in ids.values():
            pipe.hdel(f"{prefix}:part:{pid}", "m")
            pipe.delete(f"{prefix}:sample:{pid}", f"{prefix}:outbox:{pid}")
        pipe.delete(f"{prefix}:meta")
        pipe.execute()
        m2 = used_memory(client)
        info = client.info("memory")
    finally:
        store.close()
    return {
        "customers": customers, "batch": batch, "buckets": buckets,
        "partitions": len(parts), "sampled": len(workload.sampled),
        "used_memory_before": m0, "used_memory_after": m1,
        "used_memory_without_fixed": m2, "used_memory_rss": int(info["used_memory_rss"]),
        # Lua's heap, outside used_memory: it grows with the largest script call (one
        # batch's arguments), not with customers.
        "lua_vm_bytes": int(info.get("used_memory_vm_eval", info.get("used_memory_lua", 0))),
        "fixed_overhead_bytes": m1 - m2,
        "with_fixed_overhead": bytes_per(m1 - m0, customers),
        "without_fixed_overhead": bytes_per(m2 - m0, customers),
        "memory_usage_by_kind": by_kind,
    }, workload


def memory_by_kind(client: redis.Redis, prefix: str) -> dict[str, int]:
    """``MEMORY USAGE`` summed per kind of key of ``prefix`` (an estimate per key, for
    the breakdown only: the totals above are ``used_memory``)."""
    kinds: dict[str, int] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = key.decode()[len(prefix) + 1:].split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + int(client.memory_usage(key, samples=0) or 0)
    return dict(sorted(kinds.items()))


# -- the whole benchmark -------------------------------------------------------------------
def parse_options(writers: str, batches: str | None, modes: str
                  ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """The CLI's comma-separated lists; ``batches`` None: the service's default
    ``source.batch_size`` and 100. Raises ``ValueError``.

    >>> parse_options("1,2,4", None, "store")
    ((1, 2, 4), (500, 100), ('store',))
    """
    from streamseg.config import SourceSettings

    default = SourceSettings.model_fields["batch_size"].default
    kinds = tuple(mode.strip() for mode in modes.split(",") if mode.strip())
    if not kinds or set(kinds) - {"store", "replay"}:
        raise ValueError(f"modes: store and/or replay, got {modes!r}")
    return (parse_counts(writers, "writers"),
            parse_counts(batches or f"{default},100", "batches"), kinds)


def parse_counts(text: str, name: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), each >= 1; raises ``ValueError``."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(f"{name}: comma-separated whole numbers >= 1, got {text!r}")
    return values


# -------------------------------------------------------------------
def run(customers: int = 100_000, seconds: float = 10.0, writers: tuple[int, ...] = (1, 2, 4),
        batches: tuple[int, ...] = (500, 100), modes: tuple[str, ...] = ("store", "replay"),
        redis_url: str | None = None, buckets: int | None = None, sample_size: int = 5000,
        seed: int = 7) -> dict[str, Any]:
    """Both measurements on a private redis-server (or on ``redis_url``); see the module
    docstring. The first of ``batches`` is the batch of the memory measurement."""
    if redis_url is None:
        with private_redis() as url:
            return run(customers, seconds, writers, batches, modes, url, buckets,
                       sample_size, seed) | {"redis": "private redis-server"}
    buckets = buckets or max(1, round(customers / 50))
    prefix = f"bench-limits-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_url)
    result: dict[str, Any] = {"redis": redis_url, "prefix": prefix,
                              "server": server_facts(client), "cores": os.cpu_count()}
    try:
        memory, workload = measure_memory(redis_url, prefix, customers, batches[0],
                                          buckets, sample_size, seed)
        result["memory"] = memory
        result["writes"] = [
            measure_writes(redis_url, prefix, buckets, customers, w, b, seconds,
                           mode == "replay", workload)
            for mode in modes for b in batches for w in writers]
        result["reading"] = reading(result["writes"])
    finally:
        RedisStore(client, prefix=prefix, buckets=buckets).delete_all()
        client.close()
    return result


def reading(writes: list[dict[str, Any]]) -> dict[str, Any]:
    """What the runs say of the limit: whether Redis's main thread reached a full core
    (else the writers or the machine stopped first, and the writes/s measured are lower
    bounds), the most writes/s measured, and per batch size the range of the writes/s
    at which Redis would use a full core, from its CPU per write.

    >>> reading([{"batch": 500, "writes_per_s": 9000, "redis_cpu_pct": 40.0,
    ...           "redis_bound_writes_per_s": 70000},
    ...          {"batch": 500, "writes_per_s": 30000, "redis_cpu_pct": 50.0,
    ...           "redis_bound_writes_per_s": 90000}])
    {'redis_saturated': False, 'redis_max_cpu_pct': 50.0, 'max_writes_per_s': 30000, \
'writes_per_s_at_one_redis_core': {'500': [70000, 90000]}}
    """
    bounds: dict[str, list[int]] = {}
    for run in writes:
        if run["redis_bound_writes_per_s"]:
            bounds.setdefault(str(run["batch"]), []).append(run["redis_bound_writes_per_s"])
    top = max((run["redis_cpu_pct"] for run in writes), default=0.0)
    return {"redis_saturated": top >= 90.0, "redis_max_cpu_pct": top,
            "max_writes_per_s": max((run["writes_per_s"] for run in writes), default=0),
            "writes_per_s_at_one_redis_core": {
                batch: [min(values), max(values)] for batch, values in bounds.items()}}


def table(result: dict[str, Any]) -> str:
    """The figures as text tables."""
    memory = result["memory"]
    lines = [f"Redis {result['server'].get('version')} ({result['redis']}), "
             f"{memory['customers']:,} customers, {memory['buckets']} buckets, "
             f"{result['cores']} cores",
             "",
             f"{'memory':<34}{'bytes/customer':>16}{'customers/GiB':>16}"]
    for label, key in (("with fixed overhead amortised", "with_fixed_overhead"),
                       ("without (each further customer)", "without_fixed_overhead")):
        lines.append(f"{label:<34}{memory[key]['bytes_per_customer']:>16,.1f}"
                     f"{memory[key]['customers_per_gib']:>16,}")
    lines += [f"fixed overhead (shares, sample, outboxes, meta): "
              f"{memory['fixed_overhead_bytes']:,} bytes; used_memory "
              f"{memory['used_memory_after'] / 2**20:,.1f} MiB after, RSS "
              f"{memory['used_memory_rss'] / 2**20:,.1f} MiB, Lua heap (not in used_memory) "
              f"{memory['lua_vm_bytes'] / 2**20:,.1f} MiB", ""]
    head = (f"{'mode':<7}{'P':>3}{'B':>5}{'writes/s':>10}{'batch/s':>9}{'p50 ms':>8}"
            f"{'p99 ms':>8}{'redis CPU':>10}{'CPU s/1k':>9}{'1k/CPU':>9}{'clients':>9}"
            f"{'machine':>9}")
    lines.append(head)
    for r in result["writes"]:
        lines.append(
            f"{r['mode']:<7}{r['writers']:>3}{r['batch']:>5}{r['writes_per_s']:>10,}"
            f"{r['batches_per_s']:>9,.1f}{r['latency_ms_p50'] or 0:>8.2f}"
            f"{r['latency_ms_p99'] or 0:>8.2f}{r['redis_cpu_pct']:>9.1f}%"
            f"{r['redis_cpu_s_per_1000_writes']:>9.4f}{r['redis_bound_writes_per_s'] or 0:>9,}"
            f"{r['clients_cpu_pct']:>8.1f}%{r['machine_busy_pct'] or 0:>8.1f}%")
    lines.append("redis CPU: redis-server main thread, % of one core; CPU s/1k: its CPU "
                 "seconds per 1,000 customer writes; 1k/CPU: writes/s at 100 % of one core "
                 "(= 1000 / CPU s/1k); clients: the writers' CPU, % of one core; machine: "
                 "every core busy, other processes included.")
    read = result.get("reading")
    if read:
        lines += ["", f"Redis's main thread peaked at {read['redis_max_cpu_pct']:.1f} % of "
                  "one core: " + ("Redis was the limit." if read["redis_saturated"] else
                                  "the writers or the machine ran out first; the writes/s "
                                  "above are lower bounds for Redis.")]
        for batch, (low, high) in read["writes_per_s_at_one_redis_core"].items():
            lines.append(f"  batches of {batch}: one full Redis core at about {low:,} to "
                         f"{high:,} customer writes/s (from its CPU per write)")
    return "\n".join(lines)

