-- Which queue should a worker serving these roles claim from next? (least recently served first)
-- KEYS[1..] ready(r)  ARGV[1..] role names
-- Returns {role, session, score (us), now (us)}; role is '' when no role has work.
local best, best_member, best_score, best_text = 0, '', 0, '0'
for i = 1, #KEYS do
  local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if #head > 0 then
    local score = tonumber(head[2])
    if best == 0 or score < best_score then best, best_member, best_score, best_text = i, head[1], score, head[2] end
  end
end
local hint_role = ''
if best > 0 then hint_role = ARGV[best] end
return {hint_role, best_member, best_text, now_us()}
