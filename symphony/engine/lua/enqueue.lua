-- Enqueue items for one stage of one session, skipping items already queued or in flight, in the
-- session's slot (the role's ready set and bell follow in a fleet step: symphony/engine/enqueue.py).
-- KEYS[1] queue  KEYS[2] live  KEYS[3] stats  KEYS[4] session  KEYS[5] outcomes
-- ARGV[1] stage  ARGV[2] session  ARGV[3..] item, message, item, message, ...
-- Returns {added, skipped} or {-1, state} when the session is not active.
local state = redis.call('HGET', KEYS[4], 'state')
if state ~= 'active' then return {-1, state or 'missing'} end
local stage, session = ARGV[1], ARGV[2]
local batch, added, skipped = {}, 0, 0
local any_outcomes = redis.call('EXISTS', KEYS[5]) == 1
for i = 3, #ARGV, 2 do
  local item = ARGV[i]
  if redis.call('HSETNX', KEYS[2], item, stage) == 1 then
    batch[#batch + 1] = ARGV[i + 1]
    local old = any_outcomes and redis.call('HGET', KEYS[5], item)
    if old then
      -- the item leaves its failed/timed-out/cancelled state (one atomic move between accounting states);
      -- `cleared_<state>` counts those moves, so state + cleared never goes down (the totals)
      local ok, rec = pcall(cjson.decode, old)
      if ok and type(rec) == 'table' and rec.state and rec.stage then
        redis.call('HINCRBY', KEYS[3], rec.stage .. '|' .. rec.state, -1)
        redis.call('HINCRBY', KEYS[3], rec.stage .. '|cleared_' .. rec.state, 1)
      end
      redis.call('HDEL', KEYS[5], item)
    end
    if #batch >= 500 then
      redis.call('RPUSH', KEYS[1], unpack(batch))
      added = added + #batch
      batch = {}
    end
  else
    skipped = skipped + 1
  end
end
if #batch > 0 then
  redis.call('RPUSH', KEYS[1], unpack(batch))
  added = added + #batch
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], stage .. '|enqueued', added)
end
return {added, skipped}
