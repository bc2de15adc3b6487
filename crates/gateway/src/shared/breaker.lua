-- powertune gateway: one (provider, credential)'s breaker, rpm and tpm limits, and
-- the calling client key's rpm and tpm, shared by every replica. One call of this
-- script is atomic; time is the Redis server's.
--
-- KEYS[1]  the breaker hash: s (0 closed, 1 open, 2 half-open), r (why open: 0
--          failures, 1 rate-limited), u (open until, µs), c (failures in a row),
--          p (half-open probes in flight), t (trips)
-- KEYS[2]  the rpm limiter (GCRA): the theoretical arrival time, µs
-- KEYS[3]  the tpm bucket: l (tokens in it), a (when l was taken, µs); refilled at
--          tpm per minute up to tpm; gone after a minute untouched (= full)
-- KEYS[4]  (only for a client key with a limit) the client's rpm limiter, as KEYS[2]
-- KEYS[5]  (with KEYS[4]) the client's tpm bucket, as KEYS[3]
-- ARGV     op (admit | success | failure | rate_limited | neutral), failure
--          threshold, recovery (ms), half-open probes, rpm interval (µs, 0: no
--          limit), rpm tolerance (µs), key time-to-live (ms), rate-limit wait (ms),
--          tpm (0: no limit), tokens (admit: reserved; an outcome: given back,
--          negative: taken); with KEYS[4..5]: the client's rpm interval (µs, 0: no
--          limit), rpm tolerance (µs), tpm (0: no limit) and tokens (as above)
-- reply    {decision (1 go, 0 breaker says wait, 2 rpm says wait, 3 tpm says
--           wait, 4 the client's rpm says wait, 5 the client's tpm says wait),
--           wait (ms), s, r, open for (ms), c, t, tokens left (-1: no tpm)}
--
-- An admission takes nothing unless everything lets the call go.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 's', 'r', 'u', 'c', 'p', 't')
local s = tonumber(h[1]) or 0
local r = tonumber(h[2]) or 0
local u = tonumber(h[3]) or 0
local c = tonumber(h[4]) or 0
local p = tonumber(h[5]) or 0
local trips = tonumber(h[6]) or 0
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local recovery = tonumber(ARGV[3]) * 1000
local probes = tonumber(ARGV[4])
local ttl = tonumber(ARGV[7])
local changed = false
local tpm = tonumber(ARGV[9]) or 0
local tokens = tonumber(ARGV[10]) or 0
local client = #KEYS >= 5
local c_interval = tonumber(ARGV[11]) or 0
local c_tolerance = tonumber(ARGV[12]) or 0
local c_tpm = tonumber(ARGV[13]) or 0
local c_tokens = tonumber(ARGV[14]) or 0

-- the tokens in a bucket now (refilled at limit per minute, never above limit)
local function level_of(key, limit)
  local b = redis.call('HMGET', key, 'l', 'a')
  local l = tonumber(b[1]) or limit
  local a = tonumber(b[2]) or now
  if now > a then
    l = l + (now - a) * limit / 60000000
  end
  if l > limit then
    l = limit
  end
  return l
end

local function store_level(key, l)
  redis.call('HSET', key, 'l', string.format('%.3f', l), 'a', string.format('%.0f', now))
  redis.call('PEXPIRE', key, 61000)
end

-- GCRA: the next theoretical arrival time if a call may go now, else nil and the wait
local function gcra(key, interval, tolerance)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then
    tat = now
  end
  local allowed = tat - tolerance
  if now < allowed then
    return nil, allowed - now
  end
  return tat + interval, 0
end

local function store_tat(key, tat)
  redis.call('SET', key, string.format('%.0f', tat), 'PX',
    math.ceil((tat - now) / 1000) + 1000)
end

local level = -1
if tpm > 0 then
  level = level_of(KEYS[3], tpm)
end

local function trip(d, reason)
  local deadline = now + d
  if s == 1 and u > deadline then
    deadline = u -- extend, never shorten
  end
  if reason == 0 then
    trips = trips + 1
  end
  s, r, u, p = 1, reason, deadline, 0
  changed = true
end

local function reply(decision, wait)
  if changed then
    redis.call('HSET', KEYS[1], 's', s, 'r', r, 'u', string.format('%.0f', u),
      'c', c, 'p', p, 't', trips)
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  local open_for = 0
  if s == 1 and u > now then
    open_for = math.ceil((u - now) / 1000)
  end
  local left = -1
  if tpm > 0 then
    left = math.max(0, math.floor(level))
  end
  return {decision, math.ceil(wait / 1000), s, r, open_for, c, trips, left}
end

if op == 'admit' then
  -- the client's own limits first: over them the call is refused whatever credential
  local c_tat = nil
  local c_level = nil
  if client and c_interval > 0 then
    local wait
    c_tat, wait = gcra(KEYS[4], c_interval, c_tolerance)
    if not c_tat then
      return reply(4, wait)
    end
  end
  if client and c_tpm > 0 then
    c_level = level_of(KEYS[5], c_tpm)
    local need = math.min(c_tokens, c_tpm)
    if c_level < need then
      return reply(5, (need - c_level) * 60000000 / c_tpm)
    end
  end
  local probe = false
  if s == 1 then
    if now < u then
      return reply(0, u - now)
    end
    probe = true
  elseif s == 2 then
    if p >= probes then
      return reply(0, 1000000)
    end
    probe = true
  end
  local interval = tonumber(ARGV[5])
  local next_tat = nil
  if interval > 0 then
    local wait
    next_tat, wait = gcra(KEYS[2], interval, tonumber(ARGV[6]))
    if not next_tat then
      return reply(2, wait)
    end
  end
  if tpm > 0 then
    local need = math.min(tokens, tpm)
    if level < need then
      return reply(3, (need - level) * 60000000 / tpm)
    end
    level = level - tokens
    store_level(KEYS[3], level)
  end
  if next_tat then
    store_tat(KEYS[2], next_tat)
  end
  if c_tat then
    store_tat(KEYS[4], c_tat)
  end
  if c_level then
    store_level(KEYS[5], c_level - c_tokens)
  end
  if probe then
    if s == 1 then
      s, p = 2, 1
    else
      p = p + 1
    end
    changed = true
  end
  return reply(1, 0)
elseif op == 'success' then
  if c > 0 or s == 2 then
    changed = true
  end
  c = 0
  if s == 2 then
    s, p = 0, 0
  end
elseif op == 'failure' then
  c = c + 1
  changed = true
  if s ~= 0 or c >= threshold then
    trip(recovery, 0)
  end
elseif op == 'rate_limited' then
  trip(tonumber(ARGV[8]) * 1000, 1)
elseif op == 'neutral' then
  if s == 2 and p > 0 then
    p = p - 1
    changed = true
  end
end
-- an outcome: the tokens the call did not use go back (negative: it used more), to
-- the credential's bucket and to the client's
if tpm > 0 and tokens ~= 0 then
  level = math.min(tpm, level + tokens)
  store_level(KEYS[3], level)
end
if client and c_tpm > 0 and c_tokens ~= 0 then
  store_level(KEYS[5], math.min(c_tpm, level_of(KEYS[5], c_tpm) + c_tokens))
end
return reply(1, 0)
