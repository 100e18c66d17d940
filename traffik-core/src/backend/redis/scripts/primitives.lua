-- The backend primitives that need an atomic read-then-write, or the caller's clock.
-- KEYS[1]: the key. ARGV[3]: the operation; further ARGV per operation.
local key, op = KEYS[1], ARGV[3]

if op == 'get' then
  return load(key)
elseif op == 'peek' then
  -- ARGV[4]: the period for a fixed window's key (KEYS[1]:window), or ''.
  local k = key
  if ARGV[4] ~= '' then k = key .. ':' .. int(idiv(NOW, tonumber(ARGV[4]))) end
  return {int(NOW), load(k) or false}
elseif op == 'del' then
  local live = load(key)
  redis.call('DEL', key)
  if live then return 1 end
  return 0
elseif op == 'incr' then
  -- ARGV[4]: amount; ARGV[5]: ttl in microseconds for a key this call creates, or ''.
  local live = load(key)
  if not live then redis.call('DEL', key) end
  local n = redis.pcall('INCRBY', key, ARGV[4])
  if type(n) == 'table' then
    return redis.error_reply('NOTINTEGER ' .. tostring(n.err))
  end
  if not live and ARGV[5] ~= '' then expire(key, tonumber(ARGV[5])) end
  return n
elseif op == 'cas' then
  -- ARGV[4]: '1' if a value was read (ARGV[5]), '0' if none; ARGV[6]: 'put' (ARGV[7]
  -- for ARGV[8] microseconds) or 'del'. Writes only if the value is still the one read.
  local live = load(key)
  if ARGV[4] == '1' then
    if live ~= ARGV[5] then return 0 end
  elseif live then
    return 0
  end
  if ARGV[6] == 'put' then
    store(key, ARGV[7], tonumber(ARGV[8]))
  else
    redis.call('DEL', key)
  end
  return 1
elseif op == 'lock' then
  -- ARGV[4]: token; ARGV[5]: ttl in microseconds.
  if load(key) then return 0 end
  store(key, ARGV[4], tonumber(ARGV[5]))
  return 1
elseif op == 'unlock' then
  -- ARGV[4]: token. Only the holder's token releases.
  local live = load(key)
  if live and live == ARGV[4] then
    redis.call('DEL', key)
    return 1
  end
  return 0
end
return redis.error_reply('ERR unknown traffik operation')
