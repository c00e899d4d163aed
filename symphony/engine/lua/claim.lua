-- Claim the next tasks of one queue: one atomic step that moves up to ARGV[4] of them into the
-- worker's in-flight list (its lease lasts as long as the worker's heartbeat), counts them as
-- running, promotes due retries, keeps the role's ready set in LRU order (fairness between
-- sessions), and returns a hint of which queue to claim from next. Workers claim one task at a
-- time unless their tasks are short (prefetch, see symphony/workers/process.py).
-- KEYS[1] inflight(worker)  KEYS[2] worker  KEYS[3] queue  KEYS[4] delayed  KEYS[5] ready(role)
-- KEYS[6] stats  KEYS[7] session  KEYS[8] bell(role)  KEYS[9] live  KEYS[10] dead-letter list
-- KEYS[11] control(role)  KEYS[12..11+n] ready(r) for each of the n roles served,
-- KEYS[12+n..11+2n] control(r) of each
-- ARGV[1] role  ARGV[2] session  ARGV[3] bell max  ARGV[4] how many to claim (>= 1)
-- ARGV[5..4+n] role names matching KEYS[12..]
-- Operator control (docs/control.md), in the same step: a paused session (or stage of it) is
-- claimed from by nobody and leaves the ready set until resumed; the stage's fleet-wide
-- max_running (and the session's own) and its rate (a token bucket on this server's clock) cap
-- how many are claimed (a full stage's queues keep their order, and the hint skips the stage until a
-- slot or a token may be free; a session at its own cap is eligible again shortly);
-- a session's priority shifts its ready score by PRIORITY_US per level (higher goes first, LRU
-- among equals).
-- Returns {hint role, hint session, hint score (us), now (us), '1' if delivered again or '', message...}
-- (no message: none claimed).
-- A worker claims only when it holds nothing else (its reports travel before the claim, and it
-- empties its prefetch before claiming again), so tasks already in its in-flight list are ones
-- whose claim reply it never got (a timeout or a dropped connection after the server ran the
-- claim): they are delivered again instead of claiming more, which would leave them stuck in
-- flight, never run and never reclaimed, for as long as the worker lives.
local now = now_ms()
local now_u = now_us()
local role, session = ARGV[1], ARGV[2]
local want = tonumber(ARGV[4])
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
  local at = redis.call('HGET', KEYS[9], item)
  if at == role then return nil end
  if not at then
    return 'item ' .. item .. ' has no live entry in session ' .. session .. ': not an item of the session, or not queued'
  end
  return 'item ' .. item .. ' of session ' .. session .. ' is at stage ' .. at .. ', not ' .. role
end
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
if #due > 0 then
  redis.call('LPUSH', KEYS[3], unpack(due))
  redis.call('ZREM', KEYS[4], unpack(due))
  redis.call('HINCRBY', KEYS[6], role .. '|delayed', -#due)
end
local held = redis.call('LRANGE', KEYS[1], 0, -1)
local ctl = redis.call('HMGET', KEYS[7], 'state', 'paused', 'paused|' .. role, 'priority', 'max_running|' .. role)
-- How many of `want` the limits admit now; none admitted: when to look again (ms), and whether
-- the stage's own limits (not the session's) are what stopped it.
local bucket = nil
local function admit(want, session_cap)
  local st = stage_limits(KEYS[11], now)
  local allow = want
  if st.cap then allow = math.min(allow, st.cap - st.running) end
  local opens = stage_opens(st, now)
  if opens > 0 then return 0, opens, true end
  local cap = tonumber(session_cap)
  if cap then allow = math.min(allow, cap - math.max(0, tonumber(redis.call('HGET', KEYS[6], role .. '|running')) or 0)) end
  if allow <= 0 then return 0, now + LIMIT_RETRY_MS, false end
  if st.tokens then
    bucket = st.tokens
    allow = math.min(allow, math.floor(st.tokens))
  end
  return allow, nil, false
end
-- Count what was claimed: the stage's running tasks (released by finish and reclaim), its tokens.
local function admitted(n)
  if n > 0 then redis.call('HINCRBY', KEYS[11], 'running', n) end
  if bucket then redis.call('HSET', KEYS[11], 'tokens', tostring(bucket - n), 'at', now) end
end
if #held > 0 then
  got = held
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], 'current', got[1], 'since', now, 'state', 'busy')
  end
elseif ctl[1] == 'active' and not ctl[2] and not ctl[3] then
  local allow, later, stage_full = admit(want, ctl[5])
  local refused = 0
  while #got < allow and refused < 100 do
    local msg = redis.call('LPOP', KEYS[3])
    if not msg then break end
    local why = refusal(msg)
    if why then
      dead_letter(KEYS[10], now, role, session, '', why, msg)
      refused = refused + 1
    else
      redis.call('RPUSH', KEYS[1], msg)
      got[#got + 1] = msg
    end
  end
  if refused > 0 then redis.call('HINCRBY', KEYS[6], role .. '|deadletter', refused) end
  if #got > 0 then
    redis.call('HINCRBY', KEYS[6], role .. '|running', #got)
    if redis.call('EXISTS', KEYS[2]) == 1 then
      redis.call('HSET', KEYS[2], 'current', got[1], 'since', now, 'state', 'busy')
    end
  end
  admitted(#got)
  if later and stage_full and redis.call('LLEN', KEYS[3]) > 0 then
    -- the stage is full (or out of tokens): its queues keep their place; the hint skips the stage until it opens
  elseif later and redis.call('LLEN', KEYS[3]) > 0 then
    redis.call('ZADD', KEYS[5], ms_to_us(later), session)  -- this session at its own cap: eligible again shortly
  elseif redis.call('LLEN', KEYS[3]) > 0 then
    redis.call('ZADD', KEYS[5], prioritized(now_u, ctl[4]), session)
    if #got > 0 and redis.call('LLEN', KEYS[8]) == 0 then redis.call('RPUSH', KEYS[8], '1') end
  else
    local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    if #first > 0 then
      redis.call('ZADD', KEYS[5], ms_to_us(tonumber(first[2])), session)
    else
      redis.call('ZREM', KEYS[5], session)
    end
  end
else
  -- paused (resume puts it back), cancelled or unknown session: nothing here may be claimed
  redis.call('ZREM', KEYS[5], session)
end
local served = #ARGV - 4
local hint = best_open_hint(12, served, -7, now)
local out = {hint[1], hint[2], hint[3], now_u, #held > 0 and '1' or ''}
for i = 1, #got do out[5 + i] = got[i] end
return out
