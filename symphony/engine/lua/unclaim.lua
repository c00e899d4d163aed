-- Take a purged session's task messages out of the workers' in-flight lists (symphony purge,
-- in the same MULTI that deletes the session's keys): a worker still running one then finds it
-- gone when it reports (`lost`: nothing changes), so a late report can neither recreate the
-- purged keys nor count in a new session of the same name; a reaper finds nothing to reclaim.
-- Each message taken out also leaves its stage's fleet-wide running count (control(stage)),
-- which its report would have released.
-- KEYS[1..n] in-flight lists (n = ARGV[2]), KEYS[n+1..] control(stage) of the session's stages
-- ARGV[1] session  ARGV[2] n  ARGV[3..] the stages, in the order of their control keys
-- Returns how many messages were taken out.
local session, n = ARGV[1], tonumber(ARGV[2])
local control = {}
for j = 3, #ARGV do control[ARGV[j]] = KEYS[n + j - 2] end
local taken = 0
for k = 1, n do
  for _, msg in ipairs(redis.call('LRANGE', KEYS[k], 0, -1)) do
    local ok, task = pcall(cjson.decode, msg)
    if ok and type(task) == 'table' and task.s == session then
      local removed = redis.call('LREM', KEYS[k], 0, msg)
      taken = taken + removed
      local key = control[task.t]
      if key and removed > 0 and redis.call('HINCRBY', key, 'running', -removed) < 0 then
        redis.call('HSET', key, 'running', 0)
      end
    end
  end
end
return taken
