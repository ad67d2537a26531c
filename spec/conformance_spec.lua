--- Autobahn-testsuite-shaped conformance tests for the server side.
--
-- Drives raw bytes over real sockets at the running echo example
-- (examples/echo.lua, max_message 16 MiB) and checks the exact frames,
-- close codes and HTTP statuses the server gives back. The client side is
-- pure Lua (frame encoder/decoder, SHA-1, base64) and shares no code with
-- ws.core, so it is an independent oracle. Every read has a bounded
-- socket timeout: a server that does not answer fails a test, never hangs it.
local H = require "spec.helpers"
local B = require "spec.bits"
local O = require "spec.oracle"
local S = require "spec.samples"
local socket = require "socket"

local gettime = socket.gettime
local TIMEOUT = 3          -- seconds any single read may wait

local server, PORT
-- WS_CONFORMANCE_VIA=nginx: the same cases through examples/deploy/nginx.conf
-- (spec/deploy_spec.lua runs it); the HTTP-level cases, which nginx answers
-- itself, are left out then
local VIA = os.getenv("WS_CONFORMANCE_VIA")
local proxy

---- pure-Lua helpers ------------------------------------------------------------

local mask = B.mask

local MAX_LEN = H.MAX_LEN   -- 2^63-1
local KEYS = { B.hex "37 fa 21 3d", B.hex "01 02 03 04", B.hex "a5 5a ff 00", B.hex "00 00 00 00" }
local nkey = 0

--- Encode a client frame. opts: fin (default true), rsv (0..7), len (the
-- declared length, default #payload), form ("7", "16", "64": force a length
-- encoding), key, mask (default true).
local function enc(opcode, payload, opts)
  opts = opts or {}
  payload = payload or ""
  local fin = opts.fin == nil or opts.fin
  local b0 = (fin and 0x80 or 0) + (opts.rsv or 0) * 16 + opcode
  local masked = opts.mask ~= false
  local m = masked and 0x80 or 0
  local n = opts.len or #payload
  local form = opts.form or (n < 126 and "7" or n < 65536 and "16" or "64")
  local len
  if form == "7" then len = string.char(m + n)
  elseif form == "16" then len = string.char(m + 126) .. B.u16(n)
  else len = string.char(m + 127) .. B.u64(n) end
  if not masked then return string.char(b0) .. len .. payload end
  local key = opts.key
  if not key then
    nkey = nkey % #KEYS + 1
    key = KEYS[nkey]
  end
  return string.char(b0) .. len .. key .. mask(payload, key)
end

-- Sec-WebSocket-Accept computed independently (spec/oracle.lua)
local oracle = require "spec.oracle"
local accept_for, base64 = oracle.accept, oracle.base64

