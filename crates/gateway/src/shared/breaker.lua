-- powertune gateway: one (provider, credential)'s breaker and rpm limit, shared by
-- every replica. One call of this script is atomic; time is the Redis server's.
--
-- KEYS[1]  the breaker hash: s (0 closed, 1 open, 2 half-open), r (why open: 0
--          failures, 1 rate-limited), u (open until, µs), c (failures in a row),
--          p (half-open probes in flight), t (trips)
-- KEYS[2]  the rpm limiter (GCRA): the theoretical arrival time, µs
-- ARGV     op (admit | success | failure | rate_limited | neutral), failure
--          threshold, recovery (ms), half-open probes, rpm interval (µs, 0: no
--          limit), rpm tolerance (µs), key time-to-live (ms), rate-limit wait (ms)
-- reply    {decision (1 go, 0 breaker says wait, 2 rpm says wait), wait (ms),
--           s, r, open for (ms), c, t}

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
  return {decision, math.ceil(wait / 1000), s, r, open_for, c, trips}
end

if op == 'admit' then
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
  if interval > 0 then
    local tat = tonumber(redis.call('GET', KEYS[2])) or now
    if tat < now then
      tat = now
    end
    local allowed = tat - tonumber(ARGV[6])
    if now < allowed then
      return reply(2, allowed - now)
    end
    local next_tat = tat + interval
    redis.call('SET', KEYS[2], string.format('%.0f', next_tat), 'PX',
      math.ceil((next_tat - now) / 1000) + 1000)
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
return reply(1, 0)
