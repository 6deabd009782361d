-- Delete consumers that hold nothing and have not been heard from for ARGV[2] ms.
-- KEYS[1] = a shard's stream; ARGV[1] = group; ARGV[2] = idle threshold (ms).
-- Deleting a consumer drops its pending entries, so the check and the delete must be one atomic
-- step: then a consumer with anything pending is never deleted, and a live one that reads again
-- later is simply recreated by its next XREADGROUP.
local threshold = tonumber(ARGV[2])
local deleted = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  -- 'idle' counts from the last attempt of any kind, so a live worker blocked on an empty stream
  -- is never silent ('inactive' only counts successful reads, and is -1 before the first)
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > threshold then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted = deleted + 1
  end
end
return deleted
