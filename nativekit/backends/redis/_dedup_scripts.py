"""The Lua scripts of the Redis dedup store (layout: see ``_dedup.py``). Each is one call
per batch; every key they touch shares the store's hash tag."""

from __future__ import annotations

# Shared by every script. ARGV[1] is the key prefix, ARGV[2] the newline-joined keys,
# ARGV[3] the bucket width in ms and ARGV[4] the number of older buckets to read.
# newest(i) is the live value of ids[i] (nil when absent or past its deadline).
COMMON = """
local function split(text)
  local out = {}
  for part in string.gmatch(text, '[^\\n]+') do out[#out + 1] = part end
  return out
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local width = tonumber(ARGV[3])
local cur = math.floor(now / width)
local base = ARGV[1] .. 'b:'
local bucket = base .. cur
local ids = split(ARGV[2])
local n = #ids
local found, hits = {}, 0
for b = cur, cur - tonumber(ARGV[4]), -1 do
  if hits == n then break end
  for s = 1, n, 4000 do
    local vals = redis.call('HMGET', base .. b, unpack(ids, s, math.min(n, s + 3999)))
    for j = 1, #vals do
      local i = s + j - 1
      if vals[j] and found[i] == nil then found[i] = vals[j]; hits = hits + 1 end
    end
  end
end
local function newest(i)
  local v = found[i]
  if v and tonumber(string.sub(v, 2, 14)) > now then return v end
  return nil
end
local function hset(pairs)
  for s = 1, #pairs, 4000 do
    redis.call('HSET', bucket, unpack(pairs, s, math.min(#pairs, s + 3999)))
  end
  redis.call('PEXPIREAT', bucket, (cur + tonumber(ARGV[4]) + 1) * width + 1000)
end
local function owned(v, token)
  return string.sub(v, 1, 1) == 'P' and string.sub(v, 16) == token
end
"""

# ARGV[5] lease ms, ARGV[6] nonce. Reply: a status char per key ('c' claimed, 'd' DONE, 'x'
# DEAD, 'b' busy), a comma, the first claim's token (later ones count up); kept for the lease
# under the nonce: a call run again (a driver retry) gets its own claims back, not busy.
CLAIM = (
    COMMON
    + """
local memo = ARGV[1] .. 'r:' .. ARGV[6]
if redis.call('EXISTS', memo) == 1 then return redis.call('GET', memo) end
local out, pairs, seen = {}, {}, {}
local deadline = now + tonumber(ARGV[5])
local claimed = 0
for i = 1, n do
  local v = newest(i)
  local id = ids[i]
  if v ~= nil then
    local s = string.sub(v, 1, 1)
    if s == 'D' then out[i] = 'd' elseif s == 'X' then out[i] = 'x' else out[i] = 'b' end
  elseif seen[id] then out[i] = 'b'
  else
    seen[id] = true
    claimed = claimed + 1
    out[i] = 'c'
    pairs[#pairs + 1] = id
    pairs[#pairs + 1] = claimed
  end
end
local first = 0
if claimed > 0 then
  first = redis.call('INCRBY', KEYS[1], claimed) - claimed + 1
  local head = 'P' .. deadline .. ':'
  for j = 2, #pairs, 2 do pairs[j] = head .. (first + pairs[j] - 1) end
  hset(pairs)
end
redis.call('SET', memo, table.concat(out) .. ',' .. first, 'PX', ARGV[5])
return redis.call('GET', memo)
"""
)

# ARGV[5] newline-joined tokens, ARGV[6] final state char, ARGV[7] retention ms.
# A key held by another owner (or already final) is left alone and answers '0'.
FINISH = (
    COMMON
    + """
local tokens = split(ARGV[5])
local value = ARGV[6] .. (now + tonumber(ARGV[7]))
local out, pairs = {}, {}
for i = 1, n do
  local v = newest(i)
  if v == nil or owned(v, tokens[i]) then
    pairs[#pairs + 1] = ids[i]
    pairs[#pairs + 1] = value
    out[i] = '1'
  else out[i] = '0' end
end
if #pairs > 0 then hset(pairs) end
return table.concat(out)
"""
)

# ARGV[5] newline-joined tokens, ARGV[6] lease ms.
RENEW = (
    COMMON
    + """
local tokens = split(ARGV[5])
local head = 'P' .. (now + tonumber(ARGV[6])) .. ':'
local out, pairs = {}, {}
for i = 1, n do
  local v = newest(i)
  if v ~= nil and owned(v, tokens[i]) then
    pairs[#pairs + 1] = ids[i]
    pairs[#pairs + 1] = head .. tokens[i]
    out[i] = '1'
  else out[i] = '0' end
end
if #pairs > 0 then hset(pairs) end
return table.concat(out)
"""
)

# ARGV[5] newline-joined tokens. Drops the claim from every bucket holding it (a renewal
# may have copied it into a newer one).
RELEASE = (
    COMMON
    + """
local tokens = split(ARGV[5])
for b = cur, cur - tonumber(ARGV[4]), -1 do
  for s = 1, n, 4000 do
    local vals = redis.call('HMGET', base .. b, unpack(ids, s, math.min(n, s + 3999)))
    for j = 1, #vals do
      local i = s + j - 1
      if vals[j] and owned(vals[j], tokens[i]) then redis.call('HDEL', base .. b, ids[i]) end
    end
  end
end
return 0
"""
)

# Forget a DEAD mark (and nothing else): 1 if the key's live record was DEAD. Deletes the
# field from every bucket a lookup reads, so no older record of the key shows through.
REVIVE = (
    COMMON
    + """
local v = newest(1)
if v == nil or string.sub(v, 1, 1) ~= 'X' then return 0 end
for b = cur, cur - tonumber(ARGV[4]), -1 do redis.call('HDEL', base .. b, ids[1]) end
return 1
"""
)
