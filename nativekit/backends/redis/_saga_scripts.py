"""Lua scripts of :class:`RedisSagaStore`: one atomic round trip per saga transition.

Every script declares all keys it touches in ``KEYS``, and all of them carry
the same hash tag (the saga's shard), so each runs on one Redis Cluster slot.
Times come from the Redis server clock (``TIME``), so replicas with skewed
clocks still agree on when a lease expired.
"""

from __future__ import annotations

_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function active(status) return status == 'RUNNING' or status == 'COMPENSATING' end
local function finished(status)
  return status == 'COMPLETED' or status == 'COMPENSATED' or status == 'ABORTED'
end
local function secs(ms) return string.format('%.3f', ms / 1000) end
-- fields arrive as one argument, "k\0v\0k\0v\0": far cheaper to send than 2n arguments
local function hset_blob(key, blob)
  if blob == '' then return end
  local parts = {}
  for part in string.gmatch(blob, '([^%z]*)%z') do parts[#parts + 1] = part end
  redis.call('HSET', key, unpack(parts))
end
-- true when the hash holds any field of the "f\0f\0" blob with a non-empty value
local function has_any(key, blob)
  if blob == nil or blob == '' then return false end
  for part in string.gmatch(blob, '([^%z]*)%z') do
    local value = redis.call('HGET', key, part)
    if value and value ~= '' then return true end
  end
  return false
end
"""

#: KEYS: record, leases, live, status index, status+name index.
#: ARGV: id, token, lease_ms, live field, fields blob.
#: Returns 1 when created (or already created with this token: a retried call), 0 when
#: the id exists.
CREATE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'token') == ARGV[2] then return 1 end
  return 0
end
local now = now_ms()
local lease = now + tonumber(ARGV[3])
hset_blob(KEYS[1], ARGV[5])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease', string.format('%d', lease),
  'since', secs(now))
redis.call('ZADD', KEYS[2], lease, ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZADD', KEYS[5], now, ARGV[1])
return 1
"""
)

#: KEYS: record, leases, live, and when the status changes: old status index,
#:       old status+name index, new status index, new status+name index.
#: ARGV: id, token, expected status, new status ('' = unchanged), lease_ms, retention_ms,
#:       release ('1'/'0'), live field, fields blob, release-if fields blob
#:       [, outbox count, entries...]
#:       (with outbox entries, the shard's outbox stream is the last key).
#: Returns 1 on success, 0 for a stale token, -1 when the status is not the expected one.
WRITE = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
local current = redis.call('HGET', KEYS[1], 'status')
if current ~= ARGV[3] then return -1 end
local now = now_ms()
hset_blob(KEYS[1], ARGV[9])
redis.call('HSET', KEYS[1], 'updated', secs(now))
local status = current
if ARGV[4] ~= '' and ARGV[4] ~= current then
  status = ARGV[4]
  redis.call('HSET', KEYS[1], 'status', status, 'since', secs(now))
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('ZADD', KEYS[6], now, ARGV[1])
  redis.call('ZADD', KEYS[7], now, ARGV[1])
  if active(current) and not active(status) then
    redis.call('HINCRBY', KEYS[3], ARGV[8], -1)
  elseif active(status) and not active(current) then
    redis.call('HINCRBY', KEYS[3], ARGV[8], 1)
  end
end
if not active(status) then
  redis.call('HDEL', KEYS[1], 'token', 'lease')
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif ARGV[7] == '1' or has_any(KEYS[1], ARGV[10]) then
  redis.call('HDEL', KEYS[1], 'token')
  redis.call('HSET', KEYS[1], 'lease', string.format('%d', now))
  redis.call('ZADD', KEYS[2], now, ARGV[1])
else
  local lease = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'lease', string.format('%d', lease))
  redis.call('ZADD', KEYS[2], lease, ARGV[1])
end
if finished(current) and not finished(status) then
  redis.call('PERSIST', KEYS[1])  -- an ABORTED saga retried: it must not expire mid-run
