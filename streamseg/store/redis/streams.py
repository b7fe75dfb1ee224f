"""The name registry: each source stream and partition name gets a small id.

Packed states name the streams of their applied offsets and their partition by these
ids, and a partition's keys carry its id (:mod:`.keys`). A Kafka partition and the
stream it is read from share one name (``kafka:<topic>:<n>``), and so one id. Ids live
in ``{p}:streams`` (name -> id), handed out from ``{p}:streams:next``; the first worker
to register a name wins and ids are never reused, so a packed state stays readable by
every worker of the prefix. Registering is not fenced: it only adds names.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from streamseg.store.redis.connection import _text
from streamseg.store.redis.keys import Keys


class StreamIds:
    """This store's copy of ``{p}:streams``, refreshed when a name or id is unknown."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}

    def _refresh(self) -> None:
        for name, value in self._redis.hgetall(self._keys.streams).items():
            self._ids[_text(name)] = int(value)
            self._names[int(value)] = _text(name)

    def ids_for(self, names: Iterable[str]) -> dict[str, int]:
        """Small ids of stream or partition names, registering new ones (before, not in,
        a batch)."""
        wanted = set(names)
        if wanted - self._ids.keys():
            self._refresh()
        new = sorted(wanted - self._ids.keys())
        if new:
            pipe = self._redis.pipeline(transaction=False)
            for _ in new:
                pipe.incr(self._keys.streams_next)
            candidates = pipe.execute()
            pipe = self._redis.pipeline(transaction=False)
            for name, candidate in zip(new, candidates, strict=True):
                pipe.hsetnx(self._keys.streams, name, candidate)  # first writer wins
            pipe.execute()
            self._refresh()
        return {name: self._ids[name] for name in wanted}

    def name(self, stream_id: int) -> str:
        """The stream or partition a packed state's id stands for."""
        if stream_id not in self._names:
            self._refresh()
        return self._names[stream_id]
