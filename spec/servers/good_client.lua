-- A well-behaved client for spec/hostile_spec.lua, run as its own process
-- while hostile peers attack the same server.
--   lua5.4 spec/servers/good_client.lua --port N [--path /ws] [--interval S] [--reconnect S]
-- Every interval it sends a text message and waits for the echo; every
-- reconnect seconds it closes and opens a fresh connection (a new handshake).
-- Speaks raw RFC 6455 with the pure-Lua codec of spec/helpers.lua (no ws.*).
-- Prints, flushed, one line per event (t = socket.gettime()):
--   ok T LATENCY        an echo came back intact
--   conn T LATENCY      a new connection finished its handshake
--   fail T REASON       something went wrong (then it reconnects)
local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/servers/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local socket = require "socket"
local H = require "spec.helpers"

local port, path, interval, reconnect = nil, "/ws", 0.05, 1.0
local i = 1
while arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "--port" then port = tonumber(v)
  elseif a == "--path" then path = v
  elseif a == "--interval" then interval = tonumber(v)
  elseif a == "--reconnect" then reconnect = tonumber(v)
  else error("unknown argument " .. a) end
  i = i + 2
end
assert(port, "--port required")

local gettime = socket.gettime
local function say(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local function connect()
  local t = gettime()
  local ok, r, head = pcall(H.raw, port, nil, { path = path, timeout = 5 })
  if not ok then return nil, "connect: " .. tostring(r) end
  if not head or not head:match("^HTTP/1.1 101") then
    r:close()
    return nil, "handshake: " .. tostring(head)
  end
  say("conn", string.format("%.6f %.4f", gettime(), gettime() - t))
  return r
end

local n = 0
local conn, opened
while true do
  if not conn then
    local err
    conn, err = connect()
    opened = gettime()
    if not conn then
      say("fail", string.format("%.6f", gettime()), err)
      socket.sleep(0.2)
    end
  end
  if conn then
    n = n + 1
    local msg = string.format("good client message %d %s", n, string.rep("x", n % 200))
    local t = gettime()
    local ok, err = conn:send_frame(1, msg)
    local f
    if ok then
      ok, f, err = pcall(conn.read_frame, conn)
      if not ok then f, err = nil, f end
    end
    if f and f.opcode == 1 and f.payload == msg and not f.masked then
      say("ok", string.format("%.6f %.4f", gettime(), gettime() - t))
    else
      say("fail", string.format("%.6f", gettime()), "echo: " .. tostring(err or (f and f.opcode)))
      conn:close()
      conn = nil
    end
    if conn and gettime() - opened >= reconnect then
      -- a clean close: close frame, wait for the answer, then TCP
      conn:send_frame(8, "\3\232")
      pcall(conn.read_close, conn)
      conn:close()
      conn = nil
    end
  end
  socket.sleep(interval)
end
