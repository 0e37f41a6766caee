#!lua flags=allow-oom
-- complete.lua — the end of one attempt, as its worker reports it (docs/redis.md, "complete.lua").
-- Fenced: refused unless the job is running with this fence (the worker may have lost its lease).
-- KEYS[1]  job hash            P:{tag}:job:<id>
-- KEYS[2]  log                 P:{tag}:log:<id>
-- KEYS[3]  running             P:{tag}:q:<queue>:running
-- KEYS[4]  delayed             P:{tag}:q:<queue>:delayed
-- KEYS[5]  counts              P:{tag}:q:<queue>:counts
-- KEYS[6]  ready set           P:{tag}:q:<queue>:ready:<type>
-- ARGV[1]  id
-- ARGV[2]  fence of the attempt
-- ARGV[3]  outcome: done | failed | cancelled | requeue
-- ARGV[4]  done: the result's JSON text; failed: the error text; otherwise ignored
-- ARGV[5]  retry base ms
-- ARGV[6]  jitter per mille, 800..1200, drawn at random by the caller
-- ARGV[7]  retention seconds
-- ARGV[8]  log_max
-- ARGV[9]  events channel P:{tag}:events
-- ARGV[10] wake channel P:{tag}:wake:<queue>
-- Returns {1, status} when accepted (status: done, failed, queued or cancelled), or {0, why} when
-- refused (why: "gone", "not running (<status>)" or "fenced (fence <current>)").
-- Sent again (its first answer lost with a connection or a failover): a completion of the fence
-- this script already applied (field `completed`, and no claim since) changes nothing and is
-- answered as the first was, {1, status} with the job's status now.
-- A job submitted with cache true: when it ends (done, failed, cancelled) its in-flight marker
-- P:{tag}:q:<queue>:inflight:<cache_key> goes if it still names the job; when done, the answer
-- is {1, "done", cache_key, cache_ttl}, and the worker then stores the result under
-- P:cache:<cache_key> for cache_ttl seconds (another slot: not from this script).
-- done: status done, result, finished_at, counted, expires. failed with attempts left: queued in
-- delayed with run_at = now + base * 2^(n-1) * jitter (at most 1 h); on the last: failed.
-- A failure or requeue of a job whose cancel was requested ends it cancelled. cancelled: the worker stopped
-- it on request. requeue: the worker is stopping; back in its ready set at its old place, the
-- attempt not counted.
-- Each attempt that ends here (not requeue) adds its run time (now - started_at) to the queue's
-- histogram P:{tag}:q:<queue>:runtime: fields <type>:count, <type>:sum_ms and <type>:le:<bound>
-- for the first bucket bound (seconds, as in BUCKETS below) at or above it, or <type>:le:+Inf.
-- A job that ends is put in the queue's expiry index P:{tag}:q:<queue>:expiry (score: the ms
-- its hash expires), which claim.lua and submit.lua trim from the queue's job index.
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
j_tables()
-- Resharding guard (docs/redis.md, "Redis Cluster"): while this queue's slot is being migrated,
-- a key this script builds may be on the other node already (Redis would stop the script at it,
-- after the writes before it) or, run by ASKING on the importing node, not there yet (read as
-- missing). EXISTS of KEYS[1] and a key nobody writes is refused exactly then: nothing is done,
-- and the caller is answered TRYAGAIN, to send the call again in a moment.
if type(redis.pcall('EXISTS', KEYS[1], KEYS[1] .. ':probe')) == 'table' then
  return redis.error_reply('TRYAGAIN slot migrating: complete.lua not run')
end
-- the histogram's bucket bounds in seconds; shared/prom.c lists the same ones
local BUCKETS = {'0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60',
  '120', '300', '600', '1800', '3600'}

