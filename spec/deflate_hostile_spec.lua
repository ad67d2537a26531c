-- permessage-deflate on the server against hostile or exacting clients:
-- the negotiated windows honoured on the wire (checked by a raw zlib
-- inflater of exactly that window, not by ws.core), long runs with and
-- without context takeover, limits crossed only by a message's last
-- fragment, bombs in many small frames, bad data at the very end, one
-- connection's zlib failure next to others, and zlib memory per connection
-- against the README's figure. (spec/deflate_spec.lua has the rest.)
local socket = require "socket"
local core = require "ws.core"
local H = require "spec.helpers"
local B = require "spec.bits"

local MiB = 1024 * 1024
local gettime = socket.gettime

local function deflate_server(args, name)
  return H.start_lua("spec/servers/deflate_server.lua", args, name)
end

-- the echo route of the server under test
local PATH = "/echo"

local function raw(port, ext, opts)
  local extra = ext and ("Sec-WebSocket-Extensions: " .. ext .. "\r\n") or nil
  local r, head = H.raw(port, H.request(port, PATH, extra), opts or { timeout = 10 })
  assert.matches("^HTTP/1.1 101", head)
  return r, head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Ee]xtensions: ([^\r]*)\r\n")
end

local function random_bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n) or ""
  f:close()
  return s
end

-- the next data frame (pongs skipped)
local function data_frame(r)
  for _ = 1, 100 do
    local f, err = r:read_frame()
    if not f then return nil, err end
    if f.opcode ~= 9 and f.opcode ~= 10 then return f end
  end
  return nil, "only control frames"
end

local function closes_with(r, code)
  local c, reason = r:read_close()
  assert.equal(code, c, reason)
  assert.is_true(r:closed_by_peer(3))
  r:close()
  return reason
end

