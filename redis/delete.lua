#!lua flags=allow-oom
-- delete.lua — remove a finished job and its log (docs/redis.md, "delete.lua").
-- KEYS[1] job hash  P:{tag}:job:<id>
-- KEYS[2] log       P:{tag}:log:<id>
-- ARGV[1] id   ARGV[2] key prefix of the tag "P:{tag}:"
-- A done, failed or cancelled job: both keys deleted, and the id removed from the queue's job
-- index and expiry index. Returns {204} | {409, status} (queued or running: nothing changed)
-- | {404}.
-- Resharding guard (docs/redis.md, "Redis Cluster"): while this queue's slot is being migrated,
-- a key this script builds may be on the other node already (Redis would stop the script at it,
-- after the writes before it) or, run by ASKING on the importing node, not there yet (read as
-- missing). EXISTS of KEYS[1] and a key nobody writes is refused exactly then: nothing is done,
-- and the caller is answered TRYAGAIN, to send the call again in a moment.
if type(redis.pcall('EXISTS', KEYS[1], KEYS[1] .. ':probe')) == 'table' then
  return redis.error_reply('TRYAGAIN slot migrating: delete.lua not run')
end
local f = redis.call('HMGET', KEYS[1], 'status', 'queue')
if not f[1] then return {404} end
if f[1] == 'queued' or f[1] == 'running' then return {409, f[1]} end
local q = ARGV[2] .. 'q:' .. f[2] .. ':'
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', q .. 'jobs', ARGV[1])
redis.call('ZREM', q .. 'expiry', ARGV[1])
return {204}
