-- log.lua — a batch of a running attempt's output lines, and its progress (docs/redis.md,
-- "log.lua"). Fenced: refused unless the job is running with this fence.
-- KEYS[1]  job hash            P:{tag}:job:<id>
-- KEYS[2]  log                 P:{tag}:log:<id>
-- ARGV[1]  id
-- ARGV[2]  fence of the attempt
-- ARGV[3]  log_max
-- ARGV[4]  events channel P:events
-- ARGV[5]  progress 0..100, or "" for no change
-- ARGV[6], ARGV[7], ...  stream ("stdout" | "stderr"), line; 0..1000 pairs (more, or an odd
--                        count, is an error reply and changes nothing)
-- Returns {1, cancel_requested (0|1)} when accepted, or {0, why} when refused (as complete.lua).
-- Lines do not change the job object: only a new progress bumps version and publishes
-- `job <id> <version>`; a batch of lines publishes `log <id> <last cursor>`.
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

if #ARGV % 2 == 0 or (#ARGV - 5) / 2 > 1000 then
  return redis.error_reply('ERR log.lua takes at most 1000 stream, line pairs')
end
local f = redis.call('HMGET', KEYS[1], 'status', 'fence', 'progress', 'cancel_requested')
if not f[1] then return {0, 'gone'} end
if f[1] ~= 'running' then return {0, 'not running (' .. f[1] .. ')'} end
if f[2] ~= ARGV[2] then return {0, 'fenced (fence ' .. f[2] .. ')'} end

local t = redis.call('TIME')
local ts = int(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local last
for i = 6, #ARGV - 1, 2 do
  last = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'ts', ts, 'stream', ARGV[i], 'line', ARGV[i + 1])
end
if last then
  -- wakes the log streams of this job (jobgate-logs): one message per batch
  redis.call('PUBLISH', ARGV[4], 'log ' .. ARGV[1] .. ' ' .. last)
end
if ARGV[5] ~= '' and ARGV[5] ~= f[3] then
  redis.call('HSET', KEYS[1], 'progress', ARGV[5])
  local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
  render(KEYS[1])
  redis.call('PUBLISH', ARGV[4], 'job ' .. ARGV[1] .. ' ' .. v)
end
return {1, tonumber(f[4] or '0') or 0}
