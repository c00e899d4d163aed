-- Take a purged session's task messages out of the workers' in-flight lists of the session
-- (symphony purge, in the same MULTI that deletes the session's keys, in the session's slot): a
-- worker still running one then finds it gone when it reports (`lost`: nothing changes), so a late
-- report can neither recreate the purged keys nor count in a new session of the same name; a
-- reaper finds nothing to reclaim. The permits those tasks held are given back by the fleet step
-- that follows (symphony/engine/control.py), from the counts returned.
-- KEYS[1] holders(session)  KEYS[2..n+1] the in-flight lists of the session of the workers ARGV[2..]
-- ARGV[1] session  ARGV[2..n+1] the worker ids (the holders set as read)
-- Returns {'again'} if a worker became a holder since, else {taken, worker, stage, n, ...}.
local chosen = {}
for j = 2, #ARGV do chosen[ARGV[j]] = true end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not chosen[id] then return {'again'} end
end
local out, taken = {0}, 0
for j = 2, #KEYS do
  local per = {}
  for _, msg in ipairs(redis.call('LRANGE', KEYS[j], 0, -1)) do
    local ok, task = pcall(cjson.decode, msg)
    local stage = (ok and type(task) == 'table' and type(task.t) == 'string') and task.t or ''
    per[stage] = (per[stage] or 0) + 1
    taken = taken + 1
  end
  for stage, n in pairs(per) do
    out[#out + 1], out[#out + 2], out[#out + 3] = ARGV[j], stage, n
  end
  redis.call('DEL', KEYS[j])
end
redis.call('DEL', KEYS[1])
out[1] = taken
return out
