-- Append one shard's share of a request atomically with its idempotency markers.
-- KEYS[1] = the shard's stream; KEYS[2..] = one dedup marker per event, in order.
-- ARGV[1] = marker TTL (s); ARGV[2] = MINID trim bound ('0' for none); ARGV[3..] = msgpack events.
-- Returns one flag per event: 1 stored, 0 duplicate. The stream entry's field `e` is a msgpack
-- array (array16 header + the kept events), so the workers decode it in one call.
local ttl = ARGV[1]
local kept = {}
local flags = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    kept[#kept + 1] = ARGV[i + 1]
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
end
return flags
