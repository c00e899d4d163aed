-- A worker process's heartbeat: renews its lease (the score is the lease's expiry, in server
-- time, so clocks of different machines never matter) and refreshes its description.
-- If nobody at all has beaten for more than two intervals, Redis itself was unavailable (paused,
-- restarted, unreachable): open a grace window during which no lease counts as lapsed, so live
-- workers' tasks are not stolen just because Redis could not hear them.
-- KEYS[1] workers  KEYS[2] worker  KEYS[3] clock  KEYS[4] grace  KEYS[5] epoch
-- ARGV[1] worker id  ARGV[2] heartbeat ms  ARGV[3] lease ms  ARGV[4] description ttl ms
-- ARGV[5..] field, value pairs describing the worker
-- Returns {now, was known (0/1), epoch, grace ms left, earliest lease expiry, lapsed ids...}
local now = now_ms()
local hb, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local last_raw = redis.call('GET', KEYS[3])
local last = last_raw and tonumber(string.match(last_raw, '^(%d+)')) or 0
if last > 0 and now - last > 2 * hb then
  redis.call('SET', KEYS[4], tostring(now), 'PX', lease + hb)
end
-- the clock also records the interval and lease, so processes that do not beat (the console)
-- can detect an outage the same way before they reap anything
redis.call('SET', KEYS[3], now .. ':' .. hb .. ':' .. lease)
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if #ARGV >= 6 then redis.call('HSET', KEYS[2], unpack(ARGV, 5)) end
redis.call('HSET', KEYS[2], 'beat', now, 'hb_ms', hb, 'lease_ms', lease)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local grace = redis.call('PTTL', KEYS[4])
if grace < 0 then grace = 0 end
local lapsed = {}
if grace == 0 then
  lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 32)
end
local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {tostring(now), known and 1 or 0, redis.call('GET', KEYS[5]) or '0', grace, earliest[2] or ''}
for i = 1, #lapsed do out[#out + 1] = lapsed[i] end
return out
