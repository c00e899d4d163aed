-- Take a purged session's task messages out of the workers' in-flight lists (symphony purge,
-- in the same MULTI that deletes the session's keys): a worker still running one then finds it
-- gone when it reports (`lost`: nothing changes), so a late report can neither recreate the
-- purged keys nor count in a new session of the same name; a reaper finds nothing to reclaim.
-- KEYS[1..] in-flight lists  ARGV[1] session
-- Returns how many messages were taken out.
local session, n = ARGV[1], 0
for k = 1, #KEYS do
  for _, msg in ipairs(redis.call('LRANGE', KEYS[k], 0, -1)) do
    local ok, task = pcall(cjson.decode, msg)
    if ok and type(task) == 'table' and task.s == session then
      n = n + redis.call('LREM', KEYS[k], 0, msg)
    end
  end
end
return n
