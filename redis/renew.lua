#!lua
-- renew.lua — extend the lease of a running attempt (docs/redis.md, "renew.lua").
-- Fenced: refused unless the job is running with this fence; a worker whose renewal is refused
-- has lost the job and must stop its process at once.
-- KEYS[1]  job hash            P:{tag}:job:<id>
-- KEYS[2]  running             P:{tag}:q:<queue>:running
-- ARGV[1]  id
-- ARGV[2]  fence of the attempt
-- ARGV[3]  lease ms
-- Returns {1, cancel_requested (0|1), lease_until} when renewed, or {0, why} when refused
-- (as complete.lua). lease_until is not part of the job object: version does not change.
local function int(x) return string.format('%d', x) end   -- (no float printing, as %.0f)

local f = redis.call('HMGET', KEYS[1], 'status', 'fence', 'cancel_requested')
if not f[1] then return {0, 'gone'} end
if f[1] ~= 'running' then return {0, 'not running (' .. f[1] .. ')'} end
if f[2] ~= ARGV[2] then return {0, 'fenced (fence ' .. f[2] .. ')'} end

local t = redis.call('TIME')
local until_ms = int(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'lease_until', until_ms)
redis.call('ZADD', KEYS[2], until_ms, ARGV[1])
return {1, tonumber(f[3] or '0') or 0, tonumber(until_ms)}
