-- Give one in-flight task of a dead worker back to its queue (at the head, attempt count raised),
-- or record it as failed when it has used up its attempts, in the session's slot. The worker's
-- lease was judged lapsed just before, in the fleet slot (fleet.lua `judge`); the fleet side (the
-- role's ready set and bell, the results stream, the permits) follows (symphony/engine/reclaim.py).
-- KEYS[1] inflight(session, dead worker)  KEYS[2] queue  KEYS[3] stats  KEYS[4] live
-- KEYS[5] outcomes  KEYS[6] session  KEYS[7] holders(session)
-- ARGV[1] dead worker id  ARGV[2] message  ARGV[3] message with attempt raised  ARGV[4] stage
-- ARGV[5] session  ARGV[6] item  ARGV[7] '1' if that was its last attempt (the stage's retry policy)
-- ARGV[8] attempts made (incl. the lost one)  ARGV[9] why it failed, if that was its last attempt
-- Returns {'gone'|'requeued'|'failed'|'cancelled', the session's priority}
local now = now_ms()
local priority = redis.call('HGET', KEYS[6], 'priority') or '0'
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then return {'gone', priority} end
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[7], ARGV[1]) end
local stage, item = ARGV[4], ARGV[6]
redis.call('HINCRBY', KEYS[3], stage .. '|running', -1)
local function stop(state, err)
  redis.call('HINCRBY', KEYS[3], stage .. '|' .. state, 1)
  redis.call('HDEL', KEYS[4], item)
  record_outcome(KEYS[5], item, state, stage, err, '', ARGV[8], ARGV[1], now, ARGV[2])
end
-- only a cancelled session cancels: a session whose definition Redis lost (evicted, deleted) keeps
-- its task, for repair to register it again (nobody cancelled it)
if redis.call('HGET', KEYS[6], 'state') == 'cancelled' then
  stop('cancelled', 'session cancelled')
  return {'cancelled', priority}
end
if ARGV[7] == '1' then
  stop('failed', ARGV[9])
  return {'failed', priority}
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], stage .. '|reclaimed', 1)
return {'requeued', priority}
