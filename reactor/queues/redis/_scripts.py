"""The Lua scripts the queue runs in Redis, and the names of its keys.

Every script runs atomically in the server: a batch of publishes is one script call,
so ``put_many()`` is all or nothing and the dedupe window's check and the append are
one step.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DROP_CONSUMER", "PROMOTE", "PUBLISH", "STORE_FIRED", "Keys"]

#: Append a batch of entries to the stream KEYS[1]. ARGV[1] is the dedupe window in
#: milliseconds; then six values per entry: the dedupe key ("" for none), the
#: CloudEvents JSON, the JSON list of consumers it is for ("" for every match), the group
#: it is for ("" for every group), "1" for a replay or redelivery ("" for a
#: publication), and the time it is due, in milliseconds since the epoch ("" for now).
#: An entry due later is kept until then: its fields, packed, in the hash KEYS[3] under a
#: number from the counter KEYS[4], and that number in the sorted set KEYS[2] scored by
#: its due time (see PROMOTE). Returns, per entry, its id, 0 for a duplicate within the
#: window, or -1 for an entry kept for later.
PUBLISH: Final = """
local window = ARGV[1]
local stream = KEYS[1]
local out = {}
local n = 0
for i = 2, #ARGV, 6 do
  n = n + 1
  local key = ARGV[i]
  if key ~= '' and not redis.call('SET', key, '1', 'NX', 'PX', window) then
    out[n] = 0
  else
    local fields = {'e', ARGV[i + 1]}
    if ARGV[i + 2] ~= '' then
      fields[#fields + 1] = 'o'
      fields[#fields + 1] = ARGV[i + 2]
    end
    if ARGV[i + 3] ~= '' then
      fields[#fields + 1] = 'g'
      fields[#fields + 1] = ARGV[i + 3]
    end
    if ARGV[i + 4] ~= '' then
      fields[#fields + 1] = 'r'
      fields[#fields + 1] = ARGV[i + 4]
    end
    if ARGV[i + 5] ~= '' then
      -- Zero-padded: entries due at the same time come in the order of their numbers.
      local id = string.format('%016d', redis.call('INCR', KEYS[4]))
      redis.call('HSET', KEYS[3], id, cmsgpack.pack(fields))
      redis.call('ZADD', KEYS[2], ARGV[i + 5], id)
      out[n] = -1
    else
      out[n] = redis.call('XADD', stream, '*', unpack(fields))
    end
  end
end
return out
"""

#: Append to the stream KEYS[1] up to ARGV[2] delayed entries due at ARGV[1] (milliseconds
#: since the epoch), in the order of their due times, and forget them (see PUBLISH). Any
#: process may run it: each entry moves once. Returns how many moved, the due time of
#: the next one ("" for none) and how many are left.
PROMOTE: Final = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local packed = redis.call('HGET', KEYS[3], id)
  if packed then
    redis.call('XADD', KEYS[1], '*', unpack(cmsgpack.unpack(packed)))
  end
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {#ids, first[2] or '', redis.call('ZCARD', KEYS[2])}
"""

#: Remove the consumer ARGV[2] from the group ARGV[1] of the stream KEYS[1] when it has
#: no pending entry (a process that stops cleanly leaves no name behind). Returns 1 when
#: removed.
DROP_CONSUMER: Final = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if ok and #pending == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


#: Keep timers' last fire times in the hash KEYS[1]: ARGV holds pairs of a timer's name
#: and a time (POSIX seconds); a time never replaces a later one.
STORE_FIRED: Final = """
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old or tonumber(old) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""


class Keys:
    """The Redis keys of one stream and group.

    :ivar stream: the stream of events, shared by every app (group)
    :ivar progress: a hash per group: entry id -> JSON list of the consumers that settled it
    :ivar dead: the group's dead letters, a stream
    :ivar consumers: a set per group: the consumer (subscription) names the app has had
    :ivar dedupe: the prefix of the dedupe window's keys, per stream
    :ivar delayed: delayed entries of the stream, a sorted set: number -> due time (ms)
    :ivar delayed_fields: their packed fields, a hash: number -> fields
    :ivar delayed_counter: the counter that numbers them
    :ivar fired: a hash per group: timer name -> its last fire time (POSIX seconds)
    """

    __slots__ = (
        "consumers",
        "dead",
        "dedupe",
        "delayed",
        "delayed_counter",
        "delayed_fields",
        "fired",
        "progress",
        "stream",
    )

    def __init__(self, stream: str, group: str) -> None:
        self.stream = stream
        self.progress = f"{stream}:progress:{group}"
        self.dead = f"{stream}:dead:{group}"
        self.consumers = f"{stream}:consumers:{group}"
        self.dedupe = f"{stream}:dedupe:"
        self.delayed = f"{stream}:delayed"
        self.delayed_fields = f"{stream}:delayed:fields"
        self.delayed_counter = f"{stream}:delayed:counter"
        self.fired = f"{stream}:fired:{group}"

    def publish_keys(self) -> list[str]:
        """The KEYS of :data:`PUBLISH` and :data:`PROMOTE`."""
        return [self.stream, self.delayed, self.delayed_fields, self.delayed_counter]
