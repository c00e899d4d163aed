-- Claim the next tasks of one queue: one atomic step that moves up to ARGV[4] of them into the
-- worker's in-flight list (its lease lasts as long as the worker's heartbeat), counts them as
-- running, promotes due retries, keeps the role's ready set in LRU order (fairness between
-- sessions), and returns a hint of which queue to claim from next. Workers claim one task at a
-- time unless their tasks are short (prefetch, see symphony/workers/process.py).
-- KEYS[1] inflight(worker)  KEYS[2] worker  KEYS[3] queue  KEYS[4] delayed  KEYS[5] ready(role)
-- KEYS[6] stats  KEYS[7] session  KEYS[8] bell(role)  KEYS[9] live  KEYS[10] dead-letter list
-- KEYS[11..] ready(r) for each role served
-- ARGV[1] role  ARGV[2] session  ARGV[3] bell max  ARGV[4] how many to claim (>= 1)
-- ARGV[5..] role names matching KEYS[11..]
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
if #held > 0 then
  got = held
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], 'current', got[1], 'since', now, 'state', 'busy')
  end
elseif redis.call('HGET', KEYS[7], 'state') == 'active' then
  local refused = 0
  while #got < want and refused < 100 do
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
  if redis.call('LLEN', KEYS[3]) > 0 then
    redis.call('ZADD', KEYS[5], now_u, session)
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
  -- cancelled or unknown session: nothing here may be claimed
  redis.call('ZREM', KEYS[5], session)
end
local hint = best_hint(11, -6)
local out = {hint[1], hint[2], hint[3], now_u, #held > 0 and '1' or ''}
for i = 1, #got do out[5 + i] = got[i] end
return out
