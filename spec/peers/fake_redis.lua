-- For spec/hub_faults_spec.lua: a TCP server that speaks just enough RESP
-- to be taken for Redis, then misbehaves. One connection at a time:
--   fake_redis.lua --port N MODE [SECS]
-- pushes: once anything is read, "subscribe" pushes without end for SECS
--   seconds (a reply stream that never pauses), then close
-- array: once anything is read, an array header of a billion items, then
--   its items without end for SECS seconds (a reply that never completes)
local socket = require "socket"

local port, mode = tonumber(arg[2]), arg[3]
local secs = tonumber(arg[4] or 3)
assert(port and mode, "usage: fake_redis.lua --port N pushes|array [SECS]")
local server = assert(socket.bind("127.0.0.1", port))

local function flood(c, head, unit)
  local chunk = string.rep(unit, math.floor(65536 / #unit))
  if head then assert(c:send(head)) end
  local stop = socket.gettime() + secs
  while socket.gettime() < stop do
    if not c:send(chunk) then return end
  end
end

while true do
  local c = server:accept()
  c:settimeout(secs + 5)
  if c:receive(1) then
    if mode == "pushes" then
      flood(c, nil, "*3\r\n$9\r\nsubscribe\r\n$4\r\nws:x\r\n:1\r\n")
    elseif mode == "array" then
      flood(c, "*1000000000\r\n", "$1\r\nx\r\n")
    end
  end
  c:close()
end
