#!lua flags=allow-oom
-- cancel.lua — cancel a job (docs/redis.md, "cancel.lua").
-- KEYS[1] job hash   P:{tag}:job:<id>
-- KEYS[2] log        P:{tag}:log:<id>
-- ARGV[1] id  [2] retention seconds  [3] log_max  [4] events channel P:{tag}:events
-- ARGV[5] key prefix of the job's tag "P:{tag}:" (also of the worker's channel P:{tag}:worker:<id>)
-- A cancelled job is put in the queue's expiry index P:{tag}:q:<queue>:expiry (docs/redis.md).
-- Returns {404} | {200, job} (was queued: now cancelled)
--       | {202, job} (running: cancel requested, its worker told) | {409, status} (finished);
-- job is the job object, as its `json` field holds it (docs/redis.md, "The job object").
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
  return redis.error_reply('TRYAGAIN slot migrating: cancel.lua not run')
end

local job = KEYS[1]
local f = redis.call('HMGET', job, 'status', 'queue', 'type', 'worker', 'cache', 'cache_key',
  'created_at')
local status, queue, jtype, worker = f[1], f[2], f[3], f[4]
if not status then return {404} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local qkey = ARGV[5] .. 'q:' .. queue .. ':'

local code
if status == 'queued' then
  redis.call('ZREM', qkey .. 'ready:' .. jtype, ARGV[1])
  redis.call('ZREM', qkey .. 'delayed', ARGV[1])
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', int(now))
  redis.call('HDEL', job, 'run_at')
  if f[5] == '1' and redis.call('GET', qkey .. 'inflight:' .. f[6]) == ARGV[1] then
    redis.call('DEL', qkey .. 'inflight:' .. f[6])   -- the result cache's in-flight marker
  end
  redis.call('HINCRBY', qkey .. 'counts', 'cancelled:' .. jtype, 1)
  -- a job queued at once has no log yet: its first entry is `queued`, with the id
  -- <created_at>-0 that jobgate-logs showed for it (docs/redis.md, "The job log")
  if f[7] and string.match(f[7], '^%d+$') and redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('XADD', KEYS[2], f[7] .. '-0', 'ts', f[7], 'stream', 'system', 'line', 'queued')
  end
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
    redis.call('SPUBLISH', ARGV[5] .. 'worker:' .. worker, 'cancel ' .. ARGV[1])
  else
    return {202, shown(job)}
  end
  code = 202
else
  return {409, status}
end
local v = redis.call('HINCRBY', job, 'version', 1)
local text = render(job)
redis.call('SPUBLISH', ARGV[4], 'job ' .. ARGV[1] .. ' ' .. v)
return {code, text}
