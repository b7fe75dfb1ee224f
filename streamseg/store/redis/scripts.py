"""The Lua scripts of the store and how they are called.

Redis runs a script atomically: no other command runs between its first and its last
call, which is what fencing needs (the check of the epochs and of the lease, and the
writes they guard, cannot be separated). Every key a script touches is passed in
``KEYS``, never built inside it, so that a hash-tagged prefix (``{streamseg}``) keeps a
script on one slot of a Redis Cluster. As with ``MULTI``/``EXEC``, Redis does not undo
the calls a script made before a call fails; the store encodes every value before the
call, so that a call can only fail if one of its keys was overwritten with another type.

:data:`FENCED_EXEC` -- a batch write. KEYS[1] = ``{p}:lease``, KEYS[2..1+P] = the hashes
of the P partitions of the batch, then every other key the commands name. ARGV[1] = the
writer's lease token ('' = not checked), ARGV[2] = P, ARGV[3..2+P] = the epoch the
writer holds for each partition, then the commands, each as: name, index of its key in
KEYS, number of arguments, the arguments. The commands are Redis commands, plus
``HDELPREFIX key prefix`` (delete the fields of a hash that start with ``prefix``: the
sizes of segments a partition no longer has). If the lease is not the writer's or an
epoch is not the stored one, nothing is written and the reply is ``{1, lease lost (0 or
1), indices (1..P) of the stale partitions...}``; otherwise every command runs, in order,
and the reply is ``{0}``. A partition that was never taken has no epoch: stale.

:data:`TAKE_PARTITION` -- KEYS = ``{p}:parts``, ``{p}:part:{i}``, ``{p}:outbox:{i}``;
ARGV = name, id: register the partition, bump its epoch, return ``{its hash as a flat
list, its outbox}``.

:data:`DUE_SCAN` -- the due scan of some groups of buckets of one partition. KEYS[1] =
``{p}:due:{i}``, KEYS[2..] = the buckets of the groups, group after group; ARGV[1] =
until, ARGV[2] = the partition's id, then per group: its member, its number of buckets.
Returns the partition's customers whose next_rescore_at <= until, as a flat list (id,
time as %.17g text, ...), and sets each group's score to the floor of the earliest
next_rescore_at of the partition's customers in it (or removes the group if they have
none; a NaN time is never due). Only this partition's index changes: the groups of
another partition keep their scores whatever customers of its own they hold. Chunk 0
of a packed state is under a field that starts with byte 1; its first byte (the header)
is 128..255 for codec versions 2 and 3 (their heads are alike) and has bit 0 set when a
float64 next_rescore_at follows (at byte 1, counting from 0), then the partition's id as
a varint at byte 9 (Lua's 2 and 10; see :mod:`.codec`).

:data:`LEASE_ACQUIRE`, :data:`LEASE_RENEW`, :data:`LEASE_RELEASE` -- the model lease
(:mod:`.lease`). KEYS[1] = ``{p}:lease``; ARGV = token, time to live in milliseconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis

FENCED_EXEC = """
local parts = tonumber(ARGV[2])
local lease_lost = 0
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then lease_lost = 1 end
local reply = {1, lease_lost}
for j = 1, parts do
  if redis.call('HGET', KEYS[1 + j], 'epoch') ~= ARGV[2 + j] then reply[#reply + 1] = j end
end
if lease_lost == 1 or #reply > 2 then return reply end
local i = 3 + parts
while i <= #ARGV do
  local name, key, count = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  if name == 'HDELPREFIX' then
    local prefix = ARGV[i + 3]
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if string.sub(field, 1, #prefix) == prefix then redis.call('HDEL', key, field) end
    end
  else
    redis.call(name, key, unpack(ARGV, i + 3, i + 2 + count))
  end
  i = i + 3 + count
end
return {0}
"""

TAKE_PARTITION = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'name', ARGV[1])
redis.call('HINCRBY', KEYS[2], 'epoch', 1)
return {redis.call('HGETALL', KEYS[2]), redis.call('LRANGE', KEYS[3], 0, -1)}
"""

DUE_SCAN = """
local cutoff = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local due = {}
local k = 2
for g = 3, #ARGV, 2 do
  local lowest = nil
  for _ = 1, tonumber(ARGV[g + 1]) do
    local values = redis.call('HGETALL', KEYS[k])
    k = k + 1
    for i = 1, #values, 2 do
      local chunk = values[i + 1]
      local head = string.byte(chunk, 1) or 0
      if string.byte(values[i], 1) == 1 and head >= 128 and head % 2 == 1 then
        local id, scale, pos, byte = 0, 1, 10, 128
        while byte >= 128 do
          byte = string.byte(chunk, pos) or 0
          id = id + (byte % 128) * scale
          scale = scale * 128
          pos = pos + 1
        end
        local at = struct.unpack('<d', chunk, 2)
        if id == want and at == at then
          if lowest == nil or at < lowest then lowest = at end
          if at <= cutoff then
            due[#due + 1] = string.sub(values[i], 2)
            due[#due + 1] = string.format('%.17g', at)
          end
        end
      end
    end
  end
  if lowest == nil then
    redis.call('ZREM', KEYS[1], ARGV[g])
  else
    redis.call('ZADD', KEYS[1], string.format('%.17g', math.floor(lowest)), ARGV[g])
  end
end
return due
"""

LEASE_ACQUIRE = """
local ttl = tonumber(ARGV[2])
if ttl > 0 and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then return {1} end
local holder = redis.call('GET', KEYS[1])
if not holder then return {1} end
if ARGV[3] ~= '' and string.sub(holder, 1, #ARGV[3] + 1) == ARGV[3] .. '#' then
  if ttl > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl) end
  return {1}
end
return {0, holder, redis.call('PTTL', KEYS[1])}
"""

LEASE_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) <= 0 then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Script:
    """A Lua script called by its SHA: one command, one round trip.

    The script is loaded when the server does not know it (the first call, or after a
    restart emptied its script cache), and the call repeated.
    """

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._redis = client
        self._source = source
        self._sha = hashlib.sha1(source.encode("utf-8")).hexdigest()  # noqa: S324 - Redis's id

    def __call__(self, keys: Sequence[str], args: Sequence[str | bytes]) -> Any:
        try:
            return self._redis.evalsha(self._sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._sha = str(self._redis.script_load(self._source))
            return self._redis.evalsha(self._sha, len(keys), *keys, *args)
