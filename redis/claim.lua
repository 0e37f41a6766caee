#!lua flags=allow-oom
-- claim.lua — the worker's claim in one queue (docs/redis.md, "claim.lua"): promote due delayed
-- jobs, take back running jobs whose lease ran out (a failed attempt "worker lost"), then claim
-- up to N ready jobs of the worker's types, lowest score first across those types.
-- KEYS[1]  delayed             P:{tag}:q:<queue>:delayed
-- KEYS[2]  running             P:{tag}:q:<queue>:running
-- KEYS[3]  counts              P:{tag}:q:<queue>:counts
-- KEYS[4..] ready sets         P:{tag}:q:<queue>:ready:<type>, one per type the worker runs
-- ARGV[1]  key prefix of the queue's tag "P:{tag}:"
-- ARGV[2]  queue
-- ARGV[3]  worker id
-- ARGV[4]  how many jobs to claim, 0..1000 (0: only promote and take back)
-- ARGV[5]  lease ms
-- ARGV[6]  retry base ms
-- ARGV[7]  jitter per mille, 800..1200, drawn at random by the caller
-- ARGV[8]  retention seconds
-- ARGV[9]  log_max
-- ARGV[10] events channel P:{tag}:events
-- ARGV[11] wake channel P:{tag}:wake:<queue>
-- Also (docs/redis.md, "Retention of the indexes"): a finished job that ends here is put in the
-- queue's expiry index P:{tag}:q:<queue>:expiry, and up to 200 entries of that index whose time
-- has come are dropped from it and from P:{tag}:q:<queue>:jobs. A paused queue (the key
-- P:{tag}:q:<queue>:paused exists) still promotes and takes back, but claims nothing.
-- Returns {next_run_at, taken_back, now, job, job, ...}: next_run_at = ms of the earliest job
-- still in delayed (-1 if none); taken_back = expired leases handled; now = Redis' clock (ms) when
-- the script ran, so that a worker times next_run_at without clock agreement; each job claimed
-- is {id, type, attempt, fence, timeout_ms, lease_until, payload, cache_key, cache_ttl}
-- (cache_key "" and cache_ttl 0 unless the job asked for the result cache). Every number is an
-- integer reply; id, type, payload and cache_key are bulk strings.
local function int(x) return string.format('%d', x) end   -- (no float printing, as %.0f)
-- >>> render: the job object (docs/redis.md, "The job object"). This block is the same, byte for
-- byte, in every script that changes a job (tests/test_render.py checks the copies).
-- The job object of contract section 4, as the `json` field of the job hash keeps it: the
-- members in the contract's order; an absent or empty value null (the flags: false); the free
-- texts (worker, error) escaped as RFC 8259 asks (" \ and U+0000..U+001F: the short forms where
-- there are some, else \u00xx; "/" and non-ASCII bytes as they are); the strings whose characters
-- never need escaping (id, queue, type, status, cache_key) quoted as they are; times RFC 3339 UTC
-- with ms; numbers and the result as stored. Made with one concatenation (a Lua table grown
-- piece by piece costs more than the whole object).
-- Every call runs the script from the top, so what this block makes costs each call: its tables
-- are made only by j_tables() (called by the scripts that use them, and by render); it makes six
-- closures, and each local a closure uses costs the call an allocation too (so the small
-- converters and the escaping are written out in j_text).
local J_NAMES, J_AT   -- the members in order; member -> its place in that order
local function j_tables()
  if J_AT then return end
  J_NAMES = {'id', 'queue', 'type', 'status', 'priority', 'attempts', 'max_attempts',
    'progress', 'created_at', 'started_at', 'finished_at', 'run_at', 'worker', 'result', 'error',
    'cached', 'cache_key', 'cancel_requested', 'version'}
  J_AT = {id = 1, queue = 2, type = 3, status = 4, priority = 5, attempts = 6,
    max_attempts = 7, progress = 8, created_at = 9, started_at = 10, finished_at = 11,
    run_at = 12, worker = 13, result = 14, error = 15, cached = 16, cache_key = 17,
    cancel_requested = 18, version = 19}
