-- Append one shard's share of a request atomically with its idempotency record.
-- KEYS[1] = the shard's stream;
-- KEYS[2..] = the dedup buckets this call touches: one set per hour of the events' own client
--            time (keyspace.dedup_bucket), holding the 16-byte ids seen in that hour. A resend
--            carries the same client time, so it meets its first send in the same bucket.
-- ARGV[1] = the buckets' minimum TTL (s): each write extends a bucket to at least this;
-- ARGV[2] = MINID trim bound ('0' for none);
-- ARGV[3] = per event, one byte: its bucket's position after KEYS[1] (1 = KEYS[2]);
-- ARGV[4] = the events' ids, 16 bytes each, concatenated in order;
-- ARGV[5] = the entry as it is stored when nothing is a duplicate: a msgpack array header
--           followed by the msgpack events; ARGV[6] = the events' byte lengths, comma-separated
--           (read only when some event is a duplicate, to cut the kept ones out of ARGV[5]);
-- ARGV[7] = '1' when the collector WAITs for replicas or the AOF after this call: a call that
--           stores nothing (all duplicates) then re-sets a bucket's expiry unchanged, a write the
--           WAIT can wait for, so a duplicate answer too means the first copy is as durable.
-- One SMISMEMBER and one SADD per bucket instead of a marker key per event. Returns one flag per
-- event: 1 stored, 0 duplicate (seen before, or earlier in this same call). The stream entry's
-- field `e` is a msgpack array of the kept events, so the workers decode it in one call; the
-- collector's recent-events view reads the newest entries back (collector/recent.py), so no
-- other copy of the events is kept.
local ttl = tonumber(ARGV[1])
local where = ARGV[3]
local ids = ARGV[4]
local blob = ARGV[5]
local count = #where
-- the events of each bucket, in order
local members, positions = {}, {}
for i = 1, count do
  local b = string.byte(where, i)
  if members[b] == nil then
    members[b], positions[b] = {}, {}
  end
  local m = members[b]
  m[#m + 1] = string.sub(ids, 16 * i - 15, 16 * i)
  positions[b][#m] = i
end
local flags = {}
local all = true
local CHUNK = 4000  -- under Lua's unpack() limit
for b, m in pairs(members) do
  local key = KEYS[1 + b]
  local fresh, seen = {}, {}
  for start = 1, #m, CHUNK do
    local stop = math.min(start + CHUNK - 1, #m)
    local found = redis.call('SMISMEMBER', key, unpack(m, start, stop))
    for j = start, stop do
      local id = m[j]
      if found[j - start + 1] == 1 or seen[id] then
        flags[positions[b][j]] = 0
        all = false
      else
        seen[id] = true
        fresh[#fresh + 1] = id
        flags[positions[b][j]] = 1
      end
    end
  end
  for start = 1, #fresh, CHUNK do
    redis.call('SADD', key, unpack(fresh, start, math.min(start + CHUNK - 1, #fresh)))
  end
  if #fresh > 0 and redis.call('TTL', key) < ttl then  -- -1 (none yet) included
    redis.call('EXPIRE', key, ttl)
  end
end
local kept = {}
if not all then  -- cut the kept events out of the blob: it ends with the events, in order
  local lens = {}
  local total = 0
  for l in string.gmatch(ARGV[6], '%d+') do
    local n = tonumber(l)
    lens[#lens + 1] = n
    total = total + n
  end
  local pos = #blob - total + 1
  for i = 1, count do
    if flags[i] == 1 then
      kept[#kept + 1] = string.sub(blob, pos, pos + lens[i] - 1)
    end
    pos = pos + lens[i]
  end
end
local n = all and count or #kept
if n > 0 then
  local body = blob
  if not all then
    body = string.char(0xdc, math.floor(n / 256), n % 256) .. table.concat(kept)
  end
  -- the entry's fields: 'n' = keyspace.ENTRY_COUNT, 'e' = keyspace.ENTRY_EVENTS (schemas/keyspace.py)
  if ARGV[2] ~= '0' then
    redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', 'n', n, 'e', body)
  else
    redis.call('XADD', KEYS[1], '*', 'n', n, 'e', body)
  end
end
if n == 0 and ARGV[7] == '1' then
  local left = redis.call('PTTL', KEYS[2])
  if left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
end
return flags
