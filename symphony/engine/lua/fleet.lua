-- The fleet-slot side of a step (every key here has the fleet hash tag `{<ns>}`): the hints,
-- wake-ups, counters and permits that follow the session-slot steps of the same round trip
-- (symphony/engine/fleet.py builds the calls). A list of operations, each naming its keys by
-- their index in KEYS; the reply has one entry per operation, in order.
-- Operations (ARGV, then their arguments):
--   work ready version bell session steering delay_ms ring bell_max
--       work was added for the session: its version becomes now (µs); its score in the ready set
--       becomes at most now (shifted by its priority, from the steering hash), or now + delay_ms unless '' (retries); rings `ring`
--       tokens on the bell (ring = -1: one token only if the session was not in the ready set).
--   bump ready bell session steering   a claimer served the session: it goes to the back (only if
--       present), and one token is left on the bell if it has none
--   drop ready version session seen   remove the session from the ready set, only if no work was
--       added since its hint was read (its version is still `seen`)
--   later ready version session seen score_us   the same condition: the session is eligible at score
--   result results maxlen s t i st a ms w e   one entry of the results stream (its id in the reply)
--   unresult results id   delete an entry written for a report that turned out lost
--   hincr key field delta
--   acquire control permits stage want   take up to `want` permits of a limited stage
--       (max_running, rate): reply {granted, opens ms (0: open)}; a stage without limits grants all
--       and counts nothing
--   release control permits stage n refund   give back up to n permits this worker holds (refund 1:
--       unused ones, their rate tokens too)
--   worker key n field value ...   describe the worker (only if its hash exists; `since` = now)
--   judge clock grace workers worker force   may the worker's tasks be reclaimed now?
--   hints first n all role...   the queue to claim from next: KEYS[first..first+n-1] ready sets,
--       then n control hashes, then n version hashes; reply {role, session, score µs, now µs,
--       version, limited flags (per role: '1', '0', or '-' not looked up: only the
--       hinted role's are, unless all = '1')}
local now = now_ms()
local out = {}
local i = 1
local function key(at) return KEYS[tonumber(ARGV[at])] end
-- A session's priority, from the steering hash (steering.py writes it with the session's own)
local function priority_of(steering, session)
  local raw = redis.call('HGET', steering, session)
  if not raw then return 0 end
  local ok, data = pcall(cjson.decode, raw)
  if ok and type(data) == 'table' then return tonumber(data.priority) or 0 end
  return 0
end

local function op_work()
  local ready, version, bell, session = key(i + 1), key(i + 2), key(i + 3), ARGV[i + 4]
  local priority, delay, n, max = priority_of(key(i + 5), session), tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]),
    tonumber(ARGV[i + 8])
  local u = now_us()
  redis.call('HSET', version, session, u)
  local score = delay and ms_to_us(now + delay) or prioritized(u, priority)
  local added = redis.call('ZADD', ready, 'LT', score, session)
  if n < 0 then n = added end
  if n > 0 then ring(bell, n, max, session) end
  i = i + 9
  return added
end

local function op_drop(with_score)
  local ready, version, session, seen = key(i + 1), key(i + 2), ARGV[i + 3], ARGV[i + 4]
  local done = 0
  if (redis.call('HGET', version, session) or '') == seen then
    if with_score then
      done = redis.call('ZADD', ready, 'XX', 'CH', ARGV[i + 5], session)
    else
      done = redis.call('ZREM', ready, session)
      redis.call('HDEL', version, session)
    end
  end
  i = i + (with_score and 6 or 5)
  return done
end

local function op_acquire()
  local control, permits, stage, want = key(i + 1), key(i + 2), ARGV[i + 3], tonumber(ARGV[i + 4])
  i = i + 5
  local st = stage_limits(control, now)
  if not st.cap and not st.tokens then return {want, 0} end
  local opens = stage_opens(st, now)
  if opens > 0 then return {0, opens} end
  local allow = want
  if st.cap then allow = math.min(allow, st.cap - st.running) end
  if st.tokens then
    allow = math.min(allow, math.floor(st.tokens))
    redis.call('HSET', control, 'tokens', tostring(st.tokens - allow), 'at', now)
  end
  if allow <= 0 then return {0, now + LIMIT_RETRY_MS} end
  redis.call('HINCRBY', control, 'running', allow)
  redis.call('HINCRBY', permits, stage, allow)
  return {allow, 0}
end

