-- Shared helpers, prepended to every Symphony script.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Scores of the ready sets are microseconds, kept as exact decimal strings: Lua would format a
-- 16-digit number with %.14g and lose its last digits.
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

local function ms_to_us(ms)
  return string.format('%.0f', ms) .. '000'
end

-- Wake up to `n` idle workers blocked on a role's bell, keeping at most `max` tokens queued.
local function ring(bell, n, max)
  local have = redis.call('LLEN', bell)
  local want = math.min(n, max - have)
  if want > 0 then
    local tokens = {}
    for i = 1, want do tokens[i] = '1' end
    redis.call('RPUSH', bell, unpack(tokens))
  end
end
