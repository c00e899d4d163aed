-- Finish a claimed task in one atomic step: it leaves the worker's in-flight list, the
-- accounting moves, and (on success) the item is enqueued for the next stage.
-- KEYS[1] inflight(worker)  KEYS[2] worker  KEYS[3] stats  KEYS[4] live  KEYS[5] outcomes
-- KEYS[6] session  KEYS[7] results stream  KEYS[8] target (next queue | delayed set | own queue)
-- KEYS[9] ready(target role)  KEYS[10] bell(target role)
-- ARGV[1] message  ARGV[2] outcome: done|retry|handback|failed|timed_out|cancelled
-- ARGV[3] stage  ARGV[4] session  ARGV[5] item  ARGV[6] next stage ('' = last stage)
-- ARGV[7] message to push to the target  ARGV[8] retry delay ms  ARGV[9] outcome record (JSON)
-- ARGV[10] results maxlen  ARGV[11] bell max  ARGV[12] duration ms  ARGV[13] attempts made
-- ARGV[14] worker id  ARGV[15] short error
-- Returns {'lost'} if the task was no longer ours (its lease was reclaimed), else {'ok', outcome}.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return {'lost'} end
local now = now_ms()
local stage, session, item, outcome = ARGV[3], ARGV[4], ARGV[5], ARGV[2]
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'current', '', 'since', now, 'state', 'idle')
end
redis.call('HINCRBY', KEYS[3], stage .. '|running', -1)
local active = redis.call('HGET', KEYS[6], 'state') == 'active'

local function result(state, err)
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[10], '*', 's', session, 't', stage, 'i', item,
    'st', state, 'a', ARGV[13], 'ms', ARGV[12], 'w', ARGV[14], 'e', err or '')
end
local function settle(at_stage, state, record)
  redis.call('HINCRBY', KEYS[3], at_stage .. '|' .. state, 1)
  redis.call('HDEL', KEYS[4], item)
  redis.call('HSET', KEYS[5], item, record)
end
local function cancelled_record(at_stage)
  return '{"state":"cancelled","stage":"' .. at_stage .. '","error":"session cancelled","at":' .. now .. '}'
end

if outcome == 'done' then
  redis.call('HINCRBY', KEYS[3], stage .. '|completed', 1)
  result('completed', '')
  local nxt = ARGV[6]
  if nxt == '' then
    redis.call('HDEL', KEYS[4], item)
  elseif active then
    redis.call('RPUSH', KEYS[8], ARGV[7])
    redis.call('HSET', KEYS[4], item, nxt)
    redis.call('HINCRBY', KEYS[3], nxt .. '|enqueued', 1)
    redis.call('ZADD', KEYS[9], 'LT', now_us(), session)
    ring(KEYS[10], 1, tonumber(ARGV[11]))
  else
    settle(nxt, 'cancelled', cancelled_record(nxt))
  end
  return {'ok', 'done'}
end
if (outcome == 'retry' or outcome == 'handback') and not active then
  settle(stage, 'cancelled', cancelled_record(stage))
  result('cancelled', 'session cancelled')
  return {'ok', 'cancelled'}
end
if outcome == 'retry' then
  local due = now + tonumber(ARGV[8])
  redis.call('ZADD', KEYS[8], due, ARGV[7])
  redis.call('ZADD', KEYS[9], 'LT', ms_to_us(due), session)
  redis.call('HINCRBY', KEYS[3], stage .. '|retried', 1)
  redis.call('HINCRBY', KEYS[3], stage .. '|delayed', 1)
  return {'ok', 'retry'}
end
if outcome == 'handback' then
  redis.call('LPUSH', KEYS[8], ARGV[7])
  redis.call('ZADD', KEYS[9], 'LT', now_us(), session)
  ring(KEYS[10], 1, tonumber(ARGV[11]))
  return {'ok', 'handback'}
end
-- failed, timed_out or cancelled: the item stops here, with its reason
settle(stage, outcome, ARGV[9])
result(outcome, ARGV[15])
return {'ok', outcome}
