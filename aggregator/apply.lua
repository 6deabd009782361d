-- Apply one stream entry's effects atomically with its XACK.
-- KEYS[1] = the shard's stream; KEYS[2] = the shard's stats hash; KEYS[3..] = keys the ops name.
-- ARGV[1] = group; ARGV[2] = entry id; ARGV[3] = aggregate TTL (s); ARGV[4] = session state TTL (s);
-- ARGV[5] = log(gamma) of the duration sketch; ARGV[6..] = ops (key arguments are KEYS indexes).
--
-- XACK comes first: it returns 0 when the entry is no longer pending (another consumer claimed
-- and applied it), and then nothing is applied. So a redelivered entry never counts twice.
-- Every value was checked by the worker before the call; nothing below can fail halfway.
-- An empty group (ARGV[1] == '') is the backfill: it rebuilds days from entries already acked.
if ARGV[1] ~= '' and redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local ttl = tonumber(ARGV[3])
local session_ttl = tonumber(ARGV[4])
local log_gamma = tonumber(ARGV[5])
local stats = KEYS[2]
local DAY = 86400000

local function add_duration(sketch, dur)
  redis.call('HINCRBY', sketch, 'n', 1)
  redis.call('HINCRBY', sketch, 'sum', dur)
  if dur <= 0 then
    redis.call('HINCRBY', sketch, 'z', 1)
  else
    redis.call('HINCRBY', sketch, 'b' .. math.ceil(math.log(dur) / log_gamma), 1)
  end
  redis.call('EXPIRE', sketch, ttl)
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

local i = 6
local n = #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'P' then
    -- P key count member...: daily uniques
    local cnt = tonumber(ARGV[i + 2])
    redis.call('PFADD', KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + cnt))
    i = i + 3 + cnt
  elseif op == 'I' then
    -- I key field by: counters
    redis.call('HINCRBY', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'D' then
    -- D sketch duration: a session paired outside Redis (the backfill)
    add_duration(KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2]))
    i = i + 3
  elseif op == 'Z' then
    -- Z key member by: top-N tables
    redis.call('ZINCRBY', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 3], ARGV[i + 2])
    i = i + 4
  elseif op == 'E' then
    -- E key: an aggregate key was written; keep it for the metrics retention
    redis.call('EXPIRE', KEYS[tonumber(ARGV[i + 1])], ttl)
    i = i + 2
  elseif op == 'L' then
    -- L key body count: events past the late window, kept aside, counted
    redis.call('XADD', KEYS[tonumber(ARGV[i + 1])], '*', 'n', ARGV[i + 3], 'e', ARGV[i + 2])
    redis.call('HINCRBY', stats, 'late', ARGV[i + 3])
    i = i + 4
  elseif op == 'S' then
    -- S state ts sketch: a session start (the duration is keyed by the start's day)
    local state = KEYS[tonumber(ARGV[i + 1])]
    local ts = ARGV[i + 2]
    local sketch = KEYS[tonumber(ARGV[i + 3])]
    if redis.call('HEXISTS', state, 'd') == 0 and redis.call('HEXISTS', state, 's') == 0 then
      local e = redis.call('HGET', state, 'e')
      if e then
        complete(state, sketch, ts, e)
      else
        redis.call('HSET', state, 's', ts)
        redis.call('EXPIRE', state, session_ttl)
      end
    end
    i = i + 4
  elseif op == 'F' then
    -- F state alt ts day_a sketch_a day_b sketch_b: a session end. alt (0 = none) is the state
    -- under the previous salt epoch; the sketches are the candidates for the start's day.
    local state = KEYS[tonumber(ARGV[i + 1])]
    local alt_idx = tonumber(ARGV[i + 2])
    local ts = ARGV[i + 3]
    local candidates = {
      [tonumber(ARGV[i + 4])] = KEYS[tonumber(ARGV[i + 5])],
      [tonumber(ARGV[i + 6])] = KEYS[tonumber(ARGV[i + 7])],
    }
    local function try(key)
      if redis.call('HEXISTS', key, 'd') == 1 or redis.call('HEXISTS', key, 'e') == 1 then
        return true
      end
      local s = redis.call('HGET', key, 's')
      if s then
        complete(key, candidates[math.floor(tonumber(s) / DAY)], s, ts)
        return true
      end
      return false
    end
    local alt = nil
    if alt_idx > 0 then alt = KEYS[alt_idx] end
    if not try(state) and not (alt and try(alt)) then
      redis.call('HSET', state, 'e', ts)
      redis.call('EXPIRE', state, session_ttl)
      if alt then
        redis.call('HSET', alt, 'e', ts)
        redis.call('EXPIRE', alt, session_ttl)
      end
    end
    i = i + 8
  else
    return redis.error_reply('unknown op ' .. tostring(op))
  end
end
return 1