-- Inflate the server's frames ({ rsv, payload }, in order) with Python's
-- zlib: a raw inflater of exactly `bits` (spec/peers/raw_inflate.py).
-- Returns the messages, or nil and what Python said.
local function raw_inflate(bits, takeover, frames)
  local dir = H.tmpdir()
  local src, dst = dir .. "/in", dir .. "/out"
  local f = assert(io.open(src, "wb"))
  for _, fr in ipairs(frames) do
    f:write(string.char(fr.rsv == 4 and 1 or 0), B.u32(#fr.payload), fr.payload)
  end
  f:close()
  local out, code = H.run(string.format("%s %s/spec/peers/raw_inflate.py %d %d %s %s 2>&1",
    H.PYTHON, H.ROOT, bits, takeover and 1 or 0, src, dst))
  local msgs
  if code == 0 then
    f = assert(io.open(dst, "rb"))
    local s = f:read("*a")
    f:close()
    msgs = {}
    local i = 1
    while i <= #s do
      local n = B.get_u32(s, i)
      msgs[#msgs + 1] = s:sub(i + 4, i + 3 + n)
      i = i + 4 + n
    end
  end
  os.execute("rm -rf " .. H.shell_quote(dir))
  return msgs, out
end

-- Message i of a run: pieces of one random pool (so a compressor with a
-- big window finds matches far back, in earlier messages too), a counter,
-- sizes from 0 to about 3 KiB; every 7th is text.
local POOL = random_bytes(6000)
local function message(i)
  local len = (i * 7919) % 3000
  local at = (i * 104729) % (#POOL - len) + 1
  local s = POOL:sub(at, at + len - 1) .. "#" .. i
  if i % 7 == 0 then return (s:gsub("[\128-\255]", "x")), 1 end
  return s, 2
end

-- Send n messages compressed by `d` (nil: sent plain), read each echo;
-- returns the echoes' frames.
local function echo_run(r, n, d)
  local frames = {}
  for i = 1, n do
    local m, op = message(i)
    if d then r:send_frame(op, d:compress(m), { rsv = 4 }) else r:send_frame(op, m) end
    local f = assert(data_frame(r))
    assert.equal(op, f.opcode, "echo " .. i)
    frames[i] = f
  end
  return frames
end

local function check_messages(msgs, out, n, label)
  assert.truthy(msgs, label .. ": " .. tostring(out))
  assert.equal(n, #msgs, label)
  for i = 1, n do
    if msgs[i] ~= (message(i)) then error(label .. ": message " .. i .. " differs", 2) end
  end
end

describe("permessage-deflate on the wire: what the server sends inflates with exactly the agreed window", function()
  local server
  setup(function() server = deflate_server("--c threshold=0", "deflate-wire") end)
  teardown(function() server.stop() end)

  it("server_max_window_bits 8..15, asked for by the second offer of two (the first invalid)", function()
    for bits = 8, 15 do
      local r, ext = raw(server.port, "permessage-deflate; server_max_window_bits=16, " ..
        "permessage-deflate; client_max_window_bits; server_max_window_bits=" .. bits)
      assert.equal("permessage-deflate; server_max_window_bits=" .. bits, ext)
      local n = (bits == 8 or bits == 15) and 300 or 100
      local frames = echo_run(r, n, core.deflate {})
      r:close()
      local msgs, out = raw_inflate(bits, true, frames)
      check_messages(msgs, out, n, "window " .. bits)
      if bits == 10 or bits == 15 then
        -- (the check is strict: a smaller window than the server's fails)
        msgs, out = raw_inflate(9, true, frames)
        assert.is_nil(msgs)
        assert.matches("invalid distance too far back", out)
      end
    end
  end)

  it("1,000 messages with context takeover, and 1,000 without, both ways", function()
    for _, case in ipairs {
      { offer = "permessage-deflate", takeover = true },
      { offer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover", takeover = false },
      { offer = "permessage-deflate; server_no_context_takeover; server_max_window_bits=9", takeover = false, bits = 9,
        answer = "permessage-deflate; server_max_window_bits=9; server_no_context_takeover" },
    } do
      local r, ext = raw(server.port, case.offer)
      assert.equal(case.answer or case.offer, ext)
      local frames = echo_run(r, 1000, core.deflate { out_reset = not case.takeover })
      r:close()
      local compressed = 0
      for _, f in ipairs(frames) do if f.rsv == 4 then compressed = compressed + 1 end end
      assert.equal(1000, compressed)
      local msgs, out = raw_inflate(case.bits or 15, case.takeover, frames)
      check_messages(msgs, out, 1000, case.offer)
    end
  end)

  it("the client's window: client_max_window_bits with and without a value, kept to what was answered", function()
    local s10 = deflate_server("--c threshold=0 --c client_max_window_bits=10", "deflate-wire-cmwb")
    local s8 = deflate_server("--c threshold=0 --c client_max_window_bits=8", "deflate-wire-cmwb8")
    finally(function()
      s10.stop()
      s8.stop()
    end)
    for _, case in ipairs {
      { s10, offer = "permessage-deflate; client_max_window_bits", answer = 10, bits = 10 },
      { s10, offer = "permessage-deflate; client_max_window_bits=9", answer = 9, bits = 9 },
      { s10, offer = "permessage-deflate; client_max_window_bits=12", answer = 10, bits = 10 },
      { s10, offer = "permessage-deflate", answer = nil, bits = 15 },
      -- (our compressor keeps to 8 with zlib's 9-bit window: at most 250 bytes back)
      { s8, offer = "permessage-deflate; client_max_window_bits", answer = 8, bits = 8 },
    } do
      local r, ext = raw(case[1].port, case.offer)
      assert.equal("permessage-deflate" .. (case.answer and "; client_max_window_bits=" .. case.answer or ""), ext)
      -- a client that keeps to the window: every echo right
      local d = core.deflate { out_bits = case.bits }
      local frames = echo_run(r, 200, d)
      local msgs, out = raw_inflate(15, true, frames)
      check_messages(msgs, out, 200, case.offer)
      if case.bits < 15 then
        -- one that reaches back further than it agreed: 1007
        local far = core.deflate {}
        local m = random_bytes(3000)
        r:send_frame(2, far:compress(m), { rsv = 4 })
        assert.equal(2, assert(data_frame(r)).opcode)
        r:send_frame(2, far:compress(m), { rsv = 4 })   -- 3000 bytes back
        assert.equal("invalid compressed data", closes_with(r, 1007))
      else
        r:close()
      end
    end
  end)
end)

-- the echo servers: a receive loop (spec/servers) with max_message 1 MiB,
-- and examples/echo.lua --compression (conn:serve: the loop calls it per
-- message) with its 16 MiB; both send messages under 64 bytes uncompressed
for _, target in ipairs {
  { script = "spec/servers/deflate_server.lua", args = "--set max_message=1048576", path = "/echo", max = MiB },
  { script = "examples/echo.lua", args = "--compression --quiet", path = "/ws", max = 16 * MiB },
} do
local MAX = target.max
describe("permessage-deflate: hostile clients against " .. target.script, function()
  local server
  setup(function()
    server = H.start_lua(target.script, target.args, "deflate-hostile2")
    PATH = target.path
  end)
  teardown(function()
    server.stop()
    PATH = "/echo"
  end)
  local EXT = "permessage-deflate"

  it("a pipelined burst (echoes corked, compressed into one buffer) in order, with a 9-bit window", function()
    local r, ext = raw(server.port, "permessage-deflate; server_max_window_bits=9")
    assert.equal("permessage-deflate; server_max_window_bits=9", ext)
    local d = core.deflate {}
    for _, burst in ipairs { { 1, 300 }, { 301, 600 } } do
      local parts = {}
      for i = burst[1], burst[2] do
        local m, op = message(i)
        parts[#parts + 1] = H.frame(op, d:compress(m), { rsv = 4 })
        if i % 50 == 0 then parts[#parts + 1] = H.frame(9, "p" .. i) end
      end
      r:send(table.concat(parts))
    end
    local frames, pongs = {}, 0
    for _ = 1, 612 do
      local f = assert(r:read_frame())
      if f.opcode == 10 then pongs = pongs + 1 else frames[#frames + 1] = f end
    end
    r:close()
    assert.equal(12, pongs)
    local msgs, out = raw_inflate(9, true, frames)
    check_messages(msgs, out, 600, "pipelined")
  end)


  it("closes 1009 when only the last fragment of a compressed message crosses max_message; RSS stays flat", function()
    -- one DEFLATE stream: max_message - 10 bytes, then 100 more in the last fragment
    local d = core.deflate {}
    local head = d:compress(string.rep("a", MAX - 10)) .. "\0\0\255\255"
    local last = d:compress(string.rep("b", 100))
    local ok = core.deflate {}:decompress(head .. core.deflate {}:compress(""))
    assert.equal(MAX - 10, #ok)
    local rss0 = H.rss_kib(server.pid)
    for round = 1, 20 do
      local r = raw(server.port, EXT)
      if round % 2 == 0 then
        -- after a good compressed message, in context takeover
        local c = core.deflate {}
        r:send_frame(2, c:compress("first"), { rsv = 4 })
        assert.equal("first", assert(data_frame(r)).payload)
      end
      local step = math.floor(#head / 5)
      for i = 1, #head, step do
        r:send_frame(i == 1 and 2 or 0, head:sub(i, i + step - 1), { rsv = i == 1 and 4 or 0, fin = false })
        r:send_frame(9, "ping")
      end
      r:send_frame(0, last)
      assert.equal("message too big", closes_with(r, 1009))
    end
    -- (what inflating up to max_message takes stays mapped)
    local grown = H.rss_kib(server.pid) - rss0
    assert.is_true(grown < (MAX + 16 * MiB) / 1024, "server RSS grew by " .. grown .. " KiB")
    -- under the limit by one byte less in the last fragment: echoed
    local r = raw(server.port, EXT)
    local e = core.deflate {}
    local body = e:compress(string.rep("a", MAX - 10)) .. "\0\0\255\255" .. e:compress(string.rep("b", 10))
    r:send_frame(2, body:sub(1, 100), { rsv = 4, fin = false })
    r:send_frame(0, body:sub(101))
    local f = assert(data_frame(r))
    assert.equal(string.rep("a", MAX - 10) .. string.rep("b", 10), core.deflate {}:decompress(f.payload))
    r:close()
  end)

  it("closes 1009 on a bomb in 2,000 small frames with pings between, quickly and with RSS flat", function()
    local bomb = core.deflate {}:compress(string.rep("\0", 4 * MAX))
    local rss0 = H.rss_kib(server.pid)
    local t0 = gettime()
    for _ = 1, 3 do
      local r = raw(server.port, EXT)
      local step = math.ceil(#bomb / 2000)
      local parts = {}
      for i = 1, #bomb, step do
        parts[#parts + 1] = H.frame(i == 1 and 2 or 0, bomb:sub(i, i + step - 1),
          { rsv = i == 1 and 4 or 0, fin = i + step > #bomb })
        if i % (step * 50) == 1 then parts[#parts + 1] = H.frame(9, "p") end
      end
      r:send(table.concat(parts))
      assert.equal("message too big", closes_with(r, 1009))
    end
    assert.is_true(gettime() - t0 < 10, "took " .. (gettime() - t0) .. " s")
    -- (what inflating up to max_message takes stays mapped)
    local grown = H.rss_kib(server.pid) - rss0
    assert.is_true(grown < (MAX + 16 * MiB) / 1024, "server RSS grew by " .. grown .. " KiB")
  end)

  it("closes 1007 on invalid DEFLATE data in the very last bytes of a long fragmented message", function()
    local text = string.rep("the quick brown fox jumps over the lazy dog ", 3000)
    local good = core.deflate {}:compress(text)
    local EMPTY = "\0\0\255\255"   -- completes the empty stored block the sync flush left
    for _, bad in ipairs {
      good .. EMPTY .. "\255",                  -- then a final block of reserved type
      good:sub(1, -2),                          -- cut one byte short
      good .. EMPTY .. "\0\4\0\251\255ab",      -- a stored block shorter than it says
      good .. EMPTY .. "\3\0\255",              -- a final block, then junk
      good .. "\255",                           -- the empty block's lengths wrong
    } do
      assert.is_nil((core.deflate {}:decompress(bad)))
      local r = raw(server.port, EXT)
      r:send_frame(1, bad:sub(1, 1000), { rsv = 4, fin = false })
      r:send_frame(0, bad:sub(1001, -3), { fin = false })
      r:send_frame(0, bad:sub(-2))
      assert.equal("invalid compressed data", closes_with(r, 1007))
    end
  end)

  it("text: UTF-8 is checked after inflating, not before, whatever the fragments", function()
    local text = string.rep("żółw 😀 中文 ", 200)
    local c = core.deflate {}:compress(text)
    assert.is_false(core.utf8_valid(c))   -- the wire bytes are not UTF-8
    local r = raw(server.port, EXT)
    r:send_frame(1, c:sub(1, 7), { rsv = 4, fin = false })
    r:send_frame(0, c:sub(8, 9), { fin = false })
    r:send_frame(0, c:sub(10))
    local inflate = core.deflate {}
    local f = assert(data_frame(r))
    assert.equal(1, f.opcode)
    assert.equal(text, inflate:decompress(f.payload))
    -- an empty first fragment carries RSV1 for the rest
    r:send_frame(1, "", { rsv = 4, fin = false })
    r:send_frame(0, c:sub(1, 20), { fin = false })
    r:send_frame(0, "", { fin = false })
    r:send_frame(0, c:sub(21))
    f = assert(data_frame(r))
    assert.equal(text, inflate:decompress(f.payload))
    -- valid UTF-8 on the wire, invalid once inflated: a stored block
    local bad = "\0\2\0\253\255\192\128"   -- stored "\192\128" (overlong NUL)
    r:send_frame(1, bad, { rsv = 4 })
    assert.equal(1007, (r:read_close()))
    r:close()
  end)

  it("one connection's zlib failure leaves the others' streams, shared and own, intact", function()
    local msg = string.rep("shared stream ", 500)
    -- A and B: no context takeover (the shared inflater), C: its own, D and E fail
    local a = raw(server.port, EXT .. "; client_no_context_takeover")
    local b = raw(server.port, EXT .. "; client_no_context_takeover; server_no_context_takeover")
    local c = raw(server.port, EXT)
    local cd = core.deflate {}
    local cin = core.deflate {}
    c:send_frame(2, cd:compress(msg), { rsv = 4 })
    assert.equal(msg, cin:decompress(assert(data_frame(c)).payload))
    -- A and C: half a message each
    local ac = core.deflate {}:compress(msg .. "A")
    a:send_frame(1, ac:sub(1, 50), { rsv = 4, fin = false })
    local cc = cd:compress(msg .. "C")
    c:send_frame(1, cc:sub(1, 5), { rsv = 4, fin = false })
    -- D: invalid data; E: a bomb (both through the shared inflater); F: invalid, own
    for _, bad in ipairs {
      { EXT .. "; client_no_context_takeover", core.deflate {}:compress(msg):sub(1, -3) .. "\255\255", 1007 },
      { EXT .. "; client_no_context_takeover", core.deflate {}:compress(string.rep("\0", 2 * MAX)), 1009 },
      { EXT, "\255\255\255", 1007 },
    } do
      local e = raw(server.port, bad[1])
      e:send_frame(2, bad[2], { rsv = 4 })
      closes_with(e, bad[3])
    end
    -- B in between, whole
    local bc = core.deflate { out_reset = true }:compress(msg .. "B")
    b:send_frame(1, bc, { rsv = 4 })
    assert.equal(msg .. "B", core.deflate {}:decompress(assert(data_frame(b)).payload))
    a:send_frame(0, ac:sub(51))
    c:send_frame(0, cc:sub(6))
    assert.equal(msg .. "A", core.deflate {}:decompress(assert(data_frame(a)).payload))
    assert.equal(msg .. "C", cin:decompress(assert(data_frame(c)).payload))
    -- C keeps its context both ways: the next copy is tiny on the wire
    local again = cd:compress(msg .. "C")
    assert.is_true(#again < 100, #again)
    c:send_frame(1, again, { rsv = 4 })
    local f = assert(data_frame(c))
    assert.is_true(#f.payload < 100, #f.payload)
    assert.equal(msg .. "C", cin:decompress(f.payload))
    a:close()
    b:close()
    c:close()
  end)
end)
end

describe("permessage-deflate: zlib memory per connection (README: ~256 KiB + ~41 KiB with context takeover)", function()
  it("holds about the documented figure with takeover, little without, none before the first message", function()
    local server = deflate_server("--c threshold=0", "deflate-memory")
    finally(server.stop)
    local N = 100
    local text = string.rep("memory per connection ", 400)
    local function grow(ext, send)
      local conns = {}
      local rss0 = H.rss_kib(server.pid)
      for i = 1, N do
        conns[i] = raw(server.port, ext)
        if send then
          conns[i]:send_frame(1, core.deflate {}:compress(text), { rsv = 4 })
          assert.equal(4, assert(data_frame(conns[i])).rsv)
        end
      end
      local per = (H.rss_kib(server.pid) - rss0) / N
      for i = 1, N do conns[i]:close() end
      return per
    end
    -- warm up (the shared streams, buffers)
    grow("permessage-deflate; server_no_context_takeover; client_no_context_takeover", true)
    local idle = grow("permessage-deflate", false)
    local none = grow("permessage-deflate; server_no_context_takeover; client_no_context_takeover", true)
    local takeover = grow("permessage-deflate", true)
    local msg = string.format("KiB per connection: idle %.1f, no takeover %.1f, takeover %.1f",
      idle, none, takeover)
    assert.is_true(idle < 48, msg)
    assert.is_true(none < 48, msg)
    assert.is_true(takeover < 256 + 41 + 64, msg)
  end)
end)
