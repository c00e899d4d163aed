-- Shared helpers, prepended to every Symphony script.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Scores of the ready sets are microseconds, kept as exact decimal strings: Lua would format a
-- 16-digit number with %.14g and lose its last digits.
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

local function ms_to_us(ms)
  return string.format('%.0f', ms) .. '000'
end

-- A session's place in a ready set: its score (µs) shifted by its priority (the session hash's
-- `priority`, 0..1000), so a higher priority goes first and equals keep their LRU order.
local PRIORITY_US = 1000000000000  -- one priority level outranks 11.6 days of waiting
local function prioritized(score, priority)
  local p = tonumber(priority) or 0
  if p <= 0 then return score end
  return string.format('%.0f', tonumber(score) - p * PRIORITY_US)
end

-- A stage's fleet-wide limits now (its control hash, symphony:control:<stage>; docs/control.md):
-- the max_running in force (the operator's, else the pipeline's) and its running tasks, and its
-- rate's token bucket refilled to `now` (tokens = nil without a rate). Nothing is written here.
local function stage_limits(control, now)
  local c = redis.call('HMGET', control, 'max_running', 'max_running_declared', 'running', 'rate', 'rate_declared',
    'tokens', 'at')
  local st = {cap = tonumber(c[1]) or tonumber(c[2]), running = math.max(0, tonumber(c[3]) or 0)}
  local n, per = string.match(c[4] or c[5] or '', '^(%d+)/(%d+)$')
  n, per = tonumber(n), tonumber(per)
  if n and per and n > 0 and per > 0 then
    st.n, st.per = n, per
    st.burst = math.max(1, math.min(n, math.ceil(n * 1000 / per)))  -- at most one second's worth at once
    local tokens, at = tonumber(c[6]), tonumber(c[7])
    if not tokens or not at then tokens, at = st.burst, now end
    st.tokens = math.min(st.burst, tokens + math.max(0, now - at) * n / per)
  end
  return st
end

-- 0 if a task of the stage may be claimed now, else the server ms when a slot may be free (its
-- max_running is reached: look again shortly) or its next token is due.
local LIMIT_RETRY_MS = 20
local function stage_opens(st, now)
  if st.cap and st.running >= st.cap then return now + LIMIT_RETRY_MS end
  if st.tokens and st.tokens < 1 then return now + math.ceil((1 - st.tokens) * st.per / st.n) end
  return 0
end

-- The queue a worker should claim from next, over the stages that are open: of the ready sets KEYS[first .. first+count-1] (their
-- control hashes follow at KEYS[first+count ..]), the lowest score, a closed stage's queues
-- counting as eligible only when it opens (lowest: the highest priority, then the least recently
-- served, or the soonest eligible); the role from ARGV[i + offset] for KEYS[i]. Returns {role,
-- session, score}, role '' when no role has work. A full stage's ready set keeps its order.
local function best_open_hint(first, count, offset, now)
  local best, best_score, best_member, best_text = 0, 0, '', '0'
  for i = first, first + count - 1 do
    local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if #head > 0 then
      local score, text = tonumber(head[2]), head[2]
      local opens = stage_opens(stage_limits(KEYS[i + count], now), now)
      if opens > 0 and opens * 1000 > score then score, text = opens * 1000, ms_to_us(opens) end
      if best == 0 or score < best_score then best, best_score, best_member, best_text = i, score, head[1], text end
    end
  end
  if best == 0 then return {'', '', '0'} end
  return {ARGV[best + offset], best_member, best_text}
end

-- Wake up to `n` idle workers blocked on a role's bell, keeping at most `max` tokens queued.
-- A token is the session whose queue got work (`session`): the worker it wakes claims from that
-- queue at once, without first asking where work is; '1' (no session) sends it to ask.
local function ring(bell, n, max, session)
  local have = redis.call('LLEN', bell)
  local want = math.min(n, max - have)
  if want > 0 then
    local token = session or '1'
    local tokens = {}
    for i = 1, want do tokens[i] = token end
    redis.call('RPUSH', bell, unpack(tokens))
  end
end

