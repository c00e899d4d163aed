-- Remove a worker from the registry once nothing is left in its in-flight list.
-- KEYS[1] workers  KEYS[2] worker  KEYS[3] inflight  KEYS[4] events  KEYS[5] grace  KEYS[6] clock
-- ARGV[1] worker id  ARGV[2] force (1/0)  ARGV[3] events maxlen  ARGV[4] event kind  ARGV[5] message
-- Returns 1 if forgotten, 0 if still alive or still holding tasks.
local now = now_ms()
local grace = observe(KEYS[6], KEYS[5], KEYS[1], now, '', nil, nil)
if ARGV[2] ~= '1' then
  if grace > 0 then return 0 end
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if expiry and tonumber(expiry) > now then return 0 end
end
if redis.call('LLEN', KEYS[3]) > 0 then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('EXISTS', KEYS[2]) == 0 then
  return 0  -- already gone (it retired cleanly, or another reaper was first)
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'kind', ARGV[4], 'worker', ARGV[1], 'msg', ARGV[5])
end
return 1
