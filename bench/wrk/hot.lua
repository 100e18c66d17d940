-- One hot client: every request says X-Forwarded-For: 203.0.113.7. Built once in init();
-- request() is a Lua call as in many.lua, so both shapes cost wrk the same.
--   wrk -s bench/wrk/hot.lua http://127.0.0.1:PORT/api/data
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "report.lua")

local req

function init(args)
   req = wrk.format(nil, nil, { ["X-Forwarded-For"] = "203.0.113.7" })
end

function request()
   return req
end
