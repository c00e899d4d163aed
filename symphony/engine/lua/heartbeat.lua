-- A worker process's heartbeat: renews its lease (the score is the lease's expiry, in server
-- time, so clocks of different machines never matter) and refreshes its description.
-- It first looks for an outage (`observe` in _prelude.lua): a silence of more than half a lease
-- (at least 1.2 heartbeats) means Redis itself was unavailable, and opens a grace window of one
-- lease plus one heartbeat during which no lease counts as lapsed, so live workers' tasks are
-- not stolen just because Redis could not hear them. (A live worker renews at least one
-- heartbeat before an outage begins, so its lease can only run out in a silence longer than
-- lease - heartbeat; half a lease is below that for any lease of 2 heartbeats or more.)
-- KEYS[1] workers  KEYS[2] worker  KEYS[3] clock  KEYS[4] grace  KEYS[5] epoch
-- KEYS[6] the ready-set sweep's lock (symphony/engine/sweep.py): taken by one heartbeat per SWEEP_MS
--   (optional: a caller that does not sweep leaves it out)
-- ARGV[1] worker id  ARGV[2] heartbeat ms  ARGV[3] lease ms  ARGV[4] description ttl ms
-- ARGV[5..] field, value pairs describing the worker
-- Returns {now, was known (0/1), epoch, grace ms left, earliest lease expiry, '1' if this worker
-- sweeps the ready sets now or '', lapsed ids...}
local now = now_ms()
local hb, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local quiet = math.max(math.floor(lease / 2), math.floor(hb * 1.2))
local grace = observe(KEYS[3], KEYS[4], KEYS[1], now, ARGV[1], quiet, lease + hb)
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if #ARGV >= 6 then redis.call('HSET', KEYS[2], unpack(ARGV, 5)) end
redis.call('HSET', KEYS[2], 'beat', now, 'hb_ms', hb, 'lease_ms', lease)
-- `since` (when the current state or task began) is set by claims and reports, but a claim made
-- before the worker's first heartbeat finds no description to write it into: start it here then
redis.call('HSETNX', KEYS[2], 'since', now)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local lapsed = {}
if grace == 0 then
  lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 32)
end
local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local SWEEP_MS = 30000
local sweep = (KEYS[6] and redis.call('SET', KEYS[6], ARGV[1], 'NX', 'PX', SWEEP_MS)) and '1' or ''
local out = {tostring(now), known and 1 or 0, redis.call('GET', KEYS[5]) or '0', grace, earliest[2] or '', sweep}
for i = 1, #lapsed do out[#out + 1] = lapsed[i] end
return out
