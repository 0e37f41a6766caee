#!lua
-- submit.lua — create a job (docs/redis.md, "submit.lua").
-- KEYS[1] job hash            P:{tag}:job:<id>
-- KEYS[2] ready set of type   P:{tag}:q:<queue>:ready:<type>
-- ARGV[1] id  [2] queue  [3] type  [4] payload (JSON text)  [5] priority  [6] max_attempts
-- ARGV[7] timeout_ms  [8] delay_ms  [9] cache_key
-- ARGV[10], ARGV[11] the job object's text before and after the value of created_at, rendered
-- by the caller for a job queued at once (no delay, no hit), with created_at's own text cut
-- after its second: ARGV[10] ends with its first 21 bytes ("YYYY-MM-DDTHH:MM:SS.) and ARGV[11]
-- starts with its last 2 (Z"), for the second ARGV[12] (seconds since the epoch, the caller's
-- clock). When Redis' clock is in that second, the script puts in only the milliseconds; else it
-- drops those 23 bytes and renders created_at whole. "", "" and "": the script renders the object.
-- Only with cache 1 or a cache_version (absent otherwise, taken as "" and "0"):
-- ARGV[13] cache_version ("" = none)  [14] cache (0|1)  [15] cache_ttl
-- ARGV[16] cache hit (0|1): the caller found ARGV[17] in the result cache P:cache:<cache_key>
-- ARGV[17] the cached result's JSON text ("" unless a hit)  [18] retention seconds
-- Or, instead of those six, further jobs of the same queue and type, each queued at once like the
-- first (the first with ARGV[10..12] given, no delay, no cache_version), 8 arguments each:
-- ARGV[12+8(i-1)+1..8] id, payload, priority, max_attempts, timeout_ms, cache_key, the object's
-- text before and after created_at's ms (as ARGV[10], ARGV[11]; same second ARGV[12]). A call of
-- n jobs costs Redis about half of n calls of one: one TIME, INCRBY seq, SPUBLISH, HINCRBY of the
-- count, one ZADD to the ready set and one to the index for all (each job: its HSET).
-- All get the same created_at. The jobs' hashes P:{tag}:job:<id> are built here (same tag).
-- Keys built here, of the queue's tag (prefix P:{tag}: from KEYS[1]), each an argument less to
-- pass (about 1,500 instructions of Redis each): the queue's seq P:{tag}:q:<queue>:seq, job index
-- P:{tag}:q:<queue>:jobs, types P:{tag}:q:<queue>:types and counts P:{tag}:q:<queue>:counts; on
-- the paths that use them only: the job's log P:{tag}:log:<id> (made here only for a delayed job
-- and a cache hit, with their first entry), the delayed set
-- P:{tag}:q:<queue>:delayed (delay > 0), the in-flight marker
-- P:{tag}:q:<queue>:inflight:<cache_key> and the job it names (cache 1), the expiry index
-- P:{tag}:q:<queue>:expiry, the wake channel
-- P:{tag}:wake:<queue>. No resharding guard is needed: the script never runs while its slot
-- moves, since its first key, the new job's hash, is on neither node (docs/redis.md, "Resharding").
-- Returns, for new jobs whose objects the caller gave (ARGV[10..12]), their created_at in ms:
-- negative when the type is new to the queue. Else {new_type (1 when the type is new to the
-- queue), job object, how[, id]}: the job object is the text the job's `json` field holds
-- (docs/redis.md, "The job object"); how is "new", "cached" (a hit: the job was created done with
-- the cached result) or "coalesced" (cache 1 and a job of the same key is queued or running in
-- the queue: nothing created; the object and the id, 4th, are that job's).
-- A field with no value (progress, started_at, finished_at, run_at, worker, result, error,
-- lease_until, cache_version, and cache, cached, cancel_requested, fence while not 1) is not
-- written: readers take a missing field for an empty one (a flag: for 0).
-- Retention: a job created done (cache hit) is put in the queue's expiry index
-- P:{tag}:q:<queue>:expiry; each call drops up to 100 entries of that index whose time has come
-- from it and from the job index (docs/redis.md, "Retention of the indexes").
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

-- (the id has 128 random bits: it is not checked for being new)
local opts = #ARGV == 18   -- the cache's arguments, ARGV[13..18]; else ARGV[13..]: further jobs
local further = opts and 0 or (#ARGV - 12) / 8
local cache, hit = opts and ARGV[14] == '1', opts and ARGV[16] == '1'
local delay = tonumber(ARGV[8])
if further > 0 and (ARGV[10] == '' or delay > 0) then   -- (so the first's status, line and
  -- fields are theirs too)
  return redis.error_reply('ERR submit.lua: further jobs need a first queued at once')
end
local P = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1] - 4)   -- P:{tag}: of P:{tag}:job:<id>
local Q = P .. 'q:' .. ARGV[2] .. ':'   -- P:{tag}:q:<queue>:
local function qkey(what) return Q .. what end   -- built when used
local k_jobs, k_counts = Q .. 'jobs', Q .. 'counts'
if cache and not hit then
  -- the marker names a job of this queue (same tag); a finished one, or one whose cancel was
  -- asked, no longer counts: a new job is made and takes the marker over
  local other = redis.call('GET', qkey('inflight:' .. ARGV[9]))
  if other then
    local ok = P .. 'job:' .. other
    local f = redis.call('HMGET', ok, 'status', 'cancel_requested')
    if f[1] == 'queued' or (f[1] == 'running' and f[2] ~= '1') then
      return {0, shown(ok), 'coalesced', other}
    end
  end
