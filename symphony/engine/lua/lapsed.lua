-- Which workers' leases have lapsed? (used by processes that do not beat, e.g. the console)
-- Looks for an outage first (`observe`), like every script that judges leases.
-- KEYS[1] workers  KEYS[2] grace  KEYS[3] clock  ARGV[1] max ids
-- Returns {now, grace ms left, earliest expiry, lapsed ids...}
local now = now_ms()
local grace = observe(KEYS[3], KEYS[2], KEYS[1], now, '', nil, nil)
local lapsed = {}
if grace == 0 then
  lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
end
local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {tostring(now), grace, earliest[2] or ''}
for i = 1, #lapsed do out[#out + 1] = lapsed[i] end
return out
