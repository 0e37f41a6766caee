-- submit.lua — create a job (docs/redis.md, "submit.lua").
-- KEYS[1] job hash            P:{tag}:job:<id>
-- KEYS[2] ready set of type   P:{tag}:q:<queue>:ready:<type>
-- KEYS[3] delayed             P:{tag}:q:<queue>:delayed
-- KEYS[4] seq                 P:{tag}:q:<queue>:seq
-- KEYS[5] jobs                P:{tag}:q:<queue>:jobs
-- KEYS[6] types               P:{tag}:q:<queue>:types
-- KEYS[7] counts              P:{tag}:q:<queue>:counts
-- KEYS[8] log                 P:{tag}:log:<id>
-- KEYS[9] in-flight marker    P:{tag}:q:<queue>:inflight:<cache_key> (used with cache 1)
-- ARGV[1] id  [2] queue  [3] type  [4] payload (JSON text)  [5] priority  [6] max_attempts
-- ARGV[7] timeout_ms  [8] delay_ms  [9] cache (0|1)  [10] cache_ttl  [11] cache_key
-- ARGV[12] cache_version ("" = none)  [13] log_max  [14] wake channel P:wake:<queue>
-- ARGV[15] cache hit (0|1): the caller found ARGV[16] in the result cache P:cache:<cache_key>
-- ARGV[16] the cached result's JSON text ("" unless a hit)  [17] retention seconds
-- Returns {new_type (1 when the type is new to the queue), what the caller does not know, how},
-- how being "new" (what: created_at, ms since the epoch, an integer: the caller knows the rest
-- of the new job, run_at being created_at + delay_ms when delay_ms > 0), "cached" (a hit: the
-- job was created done with the cached result; what: its hash in HGETALL form, without the
-- payload) or "coalesced" (cache 1 and a job of the same key is queued or running in the queue:
-- that job, nothing created; what: that job's hash, as for "cached").
-- A field with no value yet (progress, started_at, finished_at, run_at, worker, result, error,
-- lease_until, cache_version) is not written: readers take a missing field for an empty one.
-- Retention: a job created done (cache hit) is put in the queue's expiry index
-- P:{tag}:q:<queue>:expiry; each call drops up to 100 entries of that index whose time has come
-- from it and from the job index KEYS[5] (docs/redis.md, "Retention of the indexes").
local function int(x) return string.format('%.0f', x) end
-- The job's hash as HGETALL gives it, without the payload (which can be large, and is not shown).
local function shown(key)
  local all, out = redis.call('HGETALL', key), {}
  for i = 1, #all, 2 do
    if all[i] ~= 'payload' then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end
  end
  return out
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR job id exists')
end
local cache, hit = ARGV[9] == '1', ARGV[15] == '1'
if cache and not hit then
  -- the marker names a job of this queue (same tag); a finished one, or one whose cancel was
  -- asked, no longer counts: a new job is made and takes the marker over
  local other = redis.call('GET', KEYS[9])
  if other then
    local ok = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1]) .. other
    local f = redis.call('HMGET', ok, 'status', 'cancel_requested')
    if f[1] == 'queued' or (f[1] == 'running' and f[2] ~= '1') then
      return {0, shown(ok), 'coalesced'}
    end
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = string.sub(KEYS[5], 1, #KEYS[5] - #'jobs') .. 'expiry'
local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', int(now), 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', KEYS[5], unpack(gone))
  redis.call('ZREM', expiry, unpack(gone))
end
local seq = redis.call('INCR', KEYS[4])
local score = (1000 - tonumber(ARGV[5])) * 1099511627776 + seq
local delay = tonumber(ARGV[8])
local run_at = ''
if delay > 0 then run_at = int(now + delay) end

local h = {
  'id', ARGV[1], 'queue', ARGV[2], 'type', ARGV[3], 'status', 'queued',
  'priority', ARGV[5], 'max_attempts', ARGV[6], 'timeout_ms', ARGV[7], 'payload', ARGV[4],
  'attempts', '0', 'created_at', int(now),
  'cache', ARGV[9], 'cache_ttl', ARGV[10], 'cache_key', ARGV[11],
  'cached', '0', 'cancel_requested', '0', 'version', '1', 'seq', int(seq),
  'score', int(score), 'fence', '0', 'ready_at', int(now + delay)}
if delay > 0 and not hit then h[#h + 1] = 'run_at'; h[#h + 1] = run_at end
if ARGV[12] ~= '' then h[#h + 1] = 'cache_version'; h[#h + 1] = ARGV[12] end
redis.call('HSET', KEYS[1], unpack(h))

if cache and hit then
  -- created finished: the result cache's answer, never run, kept as long as any finished job
  redis.call('HSET', KEYS[1], 'status', 'done', 'result', ARGV[16], 'cached', '1',
    'finished_at', int(now))
  redis.call('ZADD', KEYS[5], int(now), ARGV[1])
  local new_type = redis.call('SADD', KEYS[6], ARGV[3])
  redis.call('HINCRBY', KEYS[7], 'submitted:' .. ARGV[3], 1)
  redis.call('HINCRBY', KEYS[7], 'done:' .. ARGV[3], 1)
  redis.call('XADD', KEYS[8], 'MAXLEN', ARGV[13], '*',
    'ts', int(now), 'stream', 'system', 'line', 'done: result from the cache')
  redis.call('EXPIRE', KEYS[1], ARGV[17])
  redis.call('EXPIRE', KEYS[8], ARGV[17])
  redis.call('ZADD', expiry, int(now + tonumber(ARGV[17]) * 1000), ARGV[1])
  return {new_type, shown(KEYS[1]), 'cached'}
end
if cache then
  -- the marker outlives any attempt of the job (docs/redis.md, "The result cache"): its delay,
  -- each attempt's timeout plus 5 min (the kill, a lost lease), each retry delay at its longest
  -- (1 h + 20 %), and a day of waiting in the queue
  local n = tonumber(ARGV[6])
  local ttl = delay + n * (tonumber(ARGV[7]) + 300000) + (n - 1) * 4320000 + 86400000
  redis.call('SET', KEYS[9], ARGV[1], 'PX', int(ttl))
end

local line = 'queued'
if delay > 0 then
  redis.call('ZADD', KEYS[3], run_at, ARGV[1])
  line = 'queued, delayed until ' .. run_at .. ' ms'
else
  redis.call('ZADD', KEYS[2], int(score), ARGV[1])
  redis.call('PUBLISH', ARGV[14], ARGV[3])
end
redis.call('ZADD', KEYS[5], int(now), ARGV[1])
local new_type = redis.call('SADD', KEYS[6], ARGV[3])
redis.call('HINCRBY', KEYS[7], 'submitted:' .. ARGV[3], 1)
redis.call('XADD', KEYS[8], 'MAXLEN', ARGV[13], '*',
  'ts', int(now), 'stream', 'system', 'line', line)
return {new_type, now, 'new'}
