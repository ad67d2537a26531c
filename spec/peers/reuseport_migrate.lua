-- Run inside a private network namespace by spec/workers_spec.lua:
--   lua spec/peers/reuseport_migrate.lua ROOT PORT
-- Two reuseport listeners on one port: examples/echo.lua (a process of its
-- own, serving) and listener A here, which accepts nothing, so connections
-- the kernel hashes to A wait in its accept queue, as they do in a busy
-- worker. 200 clients connect, then A closes, the first thing
-- server:drain() does. With
-- net.ipv4.tcp_migrate_req=1 the queued connections move to the echo
-- process; without it they are reset. Prints "ok=N reset=N".
local root, port = arg[1], tonumber(arg[2])
package.path = root .. "/spec/?.lua;" .. package.path
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"

local N = tonumber(arg[3]) or 200
local lua = arg[-1] or "lua"
local p = io.popen(string.format("%s %s/examples/echo.lua --reuseport --port %d 2>/dev/null & echo $!", lua, root, port))
local echo_pid = p:read("*l")
p:close()
local deadline = socket.gettime() + 10
repeat
  local c = socket.tcp()
  c:settimeout(0.2)
  local up = c:connect("127.0.0.1", port)
  c:close()
  if up then break end
  socket.sleep(0.05)
until socket.gettime() > deadline

local a = assert(require("ws.core").listen("127.0.0.1", port, 4096, true))

local socks = {}
for i = 1, N do
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))   -- completed by the kernel, accepted by nobody yet
  socks[i] = s
end

-- A closes with about half of the connections queued
a:close()

local ok, reset = 0, 0
local l = loop.new()
l:spawn(function()
  for i = 1, N do
    local c = ws.connect("ws://127.0.0.1:" .. port .. "/ws", { sock = socks[i], timeout = 5 })
    if c and c:send("m" .. i) and c:receive(5) == "m" .. i then
      ok = ok + 1
      c:close()
    else
      reset = reset + 1
    end
  end
end)
local stop = socket.gettime() + 60
while (ok + reset) < N and socket.gettime() < stop do l:step(0.05) end
os.execute("kill " .. echo_pid)
print(string.format("ok=%d reset=%d", ok, reset))
