-- Which queue should a worker serving these roles claim from next? (least recently served first)
-- KEYS[1..] ready(r)  ARGV[1..] role names
-- Returns {role, session, score (us), now (us)}; role is '' when no role has work.
local hint = best_hint(1, 0)
return {hint[1], hint[2], hint[3], now_us()}
