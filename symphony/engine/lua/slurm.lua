-- SLURM job accounting under one tag: the set of every job (ALL) and one set per state
-- (PENDING_AND_RUNNING, COMPLETED, FAILED, ...). Every job recorded is in ALL and in exactly one
-- state set; each move between state sets is atomic. The tag's summary (counts per set, jobs
-- pending and running) is rewritten in the same step, so readers never see it disagree.
-- KEYS[1] tags (HASH tag -> summary)  KEYS[2] jobs (HASH id -> record)  KEYS[3] ALL
-- KEYS[4] the tracker's lock  KEYS[5..] the state sets, PENDING_AND_RUNNING first
-- ARGV[1] op: record | move | cleanup   ARGV[2] n (number of state sets)  ARGV[3..2+n] their names
-- then: tag, ttl ms, retain (finished jobs kept per set), and the op's own arguments:
--   record:  pool, cluster, then (id, record JSON) pairs; adds new ids to ALL and PENDING_AND_RUNNING
--   move:    lock token ('' = no lock), pending, running, then (id, set name, record JSON) triples
--   cleanup: force (0/1): forget every job of the tag (refused while jobs are live, unless forced)
-- Returns record: ids added; move: {moved, updated} or {-1} when the lock is not ours;
-- cleanup: {1, jobs forgotten} or {0, jobs still pending or running}.
local op = ARGV[1]
local tags, jobs, all, lock = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local nsets = tonumber(ARGV[2])
local names, index = {}, {}
for i = 1, nsets do
  names[i] = ARGV[2 + i]
  index[ARGV[2 + i]] = 4 + i
end
local a = 3 + nsets
local tag, ttl, retain = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
a = a + 3
local now = now_ms()
local live = KEYS[5]

local function summary()
  local raw = redis.call('HGET', tags, tag)
  if raw then return cjson.decode(raw) end
  return {tag = tag, created = now, pending = 0, running = 0}
end

local function save(s)
  local counts = {}
  for i = 1, nsets do counts[names[i]] = redis.call('ZCARD', KEYS[4 + i]) end
  s.counts = counts
  s.all = redis.call('ZCARD', all)
  s.updated = now
  if s.pending > s.counts[names[1]] then s.pending = s.counts[names[1]] end
  if s.pending + s.running > s.counts[names[1]] then s.running = s.counts[names[1]] - s.pending end
  redis.call('HSET', tags, tag, cjson.encode(s))
  redis.call('PEXPIRE', jobs, ttl)
  redis.call('PEXPIRE', all, ttl)
  for i = 1, nsets do redis.call('PEXPIRE', KEYS[4 + i], ttl) end
end

-- finished jobs beyond `retain` per set leave the accounting, oldest first
local function trim()
  for i = 2, nsets do
    local n = redis.call('ZCARD', KEYS[4 + i])
    if n > retain then
      local old = redis.call('ZRANGE', KEYS[4 + i], 0, n - retain - 1)
      for j = 1, #old, 500 do
        local part = {unpack(old, j, math.min(j + 499, #old))}
        redis.call('ZREM', KEYS[4 + i], unpack(part))
        redis.call('ZREM', all, unpack(part))
        redis.call('HDEL', jobs, unpack(part))
      end
    end
  end
end

local function current_set(id)
  for i = 1, nsets do
    if redis.call('ZSCORE', KEYS[4 + i], id) then return 4 + i end
  end
  return nil
end

if op == 'record' then
  local pool, cluster = ARGV[a], ARGV[a + 1]
  local s = summary()
  if pool ~= '' then s.pool = pool end
  if cluster ~= '' then s.cluster = cluster end
  local added = 0
  for i = a + 2, #ARGV, 2 do
    local id = ARGV[i]
    if redis.call('ZADD', all, 'NX', now, id) == 1 then
      added = added + 1
      redis.call('ZADD', live, now, id)
      local record = cjson.decode(ARGV[i + 1])
      record.set = names[1]
      record.entered = now
      redis.call('HSET', jobs, id, cjson.encode(record))
    end
  end
  s.pending = s.pending + added
  save(s)
  return added
end

if op == 'move' then
  local token = ARGV[a]
  if token ~= '' and redis.call('GET', lock) ~= token then return {-1} end
  local s = summary()
  s.pending, s.running, s.polled = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), now
  local moved, updated = 0, 0
  for i = a + 3, #ARGV, 3 do
    local id, target = ARGV[i], index[ARGV[i + 1]]
    if not target then return redis.error_reply('unknown state set ' .. ARGV[i + 1]) end
    if redis.call('ZSCORE', all, id) then  -- a job cleaned up meanwhile stays forgotten
      local raw = redis.call('HGET', jobs, id)
      local record = raw and cjson.decode(raw) or {}
      for k, v in pairs(cjson.decode(ARGV[i + 2])) do record[k] = v end
      local from = current_set(id)
      if from ~= target then
        if from then redis.call('ZREM', KEYS[from], id) end
        redis.call('ZADD', KEYS[target], now, id)
        record.entered = now
        moved = moved + 1
      end
      record.set = ARGV[i + 1]
      redis.call('HSET', jobs, id, cjson.encode(record))
      updated = updated + 1
    end
  end
  trim()
  save(s)
  return {moved, updated}
end

if op == 'cleanup' then
  local n = redis.call('ZCARD', live)
  if ARGV[a] ~= '1' and n > 0 then return {0, n} end
  local total = redis.call('ZCARD', all)
  redis.call('DEL', jobs, all)
  for i = 1, nsets do redis.call('DEL', KEYS[4 + i]) end
  redis.call('HDEL', tags, tag)
  return {1, total}
end

return redis.error_reply('unknown op ' .. tostring(op))
