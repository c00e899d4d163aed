-- Cancel up to `batch` waiting tasks of one stage of a cancelled session: each leaves its queue
-- (or the retry set) and is recorded as cancelled, with its message, in the outcomes hash.
-- In the session's slot; the caller takes the session out of the stage's ready set once nothing waits.
-- KEYS[1] session  KEYS[2] stats  KEYS[3] live  KEYS[4] outcomes  KEYS[5] queue  KEYS[6] delayed
-- ARGV[1] stage  ARGV[2] session  ARGV[3] batch size
-- Returns {cancelled now, still waiting}.
local now = now_ms()
local stage, session, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local function cancel(msg)
  local ok, task = pcall(cjson.decode, msg)
  if ok and type(task) == 'table' and type(task.i) == 'string' then
    redis.call('HDEL', KEYS[3], task.i)
    record_outcome(KEYS[4], task.i, 'cancelled', stage, 'session cancelled', '', task.a, '', now, msg)
  end
end
local n = 0
local msgs = redis.call('LPOP', KEYS[5], batch)
if msgs then
  for _, m in ipairs(msgs) do cancel(m) end
  n = #msgs
end
if n < batch then
  local delayed = redis.call('ZRANGE', KEYS[6], 0, batch - n - 1)
  if #delayed > 0 then
    for _, m in ipairs(delayed) do cancel(m) end
    redis.call('ZREM', KEYS[6], unpack(delayed))
    redis.call('HINCRBY', KEYS[2], stage .. '|delayed', -#delayed)
    n = n + #delayed
  end
end
if n > 0 then redis.call('HINCRBY', KEYS[2], stage .. '|cancelled', n) end
local remaining = redis.call('LLEN', KEYS[5]) + redis.call('ZCARD', KEYS[6])
return {n, remaining}
