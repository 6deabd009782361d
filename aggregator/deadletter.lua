-- Move one stream entry a worker gave up on to the shard's dead-letter stream, atomically with
-- its XACK, so a crash can neither lose it nor file it twice.
-- KEYS[1] = the shard's stream; KEYS[2] = the shard's dead-letter stream; KEYS[3] = stats hash;
-- KEYS[4] = the shard's failures hash (the entry's count is dropped with it).
-- ARGV[1] = group; ARGV[2] = entry id; ARGV[3] = reason record (JSON); ARGV[4] = entry body.
-- XACK first, as in apply.lua: 0 means someone else already settled the entry; then do nothing.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
-- 'r' = keyspace.ENTRY_REASON (schemas/keyspace.py): the reason record;
-- 'e' = keyspace.ENTRY_EVENTS: the body as the shard's stream held it
redis.call('XADD', KEYS[2], '*', 'r', ARGV[3], 'e', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'dead_lettered', 1)
if KEYS[4] then redis.call('HDEL', KEYS[4], ARGV[2]) end
return 1
