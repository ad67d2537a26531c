-- A hand-made server for the client side of the permessage-deflate tests,
-- on plain LuaSocket (framing with ws.core's pure encoders only).
--   lua5.4 spec/peers/deflate_raw_server.lua --port N
-- Connections are served one at a time. The request path picks the answer:
--   /ext?h=VALUE   101 with "Sec-WebSocket-Extensions: VALUE" (VALUE
--                  %-encoded), then one uncompressed text "hi"
--   /plain         101 without the extension, then a text frame with RSV1 set
--   /bomb          101 with permessage-deflate, then one compressed binary
--                  message of ~100 KiB that inflates to 100 MiB
--   /bfinal        101 with permessage-deflate, then the message of RFC 7692
--                  section 7.2.3.3 ("Hello" in a block with BFINAL set), then
--                  a message that refers back to it ("Hello" again, 5 bytes)
-- After that it prints "PATH close CODE" for the close frame the client
-- sends (or "PATH close none"), and "PATH request-ext VALUE" for the offer.
local socket = require "socket"
local core = require "ws.core"

local port = assert(tonumber(arg[1] == "--port" and arg[2]), "usage: deflate_raw_server.lua --port N")
local server = assert(socket.bind("127.0.0.1", port))

local function say(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function serve(c)
  c:settimeout(5)
  local lines = {}
  while true do
    local line = c:receive("*l")
    if not line then return end
    if line == "" then break end
    lines[#lines + 1] = line
  end
  local target = lines[1]:match("^GET (%S+)")
  local path, query = target:match("^([^?]*)%??(.*)$")
  local key, offer
  for _, l in ipairs(lines) do
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    if k and k:lower() == "sec-websocket-key" then key = v end
    if k and k:lower() == "sec-websocket-extensions" then offer = v end
  end
  say(path, "request-ext", offer or "none")
  local ext
  if path == "/ext" then ext = unescape(query:match("h=([^&]*)") or "")
  elseif path ~= "/plain" then ext = "permessage-deflate" end
  c:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Accept: " .. core.accept_key(key) .. "\r\n" ..
    (ext and "Sec-WebSocket-Extensions: " .. ext .. "\r\n" or "") .. "\r\n")
  if path == "/ext" then
    c:send(core.frame("hi", "text"))
  elseif path == "/plain" then
    c:send(core.frame("not compressed, but RSV1", "text", true, false, 4))
  elseif path == "/bomb" then
    -- 100 MiB of zeros, one MiB at a time: after the first, each MiB
    -- compresses to the same bytes, each ending in a sync flush (00 00 ff
    -- ff, stripped by compress); one 100 MiB compress took 3 s of CPU and
    -- 300 MB, past the client's 10 s wait on a loaded machine
    local d, mib, flush = core.deflate{}, string.rep("\0", 1024 * 1024), "\0\0\255\255"
    local first, again = d:compress(mib), d:compress(mib)
    local bomb = first .. flush .. string.rep(again .. flush, 98) .. again
    c:send(core.frame(bomb, "binary", true, false, 4))
  elseif path == "/bfinal" then
    c:send(core.frame("\243\72\205\201\201\7\0\0", "text", true, false, 4))
    c:send(core.frame("\242\0\17\0\0", "text", true, false, 4))
  end
  -- wait for the client's close frame (or EOF)
  local reader = core.reader { role = "server", max_message = 1024 * 1024, rsv_allowed = 4 }
  local code = "none"
  while true do
    local data, err, partial = c:receive(65536)
    data = data or partial
    if data and #data > 0 then
      reader:feed(data)
      local kind, _, ccode = reader:next()
      while kind do
        if kind == "close" then code = tostring(ccode) break end
        kind, _, ccode = reader:next()
      end
      if code ~= "none" then break end
    end
    if err == "closed" or err == "timeout" then break end
  end
  if code ~= "none" then c:send(core.frame(core.close_payload(tonumber(code)) or "", "close")) end
  say(path, "close", code)
  c:close()
end

while true do
  local c = server:accept()
  if c then
    local ok, err = pcall(serve, c)
    if not ok then say("error", tostring(err)) end
    c:close()
  end
end