-- Deterministic, non-periodic payloads: 64 KiB random blocks, each stamped
-- with its index so a reordered or repeated block cannot go unnoticed.
local BLOCK = 65536
local blocks = {}
local function block(kind)
  if not blocks[kind] then
    local t = {}
    for i = 1, BLOCK do
      t[i] = kind == "text" and math.random(0x20, 0x7e) or math.random(0, 255)
    end
    local parts = {}
    for i = 1, BLOCK, 4096 do parts[#parts + 1] = string.char(B.unpack(t, i, i + 4095)) end
    blocks[kind] = table.concat(parts)
  end
  return blocks[kind]
end

local function payload_of(kind, n)
  local b, parts, have, i = block(kind), {}, 0, 0
  while have < n do
    i = i + 1
    local stamp = string.format("%08x", i)
    parts[#parts + 1] = stamp .. b:sub(9)
    have = have + BLOCK
  end
  return table.concat(parts):sub(1, n)
end

---- raw client I/O -----------------------------------------------------------------
-- spec/helpers' Raw:read asks LuaSocket for receive(65536), which with a
-- timeout waits until 64 KiB arrive or the timeout passes: every short read
-- costs the whole timeout. These read what is there as soon as it is there
-- (socket.select, then a non-blocking receive), and gather big payloads in
-- a table instead of growing one string.

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="

-- Bring at least one more chunk into c.buf. Returns true, or nil, err.
local function fill(c, parts)
  local s = c.sock
  local r = socket.select({ s }, nil, c.timeout)
  if not (r and r[1]) then return nil, "timeout" end
  s:settimeout(0)
  local data, err, partial = s:receive(1024 * 1024)
  s:settimeout(c.timeout)
  data = data or partial
  if data and #data > 0 then
    if parts then parts[#parts + 1] = data else c.buf = c.buf .. data end
    return true
  end
  return nil, err == "timeout" and "timeout" or (err or "closed")
end

-- Exactly n bytes, or nil, err.
local function read(c, n)
  if #c.buf < n then
    local parts, have = { c.buf }, #c.buf
    while have < n do
      local ok, err = fill(c, parts)
      if not ok then
        c.buf = table.concat(parts)
        return nil, err
      end
      have = have + #parts[#parts]
    end
    c.buf = table.concat(parts)
  end
  local out = c.buf:sub(1, n)
  c.buf = c.buf:sub(n + 1)
  return out
end

local function read_head(c)
  while not c.buf:find("\r\n\r\n", 1, true) do
    local ok, err = fill(c)
    if not ok then return nil, err end
  end
  local e = c.buf:find("\r\n\r\n", 1, true)
  local head = c.buf:sub(1, e + 3)
  c.buf = c.buf:sub(e + 4)
  return head
end

-- { fin, rsv, opcode, masked, payload } or nil, err
local function read_frame(c)
  local h, err = read(c, 2)
  if not h then return nil, err end
  local b0, b1 = h:byte(1, 2)
  local n = b1 % 128
  if n == 126 then
    h, err = read(c, 2)
    if not h then return nil, err end
    n = B.get_u16(h)
  elseif n == 127 then
    h, err = read(c, 8)
    if not h then return nil, err end
    n = B.get_u64(h)
  end
  local key
  if b1 >= 128 then
    key, err = read(c, 4)
    if not key then return nil, err end
  end
  local payload = ""
  if n > 0 then
    payload, err = read(c, n)
    if not payload then return nil, err end
  end
  return { fin = b0 >= 128, rsv = math.floor(b0 / 16) % 8, opcode = b0 % 16, masked = key ~= nil,
           payload = payload }
end

-- true once the server closed TCP (EOF), false on timeout; bytes read on
-- the way stay in c.buf.
local function closed_by_peer(c, secs)
  local t = c.timeout
  c.timeout = secs or TIMEOUT
  local ok, err
  repeat ok, err = fill(c) until not ok
  c.timeout = t
  return err ~= "timeout"
end

-- A TCP connection with nothing sent yet.
local function open(timeout)
  local c = H.raw(PORT, false, { timeout = timeout or TIMEOUT })
  c.timeout = timeout or TIMEOUT
  return c
end

local function set_timeout(c, secs)
  c.timeout = secs
  c.sock:settimeout(secs)
end

local function connect(extra)
  local c = open()
  assert(c:send(H.request(PORT, "/ws", extra)))
  local head, err = read_head(c)
  assert(head, "no handshake response: " .. tostring(err))
  assert(head:match("^HTTP/1%.1 101 "), "expected 101, got: " .. head)
  return c
end

local function send(c, ...)
  local bytes = table.concat({ ... })
  local ok, err = c:send(bytes)
  assert(ok, "send failed: " .. tostring(err))
end

-- The next frame, checked to be a well-formed server frame.
local function next_frame(c)
  local f, err = read_frame(c)
  assert(f, "no frame from the server: " .. tostring(err))
  assert.is_false(f.masked, "server frames must not be masked")
  assert.is_true(f.fin, "server frame without FIN")
  assert.equal(0, f.rsv, "server frame with RSV bits")
  return f
end

local OPNAME = { [0] = "cont", "text", "binary", [8] = "close", [9] = "ping", [10] = "pong" }

local function expect_frame(c, opcode, payload)
  local f = next_frame(c)
  assert.equal(OPNAME[opcode] or opcode, OPNAME[f.opcode] or f.opcode)
  if #payload > 200 or #f.payload > 200 then
    -- a readable failure for big payloads
    assert.equal(#payload, #f.payload, "payload length")
    assert.is_true(f.payload == payload, "payload differs")
  else
    assert.equal(payload, f.payload)
  end
  return f
end

local function echo_ok(c, opcode, payload)
  send(c, enc(opcode, payload))
  expect_frame(c, opcode, payload)
end

-- The next frame must be a close: returns code (nil for an empty payload), reason.
local function expect_close_frame(c)
  local f = next_frame(c)
  assert.equal("close", OPNAME[f.opcode] or f.opcode, "expected a close frame")
  if #f.payload == 0 then return nil, "" end
  assert.is_true(#f.payload >= 2, "a 1-byte close payload is invalid")
  local code = B.get_u16(f.payload)
  local reason = f.payload:sub(3)
  assert.is_true(O.utf8_valid(reason), "close reason must be UTF-8")
  return code, reason
end

-- The server must fail the connection with code and then close TCP.
local function expect_fail(c, code)
  local got = expect_close_frame(c)
  assert.equal(code, got)
  assert.is_true(closed_by_peer(c, TIMEOUT), "server did not close TCP")
  c:close()
end

local function slow_send(c, bytes)
  c.sock:setoption("tcp-nodelay", true)
  for i = 1, #bytes do
    assert(c:send(bytes:sub(i, i)))
    socket.sleep(0.001)
  end
end

-- One HTTP exchange: returns status, headers (lower-case names), body, head.
-- Asserts the response is well-formed HTTP/1.1 with a matching
-- Content-Length (except for 101) and that the server closes afterwards
-- (unless it is a 101).
local function http(request, opts)
  opts = opts or {}
  local c = open()
  if opts.slow then slow_send(c, request) else assert(c:send(request)) end
  local head, err = read_head(c)
  assert(head, "no response head: " .. tostring(err))
  local status_line, rest = head:match("^(HTTP/1%.1 %d%d%d [^\r\n]*)\r\n(.*)$")
  assert(status_line, "malformed status line: " .. head:sub(1, 80))
  local status = tonumber(status_line:match(" (%d%d%d) "))
  local headers = {}
  for line in rest:gmatch("([^\r\n]*)\r\n") do
    if line ~= "" then
      local name, value = line:match("^([!#$%%&'*+.^_`|~%w-]+):[ \t]*(.-)[ \t]*$")
      assert(name, "malformed header line: " .. line)
      name = name:lower()
      assert.is_nil(headers[name], "duplicate header " .. name)
      headers[name] = value
    end
  end
  local body = ""
  if status ~= 101 then
    local cl = headers["content-length"]
    assert(cl and cl:match("^%d+$"), "response without Content-Length")
    cl = tonumber(cl)
    if cl > 0 and not opts.head then body = assert(read(c, cl)) end
    assert.is_true(closed_by_peer(c, TIMEOUT), "server kept the connection after " .. status)
    assert.equal("", c.buf, "bytes after the body")
    c:close()
  else
    c.headers = headers
  end
  return status, headers, body, c
end

local function upgrade_request(extra, path, key, lines)
  return "GET " .. (path or "/ws") .. " HTTP/1.1\r\n" ..
    (lines or ("Host: 127.0.0.1:" .. PORT .. "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Key: " .. (key or KEY) .. "\r\nSec-WebSocket-Version: 13\r\n")) ..
    (extra or "") .. "\r\n"
end

---- the suite ---------------------------------------------------------------------

-- examples/echo.lua serves with conn:serve (the loop calls its callback per
-- message); --receive-loop, with a loop over conn:receive(): both in full
for _, mode in ipairs { "", "--receive-loop" } do
describe("conformance (examples/echo.lua" .. (mode ~= "" and " " .. mode or "") .. ")", function()
  setup(function()
    math.randomseed(6455)
    server = H.start_lua("examples/echo.lua", mode, "conformance-echo")
    PORT = server.port
    if VIA == "nginx" then
      proxy = H.nginx_in_front { w1 = server.port }
      PORT = proxy.http
    end
  end)

  teardown(function()
    if proxy then proxy.stop() end
    if server then server.stop() end
  end)

  describe("1 framing", function()
    local LENGTHS = { 0, 1, 125, 126, 127, 128, 65535, 65536, 65537, 4 * 1024 * 1024 }
    for _, kind in ipairs { "text", "binary" } do
      local op = kind == "text" and 1 or 2
      for _, n in ipairs(LENGTHS) do
        it(string.format("echoes a %s message of %d bytes", kind, n), function()
          local c = connect()
          set_timeout(c, 10)
          local p = payload_of(kind, n)
          send(c, enc(op, p))
          -- expect_frame checks: unmasked, FIN, RSV 0, same opcode, exact payload
          expect_frame(c, op, p)
          c:close()
        end)
      end
    end

    it("uses the minimal length encoding in its frames", function()
      local c = connect()
      for _, n in ipairs { 0, 125, 126, 65535, 65536 } do
        send(c, enc(2, payload_of("binary", n)))
        local h = assert(read(c, 2))
        local l7 = h:byte(2)
        local want = n < 126 and n or n < 65536 and 126 or 127
        assert.equal(want, l7, "length field for " .. n)
        local ext = l7 == 126 and 2 or l7 == 127 and 8 or 0
        local len = ext == 0 and l7 or (ext == 2 and B.get_u16 or B.get_u64)(assert(read(c, ext)))
        assert.equal(n, len)
        if n > 0 then assert(read(c, n)) end
      end
      c:close()
    end)

    it("accepts non-minimal length encodings (16- and 64-bit forms for 5 bytes)", function()
      local c = connect()
      send(c, enc(1, "Hello", { form = "16" }))
      expect_frame(c, 1, "Hello")
      send(c, enc(1, "Hello", { form = "64" }))
      expect_frame(c, 1, "Hello")
      send(c, enc(2, "\0\1\2\3\4", { form = "64" }))
      expect_frame(c, 2, "\0\1\2\3\4")
      send(c, enc(2, payload_of("binary", 200), { form = "64" }))
      expect_frame(c, 2, payload_of("binary", 200))
      c:close()
    end)

    it("accepts frames that arrive one byte at a time", function()
      local c = connect()
      local p = "byte by byte: κόσμε"
      slow_send(c, enc(1, p) .. enc(2, payload_of("binary", 130)) ..
        enc(1, "frag", { fin = false }) .. enc(0, "mented", { fin = false }) .. enc(0, "!"))
      expect_frame(c, 1, p)
      expect_frame(c, 2, payload_of("binary", 130))
      expect_frame(c, 1, "fragmented!")
      c:close()
    end)

    it("echoes many pipelined frames in one write, in order", function()
      local c = connect()
      local frames, want = {}, {}
      for i = 1, 200 do
        local op = i % 2 == 0 and 1 or 2
        local p = i % 3 == 0 and payload_of("text", i * 7) or ("message " .. i)
        frames[#frames + 1] = enc(op, p)
        want[#want + 1] = { op, p }
        if i % 50 == 0 then
          frames[#frames + 1] = enc(9, "ping " .. i)
          want[#want + 1] = { 10, "ping " .. i }
        end
      end
      send(c, table.concat(frames))
      for _, w in ipairs(want) do expect_frame(c, w[1], w[2]) end
      c:close()
    end)

    it("echoes a message whose header and payload arrive in separate writes", function()
      local c = connect()
      local bytes = enc(2, payload_of("binary", 70000))
      c.sock:setoption("tcp-nodelay", true)
      assert(c:send(bytes:sub(1, 1)))
      socket.sleep(0.02)
      assert(c:send(bytes:sub(2, 9)))
      socket.sleep(0.02)
      assert(c:send(bytes:sub(10, 5000)))
      socket.sleep(0.02)
      assert(c:send(bytes:sub(5001)))
      expect_frame(c, 2, payload_of("binary", 70000))
      c:close()
    end)

    it("fails an unmasked client frame with 1002", function()
      local c = connect()
      send(c, enc(1, "unmasked", { mask = false }))
      expect_fail(c, 1002)
    end)
  end)

  describe("2 ping/pong", function()
    it("answers a ping without payload with an empty pong", function()
      local c = connect()
      send(c, enc(9, ""))
      expect_frame(c, 10, "")
      c:close()
    end)

    it("answers a ping of 125 bytes with an identical pong", function()
      local c = connect()
      local p = payload_of("binary", 125)
      send(c, enc(9, p))
      expect_frame(c, 10, p)
      c:close()
    end)

    it("answers a binary ping payload byte for byte", function()
      local c = connect()
      local p = "\0\255\254\253\252\0\1"
      send(c, enc(9, p))
      expect_frame(c, 10, p)
      c:close()
    end)

    it("fails a ping of 126 bytes with 1002", function()
      local c = connect()
      send(c, enc(9, payload_of("binary", 126)))
      expect_fail(c, 1002)
    end)

    it("fails a ping declaring a 64-bit length with 1002 (too long for control)", function()
      local c = connect()
      send(c, enc(9, "", { len = 1024 * 1024, form = "64" }))
      expect_fail(c, 1002)
    end)

    it("ignores an unsolicited pong", function()
      local c = connect()
      send(c, enc(10, "unsolicited"))
      send(c, enc(10, ""))
      echo_ok(c, 1, "after pong")
      c:close()
    end)

    it("answers 10 pings in a row with 10 pongs in order", function()
      local c = connect()
      local t = {}
      for i = 1, 10 do t[i] = enc(9, "payload-" .. i) end
      send(c, table.concat(t))
      for i = 1, 10 do expect_frame(c, 10, "payload-" .. i) end
      echo_ok(c, 1, "still open")
      c:close()
    end)

    it("answers a ping sent one byte at a time", function()
      local c = connect()
      slow_send(c, enc(9, "slow ping"))
      expect_frame(c, 10, "slow ping")
      c:close()
    end)

    it("fails a fragmented ping (FIN=0) with 1002", function()
      local c = connect()
      send(c, enc(9, "frag", { fin = false }))
      expect_fail(c, 1002)
    end)

    it("fails a fragmented ping with a continuation following it with 1002", function()
      local c = connect()
      send(c, enc(9, "frag", { fin = false }), enc(0, "ment"))
      expect_fail(c, 1002)
    end)
  end)

  describe("3 reserved bits", function()
    for rsv = 1, 7 do
      for _, case in ipairs { { 1, "text", "hello" }, { 2, "binary", "\0\1\2" }, { 9, "ping", "p" } } do
        it(string.format("fails a %s frame with RSV=%d with 1002", case[2], rsv), function()
          local c = connect()
          send(c, enc(case[1], case[3], { rsv = rsv }))
          expect_fail(c, 1002)
        end)
      end
    end

    it("fails RSV1 on a pong and on a close with 1002", function()
      local c = connect()
      send(c, enc(10, "", { rsv = 4 }))
      expect_fail(c, 1002)
      c = connect()
      send(c, enc(8, "\3\232", { rsv = 4 }))
      expect_fail(c, 1002)
    end)

    it("fails RSV bits on a continuation frame with 1002", function()
      local c = connect()
      send(c, enc(1, "a", { fin = false }), enc(0, "b", { rsv = 2 }))
      expect_fail(c, 1002)
    end)

    it("fails RSV after a valid message, without echoing the bad frame", function()
      local c = connect()
      send(c, enc(1, "good"), enc(1, "bad", { rsv = 1 }), enc(9, "never"))
      expect_frame(c, 1, "good")
      expect_fail(c, 1002)
    end)
  end)

  describe("4 opcodes", function()
    for _, op in ipairs { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 } do
      it("fails reserved opcode " .. op .. " with 1002", function()
        local c = connect()
        send(c, enc(op, ""))
        expect_fail(c, 1002)
      end)

      it("fails reserved opcode " .. op .. " with payload after a valid message with 1002", function()
        local c = connect()
        echo_ok(c, 1, "valid first")
        send(c, enc(op, "reserved payload"), enc(9, "never"))
        expect_fail(c, 1002)
      end)
    end

    it("fails a reserved opcode inside a fragmented message with 1002", function()
      local c = connect()
      send(c, enc(1, "part", { fin = false }), enc(3, "x"))
      expect_fail(c, 1002)
    end)
  end)

  describe("5 fragmentation", function()
    for n = 2, 6 do
      it("reassembles a text message sent in " .. n .. " fragments", function()
        local c = connect()
        local parts, t = {}, {}
        for i = 1, n do
          parts[i] = "fragment" .. i .. ";"
          t[i] = enc(i == 1 and 1 or 0, parts[i], { fin = i == n })
        end
        send(c, table.concat(t))
        expect_frame(c, 1, table.concat(parts))
        c:close()
      end)
    end

    it("reassembles a binary message of 64 KiB fragments (1 MiB total)", function()
      local c = connect()
      local p = payload_of("binary", 1024 * 1024)
      local t = {}
      for i = 1, #p, 65536 do
        t[#t + 1] = enc(i == 1 and 2 or 0, p:sub(i, i + 65535), { fin = i + 65536 > #p })
      end
      send(c, table.concat(t))
      expect_frame(c, 2, p)
      c:close()
    end)

    it("answers pings interleaved between fragments before echoing the message", function()
      local c = connect()
      send(c, enc(1, "frag1", { fin = false }), enc(9, "ping-a"),
        enc(0, "frag2", { fin = false }), enc(9, "ping-b"), enc(10, "pong-ignored"), enc(0, "frag3"))
      expect_frame(c, 10, "ping-a")
      expect_frame(c, 10, "ping-b")
      expect_frame(c, 1, "frag1frag2frag3")
      c:close()
    end)

    it("answers a ping between fragments before the rest of the message is sent", function()
      local c = connect()
      send(c, enc(2, "first", { fin = false }), enc(9, "mid"))
      expect_frame(c, 10, "mid")
      send(c, enc(0, "last"))
      expect_frame(c, 2, "firstlast")
      c:close()
    end)

    it("fails a continuation with nothing started with 1002", function()
      local c = connect()
      send(c, enc(0, "orphan"))
      expect_fail(c, 1002)
    end)

    it("fails a non-final continuation with nothing started with 1002", function()
      local c = connect()
      send(c, enc(0, "orphan", { fin = false }))
      expect_fail(c, 1002)
    end)

    it("fails a continuation after a complete message with 1002", function()
      local c = connect()
      send(c, enc(1, "done"), enc(0, "more"))
      expect_frame(c, 1, "done")
      expect_fail(c, 1002)
    end)

    it("fails a text frame while a fragmented message is in progress with 1002", function()
      local c = connect()
      send(c, enc(1, "start", { fin = false }), enc(1, "again"))
      expect_fail(c, 1002)
    end)

    it("fails a binary frame while a fragmented text message is in progress with 1002", function()
      local c = connect()
      send(c, enc(1, "start", { fin = false }), enc(2, "bin", { fin = false }))
      expect_fail(c, 1002)
    end)

    it("reassembles a message of many 1-byte fragments", function()
      local c = connect()
      local p = payload_of("text", 1000)
      local t = {}
      for i = 1, #p do t[i] = enc(i == 1 and 1 or 0, p:sub(i, i), { fin = i == #p }) end
      send(c, table.concat(t))
      expect_frame(c, 1, p)
      c:close()
    end)

    it("reassembles a message made of empty fragments", function()
      local c = connect()
      send(c, enc(1, "", { fin = false }), enc(0, "", { fin = false }), enc(0, ""))
      expect_frame(c, 1, "")
      send(c, enc(2, "", { fin = false }), enc(0, "x", { fin = false }), enc(0, "", { fin = false }), enc(0, "y"))
      expect_frame(c, 2, "xy")
      send(c, enc(1, "a", { fin = false }), enc(0, "", { fin = false }), enc(0, ""))
      expect_frame(c, 1, "a")
      c:close()
    end)

    it("echoes each message after a fragmented one (no state leaks)", function()
      local c = connect()
      send(c, enc(2, "\1\2", { fin = false }), enc(0, "\3"), enc(1, "plain"), enc(2, ""))
      expect_frame(c, 2, "\1\2\3")
      expect_frame(c, 1, "plain")
      expect_frame(c, 2, "")
      c:close()
    end)
  end)

  describe("6 utf-8", function()
    for i, s in ipairs(S.VALID_UTF8) do
      it("echoes valid text #" .. i, function()
        local c = connect()
        echo_ok(c, 1, s)
        c:close()
      end)
    end

    it("echoes valid text split into 2 fragments at every byte position", function()
      local c = connect()
      local s = "κόσμε \240\159\152\128 \226\130\172!"
      local frames = {}
      for i = 1, #s - 1 do
        frames[#frames + 1] = enc(1, s:sub(1, i), { fin = false }) .. enc(0, s:sub(i + 1))
      end
      send(c, table.concat(frames))
      for _ = 1, #s - 1 do expect_frame(c, 1, s) end
      c:close()
    end)

    it("echoes valid text sent as one fragment per byte", function()
      local c = connect()
      local s = "κόσμε\240\159\152\128"
      local t = {}
      for i = 1, #s do t[i] = enc(i == 1 and 1 or 0, s:sub(i, i), { fin = i == #s }) end
      send(c, table.concat(t))
      expect_frame(c, 1, s)
      c:close()
    end)

    for _, case in ipairs(S.INVALID_UTF8) do
      it("fails invalid text (" .. case[1] .. ") with 1007", function()
        local c = connect()
        send(c, enc(1, case[2]))
        expect_fail(c, 1007)
      end)
    end

    it("fails invalid text split across two fragments with 1007", function()
      local c = connect()
      -- a surrogate whose lead byte ends the first fragment
      send(c, enc(1, "ab\237", { fin = false }), enc(0, "\160\128cd"))
      expect_fail(c, 1007)
    end)

    it("fails a message ending mid-sequence after valid fragments with 1007", function()
      local c = connect()
      send(c, enc(1, "κό", { fin = false }), enc(0, "σμ", { fin = false }), enc(0, "\206"))
      expect_fail(c, 1007)
    end)

    it("fails fast: invalid bytes in a middle fragment close before the message ends", function()
      local c = connect()
      send(c, enc(1, "κόσμε", { fin = false }), enc(0, "ok\244\144\128\128ok", { fin = false }))
      -- nothing more is sent: the close must come anyway
      expect_fail(c, 1007)
    end)

    it("fails fast: invalid bytes in the first fragment close before the message ends", function()
      local c = connect()
      send(c, enc(1, B.hex "c0 af", { fin = false }))
      expect_fail(c, 1007)
    end)

    it("fails fast: invalid bytes inside a single frame close before its payload ends", function()
      local c = connect()
      -- declare 1000 bytes, send only the first 10 (bad at byte 4)
      local frame = enc(1, "abc\255defghi" .. ("z"):rep(990))
      send(c, frame:sub(1, 2 + 2 + 4 + 10))
      expect_fail(c, 1007)
    end)

    it("does not check binary messages for UTF-8", function()
      local c = connect()
      echo_ok(c, 2, B.hex "ff fe c0 af ed a0 80")
      c:close()
    end)
  end)

  describe("7 close handling", function()
    it("answers a close without payload with an empty close and closes TCP", function()
      local c = connect()
      send(c, enc(8, ""))
      local code, reason = expect_close_frame(c)
      -- RFC 6455 5.5.1 / 7.4.1: 1005 must not be sent; echoing an empty
      -- payload is the valid answer to an empty close, and what we do.
      assert.is_nil(code)
      assert.equal("", reason)
      assert.is_true(closed_by_peer(c, TIMEOUT))
      c:close()
    end)

    it("echoes close 1000 with a reason", function()
      local c = connect()
      send(c, enc(8, B.u16(1000) .. "bye, κόσμε"))
      local code = expect_close_frame(c)
      assert.equal(1000, code)
      assert.is_true(closed_by_peer(c, TIMEOUT))
      c:close()
    end)

    for _, code in ipairs(S.VALID_CLOSE) do
      it("echoes valid close code " .. code, function()
        local c = connect()
        send(c, enc(8, B.u16(code) .. "reason"))
        assert.equal(code, (expect_close_frame(c)))
        assert.is_true(closed_by_peer(c, TIMEOUT))
        c:close()
      end)
    end

    for _, code in ipairs(S.INVALID_CLOSE) do
      it("fails invalid close code " .. code .. " with 1002", function()
        local c = connect()
        send(c, enc(8, B.u16(code)))
        expect_fail(c, 1002)
      end)
    end

    it("fails a close payload of 1 byte with 1002", function()
      local c = connect()
      send(c, enc(8, "\3"))
      expect_fail(c, 1002)
    end)

    it("fails a close reason with invalid UTF-8 with 1007", function()
      local c = connect()
      send(c, enc(8, B.u16(1000) .. "ok\206\186\225\189\185\207\131\206\188\206\181\237\160\128"))
      expect_fail(c, 1007)
    end)

    it("accepts a close reason of 123 bytes (a 125-byte control frame)", function()
      local c = connect()
      send(c, enc(8, B.u16(1000) .. ("r"):rep(123)))
      assert.equal(1000, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      c:close()
    end)

    it("fails a close frame of 126 bytes with 1002", function()
      local c = connect()
      send(c, enc(8, B.u16(1000) .. ("r"):rep(124)))
      expect_fail(c, 1002)
    end)

    it("fails a fragmented close (FIN=0) with 1002", function()
      local c = connect()
      send(c, enc(8, B.u16(1000), { fin = false }))
      expect_fail(c, 1002)
    end)

    it("ignores data frames sent after the close (same write)", function()
      local c = connect()
      send(c, enc(8, B.u16(1000)), enc(1, "after close"), enc(9, "ping after close"))
      assert.equal(1000, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      assert.equal("", c.buf, "nothing may follow the close frame")
      c:close()
    end)

    it("ignores data frames sent after the close (separate writes)", function()
      local c = connect()
      send(c, enc(8, B.u16(1000)))
      assert.equal(1000, (expect_close_frame(c)))
      c:send(enc(1, "after close"))   -- may fail: the server is closing
      assert.is_true(closed_by_peer(c, TIMEOUT))
      assert.equal("", c.buf, "nothing may follow the close frame")
      c:close()
    end)

    it("answers a close in the middle of a fragmented message", function()
      local c = connect()
      send(c, enc(1, "unfinished", { fin = false }), enc(8, B.u16(1000)))
      assert.equal(1000, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      c:close()
    end)

    it("echoes pending messages before answering a close sent behind them", function()
      local c = connect()
      send(c, enc(1, "one"), enc(2, "two"), enc(8, B.u16(1001) .. "going"))
      expect_frame(c, 1, "one")
      expect_frame(c, 2, "two")
      assert.equal(1001, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      c:close()
    end)

    it("answers only the first of two closes", function()
      local c = connect()
      send(c, enc(8, B.u16(1000)), enc(8, B.u16(1001)))
      assert.equal(1000, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      assert.equal("", c.buf, "nothing may follow the close frame")
      c:close()
    end)

    it("echoes a 256 KiB message, then answers the close behind it, then nothing", function()
      local c = connect()
      local p = payload_of("binary", 256 * 1024)
      send(c, enc(2, p), enc(8, B.u16(1000)), enc(9, "ping after close"))
      expect_frame(c, 2, p)
      assert.equal(1000, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      assert.equal("", c.buf, "no pong may follow the close frame")
      c:close()
    end)

    it("answers a close sent one byte at a time", function()
      local c = connect()
      slow_send(c, enc(8, B.u16(4000) .. "slow"))
      assert.equal(4000, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      c:close()
    end)
  end)

  -- (through nginx, nginx answers bad requests and keeps its client connection)
  local section8 = VIA and function(name) pending(name .. ": not through " .. VIA) end or describe
  section8("8 handshake", function()
    it("computes the RFC 6455 sample accept key (oracle self-check)", function()
      assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept_for(KEY))
      local core = require "ws.core"
      assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", core.accept_key(KEY))
    end)

    it("answers a valid upgrade with 101 and the right Sec-WebSocket-Accept", function()
      local key = base64("conformance key!")   -- 16 bytes
      local status, h, _, c = http(upgrade_request(nil, nil, key))
      assert.equal(101, status)
      assert.equal(accept_for(key), h["sec-websocket-accept"])
      assert.equal("websocket", h["upgrade"]:lower())
      assert.is_truthy(h["connection"]:lower():find("upgrade", 1, true))
      assert.is_nil(h["sec-websocket-protocol"])
      assert.is_nil(h["sec-websocket-extensions"])
      echo_ok(c, 1, "after handshake")
      c:close()
    end)

    it("answers the RFC sample key with the RFC sample accept value", function()
      local status, h, _, c = http(upgrade_request())
      assert.equal(101, status)
      assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", h["sec-websocket-accept"])
      c:close()
    end)

    it("accepts header names and tokens in any case", function()
      local req = upgrade_request(nil, nil, nil,
        "hOsT: 127.0.0.1:" .. PORT .. "\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n" ..
        "sec-websocket-key: " .. KEY .. "\r\nSEC-WEBSOCKET-VERSION: 13\r\n")
      local status, h, _, c = http(req)
      assert.equal(101, status)
      assert.equal(accept_for(KEY), h["sec-websocket-accept"])
      echo_ok(c, 1, "case")
      c:close()
    end)

    it("accepts 'Connection: keep-alive, Upgrade' and 'Upgrade: WebSocket'", function()
      local req = upgrade_request(nil, nil, nil,
        "Host: 127.0.0.1:" .. PORT .. "\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" ..
        "Sec-WebSocket-Key: " .. KEY .. "\r\nSec-WebSocket-Version: 13\r\n")
      local status, _, _, c = http(req)
      assert.equal(101, status)
      echo_ok(c, 2, "keep-alive")
      c:close()
    end)

    it("accepts a request sent one byte at a time", function()
      local status, h, _, c = http(upgrade_request(), { slow = true })
      assert.equal(101, status)
      assert.equal(accept_for(KEY), h["sec-websocket-accept"])
      echo_ok(c, 1, "slow handshake")
      c:close()
    end)

    it("accepts frames sent in the same write as the request", function()
      local c = open()
      send(c, upgrade_request(), enc(1, "early"), enc(9, "early ping"))
      local head = assert(read_head(c))
      assert.is_truthy(head:match("^HTTP/1%.1 101 "))
      expect_frame(c, 1, "early")
      expect_frame(c, 10, "early ping")
      c:close()
    end)

    it("accepts a different Origin (the echo example allows every origin)", function()
      local status, _, _, c = http(upgrade_request("Origin: http://evil.example.com\r\n"))
      assert.equal(101, status)
      echo_ok(c, 1, "cross-origin")
      c:close()
    end)

    it("does not answer a Sec-WebSocket-Protocol when none is configured", function()
      local status, h, _, c = http(upgrade_request("Sec-WebSocket-Protocol: chat, superchat\r\n"))
      assert.equal(101, status)
      assert.is_nil(h["sec-websocket-protocol"])
      c:close()
    end)

    it("does not accept a permessage-deflate offer (the echo example does not enable compression)", function()
      local status, h, _, c = http(upgrade_request(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))
      assert.equal(101, status)
      assert.is_nil(h["sec-websocket-extensions"])
      -- so RSV1 stays a protocol error
      send(c, enc(1, "x", { rsv = 4 }))
      expect_fail(c, 1002)
    end)

    it("answers POST with 405 and Allow: GET", function()
      local req = upgrade_request():gsub("^GET", "POST")
      local status, h = http(req)
      assert.equal(405, status)
      -- RFC 9110 section 15.5.6: a 405 names the methods the target takes
      assert.equal("GET", h["allow"])
    end)

    it("takes an absolute-form target (RFC 6455 section 4.1, RFC 9112 section 3.2.2)", function()
      local req = upgrade_request(nil, "http://127.0.0.1:" .. PORT .. "/ws?x=1")
      local status, _, _, c = http(req)
      assert.equal(101, status)
      echo_ok(c, 1, "absolute form")
      c:close()
      -- its path is routed: elsewhere is a 404, not the target as a path
      assert.equal(404, (http(upgrade_request(nil, "http://127.0.0.1:" .. PORT .. "/nowhere"))))
      -- userinfo in it is refused (RFC 9110 section 4.2.4)
      assert.equal(400, (http(upgrade_request(nil, "http://user@127.0.0.1:" .. PORT .. "/ws"))))
    end)

    it("skips an empty line before the request line (RFC 9112 section 2.2)", function()
      local status, _, _, c = http("\r\n" .. upgrade_request())
      assert.equal(101, status)
      echo_ok(c, 1, "after CRLF")
      c:close()
    end)

    it("reads HTTP/1.2 as HTTP/1.1 (RFC 9110 section 2.5)", function()
      local status, _, _, c = http((upgrade_request():gsub("HTTP/1%.1", "HTTP/1.2", 1)))
      assert.equal(101, status)
      echo_ok(c, 1, "1.2")
      c:close()
    end)

    it("answers a missing Sec-WebSocket-Key with 400", function()
      local req = upgrade_request(nil, nil, nil,
        "Host: 127.0.0.1:" .. PORT .. "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
        "Sec-WebSocket-Version: 13\r\n")
      assert.equal(400, (http(req)))
    end)

    it("answers a key decoding to 15 bytes with 400", function()
      assert.equal(400, (http(upgrade_request(nil, nil, base64(("k"):rep(15))))))
    end)

    it("answers a key decoding to 17 bytes with 400", function()
      assert.equal(400, (http(upgrade_request(nil, nil, base64(("k"):rep(17))))))
    end)

    it("answers a key that is not base64 with 400", function()
      assert.equal(400, (http(upgrade_request(nil, nil, "not base64 at all!!!!!!"))))
    end)

    -- the bytes after the head are frames: a proxy in front would read them
    -- as the body (python-websockets refuses such requests too)
    it("answers an upgrade with a body (Content-Length, Transfer-Encoding) with 400", function()
      local status, _, body = http(upgrade_request("Content-Length: 2\r\n") .. "\129\0")
      assert.equal(400, status)
      assert.equal("request body not allowed\n", body)
      assert.equal(400, (http(upgrade_request("Transfer-Encoding: chunked\r\n") .. "0\r\n\r\n")))
      local status0, _, _, c = http(upgrade_request("Content-Length: 0\r\n"))
      assert.equal(101, status0)
      echo_ok(c, 1, "no body")
      c:close()
    end)

    it("answers version 8 with 426 and Sec-WebSocket-Version: 13", function()
      local req = upgrade_request():gsub("Sec%-WebSocket%-Version: 13", "Sec-WebSocket-Version: 8")
      local status, h = http(req)
      assert.equal(426, status)
      assert.equal("13", h["sec-websocket-version"])
      -- RFC 9110 sections 15.5.22 and 7.8: Upgrade, named in Connection
      assert.equal("websocket", h["upgrade"])
      assert.truthy(h["connection"]:lower():find("upgrade", 1, true), h["connection"])
    end)

    it("answers a missing version with 426", function()
      local req = upgrade_request():gsub("Sec%-WebSocket%-Version: 13\r\n", "")
      local status, h = http(req)
      assert.equal(426, status)
      assert.equal("13", h["sec-websocket-version"])
    end)

    it("answers a missing Upgrade header with 400", function()
      local req = upgrade_request():gsub("Upgrade: websocket\r\n", "")
      assert.equal(400, (http(req)))
    end)

    it("answers a missing Connection: Upgrade with 400", function()
      local req = upgrade_request():gsub("Connection: Upgrade", "Connection: keep-alive")
      assert.equal(400, (http(req)))
    end)

    it("answers a missing Host with 400", function()
      local req = upgrade_request():gsub("Host: [^\r]*\r\n", "")
      assert.equal(400, (http(req)))
    end)

    it("answers an unknown path with 404", function()
      assert.equal(404, (http(upgrade_request(nil, "/nowhere"))))
    end)

    it("routes on the path without the query string", function()
      local status, _, _, c = http(upgrade_request(nil, "/ws?token=abc"))
      assert.equal(101, status)
      echo_ok(c, 1, "query")
      c:close()
    end)

    it("serves the HTML page for a plain GET /", function()
      local status, h, body = http("GET / HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT .. "\r\n\r\n")
      assert.equal(200, status)
      assert.is_truthy(h["content-type"]:find("text/html", 1, true))
      assert.is_truthy(body:find("<!doctype html>", 1, true))
      assert.is_truthy(body:find("/ws", 1, true))
    end)

    it("answers HEAD / with the page's headers and Content-Length but no body", function()
      local _, gh, gbody = http("GET / HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT .. "\r\n\r\n")
      local status, h = http("HEAD / HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT .. "\r\n\r\n", { head = true })
      assert.equal(200, status)
      assert.equal(gh["content-type"], h["content-type"])
      -- RFC 9110 section 8.6: if sent, it must be what GET would send
      assert.equal(tostring(#gbody), h["content-length"])
    end)

    it("answers POST / with 405 and Allow", function()
      local status, h = http("POST / HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT ..
        "\r\nContent-Length: 5\r\n\r\nhello")
      assert.equal(405, status)
      assert.is_truthy(h["allow"] and h["allow"]:find("GET", 1, true))
    end)

    it("answers a duplicate Sec-WebSocket-Key with 400", function()
      assert.equal(400, (http(upgrade_request("Sec-WebSocket-Key: " .. base64(("x"):rep(16)) .. "\r\n"))))
    end)

    it("answers a plain GET /ws without upgrade headers with 400", function()
      assert.equal(400, (http("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:" .. PORT .. "\r\n\r\n")))
    end)

    it("answers a header block over 16 KiB with 431", function()
      local req = upgrade_request("X-Padding: " .. ("p"):rep(17 * 1024) .. "\r\n")
      assert.equal(431, (http(req)))
    end)

    it("answers too many header lines with 431", function()
      local extra = {}
      for i = 1, 100 do extra[i] = "X-H" .. i .. ": v\r\n" end
      assert.equal(431, (http(upgrade_request(table.concat(extra)))))
    end)

    it("answers garbage bytes with 400", function()
      assert.equal(400, (http("\022\003\001\002\000\001\000\001\252\003\003garbage\r\n\r\n")))
      assert.equal(400, (http("hello there\r\n\r\n")))
    end)

    it("answers a bare LF request with 400", function()
      assert.equal(400, (http("GET /ws HTTP/1.1\nHost: x\n\r\n\r\n")))
    end)

    it("answers an HTTP/1.0 upgrade with 400", function()
      local req = upgrade_request():gsub("HTTP/1%.1", "HTTP/1.0", 1)
      assert.equal(400, (http(req)))
    end)

    it("answers HTTP/2.0 in the request line with 505", function()
      local req = upgrade_request():gsub("HTTP/1%.1", "HTTP/2.0", 1)
      assert.equal(505, (http(req)))
    end)

    it("closes without an answer when the client disconnects mid-request", function()
      local c = open()
      send(c, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
      c:close()
      -- the server goes on: a fresh client is served
      local c2 = connect()
      echo_ok(c2, 1, "next client")
      c2:close()
    end)
  end)

  describe("9 limits", function()
    it("fails a frame declaring max_message + 1 bytes with 1009 at once", function()
      local c = connect()
      local t0 = gettime()
      send(c, enc(2, "", { len = 16 * 1024 * 1024 + 1 }))
      expect_fail(c, 1009)
      assert.is_true(gettime() - t0 < 1, "1009 took too long")
    end)

    it("echoes a message of exactly max_message bytes", function()
      local c = connect()
      set_timeout(c, 15)
      local p = payload_of("binary", 16 * 1024 * 1024)
      send(c, enc(2, p))
      expect_frame(c, 2, p)
      c:close()
    end)

    it("fails fragments adding up to max_message + 1 with 1009 at once", function()
      local c = connect()
      local half = 8 * 1024 * 1024
      -- (built before the clock starts: masking 8 MiB in Lua takes seconds
      -- on Lua 5.1 on a loaded machine)
      local first, over = enc(2, payload_of("binary", half), { fin = false }), enc(0, "", { len = half + 1 })
      local t0 = gettime()
      send(c, first, over)
      expect_fail(c, 1009)
      assert.is_true(gettime() - t0 < 2, "1009 took too long")
    end)

    it("fails a frame declaring 2^63-1 bytes with 1009 at once", function()
      local c = connect()
      local t0 = gettime()
      send(c, B.hex "82 ff" .. MAX_LEN, KEYS[1])
      -- the length is legal (top bit clear) but over max_message: 1009
      expect_fail(c, 1009)
      assert.is_true(gettime() - t0 < 1, "close took too long")
    end)

    it("fails a 64-bit length with the top bit set with 1002 at once", function()
      local c = connect()
      local t0 = gettime()
      send(c, "\130\255\128\0\0\0\0\0\0\0", KEYS[1])
      expect_fail(c, 1002)
      assert.is_true(gettime() - t0 < 1, "close took too long")
    end)
  end)

  describe("10 robustness", function()
    it("the server survived every bad client and still echoes for a fresh one", function()
      assert.is_true(server.alive(), "the echo server died:\n" .. server.output())
      local c = connect()
      echo_ok(c, 1, "still alive")
      echo_ok(c, 2, payload_of("binary", 70000))
      send(c, enc(8, B.u16(1000)))
      assert.equal(1000, (expect_close_frame(c)))
      assert.is_true(closed_by_peer(c, TIMEOUT))
      c:close()
    end)

    it("one bad client does not hurt another connected at the same time", function()
      local good = connect()
      echo_ok(good, 1, "before")
      local bad = connect()
      send(bad, enc(1, "\255"))
      expect_fail(bad, 1007)
      local bad2 = connect()
      send(bad2, B.hex "82 ff" .. MAX_LEN, KEYS[1])
      expect_fail(bad2, 1009)
      echo_ok(good, 1, "after")
      good:close()
    end)

    it("a client stalled mid-frame does not block others", function()
      local stalled = connect()
      send(stalled, (enc(2, payload_of("binary", 1000)):sub(1, 100)))
      local c = connect()
      echo_ok(c, 2, "not blocked")
      c:close()
      stalled:close()
    end)

    it("survives clients that vanish at every stage", function()
      -- mid-request, after the handshake, mid-header, mid-payload,
      -- mid-fragmented message, right after a close, during a big echo
      local c = open()
      send(c, "GET /ws HTTP/1.1\r\nHost: x\r\n")
      c:close()
      connect():close()
      c = connect(); send(c, (enc(2, "x"):sub(1, 1))); c:close()
      c = connect(); send(c, (enc(2, payload_of("binary", 5000)):sub(1, 3000))); c:close()
      c = connect(); send(c, enc(1, "part", { fin = false })); c:close()
      c = connect(); send(c, enc(8, B.u16(1000))); c:close()
      c = connect(); send(c, enc(2, payload_of("binary", 4 * 1024 * 1024))); c:close()
      socket.sleep(0.2)
      assert.is_true(server.alive(), "the echo server died:\n" .. server.output())
      c = connect()
      echo_ok(c, 1, "survived")
      c:close()
    end)

    it("delivers its close frame to a client that keeps sending after the bad frame", function()
      local c = connect()
      send(c, enc(1, "\255"))
      -- the rest of the write is never read by the server: closing with it
      -- unread would reset the connection and could destroy the close frame
      c:send(enc(2, payload_of("binary", 2 * 1024 * 1024)))
      expect_fail(c, 1007)
    end)

    it("answers a ping queued behind a big echo once the client reads again", function()
      local c = connect()
      set_timeout(c, 10)
      local p = payload_of("binary", 4 * 1024 * 1024)
      send(c, enc(2, p), enc(9, "behind"))
      socket.sleep(0.3)         -- the server is stuck writing to us meanwhile
      expect_frame(c, 2, p)
      expect_frame(c, 10, "behind")
      echo_ok(c, 1, "after")
      c:close()
    end)

    it("logged no task failures", function()
      local out = server.output()
      assert.is_nil(out:find("task failed", 1, true), out)
      assert.is_nil(out:find("handler error", 1, true), out)
    end)
  end)
end)
end
