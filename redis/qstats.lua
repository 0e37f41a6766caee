#!lua flags=no-writes
-- qstats.lua — one queue's figures for /stats, /queues and /metrics (docs/redis.md, "qstats.lua").
-- Read only. Run it after claim.lua with N = 0 (promotion and taking back), so that the counts
-- do not show jobs whose worker died as running.
-- KEYS[1] delayed   P:{tag}:q:<queue>:delayed
-- KEYS[2] running   P:{tag}:q:<queue>:running
-- KEYS[3] counts    P:{tag}:q:<queue>:counts
-- KEYS[4] types     P:{tag}:q:<queue>:types
-- KEYS[5] paused    P:{tag}:q:<queue>:paused
-- KEYS[6] runtime   P:{tag}:q:<queue>:runtime
-- ARGV[1] the queue's key prefix "P:{tag}:q:<queue>:" (its ready sets are ready:<type> there)
-- ARGV[2] key prefix of the tag "P:{tag}:" (job hashes)
-- Returns {ready, running, delayed, paused (0|1), latency_ms, counts, runtime}: ready = jobs in
-- the ready sets of every type; latency_ms = the longest wait among the jobs at the head of each
-- type's ready set (the next to be claimed), a wait counted from the job's ready_at (when it
-- became ready: submitted, promoted, queued again), 0 when nothing is ready; counts and runtime
-- are the two hashes in HGETALL form.
-- Resharding guard (docs/redis.md, "Redis Cluster"): while this queue's slot is being migrated,
-- a key this script builds may be on the other node already (Redis would stop the script at it,
-- after the writes before it) or, run by ASKING on the importing node, not there yet (read as
-- missing). EXISTS of KEYS[1] and a key nobody writes is refused exactly then: nothing is done,
-- and the caller is answered TRYAGAIN, to send the call again in a moment.
if type(redis.pcall('EXISTS', KEYS[1], KEYS[1] .. ':probe')) == 'table' then
  return redis.error_reply('TRYAGAIN slot migrating: qstats.lua not run')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready, latency = 0, 0
for _, jtype in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local rk = ARGV[1] .. 'ready:' .. jtype
  local n = redis.call('ZCARD', rk)
  if n > 0 then
    ready = ready + n
    local head = redis.call('ZRANGE', rk, 0, 0)[1]
    local f = redis.call('HMGET', ARGV[2] .. 'job:' .. head, 'ready_at', 'created_at')
    local since = tonumber(f[1] or '') or tonumber(f[2] or '')
    if since and now - since > latency then latency = now - since end
  end
end
return {ready, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[1]),
  redis.call('EXISTS', KEYS[5]), latency, redis.call('HGETALL', KEYS[3]),
  redis.call('HGETALL', KEYS[6])}
