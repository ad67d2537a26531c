-- A server for spec/server_spec.lua.
--   lua5.4 spec/servers/test_server.lua --port N [--set key=value ...] [--auth]
--                                        [--protocols a,b,...]
-- --set passes listen options (numbers, true/false, or strings).
-- --protocols sets the subprotocols the server supports, in its preference order.
-- --auth sets on_request, deciding by the query's token (after a short wait):
--   good   upgrades, with "Set-Cookie: session=1" in the 101, and sets
--          request.user = "alice" for the handler
--   plain  upgrades
--   boom   raises an error;  inject  a header with CR/LF;  status  a bad status
--   other  401 "who are you?" with WWW-Authenticate
-- Routes:
--   /echo        echoes every message with its kind
--   /proto       answers every message with the chosen subprotocol ("none" if none)
--   /whoami      answers every message with conn.request.user ("nobody" if unset)
--   /crash       echoes one message, then raises an error
--   /concurrent  one coroutine echoes ("echo:" .. message) while a second,
--                spawned with server.loop:spawn, sends 100 large messages
--                "msg NNN|" .. filler on the same connection
-- Logs "closed PEER CODE REASON" for every finished connection.
local ws = require "ws"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")

local function on_request(req)
  ws.loop.current():sleep(0.01)   -- (a real check may wait, say on a database)
  local token = (req.query or ""):match("token=(%w+)")
  if token == "good" then
    req.user = "alice"
    return 101, nil, { ["Set-Cookie"] = "session=1" }
  end
  if token == "plain" then return nil end
  if token == "boom" then error("deliberate on_request failure") end
  if token == "inject" then return 101, nil, { ["X-A"] = "a\r\nX-B: b" } end
  if token == "status" then return "nope" end
  return 401, "who are you?\n", { ["WWW-Authenticate"] = 'Bearer realm="ws"' }
end

local opts = { host = "127.0.0.1", check_origin = function() return true end }
local server = common.listen(arg, opts, function(flag, arg_value)
  if flag == "--auth" then
    opts.on_request = on_request
    return 1
  elseif flag == "--protocols" then
    opts.protocols = {}
    for p in arg_value:gmatch("[^,]+") do opts.protocols[#opts.protocols + 1] = p end
    return 2
  end
end)

server:route("/echo", common.echo)

-- a handler answering every message with answer(conn)
local function answering(answer)
  return function(conn)
    while true do   -- not `for ... in conn:messages()`: Lua 5.1 cannot wait there
      if not conn:receive() or not conn:send(answer(conn)) then break end
    end
  end
end

server:route("/proto", answering(function(conn) return conn.protocol or "none" end))
server:route("/whoami", answering(function(conn) return conn.request.user or "nobody" end))

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
