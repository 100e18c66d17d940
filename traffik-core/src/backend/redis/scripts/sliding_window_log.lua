-- Sliding window log: mirrors strategy/sliding_window_log.rs. ARGV[3..5]: limit, period
-- (us), cost. State, oldest entry first, in the narrowest form that holds it:
--   0xA3, the oldest entry's time (u64), then each entry's offset from it (u32): every
--         cost 1, and the log spans less than 2^32 us;
--   0xA4, the same, then each entry's offset and cost (u32, u32): costs below 2^32;
--   0xA1, then each entry's time and cost (u64, u64): anything else.
local limit, period, cost = rate_of(ARGV)
local key = KEYS[1]
local U32 = 4294967295

-- Decodes the log; nil if it is not a well-formed log.
local function decode(v)
  local tag = string.byte(v, 1)
  local entries, last = {}, nil
  -- Fields beyond 2^53 are not exact here and never written by the strategy: the state
  -- is forged or corrupt, and judged as fresh.
  local function push(at, c)
    if c == 0 or (last and last > at) or at >= 2^53 or c >= 2^53 then return false end
    entries[#entries + 1] = {at, c}
    last = at
    return true
  end
  if tag == 0xA1 then
    if (#v - 1) % 16 ~= 0 then return nil end
    for pos = 2, #v - 1, 16 do
      if not push(struct.unpack('<I8I8', v, pos)) then return nil end
    end
  elseif tag == 0xA3 or tag == 0xA4 then
    local width = tag == 0xA3 and 4 or 8
    if #v < 9 or (#v - 9) % width ~= 0 then return nil end
    local base = struct.unpack('<I8', v, 2)
    for pos = 10, #v - 1, width do
      local offset, c = struct.unpack('<I4', v, pos), 1
      if width == 8 then c = struct.unpack('<I4', v, pos + 4) end
      if not push(base + offset, c) then return nil end
    end
  else
    return nil
  end
  return entries
end

-- The log's state, in the form strategy/sliding_window_log.rs chooses.
local function encode(log)
  local base = log[1][1]
  local narrow = log[#log][1] - base <= U32
  local unit = narrow
  for _, e in ipairs(log) do
    if e[2] ~= 1 then unit = false end
    if e[2] > U32 then narrow = false end
  end
  local parts
  if unit then
    parts = {string.char(0xA3), struct.pack('<I8', base)}
    for _, e in ipairs(log) do parts[#parts + 1] = struct.pack('<I4', e[1] - base) end
  elseif narrow then
    parts = {string.char(0xA4), struct.pack('<I8', base)}
    for _, e in ipairs(log) do parts[#parts + 1] = struct.pack('<I4I4', e[1] - base, e[2]) end
  else
    parts = {string.char(0xA1)}
    for _, e in ipairs(log) do parts[#parts + 1] = struct.pack('<I8I8', e[1], e[2]) end
  end
  return table.concat(parts)
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
local reset = until_empty()
store(key, encode(entries), reset)
return decision(1, 0, limit, limit - used - cost, reset)
