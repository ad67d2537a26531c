-- A hostile server for spec/client_hostile_spec.lua, on plain LuaSocket:
-- the request path (/NAME) picks a misbehaviour from BEHAVIOURS below.
--   lua spec/servers/evil_server.lua --port N
-- After the misbehaviour it reads what the client sends (at most 5 s) and
-- prints "NAME close CODE" for the first close frame (1005: none given),
-- "NAME close none" if the client sent none, then "NAME eof" once the
-- client closed TCP (or "NAME open" if it had not within those 5 s).
-- Connections are served one at a time.
local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/servers/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local socket = require "socket"
local core = require "ws.core"
local B = require "spec.bits"
local H = require "spec.helpers"

local port = assert(tonumber(arg[1] == "--port" and arg[2]), "usage: evil_server.lua --port N")
local server = assert(socket.bind("127.0.0.1", port))

local function say(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

-- an unmasked server frame
local function F(opcode, payload, opts)
  opts = opts or {}
  return H.frame(opcode, payload, { fin = opts.fin, rsv = opts.rsv, len = opts.len, mask = false })
end

local function head_101(key, extra, first)
  return (first or "HTTP/1.1 101 Switching Protocols") .. "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Accept: " .. core.accept_key(key) .. "\r\n" .. (extra or "") .. "\r\n"
end

-- reset the connection (RST, not FIN) at close
local function rst(c)
  c:setoption("linger", { on = true, timeout = 0 })
  c:close()
end

-- read one client frame with a deadline: opcode, unmasked payload; or nil
local function read_frame(c)
  local h = c:receive(2)
  if not h then return nil end
  local b0, b1 = h:byte(1, 2)
  local n = b1 % 128
  if n == 126 then n = B.get_u16(c:receive(2) or "\0\0")
  elseif n == 127 then n = B.get_u64(c:receive(8) or ("\0"):rep(8)) end
  local key = b1 >= 128 and c:receive(4) or "\0\0\0\0"
  local p = n > 0 and c:receive(n) or ""
  if not p then return nil end
  return b0 % 16, B.mask(p, key)
end

-- frames until the client's close: its code (1005: none), or nil
local function read_close(c)
  for _ = 1, 1000 do
    local op, p = read_frame(c)
    if not op then return nil end
    if op == 8 then return #p >= 2 and B.get_u16(p) or 1005 end
  end
end

-- name -> function(c, key): misbehave; return "done" when the connection
-- was closed already (or nothing more is to be read)
local BEHAVIOURS = {}

-- the head written one byte at a time, then a text frame "hi"
BEHAVIOURS["split-head"] = function(c, key)
  local s = head_101(key) .. F(1, "hi")
  for i = 1, #s do
    c:send(s:sub(i, i))
    socket.sleep(0.001)
  end
end

-- a head, frames and a close in one write
BEHAVIOURS["head-frames"] = function(c, key)
  c:send(head_101(key) .. F(1, "a") .. F(2, "bb") .. F(9, "p") .. F(8, B.u16(1000) .. "bye"))
end

-- five interim 103s, then the 101
BEHAVIOURS["many-interim"] = function(c, key)
  c:send(string.rep("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 5) .. head_101(key))
end

-- 101 heads that are no acceptable answer
BEHAVIOURS["http10"] = function(c, key) c:send(head_101(key, nil, "HTTP/1.0 101 Switching Protocols")) end
BEHAVIOURS["no-upgrade"] = function(c, key) c:send((head_101(key):gsub("Upgrade: websocket\r\n", ""))) end
BEHAVIOURS["no-connection"] = function(c, key) c:send((head_101(key):gsub("Connection: Upgrade\r\n", ""))) end
BEHAVIOURS["keep-alive"] = function(c, key)
  c:send((head_101(key):gsub("Connection: Upgrade", "Connection: keep-alive")))
end
BEHAVIOURS["dup-upgrade"] = function(c, key) c:send(head_101(key, "Upgrade: websocket\r\n")) end
BEHAVIOURS["dup-accept"] = function(c, key)
  c:send(head_101(key, "Sec-WebSocket-Accept: " .. core.accept_key(key) .. "\r\n"))
end
BEHAVIOURS["no-accept"] = function(c, key)
  c:send((head_101(key):gsub("Sec%-WebSocket%-Accept: [^\r]*\r\n", "")))
end
BEHAVIOURS["dup-proto"] = function(c, key)
  c:send(head_101(key, "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: a\r\n"))
end
BEHAVIOURS["proto-list"] = function(c, key) c:send(head_101(key, "Sec-WebSocket-Protocol: a, b\r\n")) end
BEHAVIOURS["proto-empty"] = function(c, key) c:send(head_101(key, "Sec-WebSocket-Protocol:\r\n")) end
BEHAVIOURS["ext-empty"] = function(c, key) c:send(head_101(key, "Sec-WebSocket-Extensions:\r\n")) end
BEHAVIOURS["ext-dup"] = function(c, key)
  c:send(head_101(key, "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"))
end
BEHAVIOURS["ext-repeat-param"] = function(c, key)
  c:send(head_101(key, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; server_max_window_bits=10\r\n"))
end
BEHAVIOURS["ext-bits-7"] = function(c, key)
  c:send(head_101(key, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n"))
end
-- a head larger than max_header that never ends
BEHAVIOURS["huge-head"] = function(c)
  c:send("HTTP/1.1 101 Switching Protocols\r\n")
  for _ = 1, 64 do
    if not c:send("X-Pad: " .. string.rep("x", 1000) .. "\r\n") then break end
  end
end
-- half a head, then silence (until the client gives up), or a reset
BEHAVIOURS["stall-head"] = function(c) c:send("HTTP/1.1 101 Switching") end
BEHAVIOURS["rst-head"] = function(c)
  c:send("HTTP/1.1 101 Switching")
  socket.sleep(0.05)
  rst(c)
  return "done"
end

-- after a valid 101
-- a text frame "hi", then half a frame and silence
BEHAVIOURS["stall-frame"] = function(c, key) c:send(head_101(key) .. F(1, "hi") .. F(1, "stalled"):sub(1, 5)) end
-- never answers the client's close, keeps TCP open
BEHAVIOURS["deaf-close"] = function(c, key)
  c:send(head_101(key))
  local code = read_close(c)
  say("deaf-close close " .. tostring(code or "none"))
  local t = socket.gettime()
  c:receive("*a")   -- until the client closes TCP (or our 5 s)
  say(string.format("deaf-close held %.1f", socket.gettime() - t))
  return "done"
end
-- answers the close but never closes TCP
BEHAVIOURS["close-no-fin"] = function(c, key)
  c:send(head_101(key))
  local code = read_close(c)
  c:send(F(8, B.u16(1000)))
  say("close-no-fin close " .. tostring(code or "none"))
  c:receive("*a")
  say("close-no-fin eof")
  return "done"
end
-- closes first (a close frame after the 101), and leaves TCP open
BEHAVIOURS["close-first"] = function(c, key) c:send(head_101(key) .. F(8, B.u16(1000))) end
-- a text frame, then a reset
BEHAVIOURS["rst-after"] = function(c, key)
  c:send(head_101(key) .. F(1, "hi"))
  socket.sleep(0.1)
  rst(c)
  return "done"
end
-- resets when the client's close comes
BEHAVIOURS["rst-on-close"] = function(c, key)
  c:send(head_101(key))
  read_close(c)
  rst(c)
  return "done"
end

-- pings, or text messages, as fast as TCP takes them for 4 s, never reading
local function flood(c, frame)
  local t, burst = socket.gettime(), string.rep(frame, 1000)
  c:settimeout(0.5)
  local i = 1
  while socket.gettime() - t < 4 do
    local last, err, sent = c:send(burst, i)
    if err and err ~= "timeout" then break end
    i = last and 1 or sent + 1   -- (a partial write goes on where it stopped)
  end
  c:settimeout(5)
end
BEHAVIOURS["ping-torrent"] = function(c, key)
  c:send(head_101(key))
  flood(c, F(9, "p"))
end
BEHAVIOURS["msg-torrent"] = function(c, key)
  c:send(head_101(key))
  flood(c, F(1, "m"))
end
BEHAVIOURS["frag-torrent"] = function(c, key)
  c:send(head_101(key) .. F(1, "", { fin = false }))
  flood(c, F(0, "", { fin = false }))
end

-- a refusal whose Content-Length is no whole number
BEHAVIOURS["cl-frac"] = function(c)
  c:send("HTTP/1.1 403 Forbidden\r\nContent-Length: 1.5\r\n\r\nab")
end
-- a chunked refusal whose chunk size overflows 64 bits
BEHAVIOURS["chunk-huge"] = function(c)
  c:send("HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nab")
end

-- permessage-deflate faults (the client offered it)
local PMD = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
BEHAVIOURS["pmd-garbage"] = function(c, key) c:send(head_101(key, PMD) .. F(2, "\255\255\255\255garbage", { rsv = 4 })) end
BEHAVIOURS["pmd-ping"] = function(c, key) c:send(head_101(key, PMD) .. F(9, "p", { rsv = 4 })) end
BEHAVIOURS["pmd-cont"] = function(c, key)
  local z = core.deflate {}:compress("hello hello hello")
  c:send(head_101(key, PMD) .. F(1, z:sub(1, 3), { rsv = 4, fin = false }) .. F(0, z:sub(4), { rsv = 4 }))
end
BEHAVIOURS["pmd-rsv2"] = function(c, key) c:send(head_101(key, PMD) .. F(1, "x", { rsv = 2 })) end
-- 4 MiB of zeros compressed, in fragments of 64 bytes
BEHAVIOURS["pmd-bomb-frag"] = function(c, key)
  local z, t = core.deflate {}:compress(string.rep("\0", 4 * 1024 * 1024)), {}
  for i = 1, #z, 64 do
    t[#t + 1] = F(i == 1 and 2 or 0, z:sub(i, i + 63), { rsv = i == 1 and 4 or 0, fin = i + 64 > #z })
  end
  c:send(head_101(key, PMD) .. table.concat(t))
end
BEHAVIOURS["pmd-text-utf8"] = function(c, key)
  c:send(head_101(key, PMD) .. F(1, core.deflate {}:compress("ok \255 not utf-8"), { rsv = 4 }))
end

local function serve(c)
  c:settimeout(5)
  local lines = {}
  for _ = 1, 100 do
    local line = c:receive("*l")
    if not line then return end
    if line == "" then break end
    lines[#lines + 1] = line
  end
  local name = (lines[1] or ""):match("^GET /(%S*)")
  local key
  for _, l in ipairs(lines) do
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    if k and k:lower() == "sec-websocket-key" then key = v end
  end
  local fn = name and BEHAVIOURS[name]
  if not fn then
    c:send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    return
  end
  if fn(c, key) == "done" then return end
  local code = read_close(c)
  say(name .. " close " .. tostring(code or "none"))
  local _, err = c:receive("*a")
  say(name .. " " .. (err == "timeout" and "open" or "eof"))
end

while true do
  local c = server:accept()
  if c then
    serve(c)
    c:close()
  end
end
