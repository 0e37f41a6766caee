#!lua
-- ratelimit.lua — count one submit of one client in a sliding window (JOBGATE_RATE_LIMIT=N/S).
-- KEYS[1]  P:rl:<SHA-256 hex of the client address>: a sorted set, one member per counted
--          submit, score = its time in ms. A key of its own (its own slot); it expires S
--          seconds after the client's last counted submit.
-- ARGV[1]  N, the submits allowed in any window of S seconds
-- ARGV[2]  S in ms
-- Returns {1, left}: counted, left more may pass now; or {0, retry_ms}: over the limit, not
-- counted, and the next submit passes in retry_ms (when the oldest counted one leaves the window).
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local retry = tonumber(oldest[2]) + window - now
    if retry < 1 then retry = 1 end
    return {0, retry}
end
-- unique member: the microsecond clock, plus the count (which grows within one microsecond)
redis.call('ZADD', key, now, t[1] .. '.' .. t[2] .. '.' .. count)
redis.call('PEXPIRE', key, window)
return {1, limit - count - 1}
