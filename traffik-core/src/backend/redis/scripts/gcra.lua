-- GCRA: mirrors strategy/gcra.rs. State: 0xD1, then the theoretical arrival time (TAT)
-- scaled by the limit, as a u128 in two little-endian u64s (high, low).
-- The TAT itself exceeds 2^53, so it is handled as a wide integer; everything relative
-- to now (backlogs, tolerances) is a small integer.
-- ARGV[3..5]: limit, period (us), cost; ARGV[6]: burst.
local limit, period, cost = rate_of(ARGV)
local burst = tonumber(ARGV[6])
local key = KEYS[1]

-- Wide integers as four little-endian limbs of 24 bits (96 bits: the backend only runs
-- this script where now x limit stays below 2^92). Limb products stay below 2^50.
local BASE = 16777216

local function wide(n)
  local d = {}
  for i = 1, 4 do
    local q = math.floor(n / BASE)
    d[i] = n - q * BASE
    n = q
  end
  return d
end

local function mul(a, b)
  local r, carry = {}, 0
  for k = 1, 4 do
    local t = carry
    for i = 1, k do t = t + a[i] * b[k - i + 1] end
    carry = math.floor(t / BASE)
    r[k] = t - carry * BASE
  end
  return r
end

local function add(a, b)
  local r, carry = {}, 0
  for i = 1, 4 do
    local t = a[i] + b[i] + carry
    if t >= BASE then r[i], carry = t - BASE, 1 else r[i], carry = t, 0 end
  end
  return r
end

-- a - b, for a >= b.
local function sub(a, b)
  local r, borrow = {}, 0
  for i = 1, 4 do
    local t = a[i] - b[i] - borrow
    if t < 0 then r[i], borrow = t + BASE, 1 else r[i], borrow = t, 0 end
  end
  return r
end

local function cmp(a, b)
  for i = 4, 1, -1 do
    if a[i] ~= b[i] then
      if a[i] < b[i] then return -1 end
      return 1
    end
  end
  return 0
end

local function number(a)
  return ((a[4] * BASE + a[3]) * BASE + a[2]) * BASE + a[1]
end

-- The stored u128 (high u64 then low u64, each little-endian) as limbs; nil if it needs
-- more than 96 bits (then it is far beyond any TAT this algorithm writes).
local function decode_tat(v)
  local b = {string.byte(v, 10, 17)}
  local high = {string.byte(v, 2, 9)}
  for i = 1, 8 do b[8 + i] = high[i] end
  if b[13] + b[14] + b[15] + b[16] ~= 0 then return nil end
  local d = {}
  for k = 0, 3 do d[k + 1] = b[3 * k + 1] + b[3 * k + 2] * 256 + b[3 * k + 3] * 65536 end
  return d
end

local function encode_tat(d)
  local b = {}
  for k = 0, 3 do
    local limb = d[k + 1]
    for j = 1, 3 do
      local q = math.floor(limb / 256)
      b[3 * k + j] = limb - q * 256
      limb = q
    end
  end
  for i = 13, 16 do b[i] = 0 end
  return string.char(0xD1, b[9], b[10], b[11], b[12], b[13], b[14], b[15], b[16],
    b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8])
end

local now_scaled = mul(wide(NOW), wide(limit))
local slack = burst * period + period * limit
-- The backlog ahead of now (the TAT minus now, scaled); 0 for a TAT in the past.
local current = 0
local v = load(key)
if v and #v == 17 and string.byte(v, 1) == 0xD1 then
  local tat = decode_tat(v)
  if tat and cmp(tat, now_scaled) > 0 then
    local ahead = sub(tat, now_scaled)
    if cmp(ahead, wide(slack)) <= 0 then current = number(ahead) end
  end
end

local tolerance = burst * period
local function remaining(backlog)
  return idiv(math.max(tolerance - backlog, 0), period)
end

local backlog = current + cost * period
if backlog > tolerance then
  return decision(0, ceil_div(backlog - tolerance, limit), burst, remaining(current),
    ceil_div(current, limit))
end
local reset = ceil_div(backlog, limit)
store(key, encode_tat(add(now_scaled, wide(backlog))), reset)
return decision(1, 0, burst, remaining(backlog), reset)
