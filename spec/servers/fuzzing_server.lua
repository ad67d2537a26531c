-- Plays spec/client_cases.lua against an echo client, on the URLs of
-- Autobahn|Testsuite's fuzzingserver, so examples/autobahn_client.lua runs
-- unchanged against either:
--   /getCaseCount              sends the number of cases, then closes
--   /runCase?case=N&agent=A    plays case N
--   /updateReports?agent=A     closes (prints "reports A")
--   lua spec/servers/fuzzing_server.lua --port N
-- Prints one line per case: "case N ID OK" or "case N ID FAILED: why".
-- Plain LuaSocket, one connection at a time; shares no code with ws.core:
-- frames, masks and the accept key are computed by the spec helpers.
local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/servers/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local socket = require "socket"
local H = require "spec.helpers"
local B = require "spec.bits"
local O = require "spec.oracle"
local CASES = require "spec.client_cases"

local port = assert(tonumber(arg[1] == "--port" and arg[2]), "usage: fuzzing_server.lua --port N")
local listener = assert(socket.bind("127.0.0.1", port))
local TIMEOUT = 5

local function say(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
  io.stdout:flush()
end

-- The request head: path and lower-case headers, or nil, why. Checks what
-- RFC 6455 section 4.1 asks of a client's opening handshake.
local function read_request(c)
  local line = c:receive("*l")
  local path = line and line:match("^GET (/%S*) HTTP/1%.1$")
  if not path then return nil, "bad request line: " .. tostring(line) end
  local h = {}
  while true do
    local l = c:receive("*l")
    if not l then return nil, "head cut short" end
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    if not k then return nil, "bad header line: " .. l end
    h[k:lower()] = v
  end
  local key = h["sec-websocket-key"]
  if not (h.host and (h.upgrade or ""):lower() == "websocket"
          and (h.connection or ""):lower():find("upgrade", 1, true)
          and h["sec-websocket-version"] == "13" and key and #O.b64decode(key) == 16) then
    return nil, "not a valid upgrade request"
  end
  return path, h
end

-- One frame from the client, unmasked; nil, why for anything a client must not send.
local function read_frame(c)
  local head, err = c:receive(2)
  if not head then return nil, err end
  local b0, b1 = head:byte(1, 2)
  local n = b1 % 128
  if n == 126 then n = B.get_u16(c:receive(2) or "\0\0")
  elseif n == 127 then n = B.get_u64(c:receive(8) or ("\0"):rep(8)) end
  if b1 < 128 then return nil, "unmasked client frame" end
  if b0 % 128 >= 16 then return nil, "RSV bits set" end
  local key = c:receive(4)
  local payload = n > 0 and c:receive(n) or ""
  if not key or not payload then return nil, "frame cut short" end
  return { fin = b0 >= 128, opcode = b0 % 16, payload = B.mask(payload, key) }
end

local function send(c, bytes, chunk)
  if not chunk then return c:send(bytes) end
  for i = 1, #bytes, chunk do
    if not c:send(bytes:sub(i, i + chunk - 1)) then return nil end
    socket.sleep(0.001)
  end
  return true
end

-- Do the server's bytes hold a close frame? Then it must not send another.
local function has_close(bytes)
  local i = 1
  while i + 1 <= #bytes do
    local b0, b1 = bytes:byte(i, i + 1)
    if b0 % 16 == 8 then return true end
    local n, at = b1 % 128, i + 2
    if n == 126 then n, at = B.get_u16(bytes, at), at + 2
    elseif n == 127 then n, at = B.get_u64(bytes, at), at + 8 end
    -- cut short, or too big to add to (2^63 and up wrap around)
    if n < 0 or n > #bytes - at then break end
    i = at + (b1 >= 128 and 4 or 0) + n
  end
  return false
end

local function close_frame(code) return H.frame(8, code and B.u16(code) or "", { mask = false }) end

-- Play one case; returns nil, or why it failed.
local function play(c, case)
  send(c, case.send, case.chunk)
  local got, closed_by_us, message = {}, has_close(case.send), nil
  while true do
    if case.close == nil and not closed_by_us and #got == #case.replies then
      c:send(close_frame(1000))
      closed_by_us = true
    end
    local f, err = read_frame(c)
    if not f then return "after " .. #got .. " replies: " .. err end
    if f.opcode == 8 then
      local code = #f.payload >= 2 and B.get_u16(f.payload) or (#f.payload == 0 and 1005) or "1-byte payload"
      if not closed_by_us then c:send(close_frame(code ~= 1005 and code or nil)) end
      local want = case.close or 1000
      if #got ~= #case.replies then
        return string.format("closed with %s after %d of %d replies", tostring(code), #got, #case.replies)
      end
      if code ~= want then return string.format("close code %s, want %d", tostring(code), want) end
      if not O.utf8_valid(f.payload:sub(3)) then return "close reason is not UTF-8" end
      return nil
    end
    -- a data message may come in fragments; control frames come whole
    if f.opcode == 0 then
      if not message then return "continuation with nothing started" end
      message[2] = message[2] .. f.payload
    elseif f.opcode == 1 or f.opcode == 2 then
      if message then return "new message inside a fragmented one" end
      message = { f.opcode, f.payload }
    elseif f.opcode == 9 or f.opcode == 10 then
      if not f.fin then return "fragmented control frame" end
      got[#got + 1] = { f.opcode, f.payload }
    else
      return "opcode " .. f.opcode
    end
    if message and f.fin and f.opcode < 8 then got[#got + 1], message = message, nil end
    local i = #got
    local want = case.replies[i]
    if got[i] and (not want or want[1] ~= got[i][1] or want[2] ~= got[i][2]) then
      return string.format("reply %d: opcode %d, %d bytes; want %s", i, got[i][1], #got[i][2],
        want and string.format("opcode %d, %d bytes", want[1], #want[2]) or "nothing")
    end
  end
end

local function serve(c)
  local path, h = read_request(c)
  if not path then
    c:send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    say("request FAILED: %s", h)
    return
  end
  c:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Accept: " .. O.accept(h["sec-websocket-key"]) .. "\r\n\r\n")
  local n = tonumber(path:match("^/runCase%?case=(%d+)"))
  if path == "/getCaseCount" then
    c:send(H.frame(1, tostring(#CASES), { mask = false }) .. close_frame(1000))
    read_frame(c)
  elseif path:match("^/updateReports") then
    c:send(close_frame(1000))
    read_frame(c)
    say("reports %s", path:match("agent=([^&]*)") or "?")
  elseif n and CASES[n] then
    local why = play(c, CASES[n])
    say("case %d %s %s", n, CASES[n].id, why and "FAILED: " .. why or "OK")
  else
    c:send(close_frame(1008))
    say("unknown path %s", path)
  end
end

while true do
  local c = listener:accept()
  if c then
    c:settimeout(TIMEOUT)
    serve(c)
    -- the server closes TCP first (RFC 6455 section 7.1.1)
    c:close()
  end
end
