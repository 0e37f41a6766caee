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
  redis.call('PUBLISH', ARGV[4], 'job ' .. ARGV[1] .. ' ' .. v)
end
return {1, tonumber(f[4] or '0') or 0}
