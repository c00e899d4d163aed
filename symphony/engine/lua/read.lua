-- Read many small keys in one call, for the status snapshot (read-only).
-- KEYS[1..n] the keys to read (on a Redis Cluster: of one hash slot)
-- ARGV[1] one letter per key: 'l' LLEN, 'h' HGETALL, 'f' HMGET of the fields ARGV[2..]
-- Returns one reply per key, in order: an integer for 'l', a flat field/value array for 'h',
-- the fields' values for 'f' (false, i.e. nil, where a field or the key is missing).
local ops, out = ARGV[1], {}
for i = 1, #KEYS do
  local op = string.byte(ops, i)
  if op == 108 then  -- 'l'
    out[i] = redis.call('LLEN', KEYS[i])
  elseif op == 102 then  -- 'f'
    out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV, 2))
  else
    out[i] = redis.call('HGETALL', KEYS[i])
  end
end
return out
