-- Echo server inside copas:
--   lua5.1 examples/copas_echo.lua [--port P]
-- copas accepts; ws.accept upgrades the socket copas hands the handler, and
-- every wait of the connection yields to copas (timeouts, keepalive and
-- limits hold). Copas 1.x (Debian's) has no timers: run it through
-- ws.copas.loop(); with copas 2-4, copas.loop() works as well.
-- Try it: lua5.1 examples/echo_client.lua ws://127.0.0.1:8080/ws
local copas = require "copas"
local socket = require "socket"
local ws = require "ws"
local wscopas = require "ws.copas"

local port = 8080
for i = 1, #arg do if arg[i] == "--port" then port = tonumber(arg[i + 1]) end end

copas.addserver(assert(socket.bind("127.0.0.1", port)), function(sock)
  local conn, err = ws.accept(sock, { max_message = 16 * 1024 * 1024, ping_interval = 30 })
  if not conn then ws.log("refused: %s", err) return end
  while true do   -- (not a for loop: Lua 5.1 cannot wait inside one)
    local message, kind = conn:receive()
    if not message or not conn:send(message, kind) then break end
  end
end)
ws.log("echo on ws://127.0.0.1:%d/ws (%s)", port, copas._VERSION)
wscopas.loop()
