-- Give one in-flight task of a dead worker back to its queue (at the head, attempt count raised),
-- or record it as failed when it has used up its attempts. Re-checks, atomically, that the
-- worker's lease really lapsed (unless forced by the supervisor that saw the process die).
-- KEYS[1] workers  KEYS[2] inflight(dead)  KEYS[3] queue  KEYS[4] ready(role)  KEYS[5] bell(role)
-- KEYS[6] stats  KEYS[7] live  KEYS[8] outcomes  KEYS[9] results  KEYS[10] session  KEYS[11] grace
-- KEYS[12] clock (an outage noticed here opens the grace window, as in every lease-judging script)
-- KEYS[13] control(stage): the task's running slot is released
-- ARGV[1] dead worker id  ARGV[2] message  ARGV[3] message with attempt raised  ARGV[4] stage
-- ARGV[5] session  ARGV[6] item  ARGV[7] '1' if that was its last attempt (the stage's retry policy)
-- ARGV[8] attempts made (incl. the lost one)
-- ARGV[9] why it failed, if that was its last attempt  ARGV[10] results maxlen  ARGV[11] bell max
-- ARGV[12] force (1/0)
-- Returns {'grace'|'alive'|'gone'|'requeued'|'failed'|'cancelled'}
local now = now_ms()
local grace = observe(KEYS[12], KEYS[11], KEYS[1], now, '', nil, nil)
if ARGV[12] ~= '1' then
  if grace > 0 then return {'grace'} end
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if expiry and tonumber(expiry) > now then return {'alive'} end
end
if redis.call('LREM', KEYS[2], 1, ARGV[2]) == 0 then return {'gone'} end
local stage, session, item = ARGV[4], ARGV[5], ARGV[6]
redis.call('HINCRBY', KEYS[6], stage .. '|running', -1)
if redis.call('HINCRBY', KEYS[13], 'running', -1) < 0 then redis.call('HSET', KEYS[13], 'running', 0) end
local function stop(state, err, short)
  redis.call('HINCRBY', KEYS[6], stage .. '|' .. state, 1)
  redis.call('HDEL', KEYS[7], item)
  record_outcome(KEYS[8], item, state, stage, err, '', ARGV[8], ARGV[1], now, ARGV[2])
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[10], '*', 's', session, 't', stage, 'i', item,
    'st', state, 'a', ARGV[8], 'ms', '0', 'w', ARGV[1], 'e', short)
end
if redis.call('HGET', KEYS[10], 'state') ~= 'active' then
  stop('cancelled', 'session cancelled', 'session cancelled')
  return {'cancelled'}
end
if ARGV[7] == '1' then
  stop('failed', ARGV[9], 'worker lost on the last attempt')
  return {'failed'}
end
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('HINCRBY', KEYS[6], stage .. '|reclaimed', 1)
redis.call('ZADD', KEYS[4], 'LT', prioritized(now_us(), redis.call('HGET', KEYS[10], 'priority')), session)
ring(KEYS[5], 1, tonumber(ARGV[11]))
return {'requeued'}
