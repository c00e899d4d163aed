-- Finish claimed tasks of one stage of one session with the same outcome, each in one atomic
-- step: the task leaves the worker's in-flight list, the accounting moves, and (on success) the
-- item is enqueued for the next stage. Several tasks travel in one call (a worker that
-- prefetched short tasks reports them together); counters move once per call.
-- An item is counted done at a stage once, however often it runs there: its bit (its ordinal in
-- the session, carried by its message) is set in the stage's done bitmap, and the stage's `done`
-- counter moves only when the bit was not set yet. `completed` counts every completion.
-- KEYS[1] inflight(worker)  KEYS[2] worker  KEYS[3] stats  KEYS[4] live  KEYS[5] outcomes
-- KEYS[6] session  KEYS[7] results stream  KEYS[8] target (next queue | delayed set | own queue)
-- KEYS[9] ready(target role)  KEYS[10] bell(target role)  KEYS[11] done bitmap of this stage
-- KEYS[12] durations histogram of this stage  KEYS[13] control(stage): its running tasks are released
-- ARGV[1] outcome: done|retry|handback|failed|timed_out|cancelled|deadletter (KEYS[8]: the
--   dead-letter list; the message to push: the message as printable text, the error: why)  ARGV[2] stage  ARGV[3] session
-- ARGV[4] next stage ('' = last stage)  ARGV[5] results maxlen  ARGV[6] bell max  ARGV[7] worker id
-- ARGV[8..] 10 values per task: message, item, message to push to the target, retry delay ms,
--   ordinal ('' when the message has none), duration ms, attempts made, short error (one line),
--   error, stderr tail
-- Returns, per task: 'lost' if it was no longer ours (its lease was reclaimed: nothing changes),
-- else the recorded outcome (done, retry, handback, failed, timed_out or cancelled).
local now = now_ms()
local outcome, stage, session, nxt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxlen, bell_max, worker = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local meta = redis.call('HMGET', KEYS[6], 'state', 'items', 'priority')
-- only a cancelled session stops its tasks: one whose definition Redis lost (evicted, deleted) goes
-- on (its next tasks wait in their queue, unclaimed, until repair registers it again); nobody
-- cancelled it, so nothing is recorded cancelled
local active = meta[1] ~= 'cancelled'
local items = tonumber(meta[2] or '0') or 0
local out = {}
local held, completed, done, retried, handed, dead = 0, 0, 0, 0, 0, 0
local pushed = {}
-- Completed tasks' durations go into the stage's histogram: a count per bucket (its upper bound
-- in ms) and their sum, moved once per call like the counters. The bounds are defined here only;
-- readers take them from the field names (symphony/engine/durations.py).
local BOUNDS_MS = {10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000, 3600000}
local buckets, duration_sum = {}, 0
local function observe_duration(ms)
  ms = tonumber(ms) or 0
  local bound = 'inf'
  for _, b in ipairs(BOUNDS_MS) do
    if ms <= b then bound = b break end
  end
  buckets[bound] = (buckets[bound] or 0) + 1
  duration_sum = duration_sum + ms
end

local function result(item, state, attempts, ms, err)
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', maxlen, '*', 's', session, 't', stage, 'i', item,
    'st', state, 'a', attempts, 'ms', ms, 'w', worker, 'e', err or '')
end
local function settle(item, at_stage, state, err, stderr, attempts, msg)
  redis.call('HINCRBY', KEYS[3], at_stage .. '|' .. state, 1)
  redis.call('HDEL', KEYS[4], item)
  record_outcome(KEYS[5], item, state, at_stage, err, stderr, attempts, worker, now, msg)
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
  return 1 - redis.call('SETBIT', KEYS[11], o, 1)
end

for i = 8, #ARGV, 10 do
  local msg, item, push, attempts, ms = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 6], ARGV[i + 5]
  if redis.call('LREM', KEYS[1], 1, msg) == 0 then
    out[#out + 1] = 'lost'
  else
    held = held + 1
    if outcome == 'done' then
      completed = completed + 1
      done = done + first_completion(ARGV[i + 4])
      observe_duration(ms)
      result(item, 'completed', attempts, ms, '')
      if nxt == '' then
        redis.call('HDEL', KEYS[4], item)
      elseif active then
        pushed[#pushed + 1] = push
        redis.call('HSET', KEYS[4], item, nxt)
      else
        settle(item, nxt, 'cancelled', 'session cancelled', '', 0, push)
      end
      out[#out + 1] = 'done'
    elseif (outcome == 'retry' or outcome == 'handback') and not active then
      settle(item, stage, 'cancelled', 'session cancelled', '', attempts, msg)
      result(item, 'cancelled', attempts, ms, 'session cancelled')
      out[#out + 1] = 'cancelled'
    elseif outcome == 'retry' then
      local due = now + tonumber(ARGV[i + 3])
      redis.call('ZADD', KEYS[8], due, push)
      redis.call('ZADD', KEYS[9], 'LT', ms_to_us(due), session)
      retried = retried + 1
      out[#out + 1] = 'retry'
    elseif outcome == 'deadletter' then
      -- not a task message: set aside with its reason; no item of the session is touched
      dead_letter(KEYS[8], now, stage, session, worker, ARGV[i + 8], push)
      dead = dead + 1
      out[#out + 1] = 'deadletter'
    elseif outcome == 'handback' then
      redis.call('LPUSH', KEYS[8], push)
      handed = handed + 1
      out[#out + 1] = 'handback'
    else
      -- failed, timed_out or cancelled: the item stops here, with its reason
      settle(item, stage, outcome, ARGV[i + 8], ARGV[i + 9], attempts, msg)
      result(item, outcome, attempts, ms, ARGV[i + 7])
      out[#out + 1] = outcome
    end
  end
end
if held == 0 then return out end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'current', '', 'since', now, 'state', 'idle')
end
redis.call('HINCRBY', KEYS[3], stage .. '|running', -held)
if redis.call('HINCRBY', KEYS[13], 'running', -held) < 0 then redis.call('HSET', KEYS[13], 'running', 0) end
if completed > 0 then
  redis.call('HINCRBY', KEYS[3], stage .. '|completed', completed)
  for bound, n in pairs(buckets) do redis.call('HINCRBY', KEYS[12], bound, n) end
  redis.call('HINCRBY', KEYS[12], 'sum_ms', duration_sum)
end
if done > 0 then redis.call('HINCRBY', KEYS[3], stage .. '|done', done) end
if dead > 0 then redis.call('HINCRBY', KEYS[3], stage .. '|deadletter', dead) end
if #pushed > 0 then
  redis.call('RPUSH', KEYS[8], unpack(pushed))
  redis.call('HINCRBY', KEYS[3], nxt .. '|enqueued', #pushed)
  redis.call('ZADD', KEYS[9], 'LT', prioritized(now_us(), meta[3]), session)
  ring(KEYS[10], #pushed, bell_max, session)
end
if retried > 0 then
  redis.call('HINCRBY', KEYS[3], stage .. '|retried', retried)
  redis.call('HINCRBY', KEYS[3], stage .. '|delayed', retried)
end
if handed > 0 then
  redis.call('ZADD', KEYS[9], 'LT', prioritized(now_us(), meta[3]), session)
  ring(KEYS[10], handed, bell_max, session)
end
return out
