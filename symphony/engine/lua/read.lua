-- Read many small keys in one call, for the status snapshot (read-only).
-- KEYS[1..n] the keys to read  ARGV[1] one letter per key: 'l' LLEN, 'h' HGETALL
-- Returns one reply per key, in order: an integer for 'l', a flat field/value array for 'h'.
local ops, out = ARGV[1], {}
for i = 1, #KEYS do
  if string.byte(ops, i) == 108 then  -- 'l'
    out[i] = redis.call('LLEN', KEYS[i])
  else
    out[i] = redis.call('HGETALL', KEYS[i])
  end
end
return out