local jk, lk, id, outcome = KEYS[1], KEYS[2], ARGV[1], ARGV[3]
-- the fields the job object shows (J_NAMES), then these
local READ = {unpack(J_NAMES)}
for _, name in ipairs({'fence', 'score', 'cache', 'cache_ttl', 'completed'}) do
  READ[#READ + 1] = name
end
local FENCE, SCORE, CACHE, CACHE_TTL = #J_NAMES + 1, #J_NAMES + 2, #J_NAMES + 3, #J_NAMES + 4
local COMPLETED = #J_NAMES + 5
local f = redis.call('HMGET', jk, unpack(READ))
local st = f[J_AT.status]
if not st then return {0, 'gone'} end
if st ~= 'running' and f[COMPLETED] == ARGV[2] and f[FENCE] == ARGV[2] then
  if st == 'done' and f[CACHE] == '1' then
    return {1, st, f[J_AT.cache_key], tonumber(f[CACHE_TTL])}
  end
  return {1, st}
end
if st ~= 'running' then return {0, 'not running (' .. st .. ')'} end
if f[FENCE] ~= ARGV[2] then return {0, 'fenced (fence ' .. f[FENCE] .. ')'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local jtype, n, max = f[J_AT.type], tonumber(f[J_AT.attempts]), tonumber(f[J_AT.max_attempts])
local function addlog(line)
  redis.call('XADD', lk, 'MAXLEN', ARGV[8], '*', 'ts', int(now), 'stream', 'system', 'line', line)
end
-- the job's changed fields, set with its object in one HSET at the end (change)
local ch = {}
local function set(...)
  for _, x in ipairs({...}) do ch[#ch + 1] = x end
end
-- the queue's own keys P:{tag}:q:<queue>: are KEYS[3] (running) without "running"
local qprefix = string.sub(KEYS[3], 1, #KEYS[3] - #'running')
local function finish(status)
  if f[CACHE] == '1' then
    local mk = qprefix .. 'inflight:' .. f[J_AT.cache_key]
    if redis.call('GET', mk) == id then redis.call('DEL', mk) end
  end
  set('status', status, 'finished_at', int(now), 'lease_until', '')
  redis.call('HINCRBY', KEYS[5], status .. ':' .. jtype, 1)
  redis.call('EXPIRE', jk, ARGV[7])
  redis.call('EXPIRE', lk, ARGV[7])
  redis.call('ZADD', qprefix .. 'expiry', int(now + tonumber(ARGV[7]) * 1000), id)
end
local function record_runtime()
  local started = tonumber(f[J_AT.started_at] or '')
  if not started then return end
  local ms = now - started
  if ms < 0 then ms = 0 end
  local le = '+Inf'
  for _, b in ipairs(BUCKETS) do
    if ms <= tonumber(b) * 1000 then le = b; break end
  end
  local h = qprefix .. 'runtime'
  redis.call('HINCRBY', h, jtype .. ':count', 1)
  redis.call('HINCRBY', h, jtype .. ':sum_ms', ms)
  redis.call('HINCRBY', h, jtype .. ':le:' .. le, 1)
end

if outcome ~= 'done' and outcome ~= 'failed' and outcome ~= 'cancelled' and outcome ~= 'requeue' then
  return redis.error_reply('ERR unknown outcome ' .. outcome)
end
if outcome ~= 'done' and f[J_AT.cancel_requested] == '1' then outcome = 'cancelled' end
redis.call('ZREM', KEYS[3], id)
if outcome ~= 'requeue' then record_runtime() end
local status
if outcome == 'done' then
  status = 'done'
  set('result', ARGV[4], 'error', '')
  finish(status)
  addlog('done')
elseif outcome == 'cancelled' then
  status = 'cancelled'
  finish(status)
  addlog('cancelled')
elseif outcome == 'requeue' then
  status = 'queued'
  set('attempts', int(n - 1), 'status', 'queued', 'lease_until', '', 'progress', '',
    'ready_at', int(now))
  redis.call('ZADD', KEYS[6], f[SCORE], id)
  redis.call('SPUBLISH', ARGV[10], jtype)
  addlog('attempt ' .. n .. ' stopped: worker shutting down; queued again')
elseif outcome == 'failed' then
  set('error', ARGV[4])
  if n < max then
    status = 'queued'
    local delay = tonumber(ARGV[5]) * 2 ^ (n - 1) * tonumber(ARGV[6]) / 1000
    if delay > 3600000 then delay = 3600000 end
    local run_at = now + math.floor(delay)
    set('status', 'queued', 'run_at', int(run_at), 'lease_until', '')
    redis.call('ZADD', KEYS[4], int(run_at), id)
    addlog('attempt ' .. n .. ' failed: ' .. ARGV[4] .. '; retry in ' ..
      string.format('%.1f', delay / 1000) .. ' s')
  else
    status = 'failed'
    finish(status)
    addlog('failed: ' .. ARGV[4])
  end
end
-- a change of the job object: version + 1 and the object, with the fields above (one HSET)
local v = int(tonumber(f[J_AT.version]) + 1)
set('completed', ARGV[2], 'version', v)
change(jk, f, ch)
redis.call('SPUBLISH', ARGV[9], 'job ' .. id .. ' ' .. v)
if status == 'done' and f[CACHE] == '1' then
  return {1, status, f[J_AT.cache_key], tonumber(f[CACHE_TTL])}
end
return {1, status}
