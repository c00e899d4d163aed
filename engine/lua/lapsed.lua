-- Which workers' leases have lapsed? (used by processes that do not beat, e.g. the console)
-- Writes only the clock and the grace key.
-- KEYS[1] workers  KEYS[2] grace  KEYS[3] clock  ARGV[1] max ids
-- Returns {now, grace ms left, earliest expiry, lapsed ids...}
local now = now_ms()
-- a gap in the clock (nobody could reach Redis) opens the grace window here too, and this
-- process ticks the clock, so an outage is detected once and then the window runs out
local raw = redis.call('GET', KEYS[3])
if raw then
  local last, hb, lease = string.match(raw, '^(%d+):(%d+):(%d+)$')
  if last then
    last, hb, lease = tonumber(last), tonumber(hb), tonumber(lease)
    if now - last > 2 * hb then
      redis.call('SET', KEYS[2], tostring(now), 'PX', lease + hb)
    end
    redis.call('SET', KEYS[3], now .. ':' .. hb .. ':' .. lease)
  end
end
local grace = redis.call('PTTL', KEYS[2])
if grace < 0 then grace = 0 end
local lapsed = {}
if grace == 0 then
  lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
end
local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {tostring(now), grace, earliest[2] or ''}
for i = 1, #lapsed do out[#out + 1] = lapsed[i] end
return out
