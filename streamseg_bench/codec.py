"""Bytes and time per packed customer state: the Redis store's codec against msgpack and msgspec.

Run ``python -m streamseg_bench.codec [CUSTOMERS] [--redis URL]`` (default 5,000
simulated customers; needs the ``test`` extra for msgpack and msgspec). It prints, per
codec, the bytes of a packed state (mean and max), the 64-byte chunks a customer then
takes in its bucket hash, the share of customers over the three chunks
``RedisStore.get_many`` reads in its first round trip, and the encode + decode time per
state (process CPU time, best of a few runs: other processes on the machine inflate
wall-clock time, much less CPU time). With ``--redis`` it also measures the Redis
memory per customer each codec's lengths would take (:func:`memory_per_customer`:
20,000 customers written to that Redis under a fresh prefix and deleted again; other
writers to that Redis meanwhile distort it).

Every codec packs the same content, what the store keeps in the chunks of a customer
(everything but the readable record): ``next_rescore_at``, the features, the vector,
the applied offsets and the recent event-id hashes, on the states of
:func:`streamseg_bench.redis_memory.realistic_states`. Encoding starts from a
:class:`~streamseg.core.state.CustomerState` and decoding ends with the same Python
values (a :class:`~streamseg.core.features.CustomerFeatures`, lists, a dict), so the
conversions a library needs are counted; every codec is checked to give back exactly
what it was given.

* ``streamseg``: :func:`streamseg.store.redis.codec._pack_state` / ``_unpack_state``.
* ``msgpack dict``: ``msgpack.packb`` of the state's dict (``CustomerState.to_dict``
  without the readable fields), stream names as keys.
* ``msgspec Struct``: ``msgspec.msgpack`` of typed Structs (fields by name).
* ``msgspec array``: the same Structs with ``array_like=True`` (fields by position),
  the most compact layout msgspec offers.

msgpack and msgspec are imported when a measurement runs: they are benchmark
dependencies, never the service's.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from streamseg.core.features import CustomerFeatures
from streamseg.store.base import CustomerState
from streamseg.store.redis.codec import _pack_state, _unpack_state
from streamseg.store.redis.keys import _CHUNK_BYTES, _CHUNKS_READ
from streamseg_bench.redis_memory import realistic_states

__all__ = ["CodecFigures", "measure", "measure_codecs", "memory_per_customer"]

#: What a decoder gives back: (next_rescore_at, features, vector, applied, recent_ids).
Decoded = tuple[float | None, CustomerFeatures, list[float] | None, dict[str, int], list[int]]
#: A decoder is given the bytes and the customer's ``updated_at``, which the store reads
#: with them from the readable record (the store's codec refers to it; the others do not).
Decoder = Callable[[bytes, float | None], Decoded]


@dataclass(frozen=True)
class CodecFigures:
    """What one codec costs per state."""

    codec: str
    mean_bytes: float
    max_bytes: int
    mean_chunks: float
    over_first_read: float  # share of states longer than the chunks read up front
    microseconds: float  # encode + decode CPU time, per state
    exact: bool  # every state came back exactly
    redis_bytes: float | None = None  # Redis memory per customer, if measured

    def line(self) -> str:
        text = (f"{self.codec:<16} {self.mean_bytes:7.1f} {self.max_bytes:5d} "
                f"{self.mean_chunks:6.2f} {self.over_first_read:8.1%} "
                f"{self.microseconds:8.2f}  {'yes' if self.exact else 'NO':<5}")
        if self.redis_bytes is None:
            return text.rstrip()
        return f"{text} {self.redis_bytes:8.1f}"


HEADER = (f"{'codec':<16} {'bytes':>7} {'max':>5} {'chunks':>6} {'>3 chunks':>8} "
          f"{'us/state':>8}  exact")
MEMORY_HEADER = f" {'Redis B':>8}"


def _expected(state: CustomerState) -> Decoded:
    return (state.next_rescore_at, state.features, state.vector, state.applied,
            state.recent_ids)


def _streamseg(states: list[CustomerState]) -> tuple[Callable[[CustomerState], bytes],
                                                     Decoder]:
    names = sorted({name for state in states for name in state.applied})
    ids = {name: index + 1 for index, name in enumerate(names)}
    by_id = {index: name for name, index in ids.items()}

    def encode(state: CustomerState) -> bytes:
        return _pack_state(state, ids)

    def decode(data: bytes, updated_at: float | None) -> Decoded:
        return _unpack_state("", data, by_id.__getitem__, updated_at)

    return encode, decode


def _msgpack_dict() -> tuple[Callable[[CustomerState], bytes], Decoder]:
    import msgpack  # type: ignore[import-untyped,unused-ignore]

    def encode(state: CustomerState) -> bytes:
        return bytes(msgpack.packb({
            "next_rescore_at": state.next_rescore_at, "features": state.features.to_dict(),
            "vector": state.vector, "applied": state.applied, "recent_ids": state.recent_ids,
        }))

    def decode(data: bytes, updated_at: float | None) -> Decoded:
        value = msgpack.unpackb(data)
        return (value["next_rescore_at"], CustomerFeatures(**value["features"]),
                value["vector"], value["applied"], value["recent_ids"])

    return encode, decode


def _msgspec(array_like: bool) -> tuple[Callable[[CustomerState], bytes],
                                        Decoder]:
    import msgspec

    # defstruct rather than class statements: with postponed annotations msgspec could
    # not resolve the type of a field that names a class local to this function.
    Features = msgspec.defstruct("Features", [
        ("first_purchase", float | None), ("last_purchase", float | None),
        ("reference_time", float | None), ("decayed_orders", float),
        ("decayed_spend", float), ("orders", int), ("total_spend", float),
        ("refunded", float), ("refunds", int),
    ], array_like=array_like)
    Packed = msgspec.defstruct("Packed", [
        ("next_rescore_at", float | None), ("features", Features),
        ("vector", list[float] | None), ("applied", dict[str, int]),
        ("recent_ids", list[int]),
    ], array_like=array_like)

    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(Packed)

    def encode(state: CustomerState) -> bytes:
        f = state.features
        return encoder.encode(Packed(
            state.next_rescore_at,
            Features(f.first_purchase, f.last_purchase, f.reference_time, f.decayed_orders,
                     f.decayed_spend, f.orders, f.total_spend, f.refunded, f.refunds),
            state.vector, state.applied, state.recent_ids,
        ))

    def decode(data: bytes, updated_at: float | None) -> Decoded:
        value: Any = decoder.decode(data)
        f = value.features
        return (value.next_rescore_at,
                CustomerFeatures(f.first_purchase, f.last_purchase, f.reference_time,
                                 f.decayed_orders, f.decayed_spend, f.orders, f.total_spend,
                                 f.refunded, f.refunds),
                value.vector, value.applied, value.recent_ids)

    return encode, decode


def measure(name: str, encode: Callable[[CustomerState], bytes],
            decode: Decoder, states: list[CustomerState],
            repeat: int = 5) -> CodecFigures:
    """The figures of one codec over ``states`` (CPU time: the best of ``repeat`` runs)."""
    packed = [encode(state) for state in states]
    exact = all(decode(data, state.updated_at) == _expected(state)
                for data, state in zip(packed, states, strict=True))
    best = math.inf
    for _ in range(repeat):
        start = time.process_time()
        for state in states:
            decode(encode(state), state.updated_at)
        best = min(best, time.process_time() - start)
    sizes = [len(data) for data in packed]
    chunks = [-(-size // _CHUNK_BYTES) for size in sizes]
    return CodecFigures(
        codec=name,
        mean_bytes=sum(sizes) / len(sizes),
        max_bytes=max(sizes),
        mean_chunks=sum(chunks) / len(chunks),
        over_first_read=sum(c > _CHUNKS_READ for c in chunks) / len(chunks),
        microseconds=best / len(states) * 1e6,
        exact=exact,
    )


def memory_per_customer(redis_url: str, encode: Callable[[CustomerState], bytes] | None,
                        customers: int = 20_000) -> float:
    """Redis ``used_memory`` per customer if packed states had the lengths of ``encode``.

    The real store writes the customers (:func:`streamseg_bench.redis_memory.
    measure_memory_per_customer`), its packed state padded with zero bytes to the length
    ``encode`` gives (None: not padded). Redis memory depends on the lengths of fields
    and values, not on what the bytes mean, and the store ignores bytes past a state's
    length, so this is the memory that codec would take without building a store for it.
    """
    from unittest import mock

    from streamseg.store.redis import batch
    from streamseg_bench.redis_memory import measure_memory_per_customer

    if encode is None:
        return measure_memory_per_customer(redis_url, customers)
    original = batch._pack_state

    def padded(state: CustomerState, stream_ids: dict[str, int]) -> bytes:
        data = original(state, stream_ids)
        return data + bytes(max(0, len(encode(state)) - len(data)))

    with mock.patch.object(batch, "_pack_state", padded):
        return measure_memory_per_customer(redis_url, customers)


def measure_codecs(customers: int = 5_000, repeat: int = 5, redis_url: str | None = None
                   ) -> list[CodecFigures]:
    """The figures of every codec on ``customers`` realistic states (and, with
    ``redis_url``, the Redis memory per customer of each)."""
    states = realistic_states(customers)
    codecs = [
        ("streamseg", *_streamseg(states)),
        ("msgpack dict", *_msgpack_dict()),
        ("msgspec Struct", *_msgspec(array_like=False)),
        ("msgspec array", *_msgspec(array_like=True)),
    ]
    results = []
    for name, encode, decode in codecs:
        figures = measure(name, encode, decode, states, repeat)
        if redis_url is not None:
            padding = None if name == "streamseg" else encode
            figures = replace(figures, redis_bytes=memory_per_customer(redis_url, padding))
        results.append(figures)
    return results


def main(argv: list[str]) -> None:
    redis_url = None
    if "--redis" in argv:
        at = argv.index("--redis")
        redis_url = argv[at + 1]
        argv = argv[:at] + argv[at + 2:]
    customers = int(argv[0]) if argv else 5_000
    print(f"{customers} realistic states, {_CHUNK_BYTES}-byte chunks")
    print(HEADER + (MEMORY_HEADER if redis_url else ""))
    for figures in measure_codecs(customers, redis_url=redis_url):
        print(figures.line())


if __name__ == "__main__":  # pragma: no cover - manual benchmark
    main(sys.argv[1:])

