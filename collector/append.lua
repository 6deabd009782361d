-- Append one shard's share of a request atomically with its idempotency markers.
-- KEYS[1] = the shard's stream; KEYS[2] = the shard's recent-events debug list;
-- KEYS[3..] = one dedup marker per event, in order.
-- ARGV[1] = marker TTL (s); ARGV[2] = MINID trim bound ('0' for none);
-- ARGV[3] = debug buffer size (0: off); ARGV[4] = debug buffer TTL (s); ARGV[5..] = msgpack events.
-- Returns one flag per event: 1 stored, 0 duplicate. The stream entry's field `e` is a msgpack
-- array (array16 header + the kept events), so the workers decode it in one call.
local ttl = ARGV[1]
local kept = {}
local flags = {}
for i = 3, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    kept[#kept + 1] = ARGV[i + 2]
    flags[#flags + 1] = 1
  else
    flags[#flags + 1] = 0
  end
end
local n = #kept
if n > 0 then
  local body = string.char(0xdc, math.floor(n / 256), n % 256) .. table.concat(kept)
  if ARGV[2] ~= '0' then
    redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', 'n', n, 'e', body)
  else
    redis.call('XADD', KEYS[1], '*', 'n', n, 'e', body)
  end
  -- the debug buffer sees only what was really stored, and at most its size per call
  local size = tonumber(ARGV[3])
  if size > 0 then
    local first = math.max(1, n - size + 1)
    redis.call('LPUSH', KEYS[2], unpack(kept, first, n))
    redis.call('LTRIM', KEYS[2], 0, size - 1)
    redis.call('EXPIRE', KEYS[2], ARGV[4])
  end
end
return flags
