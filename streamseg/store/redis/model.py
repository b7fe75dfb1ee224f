"""The model checkpoint in ``{p}:model``: a hash of parts, each JSON.

Most of a checkpoint rarely changes (the reservoir's ids), so a part equal to what this
store last wrote is not written again. That is only safe while nobody else writes the
model in between, which is what the model lease guarantees (:mod:`.lease`): a write that
carries the lease's token is refused unless the token still holds it, in the same atomic
call as the write (:mod:`.scripts`). So parts are skipped only in writes under a lease
token, and only against what this store wrote under the *same* token: the first write
under a new token, any write without one, and every write after :meth:`forget` write
every part. (Without that, two workers' models could be mixed part by part.)

Before the model was a hash of parts it was one JSON string: that legacy string is read
as it is, and replaced by the hash at the next write that has parts.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from streamseg.store.redis.connection import _text


class ModelParts:
    """What this store knows of ``{p}:model``."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key
        self.legacy = _text(client.type(key)) == "string"
        self._written: dict[str, Any] = {}  # parts as last written under self._token
        self._token: str | None = None

    def changed(self, checkpoint: dict[str, Any] | None, lease: str | None) -> dict[str, str]:
        """The parts of ``checkpoint`` to write, as JSON."""
        same = lease is not None and lease == self._token and not self.legacy
        return {
            name: json.dumps(value) for name, value in (checkpoint or {}).items()
            if not same or name not in self._written or self._written[name] != value
        }

    def written(self, checkpoint: dict[str, Any] | None, parts: dict[str, str],
                lease: str | None) -> None:
        """After a successful write of ``parts`` of ``checkpoint`` under ``lease``."""
        if parts:
            self.legacy = False
        if lease is None:
            self.forget()
            return
        if lease != self._token:
            self._written, self._token = {}, lease
        if checkpoint:
            self._written.update(checkpoint)

    def load(self) -> dict[str, Any] | None:
        if self.legacy:
            data = self._redis.get(self._key)
            return None if data is None else cast("dict[str, Any]", json.loads(data))
        parts = self._redis.hgetall(self._key)
        if not parts:
            return None
        return {_text(name): json.loads(value) for name, value in parts.items()}

    def part(self, name: str) -> Any:
        """One part of the checkpoint (None if absent)."""
        if self.legacy:
            return (self.load() or {}).get(name)
        value = self._redis.hget(self._key, name)
        return None if value is None else json.loads(value)

    def forget(self) -> None:
        self._written.clear()
        self._token = None
