-- cancel.lua — cancel a job (docs/redis.md, "cancel.lua").
-- KEYS[1] job hash   P:{tag}:job:<id>
-- KEYS[2] log        P:{tag}:log:<id>
-- ARGV[1] id  [2] retention seconds  [3] log_max  [4] events channel P:events
-- ARGV[5] key prefix of the job's tag "P:{tag}:"  [6] global prefix "P:"
-- A cancelled job is put in the queue's expiry index P:{tag}:q:<queue>:expiry (docs/redis.md).
-- Returns {404} | {200, hash} (was queued: now cancelled)
--       | {202, hash} (running: cancel requested, its worker told) | {409, hash} (finished)
local function int(x) return string.format('%.0f', x) end
-- The job's hash as HGETALL gives it, without the payload (which can be large, and is not shown).
local function shown(key)
  local all, out = redis.call('HGETALL', key), {}
  for i = 1, #all, 2 do
    if all[i] ~= 'payload' then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end
  end
  return out
end

local job = KEYS[1]
local f = redis.call('HMGET', job, 'status', 'queue', 'type', 'worker', 'cache', 'cache_key')
local status, queue, jtype, worker = f[1], f[2], f[3], f[4]
if not status then return {404} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local qkey = ARGV[5] .. 'q:' .. queue .. ':'

local code
if status == 'queued' then
  redis.call('ZREM', qkey .. 'ready:' .. jtype, ARGV[1])
  redis.call('ZREM', qkey .. 'delayed', ARGV[1])
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', int(now), 'run_at', '')
  if f[5] == '1' and redis.call('GET', qkey .. 'inflight:' .. f[6]) == ARGV[1] then
    redis.call('DEL', qkey .. 'inflight:' .. f[6])   -- the result cache's in-flight marker
  end
  redis.call('HINCRBY', qkey .. 'counts', 'cancelled:' .. jtype, 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*',
    'ts', int(now), 'stream', 'system', 'line', 'cancelled')
  redis.call('EXPIRE', job, ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('ZADD', qkey .. 'expiry', int(now + tonumber(ARGV[2]) * 1000), ARGV[1])
  code = 200
elseif status == 'running' then
  if redis.call('HGET', job, 'cancel_requested') ~= '1' then
    redis.call('HSET', job, 'cancel_requested', '1')
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*',
      'ts', int(now), 'stream', 'system', 'line', 'cancel requested')
    redis.call('PUBLISH', ARGV[6] .. 'worker:' .. worker, 'cancel ' .. ARGV[1])
  else
    return {202, shown(job)}
  end
  code = 202
else
  return {409, shown(job)}
end
local v = redis.call('HINCRBY', job, 'version', 1)
redis.call('PUBLISH', ARGV[4], 'job ' .. ARGV[1] .. ' ' .. v)
return {code, shown(job)}
