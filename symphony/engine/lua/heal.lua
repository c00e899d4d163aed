-- Heal one session after Redis lost some of its keys (repair, symphony/engine/heal.py), in one
-- atomic step, from what the caller found where the task messages are:
-- * a live entry whose task message is nowhere (its queue or in-flight list vanished) is removed,
--   if the item is still at that stage: repair then enqueues what the disk says it is missing;
-- * a task message without a live entry (the live hash vanished) gets its entry back, if the
--   message is still where it was found: repair then does not enqueue it a second time;
-- * the counters of what is now true are set from the keys themselves: `running` from the
--   in-flight lists, `delayed` from the retry sets, `failed` / `timed_out` / `cancelled` from the
--   outcome records (so a vanished stats hash, or reports for tasks whose in-flight list
--   vanished, leave no -1 and no stale count).
-- KEYS[1] live  KEYS[2] stats  KEYS[3] workers  KEYS[4] outcomes
-- KEYS[5 .. 4+n] the in-flight lists read (n = ARGV[2])
-- KEYS[5+n .. 4+n+m] the stages' retry sets, KEYS[5+n+m .. 4+n+2m] their queues (m = ARGV[3]),
-- KEYS[5+n+2m .. 4+n+3m] their ready sets, KEYS[5+n+3m .. 4+n+4m] their bells,
-- KEYS[5+n+4m .. 4+n+5m] their control hashes (a stage's fleet-wide `running`, counted again from
-- every in-flight list, every session's, when the hash exists)
-- * a stage with queued or retrying tasks is named in its ready set again (workers find queues
--   there) and its bell rung.
-- * an in-flight list whose worker is not registered (the workers set vanished) gets a lease of
--   ARGV[4] ms: a live worker renews it with its next heartbeat, a dead one's tasks are reclaimed
--   by the reaper when it lapses, as for any worker.
-- ARGV[1] session  ARGV[2] n  ARGV[3] m  ARGV[4] lease ms  ARGV[5] bell max  ARGV[6 .. 5+n] the ids of
-- the workers whose lists are read, ARGV[6+n .. 5+n+m] the stage names, then records: 'o', item, stage (an orphaned live entry) or
--   'u', item, stage, key index, message (a message without a live entry, found in KEYS[index])
-- Returns {'again'} when a worker registered since the lists were chosen, else
-- {removed, restored, leases given}.
local session, n, m, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local bell_max = tonumber(ARGV[5])
local chosen = {}
for i = 1, n do chosen[ARGV[5 + i]] = true end
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if not chosen[id] then return {'again'} end
end
local leased = 0
local now = now_ms()
for i = 1, n do
  if redis.call('LLEN', KEYS[4 + i]) > 0 and redis.call('ZADD', KEYS[3], 'NX', now + lease, ARGV[5 + i]) == 1 then
    leased = leased + 1
  end
end
local stages, running = {}, {}
for j = 1, m do
  stages[j] = ARGV[5 + n + j]
  running[stages[j]] = 0
end
local removed, restored = 0, 0
local i = 6 + n + m
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
local fleet = {}
for j = 1, m do fleet[stages[j]] = 0 end
for k = 5, 4 + n do
  for _, msg in ipairs(redis.call('LRANGE', KEYS[k], 0, -1)) do
    local ok, task = pcall(cjson.decode, msg)
    if ok and type(task) == 'table' and fleet[task.t] then
      fleet[task.t] = fleet[task.t] + 1
      if task.s == session then running[task.t] = running[task.t] + 1 end
    end
  end
end
for j = 1, m do
  local control = KEYS[4 + n + 4 * m + j]
  if redis.call('EXISTS', control) == 1 then redis.call('HSET', control, 'running', fleet[stages[j]]) end
end
local stopped = {}
for j = 1, m do
  stopped[stages[j] .. '|failed'], stopped[stages[j] .. '|timed_out'], stopped[stages[j] .. '|cancelled'] = 0, 0, 0
end
for _, raw in ipairs(redis.call('HVALS', KEYS[4])) do
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
for j = 1, m do
  local queued, retrying = redis.call('LLEN', KEYS[4 + n + m + j]), redis.call('ZCARD', KEYS[4 + n + j])
  local ready, bell = KEYS[4 + n + 2 * m + j], KEYS[4 + n + 3 * m + j]
  if queued > 0 then
    redis.call('ZADD', ready, 'LT', now_us(), session)
    ring(bell, queued, bell_max)
  elseif retrying > 0 then
    local first = redis.call('ZRANGE', KEYS[4 + n + j], 0, 0, 'WITHSCORES')
    redis.call('ZADD', ready, 'LT', ms_to_us(tonumber(first[2])), session)
  end
end
return {removed, restored, leased}