-- Was Redis unavailable (paused, restarting, unreachable) just before this script? Every script
-- that judges leases (heartbeat, lapsed, reclaim, forget) calls this first, so whichever of them
-- runs first after an outage notices it. `clock` is a HASH: `at` = server ms when any of them
-- last ran, `quiet` = the longest silence that is still normal, `span` = the grace window's
-- length; heartbeats set `quiet` and `span` from their own heartbeat and lease.
-- A silence longer than `quiet`, while some other worker's lease was still running when it began,
-- opens the grace window (`grace`, TTL `span`): until it closes no lease counts as lapsed, so
-- live workers have time to beat again before anybody judges them.
-- Returns the grace window's remaining ms (0 when there is none).
local DEFAULT_QUIET, DEFAULT_SPAN = 6250, 17500  -- for the default heartbeat 5 s, lease 12.5 s
local function observe(clock, grace, workers, now, self_id, quiet, span)
  local at = 0
  if redis.call('TYPE', clock).ok == 'string' then  -- written by an older version: 'ms' or 'ms:hb:lease'
    local last, old_hb, old_lease = string.match(redis.call('GET', clock), '^(%d+):?(%d*):?(%d*)$')
    at = tonumber(last) or 0
    redis.call('DEL', clock)
    old_hb, old_lease = tonumber(old_hb), tonumber(old_lease)
    if old_hb and old_lease then
      redis.call('HSET', clock, 'quiet', math.max(math.floor(old_lease / 2), math.floor(old_hb * 1.2)),
        'span', old_lease + old_hb)
    end
  else
    at = tonumber(redis.call('HGET', clock, 'at') or '0') or 0
  end
  if quiet then
    redis.call('HSET', clock, 'quiet', quiet, 'span', span)
  else
    quiet = tonumber(redis.call('HGET', clock, 'quiet') or '') or DEFAULT_QUIET
    span = tonumber(redis.call('HGET', clock, 'span') or '') or DEFAULT_SPAN
  end
  if at > 0 and now - at > quiet then
    local stake = redis.call('ZRANGEBYSCORE', workers, '(' .. at, '+inf', 'LIMIT', 0, 2)
    for i = 1, #stake do
      if stake[i] ~= self_id then
        redis.call('SET', grace, tostring(now), 'PX', span)
        break
      end
    end
  end
  redis.call('HSET', clock, 'at', now)
  local left = redis.call('PTTL', grace)
  if left < 0 then left = 0 end
  return left
end

-- The one writer of an item's outcome record (OutcomeRecord in symphony/engine/outcomes.py, its
-- only parser): why the item stopped at `stage`, with the message it had (to retry it), and
-- `at` in this server's milliseconds.
local function record_outcome(outcomes, item, state, stage, err, stderr, attempts, worker, at, task)
  redis.call('HSET', outcomes, item, cjson.encode({state = state, stage = stage, error = err or '',
    stderr = stderr or '', attempts = tonumber(attempts) or 0, worker = worker or '', at = at, task = task or ''}))
end

-- Set a message that is no task aside in the dead-letter list (a LIST, newest first, trimmed to
-- DEADLETTER_MAX entries; engine/reclaim.py uses the same bound): one JSON entry with why, where
-- it was found and when (server ms). It is never run and never counted as an item's outcome.
-- The message is kept as printable text: its first 2,000 bytes, every byte above 127 (of the
-- message and the reason) written \xNN, so the entry is valid UTF-8 whatever was planted.
local DEADLETTER_MAX = 1000
local function printable(text)
  local shown = string.gsub(string.sub(text, 1, 2000), '[\128-\255]', function(c)
    return string.format('\\x%02x', string.byte(c)) end)
  if #text > 2000 then shown = shown .. '... (' .. #text .. ' bytes)' end
  return shown
end
local function dead_letter(key, at, stage, session, worker, reason, message)
  redis.call('LPUSH', key, cjson.encode({at = at, stage = stage, session = session, worker = worker or '',
    reason = printable(reason), message = printable(message)}))
  redis.call('LTRIM', key, 0, DEADLETTER_MAX - 1)
end
