-- Token and leaky buckets: mirrors strategy/meter.rs. State: tag, level, at.
-- The level is scaled by the period: one unit of cost is `period` level units, and the
-- level drains by `limit` units per microsecond.
-- ARGV[3..5]: limit, period (us), cost; ARGV[6..9]: tag, capacity, visible,
-- only_when_empty (1/0).
local limit, period, cost = rate_of(ARGV)
local tag, capacity, visible = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local only_when_empty = ARGV[9] == '1'
local key = KEYS[1]
local full = capacity * period

local level, at = 0, NOW
local v = load(key)
if v and #v == 17 and string.byte(v, 1) == tag then
  local l, a = struct.unpack('<I8I8', v, 2)
  if l <= full then
    local elapsed = math.max(NOW - a, 0)
    if elapsed >= ceil_div(l, limit) then
      level = 0
    else
      level = l - elapsed * limit
    end
    at = math.max(a, NOW)
  end
end

local function fits(lvl, c)
  if only_when_empty then return lvl == 0 end
  return lvl + c * period <= full
end

local function remaining(lvl)
  if only_when_empty then
    if lvl == 0 then return 1 end
    return 0
  end
  return idiv(math.max(visible * period - lvl, 0), period)
end

local function until_empty(lvl)
  return ceil_div(lvl, limit)
end

local function wait(lvl, c)
  if only_when_empty then return until_empty(lvl) end
  return ceil_div(math.max(lvl + c * period - full, 0), limit)
end

if not fits(level, cost) then
  return decision(0, wait(level, cost), visible, remaining(level), until_empty(level))
end
level = level + cost * period
local reset = until_empty(level)
store(key, struct.pack('<BI8I8', tag, level, at), reset)
return decision(1, 0, visible, remaining(level), reset)
