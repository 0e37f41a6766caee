#!lua flags=allow-oom
-- resume.lua — resume a paused queue (docs/redis.md, "Pausing a queue").
-- KEYS[1] paused    P:{tag}:q:<queue>:paused
-- KEYS[2] types     P:{tag}:q:<queue>:types
-- ARGV[1] the queue's wake channel P:{tag}:wake:<queue>
-- Deletes the pause key and publishes every type of the queue on its wake channel, so that idle
-- workers claim at once. Returns 1 if the queue was paused, else 0.
local was = redis.call('DEL', KEYS[1])
for _, jtype in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('SPUBLISH', ARGV[1], jtype)
end
return was
