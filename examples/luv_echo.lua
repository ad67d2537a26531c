-- Echo server inside luv (libuv):
--   lua5.4 examples/luv_echo.lua [--port P] [--nested]
-- luv accepts; each connection's handler runs as a task of the ws.loop that
-- luv drives (ws.luv: uv polls its epoll descriptor, one uv timer covers its
-- deadlines), where ws.accept takes the luv TCP handle over. --nested runs a
-- ws.listen server on that loop instead.
-- Try it: lua5.4 examples/echo_client.lua ws://127.0.0.1:8080/ws
local uv = require "luv"
local ws = require "ws"
local wsluv = require "ws.luv"

local port, nested = 8080, false
for i = 1, #arg do
  if arg[i] == "--port" then port = tonumber(arg[i + 1]) elseif arg[i] == "--nested" then nested = true end
end

local function echo(conn)
  while true do   -- (not a for loop: Lua 5.1 cannot wait inside one)
    local message, kind = conn:receive()
    if not message or not conn:send(message, kind) then break end
  end
end

if nested then
  local server = assert(ws.listen { port = port, max_message = 16 * 1024 * 1024, loop = wsluv.loop() })
  server:route("/ws", echo)
else
  local listener = uv.new_tcp()
  assert(listener:bind("127.0.0.1", port))
  assert(listener:listen(1024, function()
    local client = uv.new_tcp()
    listener:accept(client)
    wsluv.spawn(function()
      local conn, err = ws.accept(client, { max_message = 16 * 1024 * 1024, ping_interval = 30 })
      if conn then echo(conn) else ws.log("refused: %s", err) end
    end)
  end))
end
ws.log("echo on ws://127.0.0.1:%d/ws (luv%s)", port, nested and ", nested server" or "")
uv.run()
