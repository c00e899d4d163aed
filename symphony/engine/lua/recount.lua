-- Restore one stage's done bitmap from what repair proved on disk, and recount its `done` counter.
-- The items repair saw in progress keep their bits as Redis has them (a worker may be finishing
-- them right now); every other item's bit becomes what the disk says.
-- KEYS[1] done bitmap of the stage  KEYS[2] scratch (deleted before returning)  KEYS[3] stats
-- ARGV[1] stage  ARGV[2] bitmap of the items whose output is on disk, items in progress left out
-- ARGV[3] bitmap of the items in progress ('' when none)
-- Returns the stage's done count.
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('BITOP', 'AND', KEYS[2], KEYS[2], KEYS[1])
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('BITOP', 'OR', KEYS[1], KEYS[1], KEYS[2])
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
local n = redis.call('BITCOUNT', KEYS[1])
if n == 0 then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[3], ARGV[1] .. '|done', n)
return n
