-- A server for spec/server_spec.lua.
--   lua5.4 spec/servers/test_server.lua --port N [--set key=value ...]
-- --set passes listen options (numbers, true/false, or strings).
-- Routes:
--   /echo        echoes every message with its kind
--   /crash       echoes one message, then raises an error
--   /concurrent  one coroutine echoes ("echo:" .. message) while a second,
--                spawned with server.loop:spawn, sends 100 large messages
--                "msg NNN|" .. filler on the same connection
-- Logs "closed PEER CODE REASON" for every finished connection.
local ws = require "ws"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")

local server = common.listen(arg, { host = "127.0.0.1", check_origin = function() return true end })

server:route("/echo", common.echo)

server:route("/crash", function(conn)
  local data, kind = conn:receive()
  conn:send(data, kind)
  error("boom: deliberate test crash")
end)

server:route("/concurrent", function(conn)
  server.loop:spawn(function()
    for n = 1, 100 do
      local msg = string.format("msg %03d|", n) .. string.rep(string.char(97 + n % 26), 1000 * n)
      if not conn:send(msg) then break end
    end
  end)
  while true do   -- not `for ... in conn:messages()`: Lua 5.1 cannot wait there
    local data, kind = conn:receive()
    if not data then break end
    if not conn:send("echo:" .. data, kind) then break end
  end
end)

ws.log("test server on port %d", server.port)
server:run()
