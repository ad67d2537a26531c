-- Our wss:// client against spec/peers/tls_vanish.py's misbehaving server:
--   LUA spec/peers/tls_vanish_client.lua PORT RESET_PORT CAFILE COUNT
-- Runs each mode COUNT times (every other time inside a ws.loop task, else
-- blocking) and prints one line per mode:
--   MODE n=COUNT bad=N max_ms=T first=ERR
-- bad counts outcomes other than the expected failure; then
--   fds before=N after=N
local ws = require "ws"
local socket = require "socket"

local port, reset_port, cafile, count = tonumber(arg[1]), tonumber(arg[2]), arg[3], tonumber(arg[4])
local gettime = socket.gettime
local opts = { timeout = 3, close_timeout = 2, tls = { cafile = cafile } }

-- our open descriptors (a shell's /proc/self is the shell's: take our pid)
local f = io.open("/proc/self/stat")
local pid = f:read("*l"):match("^(%d+)")
f:close()
-- (counted by a shell writing to a file: io.popen's pipe has two ends in
-- this process until popen closes the child's, and an `ls` quicker than
-- that counted one descriptor too many: "after=8" under load)
local tmp = os.tmpname()
local function fds()
  os.execute("ls /proc/" .. pid .. "/fd | wc -l > " .. tmp)
  local t = assert(io.open(tmp))
  local n = tonumber(t:read("*l"))
  t:close()
  return n
end

-- a conversation: returns true when it ended as it should, or a description
local function connected(path)
  local conn, err = ws.connect("wss://127.0.0.1:" .. port .. "/" .. path, opts)
  if not conn then return nil, "connect: " .. tostring(err) end
  return conn
end

local function expect_closed(conn)
  local data, err = conn:receive(3)
  conn:close()
  if data == nil and err == "closed" then return true end
  return "receive gave " .. tostring(data and #data) .. " " .. tostring(err)
end

-- a reset may also destroy the 101 before the client reads it
local function connected_then_closed(path)
  local c, e = connected(path)
  if c then return expect_closed(c) end
  return e:find("^connect: handshake") and true or e
end

local MODES = {
  -- the connection fails with nil, err: what it says is not the point
  reset_handshake = function()
    local conn, err = ws.connect("wss://127.0.0.1:" .. reset_port .. "/", opts)
    if conn then conn:close(); return "connected" end
    return err:find("^tls handshake failed") and true or err
  end,
  reset_upgrade = function()
    local conn, err = connected("reset_upgrade")
    if conn then conn:close(); return "connected" end
    return err:find("handshake", 1, true) and true or err
  end,
  half_101 = function()
    local conn, err = connected("half_101")
    if conn then conn:close(); return "connected" end
    return err:find("handshake", 1, true) and true or err
  end,
  -- connected, then the server goes away
  reset_mid_frame = function() return connected_then_closed("reset_mid_frame") end,
  close_at_once = function() local c, e = connected("close_at_once"); return c and expect_closed(c) or e end,
  close_reset = function() return connected_then_closed("close_reset") end,
  close_notify_keep_tcp = function()
    local c, e = connected("close_notify_keep_tcp"); return c and expect_closed(c) or e
  end,
  close_notify_close = function() local c, e = connected("close_notify_close"); return c and expect_closed(c) or e end,
  frame_notify_close = function() local c, e = connected("frame_notify_close"); return c and expect_closed(c) or e end,
  reset_while_client_sends = function()
    local c, e = connected("reset_while_client_sends")
    if not c then return e end
    local ok = c:send(string.rep("x", 4 * 1024 * 1024), "binary")
    if ok then return expect_closed(c) end
    c:close()
    return c.state == "closed" or "still " .. c.state
  end,
  reset_during_close = function()
    local c, e = connected("reset_during_close")
    if not c then return e end
    c:close(1000)
    return c.state == "closed" or "still " .. c.state
  end,
}
local ORDER = { "reset_handshake", "reset_upgrade", "half_101", "reset_mid_frame", "close_at_once",
                "close_reset", "close_notify_keep_tcp", "close_notify_close", "frame_notify_close",
                "reset_while_client_sends", "reset_during_close" }

local l = ws.loop.new()
local before = fds()
for _, name in ipairs(ORDER) do
  local bad, first, max = 0, nil, 0
  for i = 1, count do
    local t0 = gettime()
    local r
    if i % 2 == 0 then
      r = MODES[name]()
    else
      l:spawn(function() r = MODES[name]() end)
      while r == nil and gettime() - t0 < 20 do l:step(0.05) end
    end
    max = math.max(max, gettime() - t0)
    if r ~= true then
      bad = bad + 1
      first = first or tostring(r)
    end
  end
  print(string.format("%s n=%d bad=%d max_ms=%d first=%s", name, count, bad, math.floor(max * 1000), tostring(first)))
  io.stdout:flush()
end
collectgarbage()
collectgarbage()
print(string.format("fds before=%d after=%d", before, fds()))
os.remove(tmp)
