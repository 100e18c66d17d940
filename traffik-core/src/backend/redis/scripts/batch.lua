-- The library's batch function: several calls of the library's functions in one FCALL,
-- each run as if called alone, its reply (or error) in its place in the array returned.
-- One call costs Redis far less than one FCALL each: a function call's fixed cost, and
-- the TIME read, are paid once for the batch.
--
-- KEYS[i]: the key of call i (every function of the library takes one key).
-- ARGV, for each call in turn: the function's name, the number of its arguments, then
-- its arguments (the ARGV it would have had alone).
--
-- BATCHED (defined when the library is loaded) maps each function's name to its body.

local replies, at = {}, 1
local server_now
for i = 1, #KEYS do
  local run, count = BATCHED[ARGV[at]], tonumber(ARGV[at + 1])
  local args = {}
  for j = 1, count do args[j] = ARGV[at + 1 + j] end
  at = at + 2 + count
  if not run then
    replies[i] = {err = 'ERR Function not found'}
  else
    if args[1] == '' and not server_now then
      local t = redis.call('TIME')
      server_now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    end
    local ok, reply = pcall(run, {KEYS[i]}, args, server_now)
    if ok then
      -- nil would end the array here: false is Redis's nil reply.
      if reply == nil then reply = false end
      replies[i] = reply
    elseif type(reply) == 'table' and reply.err then
      replies[i] = reply
    else
      local message = tostring(reply)
      -- Redis's own errors (WRONGTYPE ...) keep their code; Lua's get ERR.
      if not string.find(message, '^%u[%u_]* ') then message = 'ERR ' .. message end
      replies[i] = {err = message}
    end
  end
end
return replies
