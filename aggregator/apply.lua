-- Apply the merged effects of one or more stream entries of a shard atomically with their XACK.
-- KEYS[1] = the shard's stream; KEYS[2] = the shard's stats hash; KEYS[3..] = keys the ops name.
-- ARGV[1] = group; ARGV[2] = entry id, or several ids separated by spaces, in stream order;
-- ARGV[3] = aggregate TTL (s); ARGV[4] = session state TTL (s); ARGV[5] = log(gamma) of the
-- duration sketch; ARGV[6] = the ops, one msgpack array (key arguments are KEYS indexes);
-- ARGV[7] = the consumer with several ids, else empty or absent; ARGV[8..] = binary values that
-- ops name by ARGV index (the script's msgpack has no binary type).
--
-- One id: XACK comes first; it returns 0 when the entry is no longer pending (another consumer
-- claimed and applied it), and then nothing is applied. So a redelivered entry never counts twice.
-- Several ids: every one must still be pending to this consumer; if any is not, nothing at all is
-- done and 0 is returned (the worker then applies them entry by entry, as above); else all are
-- XACKed and the merged effects applied.
-- Every value was checked by the worker before the call; nothing below can fail halfway.
-- An empty group (ARGV[1] == '') is the backfill: it rebuilds days from entries already acked.
if ARGV[1] ~= '' then
  if ARGV[7] and ARGV[7] ~= '' then
    local ids = {}
    for id in string.gmatch(ARGV[2], '%S+') do ids[#ids + 1] = id end
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ids[1], ids[#ids], #ids, ARGV[7])
    local mine = {}
    for _, p in ipairs(pending) do mine[p[1]] = true end
    for _, id in ipairs(ids) do
      if not mine[id] then return 0 end
    end
    redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  elseif redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
    return 0
  end
end
local ttl = tonumber(ARGV[3])
local session_ttl = tonumber(ARGV[4])
local log_gamma = tonumber(ARGV[5])
local ops = cmsgpack.unpack(ARGV[6])
local stats = KEYS[2]
local DAY = 86400000

-- add to several integer counters of one hash: one HMGET and one HSET (each HINCRBY on a small,
-- listpack-encoded hash costs a scan of it); values stay exact as Lua numbers below 2^53
local function hadd(key, fields, bys)
  local cur = redis.call('HMGET', key, unpack(fields))
  local args = {}
  for j = 1, #fields do
    args[2 * j - 1] = fields[j]
    args[2 * j] = (tonumber(cur[j]) or 0) + bys[j]
  end
  redis.call('HSET', key, unpack(args))
end

-- sketch increments are only written, never read here: merged and written once at the end
local sketches = {}
local function add_duration(sketch, dur)
  local acc = sketches[sketch]
  if not acc then
    acc = {n = 0, sum = 0}
    sketches[sketch] = acc
  end
  acc.n = acc.n + 1
  acc.sum = acc.sum + dur
  local field
  if dur <= 0 then
    field = 'z'
  else
    field = 'b' .. math.ceil(math.log(dur) / log_gamma)
  end
  acc[field] = (acc[field] or 0) + 1
end

local function complete(state, sketch, s, e)
  local dur = tonumber(e) - tonumber(s)
  if dur < 0 then dur = 0 end
  redis.call('HSET', state, 'd', 1)
  redis.call('EXPIRE', state, session_ttl)
  if sketch then
    add_duration(sketch, dur)
  else
    redis.call('HINCRBY', stats, 'sessions_out_of_range', 1)
  end
end

-- a session start (the duration is keyed by the start's day); h = its state's HMGET d s e
local function session_start(state, ts, sketch, h)
  if not h[1] and not h[2] then
    local e = h[3]
    if e then
      complete(state, sketch, ts, e)
    else
      redis.call('HSET', state, 's', ts)
      redis.call('EXPIRE', state, session_ttl)
    end
  end
end

-- a session end. alt (nil = none) is the state under the previous salt epoch; candidates are the
-- sketches of the two days the start can be on, by day number
local function session_end(state, alt, ts, candidates)
  local function try(key)
    local h = redis.call('HMGET', key, 'd', 'e', 's')
    if h[1] or h[2] then
      return true
    end
    local s = h[3]
    if s then
      complete(key, candidates[math.floor(tonumber(s) / DAY)], s, ts)
      return true
    end
    return false
  end
  if not try(state) and not (alt and try(alt)) then
    redis.call('HSET', state, 'e', ts)
    redis.call('EXPIRE', state, session_ttl)
    if alt then
      redis.call('HSET', alt, 'e', ts)
      redis.call('EXPIRE', alt, session_ttl)
    end
  end
end

local i = 1
local n = #ops
while i <= n do
  local op = ops[i]
  if op == 'P' then
    -- P key count member...: daily uniques
    local cnt = ops[i + 2]
    redis.call('PFADD', KEYS[ops[i + 1]], unpack(ops, i + 3, i + 2 + cnt))
    i = i + 3 + cnt
  elseif op == 'H' then
    -- H key count field by...: small counters (event counts), one read and one write
    local cnt = ops[i + 2]
    local fields, bys = {}, {}
    for j = 1, cnt do
      fields[j] = ops[i + 1 + 2 * j]
      bys[j] = ops[i + 2 + 2 * j]
    end
    hadd(KEYS[ops[i + 1]], fields, bys)
    i = i + 3 + 2 * cnt
  elseif op == 'I' then
    -- I key field by: counters
    redis.call('HINCRBY', KEYS[ops[i + 1]], ops[i + 2], ops[i + 3])
    i = i + 4
  elseif op == 'D' then
    -- D sketch duration: a session paired outside Redis (the backfill)
    add_duration(KEYS[ops[i + 1]], ops[i + 2])
    i = i + 3
  elseif op == 'Z' then
    -- Z key member by: top-N tables
    redis.call('ZINCRBY', KEYS[ops[i + 1]], ops[i + 3], ops[i + 2])
    i = i + 4
  elseif op == 'E' then
    -- E key: an aggregate key was written; keep it for the metrics retention
    redis.call('EXPIRE', KEYS[ops[i + 1]], ttl)
    i = i + 2
  elseif op == 'L' then
    -- L key body count: events past the late window (body: an ARGV index), kept aside, counted;
    -- an entry like the shard stream's: 'n' = keyspace.ENTRY_COUNT, 'e' = keyspace.ENTRY_EVENTS
    redis.call('XADD', KEYS[ops[i + 1]], '*', 'n', ops[i + 3], 'e', ARGV[ops[i + 2]])
    redis.call('HINCRBY', stats, 'late', ops[i + 3])
    i = i + 4
  elseif op == 'S' then
    -- S state ts sketch: a session start
    local state = KEYS[ops[i + 1]]
    session_start(state, ops[i + 2], KEYS[ops[i + 3]], redis.call('HMGET', state, 'd', 's', 'e'))
    i = i + 4
  elseif op == 'F' then
    -- F state alt ts day_a sketch_a day_b sketch_b: a session end. alt (0 = none) is the state
    -- under the previous salt epoch; the sketches are the candidates for the start's day.
    local alt = nil
    if ops[i + 2] > 0 then alt = KEYS[ops[i + 2]] end
    session_end(KEYS[ops[i + 1]], alt, ops[i + 3],
      {[ops[i + 4]] = KEYS[ops[i + 5]], [ops[i + 6]] = KEYS[ops[i + 7]]})
    i = i + 8
  elseif op == 'B' then
    -- B state ts_s sketch_s ts_e day_a sketch_a day_b sketch_b: a start and then its end (no alt),
    -- nothing else on the state in between: exactly S then F. On a fresh state that is s and d
    -- stored and the duration counted: HMGET, HSET, EXPIRE instead of six commands.
    local state = KEYS[ops[i + 1]]
    local ts_s = ops[i + 2]
    local ts_e = ops[i + 4]
    local candidates = {[ops[i + 5]] = KEYS[ops[i + 6]], [ops[i + 7]] = KEYS[ops[i + 8]]}
    local h = redis.call('HMGET', state, 'd', 's', 'e')
    if not h[1] and not h[2] and not h[3] then
      redis.call('HSET', state, 's', ts_s, 'd', 1)
      redis.call('EXPIRE', state, session_ttl)
      local sketch = candidates[math.floor(ts_s / DAY)]
      if sketch then
        local dur = ts_e - ts_s
        if dur < 0 then dur = 0 end
        add_duration(sketch, dur)
      else
        redis.call('HINCRBY', stats, 'sessions_out_of_range', 1)
      end
    else
      session_start(state, ts_s, KEYS[ops[i + 3]], h)
      session_end(state, nil, ts_e, candidates)
    end
    i = i + 9
  else
    return redis.error_reply('unknown op ' .. tostring(op))
  end
end
for sketch, acc in pairs(sketches) do
  local fields, bys = {}, {}
  for field, by in pairs(acc) do
    fields[#fields + 1] = field
    bys[#bys + 1] = by
  end
  hadd(sketch, fields, bys)
  redis.call('EXPIRE', sketch, ttl)
end
return 1