end
local t = redis.call('TIME')
-- ms since the epoch as text without a number format: the seconds, then the first 3 of the 6
-- digits of the microseconds
local nows = t[1] .. string.sub('000000' .. t[2], -6, -4)
local now = tonumber(nows)
local n = 1 + further
-- (a number argument costs Redis a sprintf: text when there is one job)
local seq = (further == 0 and redis.call('INCR', Q .. 'seq') or
  redis.call('INCRBY', Q .. 'seq', n)) - n   -- the first job's is seq + 1
if (seq + n) % 16 < n then   -- every 16th submit of the queue
  local expiry = qkey('expiry')
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', nows, 'LIMIT', 0, 100)
  if #gone > 0 then
    redis.call('ZREM', k_jobs, unpack(gone))
    redis.call('ZREM', expiry, unpack(gone))
  end
end
local run_at = false
if delay > 0 and not hit then run_at = int(now + delay) end

-- the first job's object's values (J_NAMES order); a cache hit is created done with the cached
-- result. The object the caller rendered (before and after created_at's ms, ARGV[10..12]): when
-- Redis' clock is in the caller's second (almost always) only the ms are put in; else created_at
-- is rendered here (j_t: ~11,000 instructions).
local status, result, finished, cached = 'queued', false, false, false
if hit then status, result, finished, cached = 'done', ARGV[17], nows, '1' end
local same, ms = t[1] == ARGV[12], string.sub(nows, -3)
local text
local given = ARGV[10] ~= '' and not run_at and not hit   -- the caller rendered the object
if not given then
  text = j_text({ARGV[1], ARGV[2], ARGV[3], status, ARGV[5], '0', ARGV[6], false, nows,
    false, finished, run_at, false, result, false, cached, ARGV[9], false, '1'})
elseif same then
  text = ARGV[10] .. ms .. ARGV[11]
else
  text = string.sub(ARGV[10], 1, -22) .. j_t(now) .. string.sub(ARGV[11], 3)
end
-- the fields of its options
local more = {}
if cache then
  more[#more + 1] = 'cache'; more[#more + 1] = '1'; more[#more + 1] = 'cache_ttl'
  more[#more + 1] = ARGV[15]
end
if run_at then
  more[#more + 1] = 'run_at'; more[#more + 1] = run_at; more[#more + 1] = 'ready_at'
  more[#more + 1] = run_at
end
if opts and ARGV[13] ~= '' then more[#more + 1] = 'cache_version'; more[#more + 1] = ARGV[13] end
if hit then
  more[#more + 1] = 'result'; more[#more + 1] = result; more[#more + 1] = 'finished_at'
  more[#more + 1] = finished; more[#more + 1] = 'cached'; more[#more + 1] = '1'
end
-- the log's first entry: a job queued at once gets none here (its log is made with `queued` by
-- the first script that adds to it: docs/redis.md, "The job log")
local line = false
if hit then line = 'done: result from the cache'
elseif run_at then line = 'queued, delayed until ' .. run_at .. ' ms' end
local first = int((1000 - tonumber(ARGV[5])) * 1099511627776 + seq + 1)

-- Each job's hash: the fields every new job has, as arguments (a Lua table of 28 to unpack costs
-- more), then those of its options; and the first's log entry if any (a new stream: no MAXLEN).
-- The further jobs (ARGV[4 + 8i + 1..8]: id, payload, priority, max_attempts, timeout_ms,
-- cache_key, the object's text before and after created_at's ms) are queued like the first and
-- go into the ready set and the index by the first's ZADDs (ready, index).
local ready, index
if further > 0 then ready, index = {first, ARGV[1]}, {nows, ARGV[1]} end
local id, payload, priority, max, timeout, ckey, sc = ARGV[1], ARGV[4], ARGV[5], ARGV[6],
  ARGV[7], ARGV[9], first
for i = 0, further do
  if i > 0 then
    local a = 4 + 8 * i
    id, payload, priority, max, timeout, ckey = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
      ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
    sc = int((1000 - tonumber(priority)) * 1099511627776 + seq + i + 1)
    if same then text = ARGV[a + 7] .. ms .. ARGV[a + 8]
    else text = string.sub(ARGV[a + 7], 1, -22) .. j_t(now) .. string.sub(ARGV[a + 8], 3) end
    ready[2 * i + 1], ready[2 * i + 2], index[2 * i + 1], index[2 * i + 2] = sc, id, nows, id
  end
  redis.call('HSET', P .. 'job:' .. id, 'id', id, 'queue', ARGV[2], 'type', ARGV[3],
    'status', status, 'priority', priority, 'max_attempts', max, 'timeout_ms', timeout,
    'payload', payload, 'attempts', '0', 'created_at', nows, 'cache_key', ckey, 'version', '1',
    'score', sc, 'json', text, unpack(more))
  if line then
    redis.call('XADD', P .. 'log:' .. id, '*', 'ts', nows, 'stream', 'system', 'line', line)
  end
end

-- the type registry: a type's first submit to the queue is the one that makes its count reach
-- the submits of that call (counts only grow), so the SADD runs then only. k: the count's
-- increment as text (a number argument costs Redis a sprintf)
local function count(what, k)
  if redis.call('HINCRBY', k_counts, what .. ARGV[3], k) == tonumber(k) then
    return redis.call('SADD', Q .. 'types', ARGV[3])
  end
  return 0
end
if hit then
  -- created finished: the result cache's answer, never run, kept as long as any finished job
  redis.call('ZADD', k_jobs, nows, ARGV[1])
  local new_type = count('submitted:', '1')
  redis.call('HINCRBY', k_counts, 'done:' .. ARGV[3], '1')
  redis.call('EXPIRE', KEYS[1], ARGV[18])
  redis.call('EXPIRE', P .. 'log:' .. ARGV[1], ARGV[18])
  redis.call('ZADD', qkey('expiry'), int(now + tonumber(ARGV[18]) * 1000), ARGV[1])
  return {new_type, text, 'cached'}
end
if cache then
  -- the marker outlives any attempt of the job (docs/redis.md, "The result cache"): its delay,
  -- each attempt's timeout plus 5 min (the kill, a lost lease), each retry delay at its longest
  -- (1 h + 20 %), and a day of waiting in the queue
  local a = tonumber(ARGV[6])
  local ttl = delay + a * (tonumber(ARGV[7]) + 300000) + (a - 1) * 4320000 + 86400000
  redis.call('SET', qkey('inflight:' .. ARGV[9]), ARGV[1], 'PX', int(ttl))
end
if run_at then
  redis.call('ZADD', qkey('delayed'), run_at, ARGV[1])
  redis.call('ZADD', k_jobs, nows, ARGV[1])
else
  if ready then redis.call('ZADD', KEYS[2], unpack(ready))
  else redis.call('ZADD', KEYS[2], first, ARGV[1]) end
  redis.call('SPUBLISH', P .. 'wake:' .. ARGV[2], ARGV[3])
  if index then redis.call('ZADD', k_jobs, unpack(index))
  else redis.call('ZADD', k_jobs, nows, ARGV[1]) end
end
local new_type = count('submitted:', further == 0 and '1' or n)
-- the caller has the objects it rendered but created_at: an integer answers (a table of three
-- and the text cost Redis more than the rest of the answer's path)
if given then return new_type == 1 and -now or now end
return {new_type, text, 'new'}