local function op_release()
  local control, permits, stage, n, refund = key(i + 1), key(i + 2), ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5]
  i = i + 6
  local held = tonumber(redis.call('HGET', permits, stage) or '0') or 0
  local give = math.min(n, held)
  if give <= 0 then return 0 end
  if held - give > 0 then redis.call('HSET', permits, stage, held - give) else redis.call('HDEL', permits, stage) end
  if redis.call('HINCRBY', control, 'running', -give) < 0 then redis.call('HSET', control, 'running', 0) end
  if refund == '1' then
    local st = stage_limits(control, now)
    if st.tokens then redis.call('HSET', control, 'tokens', tostring(math.min(st.burst, st.tokens + give)), 'at', now) end
  end
  return give
end

local function op_hints()
  local first, n, all = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3] == '1'
  i = i + 1
  local hint = best_open_hint(first, n, i + 3 - first, now)
  local flags = {}
  local version = ''
  for r = 0, n - 1 do
    flags[r + 1] = '-'  -- the hinted role's limits are looked up (the one claimed from next), all only when asked
    local hinted = hint[1] ~= '' and ARGV[i + 3 + r] == hint[1]
    if hinted or all then
      local c = redis.call('HMGET', KEYS[first + n + r], 'max_running', 'max_running_declared', 'rate', 'rate_declared')
      flags[r + 1] = (c[1] or c[2] or c[3] or c[4]) and '1' or '0'
    end
    if hinted then version = redis.call('HGET', KEYS[first + 2 * n + r], hint[2]) or '' end
  end
  i = i + 3 + n
  return {hint[1], hint[2], hint[3], now_us(), version, table.concat(flags)}
end

while i <= #ARGV do
  local op = ARGV[i]
  if op == 'work' then
    out[#out + 1] = op_work()
  elseif op == 'bump' then
    -- served: to the back of the ready set; while it is there, one idle worker more is woken (the
    -- queue may have more: a chain of wake-ups, one per claim, never more than one token waiting)
    local ready, bell, session = key(i + 1), key(i + 2), ARGV[i + 3]
    out[#out + 1] = redis.call('ZADD', ready, 'XX', 'CH', prioritized(now_us(), priority_of(key(i + 4), session)), session)
    if out[#out] == 1 and redis.call('LLEN', bell) == 0 then redis.call('RPUSH', bell, session) end
    i = i + 5
  elseif op == 'drop' then
    out[#out + 1] = op_drop(false)
  elseif op == 'later' then
    out[#out + 1] = op_drop(true)
  elseif op == 'result' then
    out[#out + 1] = redis.call('XADD', key(i + 1), 'MAXLEN', '~', ARGV[i + 2], '*', 's', ARGV[i + 3],
      't', ARGV[i + 4], 'i', ARGV[i + 5], 'st', ARGV[i + 6], 'a', ARGV[i + 7], 'ms', ARGV[i + 8],
      'w', ARGV[i + 9], 'e', ARGV[i + 10])
    i = i + 11
  elseif op == 'unresult' then
    out[#out + 1] = redis.call('XDEL', key(i + 1), ARGV[i + 2])
    i = i + 3
  elseif op == 'hincr' then
    out[#out + 1] = redis.call('HINCRBY', key(i + 1), ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'acquire' then
    out[#out + 1] = op_acquire()
  elseif op == 'release' then
    out[#out + 1] = op_release()
  elseif op == 'worker' then
    local k, n = key(i + 1), tonumber(ARGV[i + 2])
    if redis.call('EXISTS', k) == 1 then
      redis.call('HSET', k, 'since', now, unpack(ARGV, i + 3, i + 2 + 2 * n))
    end
    out[#out + 1] = 1
    i = i + 3 + 2 * n
  elseif op == 'judge' then
    -- may the tasks of a worker be reclaimed? (an outage noticed here opens the grace window, as
    -- in every script that judges leases): 'grace', 'alive' or 'lapsed' (force: always 'lapsed')
    local grace = observe(key(i + 1), key(i + 2), key(i + 3), now, '', nil, nil)
    local verdict = 'lapsed'
    if ARGV[i + 5] ~= '1' then
      local expiry = redis.call('ZSCORE', key(i + 3), ARGV[i + 4])
      if grace > 0 then verdict = 'grace' elseif expiry and tonumber(expiry) > now then verdict = 'alive' end
    end
    out[#out + 1] = verdict
    i = i + 6
  elseif op == 'hints' then
    out[#out + 1] = op_hints()
  else
    return redis.error_reply('fleet.lua: unknown operation ' .. tostring(op))
  end
end
return out
