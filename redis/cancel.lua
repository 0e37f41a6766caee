-- cancel.lua — cancel a job (docs/redis.md, "cancel.lua").
-- KEYS[1] job hash   P:{tag}:job:<id>
-- KEYS[2] log        P:{tag}:log:<id>
-- ARGV[1] id  [2] retention seconds  [3] log_max  [4] events channel P:events
-- ARGV[5] key prefix of the job's tag "P:{tag}:"  [6] global prefix "P:"
-- A cancelled job is put in the queue's expiry index P:{tag}:q:<queue>:expiry (docs/redis.md).
-- Returns {404} | {200, job} (was queued: now cancelled)
--       | {202, job} (running: cancel requested, its worker told) | {409, status} (finished);
-- job is the job object, as its `json` field holds it (docs/redis.md, "The job object").
local function int(x) return string.format('%.0f', x) end
-- >>> render: the job object (docs/redis.md, "The job object"). This block is the same, byte for
-- byte, in every script that changes a job (tests/test_render.py checks the copies).
-- The job object of contract section 4, as the `json` field of the job hash keeps it: strings
-- escaped as RFC 8259 asks (" \ and U+0000..U+001F: the short forms where there are some, else
-- \u00xx; "/" and non-ASCII bytes as they are), times RFC 3339 UTC with ms, the result spliced
-- raw, an absent or empty value null; the members in the contract's order.
local J_NAMES = {'id', 'queue', 'type', 'status', 'priority', 'attempts', 'max_attempts',
  'progress', 'created_at', 'started_at', 'finished_at', 'run_at', 'worker', 'result', 'error',
  'cached', 'cache_key', 'cancel_requested', 'version'}
local J_KIND = {'s', 's', 's', 's', 'n', 'n', 'n', 'n', 't', 't', 't', 't', 's', 'n', 's', 'b',
  's', 'b', 'n'}
local J_ESC = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
  ['\b'] = '\\b', ['\f'] = '\\f'}
local function j_esc(c) return J_ESC[c] or string.format('\\u%04x', string.byte(c)) end
local function j_time(v)
  local fl = math.floor
  local ms = tonumber(v) or 0
  local secs = fl(ms / 1000)
  local days = fl(secs / 86400)
  local sod = secs - days * 86400
  local z = days + 719468
  local era = fl(z / 146097)
  local doe = z - era * 146097
  local yoe = fl((doe - fl(doe / 1460) + fl(doe / 36524) - fl(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + fl(yoe / 4) - fl(yoe / 100))
  local mp = fl((5 * doy + 2) / 153)
  local d = doy - fl((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  if y < 0 then y = 0 elseif y > 9999 then y = 9999 end
  return string.format('"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"', y, m, d, fl(sod / 3600),
    fl(sod / 60) % 60, sod % 60, ms - secs * 1000)
end
-- The text of the job object from v, its stored values in J_NAMES order (nil or '' for none).
local function j_text(v)
  local out = {}
  for i = 1, #J_NAMES do
    local x, k = v[i], J_KIND[i]
    if k == 'b' then x = x == '1' and 'true' or 'false'
    elseif not x or x == '' then x = 'null'
    elseif k == 's' then x = '"' .. string.gsub(x, '[%z\1-\31"\\]', j_esc) .. '"'
    elseif k == 't' then x = j_time(x) end
    out[i] = '"' .. J_NAMES[i] .. '":' .. x
  end
  return '{' .. table.concat(out, ',') .. '}'
end
-- Renders job key from its hash into its `json` field; returns the text.
local function render(key)
  local text = j_text(redis.call('HMGET', key, unpack(J_NAMES)))
  redis.call('HSET', key, 'json', text)
  return text
end
-- The job object of job key as stored (rendered now if a job older than `json` has none).
local function shown(key)
  return redis.call('HGET', key, 'json') or render(key)
end
-- <<< render

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
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', int(now))
  redis.call('HDEL', job, 'run_at')
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
  return {409, status}
end
local v = redis.call('HINCRBY', job, 'version', 1)
local text = render(job)
redis.call('PUBLISH', ARGV[4], 'job ' .. ARGV[1] .. ' ' .. v)
return {code, text}
