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

-- The queue a worker should claim from next: of the ready sets KEYS[first..], the session with
-- the lowest score (least recently served, or soonest eligible). Returns {role, session, score},
-- the role taken from ARGV[i + offset] for KEYS[i]; role '' when no role has work.
local function best_hint(first, offset)
  local best, best_member, best_score, best_text = 0, '', 0, '0'
  for i = first, #KEYS do
    local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if #head > 0 then
      local score = tonumber(head[2])
      if best == 0 or score < best_score then best, best_member, best_score, best_text = i, head[1], score, head[2] end
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
