-- Remove a worker from the registry (fleet slot) once nothing is left in its in-flight lists (the
-- caller looked at each, in their sessions' slots, just before: ARGV[6]), giving back the permits
-- of limited stages it held.
-- KEYS[1] workers  KEYS[2] worker  KEYS[3] holds(worker)  KEYS[4] events  KEYS[5] grace  KEYS[6] clock
-- KEYS[7] permits(worker)  KEYS[8..] control(stage) of each stage it holds permits of
-- ARGV[1] worker id  ARGV[2] force (1/0)  ARGV[3] events maxlen  ARGV[4] event kind  ARGV[5] message
-- ARGV[6] '1' if every in-flight list of the worker was empty  ARGV[7..] the stages of KEYS[8..]
-- Returns 1 if forgotten, 0 if still alive or still holding tasks.
local now = now_ms()
local grace = observe(KEYS[6], KEYS[5], KEYS[1], now, '', nil, nil)
if ARGV[2] ~= '1' then
  if grace > 0 then return 0 end
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if expiry and tonumber(expiry) > now then return 0 end
end
if ARGV[6] ~= '1' then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('EXISTS', KEYS[2]) == 0
    and redis.call('EXISTS', KEYS[3]) == 0 and redis.call('EXISTS', KEYS[7]) == 0 then
  return 0  -- already gone (it retired cleanly, or another reaper was first)
end
for j = 7, #ARGV do
  local held = tonumber(redis.call('HGET', KEYS[7], ARGV[j]) or '0') or 0
  if held > 0 and redis.call('HINCRBY', KEYS[j + 1], 'running', -held) < 0 then
    redis.call('HSET', KEYS[j + 1], 'running', 0)
  end
  redis.call('HDEL', KEYS[7], ARGV[j])
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
if redis.call('HLEN', KEYS[7]) == 0 then redis.call('DEL', KEYS[7]) end
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'kind', ARGV[4], 'worker', ARGV[1], 'msg', ARGV[5])
end
return 1
