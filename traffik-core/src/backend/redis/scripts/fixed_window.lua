-- Fixed window: mirrors strategy/fixed_window.rs. State: 0xF1, count.
-- KEYS[1]: the client's key; the state lives at KEYS[1]:window (same hash slot when
-- KEYS[1] carries a hash tag). ARGV[3..5]: limit, period (us), cost.
local limit, period, cost = rate_of(ARGV)
local window = idiv(NOW, period)
local key = KEYS[1] .. ':' .. int(window)
local reset = period - (NOW - window * period)
local count = 0
local live = false
local v = load(key)
if v then
  if #v == 9 and string.byte(v, 1) == 0xF1 then
    count = struct.unpack('<I8', v, 2)
    live = true
  end
end
local total = count + cost
if total <= limit then
  -- A live state of this window was stored with the window's end as its expiry.
  if live then
    replace(key, struct.pack('<BI8', 0xF1, total))
  else
    store(key, struct.pack('<BI8', 0xF1, total), reset)
  end
  return decision(1, 0, limit, limit - total, reset)
end
return decision(0, reset, limit, math.max(limit - count, 0), reset)
