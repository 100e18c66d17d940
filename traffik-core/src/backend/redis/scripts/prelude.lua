-- Shared by every Traffik script and function: the helpers (prepended at build time;
-- in the function library, defined once when it is loaded).
--
-- NOW and OFFSET are set at the start of each call by clock.lua:
-- NOW: the time of this call, in microseconds since the Unix epoch.
-- OFFSET: nil when key expiry is Redis's own (server clock); otherwise the offset in
--         milliseconds between the caller's clock and the real expiry times, and expiry
--         is judged against NOW from each key's PEXPIRETIME (an explicit clock: tests,
--         simulations).
--
-- Lua numbers are doubles: every quantity here is an integer below 2^53 (the backend
-- checks the configuration before choosing a script), so all arithmetic is exact.

local NOW, OFFSET

-- An integer as text (tostring would use %.14g and lose digits). The last one is kept:
-- the calls of a batch mostly write the same window's number.
local last_int, last_int_text
local function int(n)
  if n ~= last_int then
    last_int, last_int_text = n, string.format('%d', n)
  end
  return last_int_text
end

-- A decision's limit, period and cost (ARGV[3..5]) as numbers, read once per ARGV table:
-- the calls of a run in a batch share theirs. The table last read is held, so that no
-- other can take its place in memory and be mistaken for it.
local rate_args, rate_limit, rate_period, rate_cost
local function rate_of(ARGV)
  if ARGV ~= rate_args then
    rate_args = ARGV
    rate_limit, rate_period, rate_cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  end
  return rate_limit, rate_period, rate_cost
end

-- Floor of a / b for non-negative integers, corrected for rounding.
local function idiv(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

local function ceil_div(a, b)
  local q = idiv(a, b)
  if q * b < a then q = q + 1 end
  return q
end

-- The live value at key, or nil (missing, or expired by the caller's clock).
local function load(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  if OFFSET then
    local at = redis.call('PEXPIRETIME', key)
    if at >= 0 and (at - OFFSET) * 1000 <= NOW then return nil end
  end
  return v
end

-- Stores value at key for ttl microseconds (rounded up to whole milliseconds).
local function store(key, value, ttl)
  if OFFSET then
    redis.call('SET', key, value, 'PXAT', int(ceil_div(NOW + ttl, 1000) + OFFSET))
  else
    redis.call('SET', key, value, 'PX', int(math.max(1, ceil_div(ttl, 1000))))
  end
end

-- Replaces the value of a live key, keeping its expiry: for a state whose expiry has
-- not moved since it was stored (a window's end). Cheaper for Redis than a new expiry.
local function replace(key, value)
  redis.call('SET', key, value, 'KEEPTTL')
end

-- Sets the expiry of an existing key to ttl microseconds from now.
local function expire(key, ttl)
  if OFFSET then
    redis.call('PEXPIREAT', key, int(ceil_div(NOW + ttl, 1000) + OFFSET))
  else
    redis.call('PEXPIRE', key, int(math.max(1, ceil_div(ttl, 1000))))
  end
end

-- A decision as the backend reads it: allowed (0 or 1), then wait, limit, remaining and
-- reset (microseconds), each a little-endian u64. One string costs Redis and the client
-- less than a five-element array.
local function decision(allowed, wait, limit, remaining, reset)
  return struct.pack('<BI8I8I8I8', allowed, wait, limit, remaining, reset)
end