end
if finished(status) then
  local retention = tonumber(ARGV[6])
  redis.call('PEXPIRE', KEYS[1], retention)
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - retention)
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - retention)
end
-- outbox entries (ARGV[11] = count) go to the shard's outbox stream, the last key
for i = 1, tonumber(ARGV[11] or '0') do
  redis.call('XADD', KEYS[#KEYS], '*', 'e', ARGV[11 + i])
end
return 1
"""
)

#: KEYS: record, leases. ARGV: id, token, lease_ms, force ('1'/'0'), known definitions...
#: Returns the record's fields (flat list), 0 while another lease is live,
#: -1 when the saga does not exist, -2 when its definition is not among the known ones.
CLAIM = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local now = now_ms()
local held = tonumber(redis.call('HGET', KEYS[1], 'lease') or '0')
if ARGV[4] ~= '1' then
  if held > now then return 0 end
  local status = redis.call('HGET', KEYS[1], 'status')
  if not active(status) then return 0 end
  if #ARGV > 4 then
    local def = redis.call('HGET', KEYS[1], 'name') .. ':' .. redis.call('HGET', KEYS[1], 'def')
    local known = false
    for i = 5, #ARGV do if ARGV[i] == def then known = true end end
    if not known then return -2 end
  end
end
local lease = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease', string.format('%d', lease))
if active(redis.call('HGET', KEYS[1], 'status')) then
  redis.call('ZADD', KEYS[2], lease, ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
"""
)

#: KEYS: record, leases. ARGV: id, token, lease_ms. Returns 1, or 0 for a stale token.
RENEW = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
local lease = now_ms() + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'lease', string.format('%d', lease))
redis.call('ZADD', KEYS[2], lease, ARGV[1])
return 1
"""
)

#: KEYS: record, leases. ARGV: id, new token, lease_ms, step, direction, attempt, reply
#: token, reply, known definitions... Leases the saga only while it still waits for exactly
#: that attempt's reply, in its ``wait`` field (a step alone) or ``wait:<step>`` (a command
#: member of a parallel group: the reply is stored as ``reply:<step>``, the wait emptied,
#: and the saga leased only when no other ``wait:*`` field is left). Returns its fields,
#: 1 (stored; other members still wait), -1 (no such saga), 0 (it does not wait for this
#: reply: late) or -2 (a definition this service does not know).
CLAIM_REPLY = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if not active(redis.call('HGET', KEYS[1], 'status')) then return 0 end
local function matches(raw)
  if not raw or raw == '' then return false end
  local w = cjson.decode(raw)
  return w.s == ARGV[4] and w.d == ARGV[5] and tostring(w.a) == ARGV[6] and w.t == ARGV[7]
end
local member = 'wait:' .. ARGV[4]
local alone = matches(redis.call('HGET', KEYS[1], 'wait'))
if not alone and not matches(redis.call('HGET', KEYS[1], member)) then return 0 end
local def = redis.call('HGET', KEYS[1], 'name') .. ':' .. redis.call('HGET', KEYS[1], 'def')
local known = false
for i = 9, #ARGV do if ARGV[i] == def then known = true end end
if not known then return -2 end
if not alone then
  redis.call('HSET', KEYS[1], member, '', 'reply:' .. ARGV[4], ARGV[8])
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 5) == 'wait:' and all[i + 1] ~= '' then return 1 end
  end
end
local lease = now_ms() + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease', string.format('%d', lease))
redis.call('ZADD', KEYS[2], lease, ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""
)

#: KEYS: record, leases. ARGV: id, event field ("event:<name>"), payload, event name.
#: Stores the event once; releases the lease of an active saga that awaits it.
#: Returns -1 (no such saga), -2 (finished: the status follows), 0 (delivered before),
#: 1 (stored) or 2 (stored and the saga woken).
SIGNAL = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local status = redis.call('HGET', KEYS[1], 'status')
if finished(status) then return {-2, status} end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if not active(status) then return 1 end
local raw = redis.call('HGET', KEYS[1], 'awaiting')
if not raw or raw == '' then return 1 end
for _, name in ipairs(cjson.decode(raw)) do
  if name == ARGV[4] then
    local now = now_ms()
    redis.call('HDEL', KEYS[1], 'token')
    redis.call('HSET', KEYS[1], 'lease', string.format('%d', now))
    redis.call('ZADD', KEYS[2], now, ARGV[1])
    return 2
  end
end
return 1
"""
)
