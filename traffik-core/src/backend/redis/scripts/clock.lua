-- The time of one call, read first by every script and function (after prelude.lua).
--
-- ARGV[1]: now in microseconds since the Unix epoch, or '' to read the server's TIME.
-- ARGV[2]: '' when key expiry is Redis's own (server clock); otherwise the offset in
--          milliseconds between the caller's clock and the real expiry times.
-- SERVER_NOW: the server's TIME, when the caller already read it (the library's batch
--             function reads it once for all the calls it runs); nil otherwise.

if ARGV[1] ~= '' then
  NOW = tonumber(ARGV[1])
elseif SERVER_NOW then
  NOW = SERVER_NOW
else
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
OFFSET = nil
if ARGV[2] ~= '' then OFFSET = tonumber(ARGV[2]) end
