-- Heal one session after Redis lost some of its keys (repair, symphony/engine/heal.py), in one
-- atomic step in the session's slot, from what the caller found where the task messages are:
-- * a live entry whose task message is nowhere (its queue or in-flight list vanished) is removed,
--   if the item is still at that stage: repair then enqueues what the disk says it is missing;
-- * a task message without a live entry (the live hash vanished) gets its entry back, if the
--   message is still where it was found: repair then does not enqueue it a second time;
-- * the counters of what is now true are set from the keys themselves: `running` from the
--   in-flight lists, `delayed` from the retry sets, `failed` / `timed_out` / `cancelled` from the
--   outcome records (so a vanished stats hash, or reports for tasks whose in-flight list
--   vanished, leave no -1 and no stale count);
-- * every worker with a non-empty in-flight list of the session is a holder again.
-- The fleet side (leases for unregistered holders, their holds index, the ready sets and bells of
-- stages with work) follows in a fleet step, from what this returns.
-- KEYS[1] live  KEYS[2] stats  KEYS[3] outcomes  KEYS[4] holders(session)
-- KEYS[5 .. 4+n] the session's in-flight lists read (n = ARGV[2])
-- KEYS[5+n .. 4+n+m] the stages' retry sets, KEYS[5+n+m .. 4+n+2m] their queues (m = ARGV[3])
-- ARGV[1] session  ARGV[2] n  ARGV[3] m  ARGV[4 .. 3+n] the ids of the workers whose lists are read,
-- ARGV[4+n .. 3+n+m] the stage names, then records: 'o', item, stage (an orphaned live entry) or
--   'u', item, stage, key index, message (a message without a live entry, found in KEYS[index])
-- Returns {'again'} when a worker became a holder since the lists were chosen, else
-- {removed, restored, now ms, then per stage: queued, first retry due ms ('' none), then the ids of
-- the workers holding tasks}.
local session, n, m = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local chosen = {}
for i = 1, n do chosen[ARGV[3 + i]] = true end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if not chosen[id] then return {'again'} end
end
local now = now_ms()
local stages, running = {}, {}
for j = 1, m do
  stages[j] = ARGV[3 + n + j]
  running[stages[j]] = 0
end
local removed, restored = 0, 0
local i = 4 + n + m
while i <= #ARGV do
  local kind, item, stage = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if kind == 'o' then
    if redis.call('HGET', KEYS[1], item) == stage then
      redis.call('HDEL', KEYS[1], item)
      removed = removed + 1
    end
    i = i + 3
  else
    local key, msg = KEYS[tonumber(ARGV[i + 3])], ARGV[i + 4]
    local there
    if redis.call('TYPE', key).ok == 'zset' then
      there = redis.call('ZSCORE', key, msg)
    else
      there = redis.call('LPOS', key, msg)
    end
    if there then restored = restored + redis.call('HSETNX', KEYS[1], item, stage) end
    i = i + 5
  end
end
local holding = {}
for k = 5, 4 + n do
  local entries = redis.call('LRANGE', KEYS[k], 0, -1)
  if #entries > 0 then
    holding[#holding + 1] = ARGV[k - 1]
    redis.call('SADD', KEYS[4], ARGV[k - 1])
  end
  for _, msg in ipairs(entries) do
    local ok, task = pcall(cjson.decode, msg)
    if ok and type(task) == 'table' and running[task.t] then running[task.t] = running[task.t] + 1 end
  end
end
local stopped = {}
for j = 1, m do
  stopped[stages[j] .. '|failed'], stopped[stages[j] .. '|timed_out'], stopped[stages[j] .. '|cancelled'] = 0, 0, 0
end
for _, raw in ipairs(redis.call('HVALS', KEYS[3])) do
  local ok, rec = pcall(cjson.decode, raw)
  if ok and type(rec) == 'table' and type(rec.stage) == 'string' and type(rec.state) == 'string' then
    local field = rec.stage .. '|' .. rec.state
    if stopped[field] then stopped[field] = stopped[field] + 1 end
  end
end
for j = 1, m do
  local stage = stages[j]
  redis.call('HSET', KEYS[2], stage .. '|running', running[stage], stage .. '|delayed',
    redis.call('ZCARD', KEYS[4 + n + j]))
end
for field, count in pairs(stopped) do redis.call('HSET', KEYS[2], field, count) end
local out = {removed, restored, now}
for j = 1, m do
  out[#out + 1] = redis.call('LLEN', KEYS[4 + n + m + j])
  local first = redis.call('ZRANGE', KEYS[4 + n + j], 0, 0, 'WITHSCORES')
  out[#out + 1] = #first > 0 and first[2] or ''
end
for _, id in ipairs(holding) do out[#out + 1] = id end
return out
