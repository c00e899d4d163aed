-- A host's record of failing attempts, and its quarantine (the policy: engine/outcomes.py).
-- Called by a worker process after reports of failed attempts, and now and then after
-- completions (which name the host as healthy and end its streak).
-- KEYS[1] fails(host)  KEYS[2] hosts ok (ZSET host -> last completion ms)
-- KEYS[3] quarantined (ZSET host -> until ms)  KEYS[4] events
-- ARGV[1] host  ARGV[2] failed attempts reported  ARGV[3] completions reported  ARGV[4] streak limit
-- ARGV[5] quarantine ms  ARGV[6] peer window ms  ARGV[7] events maxlen
-- Returns {streak, quarantined until (server ms, 0: not quarantined), healthy peers, now}
local now = now_ms()
local host = ARGV[1]
local failed, completed = tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, quarantine_ms, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local streak = 0
if completed > 0 then
  redis.call('ZADD', KEYS[2], now, host)
  -- a completion ends the streak; failures reported with it count from zero again
  if failed > 0 then
    redis.call('SET', KEYS[1], failed, 'PX', 600000)
    streak = failed
  else
    redis.call('DEL', KEYS[1])
  end
elseif failed > 0 then
  streak = redis.call('INCRBY', KEYS[1], failed)
  redis.call('PEXPIRE', KEYS[1], 600000)
else
  streak = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600000)  -- hosts silent for an hour
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)  -- quarantines that ended
local until_ms = tonumber(redis.call('ZSCORE', KEYS[3], host) or '0') or 0
local peers = 0
for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now - window, '+inf')) do
  if other ~= host and not redis.call('ZSCORE', KEYS[3], other) then peers = peers + 1 end
end
if until_ms == 0 and streak >= limit and peers > 0 then
  until_ms = now + quarantine_ms
  redis.call('ZADD', KEYS[3], until_ms, host)
  redis.call('DEL', KEYS[1])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'kind', 'host_quarantined', 'session', '',
    'worker', '', 'host', host, 'msg', 'host ' .. host .. ' set aside for ' .. math.floor(quarantine_ms / 1000) ..
    's: its last ' .. streak .. ' attempts failed while ' .. peers .. ' other host(s) completed tasks')
end
return {streak, until_ms, peers, now}
