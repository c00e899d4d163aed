-- Finish claimed tasks of one stage of one session with the same outcome, each in one atomic
-- step in the session's slot: the task leaves the worker's in-flight list, the accounting moves,
-- and (on success) the item is enqueued for the next stage. Several tasks travel in one call (a
-- worker that prefetched short tasks reports them together); counters move once per call. The
-- fleet side (the results stream, the durations histogram, the next role's ready set and bell, a
-- limited stage's permits) is fleet.lua's, in the same round trip (symphony/engine/lease.py).
-- An item is counted done at a stage once, however often it runs there: its bit (its ordinal in
-- the session, carried by its message) is set in the stage's done bitmap, and the stage's `done`
-- counter moves only when the bit was not set yet. `completed` counts every completion.
-- KEYS[1] inflight(session, worker)  KEYS[2] stats  KEYS[3] live  KEYS[4] outcomes  KEYS[5] session
-- KEYS[6] target (next queue | delayed set | own queue | the session's dead-letter list)
-- KEYS[7] done bitmap of this stage  KEYS[8] holders(session)
-- ARGV[1] outcome: done|retry|handback|failed|timed_out|cancelled|deadletter (the message to push:
--   the message as printable text, the error: why)  ARGV[2] stage  ARGV[3] session
-- ARGV[4] next stage ('' = last stage)  ARGV[5] worker id
-- ARGV[6..] 10 values per task: message, item, message to push to the target, retry delay ms,
--   ordinal ('' when the message has none), duration ms, attempts made, short error (one line),
--   error, stderr tail
-- Returns, per task: 'lost' if it was no longer ours (its lease was reclaimed: nothing changes),
-- else the recorded outcome (done, retry, handback, failed, timed_out or cancelled).
local now = now_ms()
local outcome, stage, session, nxt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local worker = ARGV[5]
local meta = redis.call('HMGET', KEYS[5], 'state', 'items', 'priority')
-- only a cancelled session stops its tasks: one whose definition Redis lost (evicted, deleted) goes
-- on (its next tasks wait in their queue, unclaimed, until repair registers it again); nobody
-- cancelled it, so nothing is recorded cancelled
local active = meta[1] ~= 'cancelled'
local items = tonumber(meta[2] or '0') or 0
local out = {}
local held, completed, done, retried, handed, dead = 0, 0, 0, 0, 0, 0
local pushed = {}
local function settle(item, at_stage, state, err, stderr, attempts, msg)
  redis.call('HINCRBY', KEYS[2], at_stage .. '|' .. state, 1)
  redis.call('HDEL', KEYS[3], item)
  record_outcome(KEYS[4], item, state, at_stage, err, stderr, attempts, worker, now, msg)
end
-- 1 if this completion is the item's first at this stage (its bit was clear), else 0. A message
-- without an ordinal (queued by an older version) counts as before; an ordinal outside the
-- session's items (a planted message) never counts, and never grows the bitmap.
-- While the session's definition is missing (Redis lost it; repair registers it again) its item
-- count is unknown: ordinals below LOST_BOUND still count, so no completion goes uncounted.
local LOST_BOUND = 16777216  -- 2 MB of bitmap at most
local ordinal_bound = meta[1] and items or LOST_BOUND
local function first_completion(ordinal)
  if ordinal == '' then return 1 end
  local o = tonumber(ordinal)
  if not o or o < 0 or o >= ordinal_bound or o ~= math.floor(o) then return 0 end
  return 1 - redis.call('SETBIT', KEYS[7], o, 1)
end

for i = 6, #ARGV, 10 do
  local msg, item, push, attempts, ms = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 6], ARGV[i + 5]
  if redis.call('LREM', KEYS[1], 1, msg) == 0 then
    out[#out + 1] = 'lost'
  else
    held = held + 1
    if outcome == 'done' then
      completed = completed + 1
      done = done + first_completion(ARGV[i + 4])
      if nxt == '' then
        redis.call('HDEL', KEYS[3], item)
      elseif active then
        pushed[#pushed + 1] = push
        redis.call('HSET', KEYS[3], item, nxt)
      else
        settle(item, nxt, 'cancelled', 'session cancelled', '', 0, push)
      end
      out[#out + 1] = 'done'
    elseif (outcome == 'retry' or outcome == 'handback') and not active then
      settle(item, stage, 'cancelled', 'session cancelled', '', attempts, msg)
      out[#out + 1] = 'cancelled'
    elseif outcome == 'retry' then
      local due = now + tonumber(ARGV[i + 3])
      redis.call('ZADD', KEYS[6], due, push)
      retried = retried + 1
      out[#out + 1] = 'retry'
    elseif outcome == 'deadletter' then
      -- not a task message: set aside with its reason; no item of the session is touched
      dead_letter(KEYS[6], now, stage, session, worker, ARGV[i + 8], push)
      dead = dead + 1
      out[#out + 1] = 'deadletter'
    elseif outcome == 'handback' then
      redis.call('LPUSH', KEYS[6], push)
      handed = handed + 1
      out[#out + 1] = 'handback'
    else
      -- failed, timed_out or cancelled: the item stops here, with its reason
      settle(item, stage, outcome, ARGV[i + 8], ARGV[i + 9], attempts, msg)
      out[#out + 1] = outcome
    end
  end
end
if held == 0 then return out end
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[8], worker) end
redis.call('HINCRBY', KEYS[2], stage .. '|running', -held)
if completed > 0 then redis.call('HINCRBY', KEYS[2], stage .. '|completed', completed) end
if done > 0 then redis.call('HINCRBY', KEYS[2], stage .. '|done', done) end
if dead > 0 then redis.call('HINCRBY', KEYS[2], stage .. '|deadletter', dead) end
if #pushed > 0 then
  redis.call('RPUSH', KEYS[6], unpack(pushed))
  redis.call('HINCRBY', KEYS[2], nxt .. '|enqueued', #pushed)
end
if retried > 0 then
  redis.call('HINCRBY', KEYS[2], stage .. '|retried', retried)
  redis.call('HINCRBY', KEYS[2], stage .. '|delayed', retried)
end
return out
