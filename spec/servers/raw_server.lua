-- A misbehaving HTTP/WebSocket server for client tests, on plain LuaSocket.
--   lua spec/servers/raw_server.lua --port N
-- The request path picks the misbehaviour:
--   /200        answers 200 OK
--   /badaccept  answers 101 with a wrong Sec-WebSocket-Accept
--   /midclose   sends half a status line and closes
--   /masked     answers a valid 101, sends a MASKED text frame, then prints
--               "masked-close CODE" for the close frame the client sends back
--   /proto      answers a valid 101 choosing subprotocol "zzz"
--   /upgrade-list answers 101 with "Upgrade: h2c, websocket" (a list: not for a 101)
--   /dropclose  answers a valid 101, reads frames until the client's close,
--               then closes TCP without a close frame of its own
--   /silent     reads the request and never answers
--   /deaf       answers a valid 101, never answers a ping, and prints
--               "deaf pings N close CODE" once the client's close comes
--   /badclose/K answers the client's close with an invalid close frame:
--               K = short (a 1-byte payload), code (code 999), utf8 (a
--               reason that is not UTF-8)
--   /http10     answers an HTTP/1.0 404 with a body and no length, then closes
--   /204        answers 204 No Content and keeps the connection open
--   /chunked    answers a chunked 401 and keeps the connection open
--   /early      answers 103 Early Hints, then a valid 101 and a text frame "hi"
--   /target...  prints "target TARGET" (the request target as sent), answers 404
--   /folded     answers a valid 101 whose fields are continued by obs-folds
--               (lines starting with SP or HTAB), then a text frame "hi"
--   /barelf/K   answers a 101 whose lines end in bare LF and keeps the
--               connection open: K = lf (every line, "\n\n" at the end) or
--               mix (CRLF lines, then "\n\r\n")
-- Connections are served one at a time.
local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/servers/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local socket = require "socket"
local core = require "ws.core"
local B = require "spec.bits"

local port = assert(tonumber(arg[1] == "--port" and arg[2]), "usage: raw_server.lua --port N")
local server = assert(socket.bind("127.0.0.1", port))

local function read_head(c)
  local lines = {}
  while true do
    local line, err = c:receive("*l")
    if not line then return nil, err end
    if line == "" then return lines end
    lines[#lines + 1] = line
  end
end

local function accept_101(key, extra)
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Accept: " .. core.accept_key(key) .. "\r\n" .. (extra or "") .. "\r\n"
end

-- read one frame from the client: opcode, unmasked payload
local function read_frame(c)
  local h = assert(c:receive(2))
  local b0, b1 = h:byte(1, 2)
  local n = b1 % 128
  if n == 126 then n = B.get_u16(assert(c:receive(2)))
  elseif n == 127 then n = B.get_u64(assert(c:receive(8))) end
  local key = b1 >= 128 and assert(c:receive(4)) or "\0\0\0\0"
  local p = n > 0 and assert(c:receive(n)) or ""
  return b0 % 16, B.mask(p, key)
end

local function serve(c)
  local lines = read_head(c)
  if not lines or not lines[1] then return end
  local path = lines[1]:match("^GET (%S+)")
  local key
  for i = 2, #lines do
    local v = lines[i]:match("^[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey:%s*(%S+)")
    if v then key = v end
  end
  if path == "/200" then
    c:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
  elseif path == "/badaccept" then
    c:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
  elseif path == "/midclose" then
    c:send("HTTP/1.1 101 Swit")
  elseif path == "/masked" then
    c:send(accept_101(key))
    local mkey, msg = "\1\2\3\4", "hi"
    c:send(string.char(0x81, 0x80 + #msg) .. mkey .. B.mask(msg, mkey))
    local ok, op, payload = pcall(read_frame, c)
    if ok and op == 8 and #payload >= 2 then
      print("masked-close " .. B.get_u16(payload))
    else
      print("masked-close none " .. tostring(op))
    end
    io.stdout:flush()
  elseif path == "/dropclose" then
    c:send(accept_101(key))
    repeat local ok, op = pcall(read_frame, c) until not ok or op == 8
  elseif path == "/deaf" then
    c:send(accept_101(key))
    local pings, ok, op, payload = 0
    repeat
      ok, op, payload = pcall(read_frame, c)
      if ok and op == 9 then pings = pings + 1 end
    until not ok or op == 8
    print("deaf pings " .. pings .. " close " .. (ok and #payload >= 2 and B.get_u16(payload) or "none"))
    io.stdout:flush()
  elseif path:match("^/badclose/") then
    c:send(accept_101(key))
    repeat local ok, op = pcall(read_frame, c) until not ok or op == 8
    local payload = ({ short = "\3", code = "\3\231", utf8 = "\3\232\255" })[path:match("[^/]*$")]
    c:send(string.char(0x88, #payload) .. payload)
  elseif path == "/proto" then
    c:send(accept_101(key, "Sec-WebSocket-Protocol: zzz\r\n"))
  elseif path == "/upgrade-list" then
    c:send((accept_101(key):gsub("Upgrade: websocket", "Upgrade: h2c, websocket")))
  elseif path == "/silent" then
    c:receive("*a")   -- until the client gives up (or our timeout)
  elseif path == "/http10" then
    c:send("HTTP/1.0 404 File not found\r\nContent-Type: text/plain\r\n\r\nnope")
  elseif path == "/204" then
    c:send("HTTP/1.1 204 No Content\r\n\r\n")
    c:receive("*a")   -- open until the client closes (or our timeout)
  elseif path == "/chunked" then
    c:send("HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "5;ext=1\r\nnope!\r\n3\r\n no\r\n0\r\n\r\n")
    c:receive("*a")
  elseif path == "/early" then
    c:send("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    socket.sleep(0.05)
    c:send(accept_101(key) .. "\129\2hi")
    c:receive("*a")
  elseif path == "/folded" then
    c:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade:\r\n websocket\r\nConnection: keep-alive,\r\n\tUpgrade\r\n" ..
      "Sec-WebSocket-Accept:\r\n " .. core.accept_key(key) .. "\r\nX-Long: a\r\n b\r\n\r\n\129\2hi")
    c:receive("*a")
  elseif path:match("^/barelf/") then
    local r = accept_101(key)
    if path == "/barelf/lf" then r = r:gsub("\r\n", "\n")
    else r = r:gsub("\r\n\r\n$", "\n\r\n") end
    c:send(r)
    c:receive("*a")   -- open until the client gives up (or our timeout)
  elseif path:match("^/target") then
    print("target " .. path)
    io.stdout:flush()
    c:send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
  end
  socket.sleep(0.05)
end

while true do
  local c = server:accept()
  if c then
    c:settimeout(3)
    serve(c)
    c:close()
  end
end
