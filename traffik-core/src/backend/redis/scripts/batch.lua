-- The library's batch function: several calls of the library's functions in one FCALL,
-- each run as if called alone, its reply (or error) in its place in the array returned.
-- Redis pays a function call's fixed cost, and reads its clock, once for them all, and
-- parses the arguments shared by consecutive calls once.
--
-- KEYS[i]: the key of call i (every function of the library takes one key).
-- ARGV, for each run of consecutive calls of one function with the same arguments: the
-- function's name, the number of its arguments, its arguments (the ARGV each call of the
-- run would have had alone), then the number of calls in the run, which take the next
-- keys in turn.
--
-- The reply: when every call answered with a string (decisions answer with their packed
-- fields), one string holding each behind its length (4 bytes, little-endian), which the
-- client splits at a fraction of what parsing an array of them costs it; otherwise the
-- array of the replies.
--
-- BATCHED (defined when the library is loaded) maps each function's name to its body;
-- no body writes to its KEYS or ARGV, so the calls of a run share one ARGV.

local replies, call, at = {}, 0, 1
local server_now
-- One KEYS table for every call, its key replaced for each (no body writes to it).
local keys = {}
while at <= #ARGV do
  local run, count = BATCHED[ARGV[at]], tonumber(ARGV[at + 1])
  local args = {}
  for j = 1, count do args[j] = ARGV[at + 1 + j] end
  local calls = tonumber(ARGV[at + 2 + count])
  at = at + 3 + count
  if run and args[1] == '' and not server_now then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  for _ = 1, calls do
    call = call + 1
    if not run then
      replies[call] = {err = 'ERR Function not found'}
    else
      keys[1] = KEYS[call]
      local ok, reply = pcall(run, keys, args, server_now)
      if ok then
        -- nil would end the array here: false is Redis's nil reply.
        if reply == nil then reply = false end
        replies[call] = reply
      elseif type(reply) == 'table' and reply.err then
        replies[call] = reply
      else
        local message = tostring(reply)
        -- Redis's own errors (WRONGTYPE ...) keep their code; Lua's get ERR.
        if not string.find(message, '^%u[%u_]* ') then message = 'ERR ' .. message end
        replies[call] = {err = message}
      end
    end
  end
end
local packed = {}
for i = 1, call do
  local reply = replies[i]
  if type(reply) ~= 'string' then return replies end
  packed[2 * i - 1] = struct.pack('<I4', #reply)
  packed[2 * i] = reply
end
return table.concat(packed)
