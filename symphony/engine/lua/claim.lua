-- Claim the next tasks of one queue, in the session's slot: one atomic step that moves up to
-- ARGV[3] of them into the worker's in-flight list of the session (its lease lasts as long as the
-- worker's heartbeat), counts them as running and promotes due retries. The fleet side (the
-- role's ready set, the next hint, a limited stage's permits) is fleet.lua's, in the same round
-- trip (symphony/engine/lease.py). Workers claim one task at a time unless their tasks are short
-- (prefetch, see symphony/workers/process.py).
-- KEYS[1] inflight(session, worker)  KEYS[2] queue  KEYS[3] delayed  KEYS[4] stats  KEYS[5] session
-- KEYS[6] live  KEYS[7] dead-letter list of the session  KEYS[8] holders(session)
-- ARGV[1] role  ARGV[2] session  ARGV[3] how many to claim (>= 1; a limited stage: the permits
-- taken)  ARGV[4] worker id
-- Operator control (docs/control.md), in the same step: a paused session (or stage of it) is
-- claimed from by nobody; the session's own max_running caps how many are claimed.
-- Returns {state, now (µs), priority, '1' if delivered again or '', eligible at (µs, for
-- 'later'), message...}; state: 'more' (the queue has more), 'empty' (nothing queued or retrying),
-- 'later' (nothing to claim before the eligible time: a retry's due time, or the session at its
-- own cap), 'paused', 'stopped' (cancelled or unknown session).
-- A worker claims from a session only when it holds nothing else of it (its reports travel before
-- the claim, and it empties its prefetch before claiming again), so tasks already in its in-flight
-- list are ones whose claim reply it never got (a timeout or a dropped connection after the server
-- ran the claim): they are delivered again instead of claiming more.
local now = now_ms()
local now_u = now_us()
local role, session = ARGV[1], ARGV[2]
local want = tonumber(ARGV[3])
local got = {}
-- A task whose item has no live entry at this stage is refused (a planted message: the session
-- has no such item, or not here): set aside in the dead-letter list, never run, never counted.
-- Messages are written item first; one that is not, or is no JSON, goes on to the worker, whose
-- decoder says why it is not a task.
local function refusal(msg)
  local item = string.match(msg, '^{"i":"([^"\\]*)",')
  if not item then
    local ok, data = pcall(cjson.decode, msg)
    if not ok or type(data) ~= 'table' or type(data.i) ~= 'string' then return nil end
    item = data.i
  end
  local at = redis.call('HGET', KEYS[6], item)
  if at == role then return nil end
  if not at then
    return 'item ' .. item .. ' has no live entry in session ' .. session .. ': not an item of the session, or not queued'
  end
  return 'item ' .. item .. ' of session ' .. session .. ' is at stage ' .. at .. ', not ' .. role
end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
if #due > 0 then
  redis.call('LPUSH', KEYS[2], unpack(due))
  redis.call('ZREM', KEYS[3], unpack(due))
  redis.call('HINCRBY', KEYS[4], role .. '|delayed', -#due)
end
local held = redis.call('LRANGE', KEYS[1], 0, -1)
local ctl = redis.call('HMGET', KEYS[5], 'state', 'paused', 'paused|' .. role, 'priority', 'max_running|' .. role)
local state, later = 'more', 0
if #held > 0 then
  got = held
elseif ctl[1] ~= 'active' then
  state = 'stopped'
elseif ctl[2] or ctl[3] then
  state = 'paused'
else
  local allow = want
  local cap = tonumber(ctl[5])
  if cap then allow = math.min(allow, cap - math.max(0, tonumber(redis.call('HGET', KEYS[4], role .. '|running')) or 0)) end
  if allow <= 0 and redis.call('LLEN', KEYS[2]) > 0 then
    state, later = 'later', (now + LIMIT_RETRY_MS) * 1000  -- this session at its own cap: eligible again shortly
  end
  local refused = 0
  while #got < allow and refused < 100 do
    local msg = redis.call('LPOP', KEYS[2])
    if not msg then break end
    local why = refusal(msg)
    if why then
      dead_letter(KEYS[7], now, role, session, '', why, msg)
      refused = refused + 1
    else
      redis.call('RPUSH', KEYS[1], msg)
      got[#got + 1] = msg
    end
  end
  if refused > 0 then redis.call('HINCRBY', KEYS[4], role .. '|deadletter', refused) end
  if #got > 0 then
    redis.call('HINCRBY', KEYS[4], role .. '|running', #got)
    redis.call('SADD', KEYS[8], ARGV[4])
  end
end
if state == 'more' and redis.call('LLEN', KEYS[2]) == 0 then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #first > 0 then
    state, later = 'later', tonumber(first[2]) * 1000
  else
    state = 'empty'
  end
end
local out = {state, now_u, ctl[4] or '0', #held > 0 and '1' or '', string.format('%.0f', later)}
for i = 1, #got do out[5 + i] = got[i] end
return out
