-- Sliding window counter: mirrors strategy/sliding_window_counter.rs.
-- State: 0xA2, window, previous, current. ARGV[3..5]: limit, period (us), cost.
local limit, period, cost = rate_of(ARGV)
local key = KEYS[1]
local window = idiv(NOW, period)
local elapsed = NOW - window * period
local previous, current = 0, 0
-- Whether the stored state expires where a new one would: the end of the window after
-- this one, set when this window's first request was stored.
local same_expiry = false
local v = load(key)
if v and #v == 25 and string.byte(v, 1) == 0xA2 then
  local w, p, c = struct.unpack('<I8I8I8', v, 2)
  if w >= window then
    previous, current = p, c
    same_expiry = w == window and c > 0
  elseif w + 1 == window then
    previous, current = c, 0
  end
end

local function fits(c)
  return previous * (period - elapsed) + (current + c) * period <= limit * period
end

local function remaining()
  local used = previous * (period - elapsed) + current * period
  return idiv(math.max(limit * period - used, 0), period)
end

local function wait(c)
  if current + c <= limit and previous > 0 then
    local allowance = idiv((limit - current - c) * period, previous)
    local needed = period - math.min(allowance, period)
    return math.max(needed - elapsed, 1)
  end
  local needed = 0
  if current > 0 then
    local allowance = idiv(math.max(limit - c, 0) * period, current)
    needed = period - math.min(allowance, period)
  end
  return (period - elapsed) + needed
end

local function until_clear()
  if current > 0 then return 2 * period - elapsed end
  if previous > 0 then return period - elapsed end
  return 0
end

if not fits(cost) then
  return decision(0, wait(cost), limit, remaining(), until_clear())
end
current = current + cost
local reset = until_clear()
local state = struct.pack('<BI8I8I8', 0xA2, window, previous, current)
if same_expiry then
  replace(key, state)
else
  store(key, state, reset)
end
return decision(1, 0, limit, remaining(), reset)
