-- A host's record of failing attempts, and its quarantine (the policy: engine/outcomes.py).
-- Called by a worker process after reports of failed attempts, and now and then with the
-- completions it reported since (a completion ends the host's streak).
-- KEYS[1] fails(host)  KEYS[2] rates (HASH "host|stage" -> "completions,failures,at ms", both
-- decaying with time constant ARGV[6])  KEYS[3] quarantined (ZSET host -> until ms)  KEYS[4] events
-- ARGV[1] host  ARGV[2] stage  ARGV[3] failed attempts reported  ARGV[4] completions reported
-- ARGV[5] streak limit  ARGV[6] quarantine ms  ARGV[7] peer window ms  ARGV[8] events maxlen
-- ARGV[9] healthy ratio  ARGV[10] '1': count the healthy peers at that stage (after failures, or
-- to decide where a retry runs)
-- Returns {streak, quarantined until (server ms, 0: not quarantined), healthy peers, now}
-- A healthy peer: another host, not quarantined, that runs the same stage with some completions
-- (0.5, decayed) in the window and a share of completions of at least the healthy ratio (a data
-- set whose items fail everywhere makes no host healthier than another: nothing is quarantined;
-- a stage no other host runs has no peer: its retries stay).
local now = now_ms()
local host, stage = ARGV[1], ARGV[2]
local failed, completed = tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, quarantine_ms, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ratio = tonumber(ARGV[9])
local field = host .. '|' .. stage

local function rates(value)
  if not value then return 0, 0 end
  local ok, fail, at = string.match(value, '^([%d%.e%-]+),([%d%.e%-]+),(%d+)$')
  if not at then return 0, 0 end
  local f = math.exp(-math.max(0, now - tonumber(at)) / window)
  return tonumber(ok) * f, tonumber(fail) * f
end

if failed > 0 or completed > 0 then
  local ok, fail = rates(redis.call('HGET', KEYS[2], field))
  redis.call('HSET', KEYS[2], field, string.format('%.3f,%.3f,%d', ok + completed, fail + failed, now))
end
local streak = 0
if completed > 0 then
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
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)  -- quarantines that ended
local until_ms = tonumber(redis.call('ZSCORE', KEYS[3], host) or '0') or 0
local peers = 0
if ARGV[10] == '1' then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    local other, at_stage = string.match(all[i], '^(.*)|([^|]*)$')
    local ok, fail = rates(all[i + 1])
    if ok + fail < 0.01 or not other then
      redis.call('HDEL', KEYS[2], all[i])  -- silent for many windows
    elseif other ~= host and at_stage == stage and ok >= 0.5 and ok / (ok + fail) >= ratio
        and not redis.call('ZSCORE', KEYS[3], other) then
      peers = peers + 1
    end
  end
end
if until_ms == 0 and streak >= limit and peers > 0 then
  until_ms = now + quarantine_ms
  redis.call('ZADD', KEYS[3], until_ms, host)
  redis.call('DEL', KEYS[1])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'kind', 'host_quarantined', 'session', '',
    'worker', '', 'host', host, 'msg', 'host ' .. host .. ' set aside for ' .. math.floor(quarantine_ms / 1000) ..
    's: its last ' .. streak .. ' attempts failed while ' .. peers .. ' other host(s) completed tasks of stage ' .. stage)
end
return {streak, until_ms, peers, now}