end
local function j_t(x)   -- ms since the epoch (a number or its text) -> "YYYY-MM-DDTHH:MM:SS.mmmZ"
  if not x or x == '' then return 'null' end
  local ms = tonumber(x) or 0
  local msec = ms % 1000
  local secs = (ms - msec) / 1000
  local sod = secs % 86400
  -- the civil date of a day count (days_from_civil inverse), from 0000-03-01
  local z = (secs - sod) / 86400 + 719468
  local doe = z % 146097
  local a = doe - (doe - doe % 1460) / 1460 + (doe - doe % 36524) / 36524
    - (doe - doe % 146096) / 146096
  local yoe = (a - a % 365) / 365
  local doy = doe - (365 * yoe + (yoe - yoe % 4) / 4 - (yoe - yoe % 100) / 100)
  local b = 5 * doy + 2
  local mp = (b - b % 153) / 153
  local c = 153 * mp + 2
  local d = doy - (c - c % 5) / 5 + 1
  local m, y = mp + 3, yoe + (z - doe) / 146097 * 400
  if m > 12 then m, y = m - 12, y + 1 end
  if y < 0 then y = 0 elseif y > 9999 then y = 9999 end
  local s = sod % 60
  local mi = (sod - s) / 60 % 60
  local h = (sod - sod % 3600) / 3600
  -- the quoted text as its bytes, digit by digit, in one string.char (string.format costs a C
  -- sprintf per number)
  return string.char(34, 48 + (y - y % 1000) / 1000, 48 + (y - y % 100) / 100 % 10,
    48 + (y - y % 10) / 10 % 10, 48 + y % 10, 45, 48 + (m - m % 10) / 10, 48 + m % 10, 45,
    48 + (d - d % 10) / 10, 48 + d % 10, 84, 48 + (h - h % 10) / 10, 48 + h % 10, 58,
    48 + (mi - mi % 10) / 10, 48 + mi % 10, 58, 48 + (s - s % 10) / 10, 48 + s % 10, 46,
    48 + (msec - msec % 100) / 100, 48 + (msec - msec % 10) / 10 % 10, 48 + msec % 10, 90, 34)
end
-- The text of the job object from v, its stored values in J_NAMES order (false or '' for none):
-- a quoted string is (x and x ~= '' and '"' .. x .. '"' or 'null'), a number
-- (x and x ~= '' and x or 'null'), a flag (x == '1' and 'true' or 'false'); the free texts
-- (worker, error) escaped first if they have a byte to escape (rare: its table is made then).
local function j_text(v)
  local id, queue, jtype, status, pri, att, max, prog = v[1], v[2], v[3], v[4], v[5], v[6], v[7],
    v[8]
  local worker, result, err, cached, ckey, cancel, ver = v[13], v[14], v[15], v[16], v[17], v[18],
    v[19]
  local bad = '[%z\1-\31"\\]'
  if (worker and string.find(worker, bad)) or (err and string.find(err, bad)) then
    local esc = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
      ['\b'] = '\\b', ['\f'] = '\\f'}
    for c = 0, 31 do
      local k = string.char(c)
      if not esc[k] then esc[k] = string.format('\\u%04x', c) end
    end
    if worker then worker = string.gsub(worker, bad, esc) end
    if err then err = string.gsub(err, bad, esc) end
  end
  return '{"id":' .. (id and id ~= '' and '"' .. id .. '"' or 'null') ..
    ',"queue":' .. (queue and queue ~= '' and '"' .. queue .. '"' or 'null') ..
    ',"type":' .. (jtype and jtype ~= '' and '"' .. jtype .. '"' or 'null') ..
    ',"status":' .. (status and status ~= '' and '"' .. status .. '"' or 'null') ..
    ',"priority":' .. (pri and pri ~= '' and pri or 'null') ..
    ',"attempts":' .. (att and att ~= '' and att or 'null') ..
    ',"max_attempts":' .. (max and max ~= '' and max or 'null') ..
    ',"progress":' .. (prog and prog ~= '' and prog or 'null') ..
    ',"created_at":' .. j_t(v[9]) .. ',"started_at":' .. j_t(v[10]) ..
    ',"finished_at":' .. j_t(v[11]) .. ',"run_at":' .. j_t(v[12]) ..
    ',"worker":' .. (worker and worker ~= '' and '"' .. worker .. '"' or 'null') ..
    ',"result":' .. (result and result ~= '' and result or 'null') ..
    ',"error":' .. (err and err ~= '' and '"' .. err .. '"' or 'null') ..
    ',"cached":' .. (cached == '1' and 'true' or 'false') ..
    ',"cache_key":' .. (ckey and ckey ~= '' and '"' .. ckey .. '"' or 'null') ..
    ',"cancel_requested":' .. (cancel == '1' and 'true' or 'false') ..
    ',"version":' .. (ver and ver ~= '' and ver or 'null') .. '}'
