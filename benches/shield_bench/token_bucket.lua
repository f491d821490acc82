-- A token bucket as users write it when they have no module: GCRA in a Lua
-- script, keeping the same state as SHIELD.absorb (one string key per
-- bucket holding the moment it is full again, in ms, and expiring then).
-- Same replies: tokens left (rounded down) when admitted, -1 when denied
-- (nothing written). Refill is rounded up to the millisecond at each write.
--
-- EVALSHA <sha> 1 <key> <capacity> <period seconds> [<tokens>]
-- Needs effects replication (the only mode since Redis 7) because of TIME.
local capacity = tonumber(ARGV[1])
local period_ms = tonumber(ARGV[2]) * 1000
local tokens = tonumber(ARGV[3] or 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_token = period_ms / capacity
local full_at = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if full_at < now then
  full_at = now
end
local new_full_at = full_at + tokens * per_token
if new_full_at - now > period_ms then
  return -1
end
local at = string.format('%.0f', math.ceil(new_full_at))
redis.call('SET', KEYS[1], at, 'PXAT', at)
return math.floor((period_ms - (new_full_at - now)) / per_token)
