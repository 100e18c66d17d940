-- Many clients, each under its limit: request i comes from client 10.a.b.c number
-- (i mod BENCH_CLIENTS), cycling in order, so one client's requests are BENCH_CLIENTS
-- requests apart. Requests are built once in init(); request() only picks the next one.
--   wrk -s bench/wrk/many.lua http://127.0.0.1:PORT/api/data -- 10000
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

local requests = {}
local count = 0
local next_index = 0

function init(args)
   count = tonumber(args[1]) or 10000
   for i = 0, count - 1 do
      local ip = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256,
                               math.floor(i / 256) % 256, i % 256)
      requests[i] = wrk.format(nil, nil, { ["X-Forwarded-For"] = ip })
   end
end

function request()
   local r = requests[next_index]
   next_index = next_index + 1
   if next_index == count then
      next_index = 0
   end
   return r
end