end
-- Changes job key in one HSET: the flat list ch (field, value, ...) and the job object
-- rendered from v (the job's values in J_NAMES order, as HMGET of J_NAMES gave them, extra
-- fields after them allowed) with ch applied. The caller puts 'version' in ch. Returns the text.
local function change(key, v, ch)
  j_tables()
  for i = 1, #ch, 2 do
    local at = J_AT[ch[i]]
    if at then v[at] = ch[i + 1] end
  end
  local text = j_text(v)
  ch[#ch + 1] = 'json'
  ch[#ch + 1] = text
  redis.call('HSET', key, unpack(ch))
  return text
end
-- Renders job key from its hash into its `json` field; returns the text.
local function render(key)
  j_tables()
  local text = j_text(redis.call('HMGET', key, unpack(J_NAMES)))
  redis.call('HSET', key, 'json', text)
  return text
end
-- The job object of job key as stored (rendered now if a job older than `json` has none).
local function shown(key)
  return redis.call('HGET', key, 'json') or render(key)
end
-- <<< render
-- Resharding guard (docs/redis.md, "Redis Cluster"): while this queue's slot is being migrated,
-- a key this script builds may be on the other node already (Redis would stop the script at it,
-- after the writes before it) or, run by ASKING on the importing node, not there yet (read as
-- missing). EXISTS of KEYS[1] and a key nobody writes is refused exactly then: nothing is done,
-- and the caller is answered TRYAGAIN, to send the call again in a moment.
if type(redis.pcall('EXISTS', KEYS[1], KEYS[1] .. ':probe')) == 'table' then
  return redis.error_reply('TRYAGAIN slot migrating: claim.lua not run')
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P, queue, wid = ARGV[1], ARGV[2], ARGV[3]
local want, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local log_max, events = ARGV[9], ARGV[10]

local function jobkey(id) return P .. 'job:' .. id end
local function logkey(id) return P .. 'log:' .. id end
local function readykey(jtype) return P .. 'q:' .. queue .. ':ready:' .. jtype end
local function addlog(id, line)
  redis.call('XADD', logkey(id), 'MAXLEN', log_max, '*',
    'ts', int(now), 'stream', 'system', 'line', line)
end
-- A job queued at once has no log until now (submit.lua): its first entry is `queued`, with the
-- id <created_at>-0 that jobgate-logs showed for it meanwhile (docs/redis.md, "The job log").
local function queued_entry(id, created_at)
  -- (a hash not made by submit.lua may lack created_at: no entry then, rather than an error after
  -- the claim's writes)
  if created_at and string.match(created_at, '^%d+$') and
      redis.call('EXISTS', logkey(id)) == 0 then
    redis.call('XADD', logkey(id), created_at .. '-0', 'ts', created_at, 'stream', 'system',
      'line', 'queued')
  end
end
-- A job submitted with cache true that ends here leaves the result cache's in-flight marker.
local function end_inflight(id, cache, cache_key)
  local mk = P .. 'q:' .. queue .. ':inflight:' .. (cache_key or '')
  if cache == '1' and redis.call('GET', mk) == id then redis.call('DEL', mk) end
end
local qprefix = P .. 'q:' .. queue .. ':'
-- a finished job leaves the queue's indexes when its hash expires (retention)
local function expires(id)
  redis.call('EXPIRE', jobkey(id), ARGV[8])
  redis.call('EXPIRE', logkey(id), ARGV[8])
  redis.call('ZADD', qprefix .. 'expiry', int(now + tonumber(ARGV[8]) * 1000), id)
end
-- the job's fields that the steps below read: those the job object shows (J_NAMES), then these;
-- the payload (it can be large) only by the claim (CLAIM_READ). Made by reads() when a step first
-- reads a job: a claim with nothing to do (an idle worker's) needs none of them.
local READ, CLAIM_READ, SCORE, CACHE, TIMEOUT, FENCE, PAYLOAD, CACHE_TTL
local function reads()
  if READ then return end
  j_tables()
  local n = #J_NAMES
  SCORE, CACHE, TIMEOUT, FENCE, PAYLOAD, CACHE_TTL = n + 1, n + 2, n + 3, n + 4, n + 5, n + 6
  READ = {unpack(J_NAMES)}
  READ[SCORE], READ[CACHE], READ[TIMEOUT], READ[FENCE] = 'score', 'cache', 'timeout_ms', 'fence'
  CLAIM_READ = {unpack(READ)}
  CLAIM_READ[PAYLOAD], CLAIM_READ[CACHE_TTL] = 'payload', 'cache_ttl'
end
-- a change of the job object: the fields of ch and version + 1 set, the object rendered, in one
-- HSET (change); the change published
local function bump(id, f, ch)
  local v = tonumber(f[J_AT.version]) + 1
  ch[#ch + 1] = 'version'
  ch[#ch + 1] = int(v)
  change(jobkey(id), f, ch)
  redis.call('SPUBLISH', events, 'job ' .. id .. ' ' .. int(v))
end

-- 1. Promote due delayed jobs to their type's ready set (at most 1000 per call).
local woken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[1], id)
  reads()
  local f = redis.call('HMGET', jobkey(id), unpack(READ))
  if f[J_AT.status] == 'queued' then
    redis.call('ZADD', readykey(f[J_AT.type]), f[SCORE], id)
    bump(id, f, {'run_at', '', 'ready_at', int(now)})
    woken[f[J_AT.type]] = true
  end
end
for jtype in pairs(woken) do redis.call('SPUBLISH', ARGV[11], jtype) end

-- 2. Take back expired leases: the attempt failed with "worker lost" (at most 100 per call).
local taken = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. int(now), 'LIMIT', 0, 100)) do
  redis.call('ZREM', KEYS[2], id)
  local jk = jobkey(id)
  reads()
  local f = redis.call('HMGET', jk, unpack(READ))
  if f[J_AT.status] == 'running' then
    taken = taken + 1
    local jtype = f[J_AT.type]
    local n, max = tonumber(f[J_AT.attempts]), tonumber(f[J_AT.max_attempts])
    local ch
    if f[J_AT.cancel_requested] == '1' then
      ch = {'status', 'cancelled', 'finished_at', int(now), 'lease_until', '', 'error', 'worker lost'}
      redis.call('HINCRBY', KEYS[3], 'cancelled:' .. jtype, 1)
      end_inflight(id, f[CACHE], f[J_AT.cache_key])
      addlog(id, 'attempt ' .. n .. ' failed: worker lost; cancelled')
    elseif n < max then
      local delay = tonumber(ARGV[6]) * 2 ^ (n - 1) * tonumber(ARGV[7]) / 1000
      if delay > 3600000 then delay = 3600000 end
      local run_at = now + math.floor(delay)
      ch = {'status', 'queued', 'run_at', int(run_at), 'lease_until', '', 'error', 'worker lost'}
      redis.call('ZADD', KEYS[1], int(run_at), id)
      addlog(id, 'attempt ' .. n .. ' failed: worker lost; retry in ' ..
        string.format('%.1f', delay / 1000) .. ' s')
    else
      ch = {'status', 'failed', 'finished_at', int(now), 'lease_until', '', 'error', 'worker lost'}
      redis.call('HINCRBY', KEYS[3], 'failed:' .. jtype, 1)
      end_inflight(id, f[CACHE], f[J_AT.cache_key])
      addlog(id, 'failed: worker lost')
    end
    bump(id, f, ch)
    if ch[2] ~= 'queued' then expires(id) end
  end
end

-- 3. Retention: drop expired jobs from the queue's job index (bounded batch).
local gone = redis.call('ZRANGEBYSCORE', qprefix .. 'expiry', '-inf', int(now), 'LIMIT', 0, 200)
if #gone > 0 then
  redis.call('ZREM', qprefix .. 'jobs', unpack(gone))
  redis.call('ZREM', qprefix .. 'expiry', unpack(gone))
end

-- A paused queue claims nothing (promotion and taking back above still happen).
if redis.call('EXISTS', qprefix .. 'paused') == 1 then want = 0 end

-- 4. Claim: each time the lowest score among the heads of the worker's ready sets.
local out = {-1, taken, now}
local claimed = 0
while claimed < want do
  local best, best_score = nil, nil
  for i = 4, #KEYS do
    local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if head[1] and (best_score == nil or tonumber(head[2]) < best_score) then
      best, best_score = i, tonumber(head[2])
    end
  end
  if best == nil then break end
  local id = redis.call('ZRANGE', KEYS[best], 0, 0)[1]
  redis.call('ZREM', KEYS[best], id)
  local jk = jobkey(id)
  reads()
  local f = redis.call('HMGET', jk, unpack(CLAIM_READ))
  if f[J_AT.status] == 'queued' then
    local n = (tonumber(f[J_AT.attempts]) or 0) + 1
    local fence = (tonumber(f[FENCE]) or 0) + 1
    local lease_until = int(now + lease)
    bump(id, f, {'status', 'running', 'attempts', int(n), 'fence', int(fence),
      'started_at', int(now), 'worker', wid, 'lease_until', lease_until, 'run_at', '',
      'progress', ''})
    redis.call('ZADD', KEYS[2], lease_until, id)
    if n == 1 then queued_entry(id, f[J_AT.created_at]) end
    addlog(id, 'attempt ' .. n .. ' started on worker ' .. wid)
    local ckey, cttl = '', 0
    if f[CACHE] == '1' then ckey, cttl = f[J_AT.cache_key] or '', tonumber(f[CACHE_TTL]) or 0 end
    out[#out + 1] = {id, f[J_AT.type], n, fence, tonumber(f[TIMEOUT]), now + lease, f[PAYLOAD],
      ckey, cttl}
    claimed = claimed + 1
  end
end

local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if head[1] then out[1] = tonumber(head[2]) end
return out
