#!lua flags=no-writes
-- list.lua — one page of a queue's jobs, newest first (docs/redis.md, "list.lua"). Read only.
-- KEYS[1] jobs      P:{tag}:q:<queue>:jobs (score = created_at ms)
-- ARGV[1] key prefix of the tag "P:{tag}:" (job hashes)
-- ARGV[2] cursor score: start at this created_at ms ("+inf": from the newest)
-- ARGV[3] cursor id: with a cursor, skip the entries of score ARGV[2] whose id is >= this one
--         ("" : none); the order is (score, id) descending, so the cursor entry itself is skipped
-- ARGV[4] limit: matches wanted, 1..500
-- ARGV[5] type filter ("" = any)   ARGV[6] status filter ("" = any)
-- ARGV[7] scan budget: at most this many index entries are looked at in one call
-- ARGV[8..] the job hash fields to return, in order; must include "type" and "status", and the
--         first must be one every job has (an entry whose first field is absent is skipped)
-- Returns {exhausted (1 when the index has no entry after the last one looked at), last score,
-- last id (of the last entry looked at; "" if none), then score, id, {values} per match}.
-- Entries whose hash is gone (expired, not yet trimmed from the index) are skipped.
-- Resharding guard (docs/redis.md, "Redis Cluster"): while this queue's slot is being migrated,
-- a key this script builds may be on the other node already (Redis would stop the script at it,
-- after the writes before it) or, run by ASKING on the importing node, not there yet (read as
-- missing). EXISTS of KEYS[1] and a key nobody writes is refused exactly then: nothing is done,
-- and the caller is answered TRYAGAIN, to send the call again in a moment.
if type(redis.pcall('EXISTS', KEYS[1], KEYS[1] .. ':probe')) == 'table' then
  return redis.error_reply('TRYAGAIN slot migrating: list.lua not run')
end
local P, cscore, cid = ARGV[1], ARGV[2], ARGV[3]
local limit, ftype, fstatus, budget = tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
local fields, ti, si = {}, nil, nil
for i = 8, #ARGV do
  fields[#fields + 1] = ARGV[i]
  if ARGV[i] == 'type' then ti = #fields end
  if ARGV[i] == 'status' then si = #fields end
end
local cnum = tonumber(cscore)
local out = {0, '', ''}
local matched, looked, offset = 0, 0, 0
local BATCH = 100
while matched < limit and looked < budget do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], cscore, '-inf', 'WITHSCORES',
    'LIMIT', offset, BATCH)
  local stopped = false
  for i = 1, #batch, 2 do
    local id, s = batch[i], batch[i + 1]
    offset = offset + 1
    if not (cid ~= '' and tonumber(s) == cnum and id >= cid) then
      looked = looked + 1
      out[2], out[3] = s, id
      local v = redis.call('HMGET', P .. 'job:' .. id, unpack(fields))
      if v[1] and (ftype == '' or v[ti] == ftype) and (fstatus == '' or v[si] == fstatus) then
        out[#out + 1] = s
        out[#out + 1] = id
        out[#out + 1] = v
        matched = matched + 1
      end
      if matched >= limit or looked >= budget then stopped = true; break end
    end
  end
  if not stopped and #batch < 2 * BATCH then out[1] = 1; break end
end
return out
