"""The Lua script of the store (the due scan) and how it is called.

Due scan of a set of buckets, atomic on the server: return the customers whose
next_rescore_at <= ARGV[1], as a flat list (id, time as %.17g text, ...), and set each
bucket's score in the due index to the exact minimum of its customers' times (or remove
the bucket if none has one). Chunk 0 of a packed state is under a field that starts with
byte 1; its first byte has bit 0 set when a float64 next_rescore_at follows (see
:mod:`.codec`).

KEYS[1] = ``{p}:due``, KEYS[2..n] = ``{p}:c:{b}``; ARGV[1] = until, ARGV[2..n] = the
buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis

DUE_SCAN = """
local cutoff = tonumber(ARGV[1])
local due = {}
for k = 2, #KEYS do
  local values = redis.call('HGETALL', KEYS[k])
  local lowest = nil
  for i = 1, #values, 2 do
    local field = values[i]
    local chunk = values[i + 1]
    if string.byte(field, 1) == 1 and bit.band(string.byte(chunk, 1), 1) == 1 then
      local at = struct.unpack('<d', chunk, 2)
      if lowest == nil or at < lowest then lowest = at end
      if at <= cutoff then
        due[#due + 1] = string.sub(field, 2)
        due[#due + 1] = string.format('%.17g', at)
      end
    end
  end
  if lowest == nil then
    redis.call('ZREM', KEYS[1], ARGV[k])
  else
    redis.call('ZADD', KEYS[1], string.format('%.17g', lowest), ARGV[k])
  end
end
return due
"""


class Script:
    """A Lua script loaded once and called by its SHA: one command, one round trip.

    The script is loaded when the object is made, and loaded again if the server lost
    its script cache (e.g. after a restart).
    """

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._redis = client
        self._source = source
        self._sha = str(client.script_load(source))

    def __call__(self, keys: Sequence[str], args: Sequence[str]) -> list[bytes]:
        try:
            reply = self._redis.evalsha(self._sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._sha = str(self._redis.script_load(self._source))
            reply = self._redis.evalsha(self._sha, len(keys), *keys, *args)
        return cast("list[bytes]", reply)
