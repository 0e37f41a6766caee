-- retry.lua — queue finished jobs again (docs/redis.md, "retry.lua"): one failed or cancelled
-- job (POST /jobs/{id}/retry), or the failed jobs of one batch of a queue's job index
-- (POST /queues/{queue}/retry-failed, called batch after batch).
-- KEYS[1] mode job: the job hash P:{tag}:job:<id>; mode queue: the index P:{tag}:q:<queue>:jobs
-- ARGV[1] key prefix of the tag "P:{tag}:"
-- ARGV[2] mode: "job" | "queue"
-- ARGV[3] the job id (job) | the queue (queue)
-- ARGV[4] queue mode: rank in the index to start at (0 = newest)   ARGV[5] batch size
-- ARGV[6] log_max   ARGV[7] events channel P:events   ARGV[8] global prefix "P:" (wake channels)
-- A job queued again: status queued, attempts 0, error, result, started_at, finished_at,
-- worker, progress, cancel_requested cleared, ready_at now; its hash and log no longer expire
-- (PERSIST) and it leaves the queue's expiry index; back in its type's ready set with its kept
-- score; log "queued again (retry of a <failed|cancelled> job)"; version bumped, published, and
-- its type published on P:wake:<queue>.
-- Returns mode job: {200, hash} | {409, hash} | {404}; mode queue: {retried, next rank or -1}.
local function int(x) return string.format('%.0f', x) end
-- The job's hash as HGETALL gives it, without the payload (which can be large, and is not shown).
local function shown(key)
  local all, out = redis.call('HGETALL', key), {}
  for i = 1, #all, 2 do
    if all[i] ~= 'payload' then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end
  end
  return out
end
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function retry(id, only_failed)
  local jk, lk = P .. 'job:' .. id, P .. 'log:' .. id
  local f = redis.call('HMGET', jk, 'status', 'queue', 'type', 'score', 'created_at')
  if not f[1] then return 404 end
  if f[1] ~= 'failed' and (only_failed or f[1] ~= 'cancelled') then return 409 end
  local q = P .. 'q:' .. f[2] .. ':'
  redis.call('HSET', jk, 'status', 'queued', 'attempts', '0', 'error', '', 'result', '',
    'started_at', '', 'finished_at', '', 'run_at', '', 'worker', '', 'progress', '',
    'cancel_requested', '0', 'lease_until', '', 'ready_at', int(now))
  redis.call('PERSIST', jk)
  redis.call('PERSIST', lk)
  redis.call('ZREM', q .. 'expiry', id)
  redis.call('ZADD', q .. 'jobs', f[5], id)
  redis.call('ZADD', q .. 'ready:' .. f[3], f[4], id)
  redis.call('XADD', lk, 'MAXLEN', ARGV[6], '*', 'ts', int(now), 'stream', 'system',
    'line', 'queued again (retry of a ' .. f[1] .. ' job)')
  local v = redis.call('HINCRBY', jk, 'version', 1)
  redis.call('PUBLISH', ARGV[7], 'job ' .. id .. ' ' .. v)
  redis.call('PUBLISH', ARGV[8] .. 'wake:' .. f[2], f[3])
  return 200
end

if ARGV[2] == 'job' then
  local code = retry(ARGV[3], false)
  if code == 404 then return {404} end
  return {code, shown(KEYS[1])}
end
local start, n = tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('ZREVRANGE', KEYS[1], start, start + n - 1)
local retried = 0
for _, id in ipairs(ids) do
  if retry(id, true) == 200 then retried = retried + 1 end
end
if #ids < n then return {retried, -1} end
return {retried, start + n}
