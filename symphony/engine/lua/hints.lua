-- Which queue should a worker serving these roles claim from next? (least recently served first)
-- KEYS[1..n] ready(r)  KEYS[n+1..2n] control(r) (a stage at its limits is skipped until it opens)
-- ARGV[1..n] role names
-- Returns {role, session, score (us), now (us)}; role is '' when no role has work.
local hint = best_open_hint(1, #ARGV, 0, now_ms())
return {hint[1], hint[2], hint[3], now_us()}
