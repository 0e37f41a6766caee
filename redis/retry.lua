#!lua
-- retry.lua — queue finished jobs again (docs/redis.md, "retry.lua"): one failed or cancelled
-- job (POST /jobs/{id}/retry), or the failed jobs of one batch of a queue's job index
-- (POST /queues/{queue}/retry-failed, called batch after batch).
-- KEYS[1] mode job: the job hash P:{tag}:job:<id>; mode queue: the index P:{tag}:q:<queue>:jobs
-- ARGV[1] key prefix of the tag "P:{tag}:"
-- ARGV[2] mode: "job" | "queue"
-- ARGV[3] the job id (job) | the queue (queue)
-- ARGV[4] queue mode: rank in the index to start at (0 = newest)   ARGV[5] batch size
-- ARGV[6] log_max   ARGV[7] events channel P:{tag}:events (wake channel: ARGV[1] .. 'wake:' .. queue)
-- A job queued again: status queued, attempts 0, error, result, started_at, finished_at,
-- worker, progress, cancel_requested cleared, ready_at now; its hash and log no longer expire
-- (PERSIST) and it leaves the queue's expiry index; back in its type's ready set with its kept
-- score; log "queued again (retry of a <failed|cancelled> job)"; version bumped, published, and
-- its type published on P:{tag}:wake:<queue>.
-- Returns mode job: {200, job object (its `json` field)} | {409, status} | {404}; mode queue:
-- {retried, next rank or -1}.
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
  return redis.error_reply('TRYAGAIN slot migrating: retry.lua not run')
end
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function retry(id, only_failed)
  local jk, lk = P .. 'job:' .. id, P .. 'log:' .. id
  local f = redis.call('HMGET', jk, 'status', 'queue', 'type', 'score', 'created_at')
  if not f[1] then return 404 end
  if f[1] ~= 'failed' and (only_failed or f[1] ~= 'cancelled') then return 409, f[1] end
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
  render(jk)
  redis.call('SPUBLISH', ARGV[7], 'job ' .. id .. ' ' .. v)
  redis.call('SPUBLISH', ARGV[1] .. 'wake:' .. f[2], f[3])
  return 200
end

if ARGV[2] == 'job' then
  local code, status = retry(ARGV[3], false)
  if code == 404 then return {404} end
  if code == 409 then return {409, status} end
  return {200, shown(KEYS[1])}
end
local start, n = tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('ZREVRANGE', KEYS[1], start, start + n - 1)
local retried = 0
for _, id in ipairs(ids) do
  if retry(id, true) == 200 then retried = retried + 1 end
end
if #ids < n then return {retried, -1} end
return {retried, start + n}
