-- One host's sample for one time bucket, from a worker heartbeat: written by the first process of
-- that host to offer it in the bucket, skipped for the others (one sample per host per bucket
-- however many worker processes run there). Trims the series by age and keeps the keys alive
-- only while someone writes.
-- KEYS[1] series (ZSET)  KEYS[2] hosts seen (HASH host -> last bucket)  KEYS[3] metrics index (ZSET)
-- ARGV[1] host  ARGV[2] bucket ms  ARGV[3] member  ARGV[4] retention ms  ARGV[5] index member
-- ARGV[6] index keep ms
-- Returns 1 if written, 0 if this host already had a sample for this bucket (or a later one).
local host, bucket, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[2], host) or '0') or 0
if last >= bucket then return 0 end
redis.call('HSET', KEYS[2], host, ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', bucket - keep))
-- hosts that left: forget them, at most once every ten minutes
local swept = tonumber(redis.call('HGET', KEYS[2], '~swept') or '0') or 0
if bucket - swept >= 600000 then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if all[i] ~= '~swept' and (tonumber(all[i + 1]) or 0) < bucket - keep then
      redis.call('HDEL', KEYS[2], all[i])
    end
  end
  redis.call('HSET', KEYS[2], '~swept', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', bucket - tonumber(ARGV[6])))
return 1
