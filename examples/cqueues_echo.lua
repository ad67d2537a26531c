-- Echo server inside cqueues:
--   lua5.4 examples/cqueues_echo.lua [--port P] [--nested]
-- cqueues accepts; ws.accept upgrades the cqueues socket in a cqueues
-- coroutine, and every wait of the connection yields to cqueues (timeouts,
-- keepalive and limits hold). --nested runs a ws.listen server nested in the
-- controller instead (cqueues polls its epoll descriptor).
-- Try it: lua5.4 examples/echo_client.lua ws://127.0.0.1:8080/ws
local cqueues = require "cqueues"
local ws = require "ws"

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

local cq = cqueues.new()
if nested then
  local server = assert(ws.listen { port = port, max_message = 16 * 1024 * 1024 })
  server:route("/ws", echo)
  require("ws.cqueues").attach(cq, server)
else
  local listener = require("cqueues.socket").listen("127.0.0.1", port)
  assert(listener:listen())
  cq:wrap(function()
    while true do
      local sock = assert(listener:accept())
      cq:wrap(function()
        local conn, err = ws.accept(sock, { max_message = 16 * 1024 * 1024, ping_interval = 30 })
        if conn then echo(conn) else ws.log("refused: %s", err) end
      end)
    end
  end)
end
ws.log("echo on ws://127.0.0.1:%d/ws (cqueues%s)", port, nested and ", nested server" or "")
assert(cq:loop())
