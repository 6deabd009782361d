-- Delete stream entries, or replace each by a new entry holding only some of its events, so that
-- the consumer group applies every kept event exactly once.
-- KEYS[1] = a stream; ARGV[1] = the consumer group reading it ('' for a stream nobody consumes);
-- ARGV[2..] = triples: entry id, the kept events' body ('' = keep none), their count.
-- An entry the group has not delivered yet: its replacement is read and applied as usual. One that
-- is pending (a worker holds it): XACK it here, so that worker's apply script finds it no longer
-- pending and applies nothing; the replacement is applied instead. One already applied: the
-- replacement carries 'a' = 1, which workers acknowledge without applying it again.
-- Returns the number of entries removed.
local stream, group = KEYS[1], ARGV[1]
local last = nil
if group ~= '' and redis.call('EXISTS', stream) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info['name'] == group then last = info['last-delivered-id'] end
  end
end
local function not_after(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as <= bs)
end
local removed = 0
for i = 2, #ARGV, 3 do
  local id, body, n = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local entry = redis.call('XRANGE', stream, id, id)
  if #entry == 1 then
    local applied = false
    if last and not_after(id, last) then
      if #redis.call('XPENDING', stream, group, id, id, 1) > 0 then
        redis.call('XACK', stream, group, id)
      else
        applied = true
      end
    end
    redis.call('XDEL', stream, id)
    removed = removed + 1
    if body ~= '' then
      local fields, out, marked = entry[1][2], {}, false
      for j = 1, #fields, 2 do
        local k, v = fields[j], fields[j + 1]
        -- keyspace.ENTRY_EVENTS, ENTRY_COUNT and ENTRY_APPLIED_B (schemas/keyspace.py)
        if k == 'e' then v = body elseif k == 'n' then v = n elseif k == 'a' then marked = true end
        out[#out + 1] = k
        out[#out + 1] = v
      end
      if applied and not marked then
        out[#out + 1] = 'a'
        out[#out + 1] = '1'
      end
      redis.call('XADD', stream, '*', unpack(out))
    end
  end
end
return removed
