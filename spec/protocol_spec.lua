-- ws.protocol with no sockets, processes or clock: bytes in, events and
-- bytes out. Peer frames are built, and our output is parsed, by the pure-Lua
-- codec in spec/helpers.lua and spec/bits.lua (no code shared with ws.core).
local protocol = require "ws.protocol"
local H = require "spec.helpers"
local B = require "spec.bits"

local OP = { text = 1, binary = 2, close = 8, ping = 9, pong = 10 }

-- A frame as the peer of a protocol with this role sends it (a client masks).
local function peer(role, op, payload, o)
  o = o or {}
  o.mask = role == "server"
  return H.frame(OP[op] or op, payload, o)
end

local function close_frame(role, code, reason)
  return peer(role, "close", code and (B.u16(code) .. (reason or "")) or "")
end

-- Parse every frame in bytes: { fin, rsv, opcode, masked, payload } list.
local function frames(bytes)
  local out, i = {}, 1
  while i <= #bytes do
    local b0, b1 = bytes:byte(i, i + 1)
    local n, h = b1 % 128, i + 2
    if n == 126 then n, h = B.get_u16(bytes, h), h + 2
    elseif n == 127 then n, h = B.get_u64(bytes, h), h + 8 end
    local key
    if b1 >= 128 then key, h = bytes:sub(h, h + 3), h + 4 end
    local payload = bytes:sub(h, h + n - 1)
    if key then payload = B.mask(payload, key) end
    assert(#payload == n, "truncated frame")
    out[#out + 1] = { fin = b0 >= 128, rsv = math.floor(b0 / 16) % 8, opcode = b0 % 16,
                      masked = key ~= nil, payload = payload, key = key }
    i = h + n
  end
  return out
end

-- The one frame the protocol has to send now.
local function sent_one(p)
  local f = frames(p:data_to_send())
  assert.equal(1, #f, "frames sent: " .. #f)
  return f[1]
end

local function close_of(f)
  assert.equal(8, f.opcode)
  if f.payload == "" then return 1005, "" end
  return B.get_u16(f.payload), f.payload:sub(3)
end

-- Every event the fed bytes give, as strings, until more input is needed
-- or the protocol stops (closed or failed).
local function events(p)
  local out = {}
  while true do
    local a, b, c, d = p:next_event()
    if a == nil and b == nil then return out end
    out[#out + 1] = table.concat({ tostring(a), tostring(b), tostring(c), tostring(d) }, " ")
    if a == nil then return out end
  end
end

local function feed(p, bytes, now)
  p:receive_data(bytes, now)
  return events(p)
end

describe("protocol: what a driver may not ask", function()
  it("raises for frames RFC 6455 forbids (a programmer's mistake), nil, \"closed\" after the end", function()
    local p = protocol.new { role = "client" }
    assert.has_error(function() p:send_control("ping", ("x"):rep(126)) end)
    assert.has_error(function() p:send_control("close", "") end)
    assert.has_error(function() p:send_message("x", "ping") end)
    assert.has_error(function() p:send_message(42, "text") end)
    assert.is_number(p:send_control("ping", ("x"):rep(125)))
    p:connection_lost()
    -- bytes a driver still held from before the loss: dropped, no error
    p:receive_data("\129\2hi")
    assert.same({ nil, "closed" }, { p:send_message("x", "text") })
    assert.equal("closed", select(2, p:next_event()))
  end)
end)

describe("protocol: messages and control frames", function()
  it("delivers text, binary, empty and fragmented messages", function()
    local p = protocol.new { role = "server" }
    local bytes = peer("server", "text", "hello") .. peer("server", "binary", "\0\255")
      .. peer("server", "text", "") .. peer("server", "text", "fra", { fin = false })
      .. peer("server", 0, "gme", { fin = false }) .. peer("server", 0, "nted")
    assert.same({ "hello text nil nil", "\0\255 binary nil nil", " text nil nil",
                  "fragmented text nil nil" }, feed(p, bytes))
    assert.equal("open", p.state)
    assert.equal("", p:data_to_send())
  end)

  it("answers a ping with a pong of the same payload (server unmasked, client masked)", function()
    for _, role in ipairs { "server", "client" } do
      local p = protocol.new { role = role }
      assert.same({ "false ping ab nil" }, feed(p, peer(role, "ping", "ab")))
      local f = sent_one(p)
      assert.equal(10, f.opcode)
      assert.equal("ab", f.payload)
      assert.equal(role == "client", f.masked)
    end
  end)

  it("a ping between the fragments of a message is answered at once", function()
    local p = protocol.new { role = "server" }
    local out = feed(p, peer("server", "text", "a", { fin = false }) .. peer("server", "ping", "x")
      .. peer("server", 0, "b"))
    assert.same({ "false ping x nil", "ab text nil nil" }, out)
    assert.equal(10, sent_one(p).opcode)
  end)

  it("a pong is reported and ends the wait for the keepalive pong", function()
    local p = protocol.new { role = "client", ping_interval = 1, now = 0 }
    assert.is_true(p:keepalive(1))
    assert.equal(1, p.ping_sent)
    assert.same({ "false pong  nil" }, feed(p, peer("client", "pong", "")))
    assert.is_nil(p.ping_sent)
  end)

  it("masks what a client sends with a fresh key per frame; a server does not mask", function()
    local c = protocol.new { role = "client" }
    assert(c:send_message("same", "text"))
    assert(c:send_message("same", "text"))
    local f = frames(c:data_to_send())
    assert.is_true(f[1].masked and f[2].masked)
    assert.equal("same", f[1].payload)
    assert.equal("same", f[2].payload)
    local s = protocol.new { role = "server" }
    assert(s:send_message("\1\2", "binary"))
    f = sent_one(s)
    assert.is_false(f.masked)
    assert.same({ true, 0, 2, "\1\2" }, { f.fin, f.rsv, f.opcode, f.payload })
    -- masks differ between frames: 16 frames with one key would be a broken RNG
    local keys = {}
    for _ = 1, 16 do
      c:send_message("x", "binary")
      keys[sent_one(c).key] = true
    end
    local n = 0
    for _ in pairs(keys) do n = n + 1 end
    assert.is_true(n > 1)
  end)

  it("refuses to send text that is not UTF-8, and queues nothing", function()
    local p = protocol.new { role = "server" }
    assert.same({ nil, "invalid utf-8" }, { p:send_message("\255", "text") })
    assert.equal("", p:data_to_send())
    assert(p:send_message("\255", "binary"))
    assert.equal("\255", sent_one(p).payload)
  end)

  it("gives the same events and bytes out with its input split at every byte", function()
    for _, role in ipairs { "server", "client" } do
      local input = peer(role, "text", "caf\195\169 ", { fin = false }) .. peer(role, "ping", "p")
        .. peer(role, 0, "au lait") .. peer(role, "binary", ("z"):rep(300))
        .. close_frame(role, 1000, "done")
      local whole = protocol.new { role = role }
      local want = feed(whole, input)
      local want_out = frames(whole:data_to_send())
      assert.equal(4, #want)
      assert.equal("nil closed 1000 done", want[4])
      local function out_of(p)
        local f = frames(p:data_to_send())
        for _, x in ipairs(f) do x.key = nil end
        return f
      end
      for _, x in ipairs(want_out) do x.key = nil end
      for cut = 1, #input - 1 do
        local p = protocol.new { role = role }
        local got = feed(p, input:sub(1, cut))
        for _, e in ipairs(feed(p, input:sub(cut + 1))) do got[#got + 1] = e end
        assert.same(want, got, "split at " .. cut)
        assert.same(want_out, out_of(p), "split at " .. cut)
      end
      local p = protocol.new { role = role }
      local got = {}
      for i = 1, #input do
        for _, e in ipairs(feed(p, input:sub(i, i))) do got[#got + 1] = e end
      end
      assert.same(want, got, "byte by byte")
      assert.same(want_out, out_of(p), "byte by byte")
    end
  end)
end)

describe("protocol: the close handshake", function()
  it("peer closes first: we echo its code, then the server closes TCP, the client waits for it", function()
    for _, role in ipairs { "server", "client" } do
      local p = protocol.new { role = role }
      assert.same({ "nil closed 1001 going away" }, feed(p, close_frame(role, 1001, "going away")))
      assert.equal("closing", p.state)
      assert.same({ 1001, "going away" }, { p.close_rcvd_code, p.close_rcvd_reason })
      assert.equal(1001, p.close_sent_code)
      assert.is_true(p.close_rcvd_then_sent)
      assert.is_false(p.eof_sent)
      local f = sent_one(p)
      assert.same({ 1001, "" }, { close_of(f) })
      assert.equal(role == "client", f.masked)
      assert.equal(role == "client" and "wait" or "close", p:transport())
      -- nothing after the close frame counts, and nothing more may be sent
      assert.same({ "nil closed 1001 going away" }, feed(p, peer(role, "text", "late")))
      assert.same({ nil, "closed" }, { p:send_message("x", "text") })
      assert.same({ nil, "closed" }, { p:send_control("ping", "") })
      assert.same({ nil, "closed" }, { p:send_close(1000) })
      assert.equal("", p:data_to_send())
      assert.same({ nil, "closed", 1001, "going away" }, { p:connection_lost() })
      assert.equal("closed", p.state)
      assert.is_nil(p:transport())
    end
  end)

  it("a close without a code is 1005, echoed with an empty payload", function()
    local p = protocol.new { role = "server" }
    assert.same({ "nil closed 1005 " }, feed(p, close_frame("server")))
    local f = sent_one(p)
    assert.equal("", f.payload)
    assert.equal(1005, p.close_code)
  end)

  it("we close first: messages still arrive, pings are not answered, the peer's code is the outcome", function()
    for _, role in ipairs { "server", "client" } do
      local p = protocol.new { role = role }
      assert.equal(1, p:send_close(1000, "done"))
      assert.equal("closing", p.state)
      assert.same({ 1000, "done" }, { p.close_sent_code, p.close_sent_reason })
      assert.is_nil(p:transport())            -- wait for the peer's close
      assert.same({ 1000, "done" }, { close_of(sent_one(p)) })
      assert.same({ "late text nil nil", "false ping  nil" },
        feed(p, peer(role, "text", "late") .. peer(role, "ping", "")))
      assert.equal("", p:data_to_send())      -- nothing may follow our close frame
      assert.same({ nil, "closed" }, { p:send_message("x", "text") })
      assert.same({ "nil closed 1000 ok" }, feed(p, close_frame(role, 1000, "ok")))
      assert.equal("", p:data_to_send())      -- no second close frame
      assert.is_false(p.close_rcvd_then_sent)
      assert.same({ 1000, "ok" }, { p.close_code, p.close_reason })
      assert.equal(role == "client" and "wait" or "close", p:transport())
    end
  end)

  it("simultaneous close: each side's one close frame, the peer's code as the outcome", function()
    local a, b = protocol.new { role = "server" }, protocol.new { role = "client" }
    a:send_close(1000, "a")
    b:send_close(1001, "b")
    local to_b, to_a = a:data_to_send(), b:data_to_send()
    assert.same({ "nil closed 1000 a" }, feed(b, to_b))
    assert.same({ "nil closed 1001 b" }, feed(a, to_a))
    assert.equal("", a:data_to_send())
    assert.equal("", b:data_to_send())
    assert.same({ "close", "wait" }, { a:transport(), b:transport() })
  end)

  it("a close in the middle of a fragmented message: the message is dropped, the close echoed", function()
    local p = protocol.new { role = "server" }
    local out = feed(p, peer("server", "text", "part", { fin = false }) .. close_frame("server", 1000))
    assert.same({ "nil closed 1000 " }, out)
    assert.same({ 1000, "" }, { close_of(sent_one(p)) })
  end)

  it("send_close: no code sends an empty payload (1005); codes that may not be sent are refused", function()
    local p = protocol.new { role = "server" }
    for _, bad in ipairs { 1005, 1006, 1015, 999, 5000, 1004 } do
      local seq, err = p:send_close(bad)
      assert.is_nil(seq)
      assert.is_string(err)
    end
    assert.is_nil((p:send_close(1000, ("x"):rep(124))))
    assert.is_nil((p:send_close(1000, "\255")))
    assert.same({ nil, "a close reason needs a code" }, { p:send_close(nil, "why") })   -- (it was dropped)
    assert.equal("open", p.state)
    assert.equal("", p:data_to_send())
    assert(p:send_close())
    assert.equal("", sent_one(p).payload)
    assert.equal(1005, p.close_sent_code)
    assert.same({ nil, "closed" }, { p:send_close(1000) })
  end)

  it("a close frame with a bad code, a 1-byte payload or a reason that is not UTF-8 fails it", function()
    local cases = {
      { B.u16(999), 1002 }, { B.u16(1004), 1002 }, { B.u16(1005), 1002 }, { B.u16(1006), 1002 },
      { B.u16(1015), 1002 }, { B.u16(1100), 1002 }, { B.u16(2999), 1002 }, { B.u16(5000), 1002 },
      { "\3", 1002 }, { B.u16(1000) .. "\206", 1007 }, { B.u16(1000) .. "\237\160\128", 1007 },
    }
    for _, case in ipairs(cases) do
      local p = protocol.new { role = "server" }
      local out = feed(p, peer("server", "close", case[1]))
      assert.equal(1, #out)
      assert.matches("^nil " .. (case[2] == 1007 and "invalid utf%-8" or "protocol error") .. " " .. case[2], out[1])
      assert.equal(case[2], (close_of(sent_one(p))))
      assert.is_nil(p.close_rcvd_code)
      assert.is_true(p.eof_sent)
      assert.equal("shutdown", p:transport())
      assert.equal(case[2], p.close_code)
    end
    -- valid codes in the registered and private ranges are accepted
    for _, code in ipairs { 1000, 1003, 1007, 1011, 1014, 3000, 4999 } do
      local p = protocol.new { role = "server" }
      assert.same({ "nil closed " .. code .. " " }, feed(p, close_frame("server", code)))
    end
  end)

  it("the transport ending without a close frame is 1006", function()
    local p = protocol.new { role = "client" }
    assert.same({ "hi text nil nil" }, feed(p, peer("client", "text", "hi")))
    assert.same({ nil, "closed", 1006, "" }, { p:connection_lost() })
    assert.equal("closed", p.state)
    assert.same({ nil, "closed", 1006, "" }, { p:next_event() })
    -- a driver dropping it records its own reason (abort, send queue full)
    local q = protocol.new { role = "server" }
    q:connection_lost(1008, "send queue full")
    assert.same({ 1008, "send queue full" }, { q.close_code, q.close_reason })
  end)
end)

describe("protocol: failing the connection", function()
  -- what the peer sends -> the close code we answer with
  local faults = {
    { "unmasked client frame", "server", H.frame(1, "x", { mask = false }), 1002 },
    { "masked server frame", "client", H.frame(1, "x", { mask = true }), 1002 },
    { "reserved opcode 3", "server", peer("server", 3, ""), 1002 },
    { "reserved opcode 11", "server", peer("server", 11, ""), 1002 },
    { "RSV1 without an extension", "server", peer("server", "text", "x", { rsv = 4 }), 1002 },
    { "RSV3", "client", peer("client", "binary", "x", { rsv = 1 }), 1002 },
    { "ping of 126 bytes", "server", peer("server", "ping", ("p"):rep(126)), 1002 },
    { "fragmented ping", "server", peer("server", "ping", "p", { fin = false }), 1002 },
    { "continuation without a message", "server", peer("server", 0, "x"), 1002 },
    { "new message inside a fragmented one", "server",
      peer("server", "text", "a", { fin = false }) .. peer("server", "text", "b"), 1002 },
    { "text that is not UTF-8", "server", peer("server", "text", "\192\128"), 1007 },
    { "UTF-8 broken across fragments", "client",
      peer("client", "text", "\206", { fin = false }) .. peer("client", 0, "x"), 1007 },
    { "message over max_message (header)", "server", peer("server", "binary", ("b"):rep(101)), 1009 },
    { "fragments over max_message", "server",
      peer("server", "binary", ("b"):rep(60), { fin = false }) .. peer("server", 0, ("b"):rep(60)), 1009 },
  }
  local TOKEN = { [1002] = "protocol error", [1007] = "invalid utf-8", [1009] = "message too big" }
  for _, case in ipairs(faults) do
    it(case[1] .. " fails it with " .. case[4], function()
      local p = protocol.new { role = case[2], max_message = 100 }
      local out = feed(p, case[3])
      assert.equal(1, #out)
      assert.matches("^nil " .. TOKEN[case[4]]:gsub("%-", "%%-") .. " " .. case[4] .. " ", out[1])
      local f = sent_one(p)
      assert.equal(case[4], (close_of(f)))
      assert.equal(case[2] == "client", f.masked)
      assert.same({ "closing", true, case[4] }, { p.state, p.eof_sent, p.close_code })
      assert.equal("shutdown", p:transport())
      -- it stays failed: later input gives nothing new and nothing more is sent
      assert.matches("^nil ", feed(p, peer(case[2], "text", "ok"))[1])
      assert.equal("", p:data_to_send())
    end)
  end

  it("a failure while our close awaits its answer sends no second close frame", function()
    local p = protocol.new { role = "server" }
    p:send_close(1000)
    p:data_to_send()
    assert.same({ "nil protocol error 1002 unmasked frame from client" }, feed(p, H.frame(1, "x", { mask = false })))
    assert.equal("", p:data_to_send())
    assert.same({ true, "shutdown", 1002 }, { p.eof_sent, p:transport(), p.close_code })
  end)

  it("fail keeps the code when the reason cannot be sent", function()
    local p = protocol.new { role = "server" }
    assert.same({ nil, "closed", 1011, ("r"):rep(200) }, { p:fail(1011, ("r"):rep(200)) })
    assert.same({ 1011, "" }, { close_of(sent_one(p)) })
  end)

  it("permessage-deflate: a compressed message round-trips; a zip bomb is 1009, garbage 1007", function()
    local c = protocol.new { role = "client", deflate = { threshold = 0 } }
    local s = protocol.new { role = "server", deflate = { threshold = 0 }, max_message = 1000 }
    assert(c:send_message(("abc"):rep(100), "text"))
    local bytes = c:data_to_send()
    assert.equal(4, frames(bytes)[1].rsv)
    assert.is_true(#bytes < 100)
    assert.same({ ("abc"):rep(100) .. " text nil nil" }, feed(s, bytes))
    assert(c:send_message(("z"):rep(5000), "binary"))
    assert.same({ "nil message too big 1009 message too big" }, feed(s, c:data_to_send()))
    local s2 = protocol.new { role = "server", deflate = { threshold = 0 } }
    assert.same({ "nil invalid compressed data 1007 invalid compressed data" },
      feed(s2, peer("server", "binary", "\255\255\255\255", { rsv = 4 })))
    assert.equal(1007, (close_of(sent_one(s2))))
  end)
end)

describe("protocol: timers on a fake clock", function()
  it("idle: input moves the deadline (pongs count); silence past it fails with 1001", function()
    local p = protocol.new { role = "server", idle_timeout = 10, now = 100 }
    assert.equal(110, p:idle_due())
    assert.is_false(p:idle(109.9))
    p:receive_data(peer("server", "pong", ""), 105)
    assert.equal(115, p:idle_due())
    assert.is_false(p:idle(110))
    p:activity(112)
    assert.is_false(p:idle(121.9))
    assert.same({ nil, "closed", 1001, "idle timeout" }, { p:idle(122) })
    assert.same({ 1001, "idle timeout" }, { close_of(sent_one(p)) })
    assert.equal("shutdown", p:transport())
    assert.is_nil(protocol.new { role = "server" }:idle_due())
  end)

  it("idle: no timeout once the peer's close came (the close handshake is under way or done)", function()
    local p = protocol.new { role = "server", idle_timeout = 10, now = 100 }
    assert(p:send_close(1000))
    p:data_to_send()
    assert.same({ "nil closed 1000 " }, feed(p, close_frame("server", 1000), 101))
    assert.equal("close", p:transport())
    assert.is_nil(p:idle_due())                 -- (a driver sleeping until it would spin)
    assert.is_false(p:idle(200))
    assert.equal("close", p:transport())
    assert.equal(1000, p.close_code)
  end)

  it("keepalive: a ping every interval, one at a time; a late pong fails with 1011", function()
    local p = protocol.new { role = "server", ping_interval = 10, ping_timeout = 5, now = 100 }
    assert.equal(110, p:keepalive_due())
    assert.is_false(p:keepalive(109))
    assert.equal("", p:data_to_send())
    assert.is_true(p:keepalive(110))
    local f = sent_one(p)
    assert.same({ 9, "" }, { f.opcode, f.payload })
    assert.equal(115, p:keepalive_due())     -- the pong's deadline comes first
    events(p)
    feed(p, peer("server", "pong", ""))
    assert.equal(120, p:keepalive_due())
    assert.is_true(p:keepalive(120))
    sent_one(p)
    assert.equal(125, p:keepalive_due())
    assert.same({ nil, "closed", 1011, "keepalive ping timeout" }, { p:keepalive(125) })
    assert.same({ 1011, "keepalive ping timeout" }, { close_of(sent_one(p)) })
    assert.is_nil(p:keepalive_due())          -- no longer open
  end)

  it("keepalive: while a pong is awaited longer than an interval, no second ping goes out", function()
    local p = protocol.new { role = "client", ping_interval = 1, ping_timeout = 3, now = 0 }
    assert.is_true(p:keepalive(1))
    assert.equal(9, sent_one(p).opcode)
    assert.equal(2, p:keepalive_due())
    assert.is_false(p:keepalive(2))
    assert.is_false(p:keepalive(3))
    assert.equal("", p:data_to_send())
    assert.equal(4, p:keepalive_due())
    assert.is_nil((p:keepalive(4)))
    assert.equal(1011, p.close_code)
    assert.is_nil(protocol.new { role = "client" }:keepalive_due())
  end)
end)

describe("protocol: the send queue", function()
  it("counts the bytes not yet written against max_queue; partial writes count down", function()
    local p = protocol.new { role = "server", max_queue = 100 }
    local a = ("a"):rep(60)
    assert.equal(1, p:push(a))
    assert.is_false(p:queue_full())
    assert.equal(2, p:push(a))
    assert.equal(120, p:queued())
    assert.is_true(p:queue_full())
    assert.same({ a, 1 }, { p:head() })
    p:wrote(30)                                -- the socket took 30 bytes
    assert.same({ a, 31 }, { p:head() })
    assert.equal(90, p:queued())
    assert.is_false(p:queue_full())
    assert.equal(0, p.written)
    p:wrote(60)
    assert.equal(1, p.written)
    assert.same({ a, 1 }, { p:head() })
    assert.equal(60, p:queued())
    assert.equal(a, p:data_to_send())
    assert.equal(2, p.written)
    assert.is_nil(p:head())
    assert.equal(0, p:queued())
    assert.is_false(protocol.new { role = "server" }:queue_full())
  end)

  it("a pong not started takes the latest ping's payload (RFC 6455 5.5.3); the head is never touched", function()
    local p = protocol.new { role = "server" }
    p:send_message("head", "text")               -- the socket is full: nothing is written
    local pings = {}
    for i = 1, 1000 do pings[i] = peer("server", "ping", "p" .. i) end
    feed(p, table.concat(pings))
    local f = frames(p:data_to_send())
    assert.same({ 1, 10 }, { f[1].opcode, f[2].opcode })
    assert.equal("p1000", f[2].payload)
    assert.equal(2, p.written)
    -- a pong at the head may be being written: the next ping queues its own
    feed(p, peer("server", "ping", "a"))
    assert.same({ "a", 1 }, { frames((p:head()))[1].payload, select(2, p:head()) })
    feed(p, peer("server", "ping", "b") .. peer("server", "ping", "cc"))
    assert.equal(3 + 4, p:queued())               -- the pongs of "a" and "cc"
    f = frames(p:data_to_send())
    assert.same({ "a", "cc" }, { f[1].payload, f[2].payload })
    -- a dropped pong is forgotten: the item that takes its place stays
    p:send_message("x", "text")
    feed(p, peer("server", "ping", "d"))
    p:drop_unstarted()
    p:send_message("keep", "text")
    p:send_message("me", "text")
    feed(p, peer("server", "ping", "e"))
    f = frames(p:data_to_send())
    assert.same({ "keep", "me", "e" }, { f[1].payload, f[2].payload, f[3].payload })
  end)

  it("pongs and our close frame go out in order behind queued messages", function()
    local p = protocol.new { role = "server" }
    p:send_message("one", "text")
    feed(p, peer("server", "ping", "p") .. close_frame("server", 1000))
    local f = frames(p:data_to_send())
    assert.same({ 1, 10, 8 }, { f[1].opcode, f[2].opcode, f[3].opcode })
  end)
end)

describe("drop_unstarted", function()
  it("keeps a partly written (or busy) head and drops the items not started", function()
    local p = protocol.new()
    p:push("aaaa") p:push("bbbb") p:push("cc")
    p:wrote(2)                                  -- "aa" of the head is out
    assert.equal(1, p:drop_unstarted())
    assert.equal(2, p:queued())
    assert.equal(2, p:push("zz"))               -- the next item follows the head
    assert.equal("aazz", p:data_to_send())      -- the rest of the head, then the new item
    local q = protocol.new()
    q:push("aaaa") q:push("bbbb")
    assert.equal(0, q:drop_unstarted())         -- nothing started: all go
    assert.equal(0, q:queued())
    q:push("cccc") q:push("dddd")
    assert.equal(1, q:drop_unstarted(true))     -- the driver is writing the head
    assert.equal("cccc", q:data_to_send())
  end)

  it("after a dropped compressed message (context takeover) sends no more messages: the peer could not inflate them", function()
    local s = protocol.new { role = "server", deflate = { threshold = 0 } }
    local c = protocol.new { role = "client", deflate = { threshold = 0 } }
    assert(s:send_message(("hello "):rep(20), "text"))
    assert.equal(0, s:drop_unstarted())
    assert.same({ nil, "closed" }, { s:send_message(("hello "):rep(20), "text") })
    assert(s:send_close(1008))                  -- a close still goes
    assert.same({ "nil closed 1008 " }, feed(c, s:data_to_send()))
    -- with no context takeover each message stands alone: sending goes on
    local r = protocol.new { role = "server", deflate = { threshold = 0, out_reset = true } }
    assert(r:send_message(("hello "):rep(20), "text"))
    assert.equal(0, r:drop_unstarted())
    assert(r:send_message(("hello "):rep(20), "text"))
    local c2 = protocol.new { role = "client", deflate = { threshold = 0 } }
    assert.same({ ("hello "):rep(20) .. " text nil nil" }, feed(c2, r:data_to_send()))
  end)
end)
