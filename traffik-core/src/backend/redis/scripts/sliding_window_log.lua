-- Sliding window log: mirrors strategy/sliding_window_log.rs.
-- State: 0xA1, then (at, cost) pairs, oldest first. ARGV[3..5]: limit, period (us), cost.
local limit, period, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local key = KEYS[1]

-- Decodes the log; nil if it is not a well-formed log.
local function decode(v)
  if string.byte(v, 1) ~= 0xA1 or (#v - 1) % 16 ~= 0 then return nil end
  local entries, last = {}, nil
  local pos = 2
  while pos < #v do
    local at, c = struct.unpack('<I8I8', v, pos)
    -- Fields beyond 2^53 are not exact here and never written by the strategy: the
    -- state is forged or corrupt, and judged as fresh.
    if c == 0 or (last and last > at) or at >= 2^53 or c >= 2^53 then return nil end
    entries[#entries + 1] = {at, c}
    last = at
    pos = pos + 16
  end
  return entries
end

local entries = {}
local v = load(key)
if v then
  local decoded = decode(v)
  if decoded then
    for _, e in ipairs(decoded) do
      if e[1] + period > NOW then entries[#entries + 1] = e end
    end
  end
end

local used = 0
for _, e in ipairs(entries) do used = used + e[2] end

local function until_empty()
  local newest = entries[#entries]
  if not newest then return 0 end
  return math.max(newest[1] + period - NOW, 0)
end

if used + cost > limit then
  local wait = nil
  local freed = 0
  for _, e in ipairs(entries) do
    freed = freed + e[2]
    if math.max(used - freed, 0) + cost <= limit then
      wait = math.max(e[1] + period - NOW, 0)
      break
    end
  end
  if not wait then wait = until_empty() end
  return decision(0, wait, limit, math.max(limit - used, 0), until_empty())
end

-- Keep the log sorted even if the clock stepped back.
local at = 1
while at <= #entries and entries[at][1] <= NOW do at = at + 1 end
if at > 1 and entries[at - 1][1] == NOW then
  entries[at - 1][2] = entries[at - 1][2] + cost
else
  table.insert(entries, at, {NOW, cost})
end
local parts = {string.char(0xA1)}
for _, e in ipairs(entries) do parts[#parts + 1] = struct.pack('<I8I8', e[1], e[2]) end
local reset = until_empty()
store(key, table.concat(parts), reset)
return decision(1, 0, limit, limit - used - cost, reset)
