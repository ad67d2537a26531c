-- Unit tests of ws.core, the C binding, driven from Lua.
--
-- Expected values come either from the RFCs (hard-coded bytes) or from the
-- small pure-Lua oracles below (SHA-1, base64, XOR masking, frame builder,
-- UTF-8 validator), which share no code with the C module.
local core = require "ws.core"
local B = require "spec.bits"

-- tests of what only Lua 5.4 has (pending on the others)
local it54 = _VERSION == "Lua 5.4" and it or pending

-- whether this process blocks SIGUSR2 (signal 12: bit 11 of /proc/self/status SigBlk)
local function usr2_blocked()
  local f = assert(io.open("/proc/self/status"))
  local mask = assert(f:read("*a"):match("SigBlk:%s*(%x+)"))
  f:close()
  return math.floor(tonumber(mask:sub(-4), 16) / 0x800) % 2 == 1
end

---- pure-Lua oracles ------------------------------------------------------------

local O = require "spec.oracle"
local GUID = O.GUID
local sha1, b64encode, b64decode = O.sha1, O.base64, O.b64decode


local function accept_of(key) return b64encode(sha1(key .. GUID)) end

-- XOR with a 4-byte key starting at key position pos.
local xor = B.mask

local OP = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }

-- Frame builder. o: fin (default true), rsv, key (4 bytes: masked), len
-- (override the length field), form (16 or 64: force a longer length encoding).
local function build(op, payload, o)
  o = o or {}
  payload = payload or ""
  if type(op) == "string" then op = OP[op] end
  local fin = o.fin == nil or o.fin
  local m = o.key and 0x80 or 0
  local n = o.len or #payload
  local h = string.char((fin and 0x80 or 0) + (o.rsv or 0) * 16 + op)
  if o.form == 64 or n > 0xffff then
    h = h .. string.char(m + 127) .. B.u64(n)
  elseif o.form == 16 or n > 125 then
    h = h .. string.char(m + 126) .. B.u16(n)
  else
    h = h .. string.char(m + n)
  end
  if o.key then return h .. o.key .. xor(payload, o.key) end
  return h .. payload
end

local utf8_ref = O.utf8_valid

-- Encode one code point (used to build valid samples; any value accepted).
local function enc(cp)
  if cp < 0x80 then return string.char(cp) end
  local function six(shift) return 0x80 + math.floor(cp / 2 ^ shift) % 64 end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), six(0)) end
  if cp < 0x10000 then return string.char(0xE0 + math.floor(cp / 4096), six(6), six(0)) end
  return string.char(0xF0 + math.floor(cp / 262144), six(12), six(6), six(0))
end

local function bytes(...) return string.char(...) end

local function randbytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

---- reader helpers ----------------------------------------------------------------

-- One event as a comparable string.
local function ev(kind, payload, x3, x4)
  return string.format("%s %q %s %q", kind, payload, tostring(x3), tostring(x4))
end
local function err_ev(code) return "error " .. code end

-- Call next() until it needs more input or fails; append events to out.
local function drain(r, out)
  while true do
    local a, b, c, d = r:next()
    if a == nil then
      if b ~= nil then
        assert(type(b) == "string" and #b > 0, "error without a reason")
        out[#out + 1] = err_ev(c)
        return out, true
      end
      return out, false
    end
    out[#out + 1] = ev(a, b, c, d)
  end
end

-- Feed the chunks in order, draining after each; returns the events.
local function read_chunks(opts, chunks)
  local r = core.reader(opts)
  local out = {}
  for _, c in ipairs(chunks) do
    r:feed(c)
    local _, failed = drain(r, out)
    if failed then break end
  end
  return out, r
end

local function read_all(opts, data) return (read_chunks(opts, { data })) end

local SERVER, CLIENT = { role = "server" }, { role = "client" }
local KEY = B.hex "37 fa 21 3d"   -- the key of the RFC 6455 section 5.7 examples

-- A frame as the peer of a reader with that role sends it.
local function peer(role, op, payload, o)
  o = o or {}
  if role == "server" and not o.key then o.key = KEY end
  return build(op, payload, o)
end

-- The reader fails with that close code, and keeps failing the same way.
local function assert_fails(opts, data, code, before)
  local r = core.reader(opts)
  r:feed(data)
  local out, failed = drain(r, {})
  assert.is_true(failed, "expected an error, got " .. table.concat(out, "; "):sub(1, 200))
  assert.are.same(before or {}, { B.unpack(out, 1, #out - 1) })
  assert.are.equal(err_ev(code), out[#out])
  local _, why = r:next()
  for _ = 1, 2 do
    r:feed(peer(opts.role or "server", "text", "ok"))
    local a, b, c = r:next()
    assert.is_nil(a)
    assert.are.equal(why, b)
    assert.are.equal(code, c)
  end
  return why
end

---- tests -----------------------------------------------------------------------------

describe("pure-Lua oracles (sanity)", function()
  it("sha1 and base64 match known vectors", function()
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d",
      (sha1("abc"):gsub(".", function(c) return string.format("%02x", c:byte()) end)))
    assert.are.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709",
      (sha1(""):gsub(".", function(c) return string.format("%02x", c:byte()) end)))
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept_of("dGhlIHNhbXBsZSBub25jZQ=="))
    assert.are.equal("the sample nonce", b64decode("dGhlIHNhbXBsZSBub25jZQ=="))
    for n = 0, 40 do
      local s = randbytes(n)
      assert.are.equal(s, b64decode(b64encode(s)))
    end
  end)

  -- 5.4's utf8.len is strict (no surrogates, nothing past U+10FFFF)
  it54("the UTF-8 reference agrees with Lua's strict utf8.len", function()
    math.randomseed(7)
    for _ = 1, 3000 do
      local t = {}
      for i = 1, math.random(0, 6) do
        t[i] = string.char(({ math.random(0, 0x7f), math.random(0x80, 0xbf), math.random(0xc0, 0xff) })[math.random(3)])
      end
      local s = table.concat(t)
      assert.are.equal(rawget(_G, "utf8").len(s) ~= nil, utf8_ref(s), ("%q"):format(s))
    end
  end)
end)

describe("accept_key / new_key / random", function()
  it("computes the RFC 6455 section 1.3 example", function()
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", core.accept_key("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  it("matches SHA-1 + base64 for many keys", function()
    for _ = 1, 50 do
      local key = b64encode(core.random(16))
      assert.are.equal(accept_of(key), core.accept_key(key))
    end
  end)

  it("rejects keys that do not decode to exactly 16 bytes", function()
    local bad = {
      "",
      "abc",
      "dGhlIHNhbXBsZSBub25jZQ",            -- 16 bytes, padding missing
      b64encode(string.rep("x", 15)),
      b64encode(string.rep("x", 17)),
      b64encode(string.rep("x", 18)),
      "dGhlIHNhbXBsZSBub25jZR==",           -- stray bits before the padding
      "dGhlIHNhbXBsZSBub25j ZQ==",
      "dGhlIHNhbXBsZSBub25jZQ==\r\n",
      "dGhlIHNhbXBs*SBub25jZQ==",
      "====dGhlIHNhbXBsZSBub25j",
    }
    for _, key in ipairs(bad) do
      local acc, err = core.accept_key(key)
      assert.is_nil(acc, ("%q"):format(key))
      assert.is_string(err)
    end
  end)

  it("new_key gives 24 characters of base64 for 16 fresh bytes", function()
    local seen = {}
    for _ = 1, 100 do
      local key = core.new_key()
      assert.are.equal(24, #key)
      local raw = b64decode(key)
      assert.are.equal(16, raw and #raw)
      assert.are.equal(key, b64encode(raw))
      assert.is_nil(seen[key])
      seen[key] = true
      assert.are.equal(accept_of(key), core.accept_key(key))
    end
  end)

  it("random(n) returns n bytes, different each call", function()
    for _, n in ipairs { 0, 1, 4, 16, 1000, 65536 } do
      assert.are.equal(n, #core.random(n))
    end
    assert.are_not.equal(core.random(32), core.random(32))
    -- all byte values show up in a large sample (not, e.g., only ASCII)
    local s, seen, count = core.random(65536), {}, 0
    for i = 1, #s do
      local b = s:byte(i)
      if not seen[b] then seen[b] = true; count = count + 1 end
    end
    assert.are.equal(256, count)
  end)

  it("random raises for sizes out of range", function()
    assert.has_error(function() core.random(-1) end)
    assert.has_error(function() core.random(65537) end)
    assert.has_error(function() core.random("x") end)
  end)
end)

describe("frame() and the reader on the RFC 6455 section 5.7 examples", function()
  local HELLO_UNMASKED = bytes(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f)
  local HELLO_MASKED = bytes(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58)
  local HEL = bytes(0x01, 0x03, 0x48, 0x65, 0x6c)
  local LO = bytes(0x80, 0x02, 0x6c, 0x6f)
  local PING = bytes(0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f)
  local PONG_MASKED = bytes(0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58)

  it("single-frame unmasked text", function()
    assert.are.equal(HELLO_UNMASKED, core.frame("Hello", "text"))
    assert.are.same({ ev("text", "Hello") }, read_all(CLIENT, HELLO_UNMASKED))
  end)

  it("checks a text payload's UTF-8 when asked (6th argument), and only then", function()
    assert.same({ nil, "invalid utf-8" }, { core.frame("\255", "text", true, false, 0, true) })
    assert.same({ nil, "invalid utf-8" }, { core.frame("ok\237\160\128", "text", true, KEY, 0, true) })
    assert.are.equal(HELLO_UNMASKED, core.frame("Hello", "text", true, false, 0, true))
    assert.are.equal(bytes(0x81, 0x01, 0xff), core.frame("\255", "text"))           -- not asked
    assert.are.equal(bytes(0x82, 0x01, 0xff), core.frame("\255", "binary", true, false, 0, true))
  end)

  it("a frame buffer holds frames as frame() encodes them, and gives them up as one string", function()
    local fb = core.framebuf()
    assert.is_nil(fb:take())                                  -- nothing added
    assert.equal(7, fb:add("Hello", "text"))
    assert.equal(11, fb:add("Hello", "text", true, KEY))     -- masked with a given key
    assert.same({ nil, "invalid utf-8" }, { fb:add("\255", "text", true, false, 0, true) })
    assert.equal(3, fb:add("\255", "binary", true, false, 0, true))
    local big = string.rep("x", 70000)                        -- grows past the first 4 KiB
    assert.equal(70010, fb:add(big, "binary"))
    assert.equal(7 + 11 + 3 + 70010, fb:size())
    local want = HELLO_UNMASKED .. HELLO_MASKED .. core.frame("\255", "binary") .. core.frame(big, "binary")
    assert.equal(want, fb:take())
    assert.same({ 0 }, { fb:size() })
    assert.is_nil(fb:take())                                  -- taken once
    -- masked with drawn keys (a client's) and compressed: a reader reads them back
    local z = core.deflate {}
    fb:add("one", "text", true, true)
    fb:add("two", "text", true, true, z)
    local r = core.reader { role = "server", rsv_allowed = 4, deflate = core.deflate {} }
    r:feed(fb:take())
    assert.same({ "text", "one" }, { r:next() })
    assert.same({ "text", "two" }, { r:next() })             -- inflated by the reader
    assert.matches("^ws.framebuf %(0 bytes%)", tostring(fb))
    assert.has_error(function() fb.add({}, "x", "text") end)
  end)

  it("single-frame masked text", function()
    assert.are.equal(HELLO_MASKED, core.frame("Hello", "text", true, KEY))
    assert.are.same({ ev("text", "Hello") }, read_all(SERVER, HELLO_MASKED))
  end)

  it("fragmented unmasked text", function()
    assert.are.equal(HEL, core.frame("Hel", "text", false))
    assert.are.equal(LO, core.frame("lo", "continuation", true))
    assert.are.same({ ev("text", "Hello") }, read_all(CLIENT, HEL .. LO))
    -- no event until the final fragment
    assert.are.same({}, read_all(CLIENT, HEL))
  end)

  it("unmasked ping and masked pong", function()
    assert.are.equal(PING, core.frame("Hello", "ping"))
    assert.are.equal(PONG_MASKED, core.frame("Hello", "pong", true, KEY))
    assert.are.same({ ev("ping", "Hello") }, read_all(CLIENT, PING))
    assert.are.same({ ev("pong", "Hello") }, read_all(SERVER, PONG_MASKED))
  end)

  it("256-byte binary: 16-bit length", function()
    local p = randbytes(256)
    local f = core.frame(p, "binary")
    assert.are.equal(bytes(0x82, 0x7E, 0x01, 0x00), f:sub(1, 4))
    assert.are.equal(p, f:sub(5))
    assert.are.same({ ev("binary", p) }, read_all(CLIENT, f))
  end)

  it("64 KiB binary: 64-bit length", function()
    local p = randbytes(65536)
    local f = core.frame(p, "binary")
    assert.are.equal(bytes(0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0), f:sub(1, 10))
    assert.are.equal(p, f:sub(11))
    assert.are.same({ ev("binary", p) }, read_all(CLIENT, f))
  end)
end)

describe("frame() encoding", function()
  it("encodes every kind name and numeric opcode", function()
    for name, op in pairs(OP) do
      assert.are.equal(string.char(0x80 + op, 1) .. "x", core.frame("x", name))
      assert.are.equal(string.char(0x80 + op, 1) .. "x", core.frame("x", op))
    end
    -- reserved opcodes can be produced numerically (to test peers)
    assert.are.equal(bytes(0x83, 0), core.frame("", 3))
    assert.are.equal(bytes(0x8f, 0), core.frame("", 15))
  end)

  it("sets fin and rsv bits", function()
    assert.are.equal(bytes(0x01, 0), core.frame("", "text", false))
    assert.are.equal(bytes(0x81, 0), core.frame("", "text", true))
    for rsv = 0, 7 do
      assert.are.equal(string.char(0x80 + rsv * 16 + 2, 0), core.frame("", "binary", true, false, rsv))
      assert.are.equal(string.char(rsv * 16 + 1, 0), core.frame("", "text", false, false, rsv))
    end
  end)

  it("treats an explicit nil fin as the default (true)", function()
    assert.are.equal(bytes(0x81, 1) .. "x", core.frame("x", "text", nil))
    assert.are.equal(build("text", "x", { key = KEY }), core.frame("x", "text", nil, KEY))
  end)

  it("with a given key, equals the pure-Lua builder", function()
    for _, n in ipairs { 0, 1, 3, 4, 5, 125, 126, 127, 300, 65535, 65536 } do
      local p = randbytes(n)
      local key = randbytes(4)
      assert.are.equal(build("binary", p, { key = key }), core.frame(p, "binary", true, key))
    end
  end)

  describe("length boundaries round-trip through the reader", function()
    for _, n in ipairs { 0, 1, 125, 126, 127, 65535, 65536, 70000 } do
      it(n .. " bytes", function()
        local p = randbytes(n)
        local hl = n < 126 and 2 or n < 65536 and 4 or 10

        -- server to client: unmasked, minimal length encoding
        local f = core.frame(p, "binary")
        assert.are.equal(build("binary", p), f)
        assert.are.equal(hl + n, #f)
        assert.are.same({ ev("binary", p) }, read_all(CLIENT, f))

        -- client to server: mask bit set, a fresh key per frame
        local m1, m2 = core.frame(p, "binary", true, true), core.frame(p, "binary", true, true)
        assert.are.equal(hl + 4 + n, #m1)
        assert.are.equal(f:byte(1), m1:byte(1))
        assert.are.equal(f:byte(2) + 0x80, m1:byte(2))
        assert.are.equal(f:sub(3, hl), m1:sub(3, hl))
        local k1, k2 = m1:sub(hl + 1, hl + 4), m2:sub(hl + 1, hl + 4)
        assert.are_not.equal(k1, k2)
        assert.are.equal(p, xor(m1:sub(hl + 5), k1))
        assert.are.equal(p, xor(m2:sub(hl + 5), k2))
        assert.are.same({ ev("binary", p), ev("binary", p) }, read_all(SERVER, m1 .. m2))
      end)
    end
  end)
end)

describe("reader: input split anywhere gives the same events", function()
  -- A stream exercising every path: text, 16-bit and (non-minimal) 64-bit
  -- lengths, a fragmented text message with control frames in between and
  -- fragment boundaries inside multi-byte characters, empty frames, a full
  -- 125-byte ping, and a close.
  local bin200 = {}
  for i = 1, 200 do bin200[i] = string.char(i - 1) end
  bin200 = table.concat(bin200)
  local ping125 = string.rep("p", 125)

  local function stream(role)
    local k = { "\1\2\3\4", B.hex "ff 00 aa 55", KEY, "\0\0\0\0" }
    local i = 0
    local function f(op, payload, o)
      o = o or {}
      i = i + 1
      if role == "server" then o.key = k[i % 4 + 1] end
      return build(op, payload, o)
    end
    return table.concat {
      f("text", "Hello, world"),
      f("binary", bin200),
      f("text", "H\195", { fin = false }),
      f("ping", "p1"),
      f("continuation", "\169llo w", { fin = false }),
      f("pong", ""),
      f("continuation", "\195\182rld \240\159", { fin = false }),
      f("continuation", "\152\128!"),
      f("binary", "abcde", { form = 64 }),
      f("text", ""),
      f("ping", ping125),
      f("binary", "", { fin = false }),
      f("continuation", "xyz", { form = 16 }),
      f("close", "\003\232bye"),
    }
  end

  local expected = {
    ev("text", "Hello, world"),
    ev("binary", bin200),
    ev("ping", "p1"),
    ev("pong", ""),
    ev("text", "H\195\169llo w\195\182rld \240\159\152\128!"),
    ev("binary", "abcde"),
    ev("text", ""),
    ev("ping", ping125),
    ev("binary", "xyz"),
    ev("close", "\003\232bye", 1000, "bye"),
  }

  for _, role in ipairs { "server", "client" } do
    local opts = { role = role }
    local s = stream(role)

    describe(role .. " role", function()
      it("whole stream in one chunk: several events per feed", function()
        assert.are.same(expected, read_all(opts, s))
        -- an event stops early; the rest of the chunk waits in the reader
        local r = core.reader(opts)
        r:feed(s)
        assert.are.equal(#s, r:pending())
        assert.are.equal("text", (r:next()))
        assert.are.equal(#s - #build("text", "Hello, world", role == "server" and { key = KEY } or nil),
          r:pending())
        -- feeding more while input is pending keeps both, in order
        r:feed(peer(role, "binary", "tail"))
        local out = drain(r, { ev("text", "Hello, world") })
        local want = { B.unpack(expected) }
        want[#want + 1] = ev("binary", "tail")
        assert.are.same(want, out)
        assert.are.equal(0, r:pending())
      end)

      it("split into two chunks at every byte position", function()
        for cut = 0, #s do
          local got = read_chunks(opts, { s:sub(1, cut), s:sub(cut + 1) })
          assert.are.same(expected, got, "cut at " .. cut)
        end
      end)

      it("fed one byte at a time", function()
        local chunks = {}
        for i = 1, #s do chunks[i] = s:sub(i, i) end
        assert.are.same(expected, read_chunks(opts, chunks))
      end)

      it("split into three chunks at many position pairs", function()
        for a = 0, #s, 7 do
          for b = a, #s, 11 do
            local got = read_chunks(opts, { s:sub(1, a), s:sub(a + 1, b), s:sub(b + 1) })
            assert.are.same(expected, got, "cuts at " .. a .. ", " .. b)
          end
        end
      end)
    end)
  end

  it("unmasks payloads at every alignment in the input and the message buffer", function()
    -- a ping of 0..7 bytes in front shifts where the payload starts in the
    -- chunk; a first fragment of 0..7 bytes shifts where the rest is stored
    local p = randbytes(100)
    for shift = 0, 7 do
      for split = 0, 7 do
        local key = randbytes(4)
        local s = build("ping", string.rep("z", shift), { key = KEY })
          .. build("binary", p:sub(1, split), { key = key, fin = false })
          .. build("continuation", p:sub(split + 1), { key = key:reverse() })
        assert.are.same({ ev("ping", string.rep("z", shift)), ev("binary", p) }, read_all(SERVER, s))
      end
    end
  end)
end)

describe("reader: protocol violations give the right close code", function()
  local function sf(op, payload, o) return peer("server", op, payload, o) end
  local function cf(op, payload, o) return peer("client", op, payload, o) end

  it("reserved opcodes 3-7 and 11-15: 1002", function()
    for _, op in ipairs { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 } do
      assert_fails(SERVER, sf(op, "x"), 1002)
      assert_fails(CLIENT, cf(op, ""), 1002)
    end
  end)

  it("RSV bits without an extension: 1002", function()
    for _, rsv in ipairs { 1, 2, 4, 7 } do
      assert_fails(SERVER, sf("text", "x", { rsv = rsv }), 1002)
      assert_fails(SERVER, sf("binary", "x", { rsv = rsv }), 1002)
      assert_fails(SERVER, sf("ping", "x", { rsv = rsv }), 1002)
      assert_fails(CLIENT, cf("text", "x", { rsv = rsv }), 1002)
    end
  end)

  it("RSV1 allowed by rsv_allowed=4 on a message's first frame only", function()
    local opts = { role = "server", rsv_allowed = 4 }
    -- reported as the third return value
    local r = core.reader(opts)
    r:feed(sf("binary", "abc", { rsv = 4 }) .. sf("binary", "plain"))
    assert.are.same({ "binary", "abc", 4 }, { r:next() })
    assert.are.same({ "binary", "plain" }, { r:next() })
    assert.are.same({ ev("text", "ab", 4) },
      read_all(opts, sf("text", "a", { rsv = 4, fin = false }) .. sf("continuation", "b")))
    -- RSV1 marks compressed data: text is not checked as UTF-8 here
    assert.are.same({ ev("text", B.hex "ff fe", 4) }, read_all(opts, sf("text", B.hex "ff fe", { rsv = 4 })))
    -- not on continuation frames, control frames, or other bits
    assert_fails(opts, sf("text", "a", { rsv = 4, fin = false }) .. sf("continuation", "b", { rsv = 4 }), 1002)
    assert_fails(opts, sf("text", "a", { fin = false }) .. sf("continuation", "b", { rsv = 4 }), 1002)
    assert_fails(opts, sf("ping", "", { rsv = 4 }), 1002)
    assert_fails(opts, sf("text", "a", { rsv = 2 }), 1002)
    assert_fails(opts, sf("text", "a", { rsv = 5 }), 1002)
  end)

  it("control frames: 125 bytes ok, 126 bytes 1002", function()
    for _, kind in ipairs { "ping", "pong", "close" } do
      assert_fails(SERVER, sf(kind, string.rep("a", 126)), 1002)
      assert_fails(CLIENT, cf(kind, string.rep("a", 126)), 1002)
    end
    assert.are.same({ ev("ping", string.rep("a", 125)) }, read_all(SERVER, sf("ping", string.rep("a", 125))))
    -- the length is checked on the header, before the payload arrives
    assert_fails(SERVER, sf("ping", string.rep("a", 126)):sub(1, 8), 1002)
  end)

  it("fragmented control frame: 1002", function()
    for _, kind in ipairs { "ping", "pong", "close" } do
      assert_fails(SERVER, sf(kind, "x", { fin = false }), 1002)
    end
  end)

  it("continuation with no message started: 1002", function()
    assert_fails(SERVER, sf("continuation", "x"), 1002)
    assert_fails(CLIENT, cf("continuation", "x", { fin = false }), 1002)
    -- also right after a complete message
    assert_fails(SERVER, sf("text", "a") .. sf("continuation", "x"), 1002, { ev("text", "a") })
  end)

  it("new data frame inside a fragmented message: 1002", function()
    assert_fails(SERVER, sf("text", "a", { fin = false }) .. sf("text", "b"), 1002)
    assert_fails(SERVER, sf("binary", "a", { fin = false }) .. sf("ping", "p") .. sf("binary", "b"), 1002,
      { ev("ping", "p") })
    assert_fails(CLIENT, cf("text", "a", { fin = false }) .. cf("binary", "b"), 1002)
  end)

  it("unmasked frame to a server, masked frame to a client: 1002", function()
    assert_fails(SERVER, build("text", "x"), 1002)
    assert_fails(SERVER, build("ping", ""), 1002)
    assert_fails(CLIENT, build("text", "x", { key = KEY }), 1002)
    assert_fails(CLIENT, build("close", "", { key = KEY }), 1002)
  end)

  it("64-bit length with the top bit set: 1002", function()
    local len = bytes(0x80, 0, 0, 0, 0, 0, 0, 5)
    assert_fails(SERVER, bytes(0x82, 0xFF) .. len .. KEY .. "hello", 1002)
    assert_fails(CLIENT, bytes(0x82, 0x7F) .. len .. "hello", 1002)
    -- known from the first length byte: no need to wait for the rest
    assert_fails(SERVER, bytes(0x82, 0xFF, 0x80), 1002)
    assert_fails(CLIENT, bytes(0x82, 0x7F, 0xFF), 1002)
    -- top bit clear but huge: just waits for more input
    local r = core.reader(CLIENT)
    r:feed(bytes(0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0))
    assert.are.same({}, { r:next() })
  end)

  it("max_message: exactly the limit is accepted, one byte more is 1009", function()
    local opts = { role = "server", max_message = 10 }
    local ten = "0123456789"
    assert.are.same({ ev("text", ten) }, read_all(opts, sf("text", ten)))
    assert.are.same({ ev("binary", ten) },
      read_all(opts, sf("binary", "01234", { fin = false }) .. sf("continuation", "56789")))
    assert.are.same({ ev("binary", ten) },
      read_all(opts, sf("binary", "", { fin = false }) .. sf("continuation", ten, { fin = false })
        .. sf("continuation", "")))
    -- in one frame
    assert_fails(opts, sf("text", ten .. "x"), 1009)
    -- across fragments
    assert_fails(opts, sf("binary", "01234", { fin = false }) .. sf("continuation", "56789x"), 1009)
    assert_fails(opts, sf("binary", "01234", { fin = false }) .. sf("continuation", "56789", { fin = false })
      .. sf("continuation", "x"), 1009)
    -- the limit is per message: the count starts again
    assert.are.same({ ev("text", ten), ev("text", ten) }, read_all(opts, sf("text", ten) .. sf("text", ten)))
    -- control frames are not messages
    assert.are.same({ ev("ping", string.rep("p", 125)) }, read_all(opts, sf("ping", string.rep("p", 125))))
    -- checked on the header: a huge declared length fails before its payload
    assert_fails(opts, bytes(0x82, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0) .. KEY, 1009)
    assert_fails({ role = "client", max_message = 10 }, bytes(0x82, 11), 1009)
  end)

  it("new_reader(role, max_message, rsv_allowed, deflate): reader's options as arguments, checked alike", function()
    local ten = "0123456789"
    local r = core.new_reader("server", 10, 0, nil)
    r:feed(sf("text", ten) .. sf("text", ten .. "x"))
    local out = drain(r, {})
    assert.are.same(ev("text", ten), out[1])
    assert.are.equal(err_ev(1009), out[#out])
    r = core.new_reader("client")
    r:feed(build("binary", "abc"))
    assert.are.same({ ev("binary", "abc") }, (drain(r, {})))
    assert.has_error(function() core.new_reader("peer") end)
    assert.has_error(function() core.new_reader("server", -1) end)
    assert.has_error(function() core.new_reader("server", 0, 8) end)
  end)

  it("no max_message: no limit", function()
    local p = randbytes(70000)
    assert.are.same({ ev("binary", p) }, read_all({ role = "client", max_message = 0 }, build("binary", p)))
  end)

  it("close payload of 1 byte: 1002", function()
    -- 0x0F would begin a valid code (3840..4095) whatever byte followed,
    -- so only the length rule can refuse these
    assert_fails(SERVER, sf("close", "\015"), 1002)
    assert_fails(CLIENT, cf("ping", B.hex "0f a0") .. cf("close", "\015"), 1002, { ev("ping", B.hex "0f a0") })
    assert_fails(CLIENT, cf("close", "\3"), 1002)
  end)

  it("invalid close codes: 1002", function()
    for _, code in ipairs { 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535 } do
      assert_fails(SERVER, sf("close", B.u16(code)), 1002)
      assert_fails(CLIENT, cf("close", B.u16(code) .. "why"), 1002)
    end
  end)

  it("valid close codes are returned with their reason", function()
    local codes = { 1000, 1001, 1002, 1003, 3000, 3999, 4000, 4999 }
    for c = 1007, 1014 do codes[#codes + 1] = c end
    for _, code in ipairs(codes) do
      local payload = B.u16(code) .. "r\195\169ason " .. code
      assert.are.same({ ev("close", payload, code, "r\195\169ason " .. code) },
        read_all(SERVER, sf("close", payload)))
      assert.are.same({ ev("close", B.u16(code), code, "") },
        read_all(CLIENT, cf("close", B.u16(code))))
    end
  end)

  it("close reason that is not UTF-8: 1007", function()
    assert_fails(SERVER, sf("close", "\3\232bad \255"), 1007)
    assert_fails(CLIENT, cf("close", "\3\232\195"), 1007)
    assert_fails(CLIENT, cf("close", "\3\232\237\160\128"), 1007)
  end)

  it("empty close: code 1005, empty reason", function()
    assert.are.same({ ev("close", "", 1005, "") }, read_all(SERVER, sf("close", "")))
    assert.are.same({ "close", "", 1005, "" }, { (function()
      local r = core.reader(CLIENT)
      r:feed(cf("close", ""))
      return r:next()
    end)() })
  end)

  it("invalid UTF-8 in a text message: 1007", function()
    assert_fails(SERVER, sf("text", "abc\255"), 1007)
    assert_fails(CLIENT, cf("text", "abc\255"), 1007)
    -- binary is not checked
    assert.are.same({ ev("binary", "abc\255") }, read_all(SERVER, sf("binary", "abc\255")))
  end)

  it("a text message ending mid-character: 1007", function()
    assert_fails(SERVER, sf("text", "a\226\130"), 1007)
    assert_fails(CLIENT, cf("text", "a\226\130"), 1007)
    assert_fails(SERVER, sf("text", "a\226", { fin = false }) .. sf("continuation", "\130"), 1007)
    assert_fails(SERVER, sf("text", "a\240\159", { fin = false }) .. sf("ping", "") .. sf("continuation", ""),
      1007, { ev("ping", "") })
  end)

  it("a character split across fragments is valid", function()
    local euro = B.hex "e2 82 ac"
    for cut = 0, 3 do
      assert.are.same({ ev("text", "a" .. euro .. "b") },
        read_all(SERVER, sf("text", "a" .. euro:sub(1, cut), { fin = false })
          .. sf("continuation", euro:sub(cut + 1) .. "b")))
    end
  end)

  it("bad UTF-8 fails as soon as it arrives, before the final fragment", function()
    assert_fails(SERVER, sf("text", "ok\192", { fin = false }), 1007)
    assert_fails(SERVER, sf("text", "ok", { fin = false }) .. sf("continuation", B.hex "ed a0", { fin = false }), 1007)
    -- mid-frame: only part of the payload has arrived
    assert_fails(CLIENT, cf("text", "abc\255" .. string.rep("x", 100)):sub(1, 10), 1007)
  end)

  it("after an error next() keeps returning it, and tostring shows it", function()
    local r = core.reader(SERVER)
    r:feed(sf("text", "a") .. sf("continuation", "x") .. sf("text", "b"))
    assert.are.same({ "text", "a" }, { r:next() })
    local a, why, code = r:next()
    assert.is_nil(a)
    assert.are.equal(1002, code)
    for _ = 1, 3 do
      assert.are.same({ nil, why, 1002 }, { r:next() })
    end
    r:feed(sf("text", "more"))
    assert.are.same({ nil, why, 1002 }, { r:next() })
    assert.matches("failed: " .. why, tostring(r), 1, true)
  end)
end)

describe("UTF-8 validation (utf8_valid and text messages)", function()
  local valid = {
    "", "a", "hello world", "\0",
    enc(0x7F), enc(0x80), enc(0x7FF), enc(0x800), enc(0xFFFF), enc(0x10000), enc(0x10FFFF),
    enc(0xD7FF), enc(0xE000), enc(0xFFFD), enc(0x1F600),
    B.hex "c2 80", B.hex "df bf", B.hex "e0 a0 80", B.hex "ed 9f bf", B.hex "ee 80 80", B.hex "ef bf bf",
    B.hex "f0 90 80 80", B.hex "f4 8f bf bf", B.hex "f3 bf bf bf",
    "caf\195\169 \226\130\172 \240\159\152\128 end",
  }
  local invalid = {
    B.hex "c0 80", B.hex "c1 bf",                          -- overlong 2-byte
    B.hex "e0 80 80", B.hex "e0 9f bf",                  -- overlong 3-byte
    B.hex "f0 80 80 80", B.hex "f0 8f bf bf",          -- overlong 4-byte
    B.hex "ed a0 80", B.hex "ed bf bf", B.hex "ed af bf ed b0 80", -- surrogates (and a pair)
    B.hex "f4 90 80 80",                              -- U+110000
    "\194", B.hex "e2 82", B.hex "f0 9f 98",              -- truncated at the end
    "a\194", "ab\226\130", "abc\240\159\152",
    "\194a", "\226\130a", "\240\159\152a",           -- truncated before ASCII
    B.hex "c2 c2 80",                                  -- lead where a continuation belongs
    "\254", "\255", B.hex "fe ff",
  }
  for b = 0xF5, 0xFF do invalid[#invalid + 1] = string.char(b, 0x80, 0x80, 0x80) end
  for b = 0x80, 0xBF do
    invalid[#invalid + 1] = string.char(b)
    invalid[#invalid + 1] = "x" .. string.char(b) .. "y"
  end

  it("the samples are classified right by the reference", function()
    for _, s in ipairs(valid) do assert.is_true(utf8_ref(s), ("%q"):format(s)) end
    for _, s in ipairs(invalid) do assert.is_false(utf8_ref(s), ("%q"):format(s)) end
  end)

  it("utf8_valid accepts the valid samples and rejects the invalid ones", function()
    for _, s in ipairs(valid) do assert.is_true(core.utf8_valid(s), ("%q"):format(s)) end
    for _, s in ipairs(invalid) do assert.is_false(core.utf8_valid(s), ("%q"):format(s)) end
  end)

  it("every code point boundary region round-trips", function()
    -- all code points in windows around each boundary, in one string
    local t = {}
    for _, base in ipairs { 0, 0x7F, 0x7FF, 0xFFFF, 0xD7FF, 0xDFFF, 0x10FFFF - 8 } do
      for cp = math.max(0, base - 8), math.min(0x10FFFF, base + 8) do
        if cp < 0xD800 or cp > 0xDFFF then t[#t + 1] = enc(cp) end
      end
    end
    local s = table.concat(t)
    assert.is_true(core.utf8_valid(s))
    for cp = 0xD800, 0xDFFF, 0x3F do assert.is_false(core.utf8_valid("ab" .. enc(cp) .. "cd")) end
    assert.is_false(core.utf8_valid(enc(0xDFFF)))
  end)

  it("text messages split at every position across two fragments", function()
    local function check(s, ok)
      for cut = 0, #s do
        for _, role in ipairs { "server", "client" } do
          local data = peer(role, "text", s:sub(1, cut), { fin = false }) .. peer(role, "continuation", s:sub(cut + 1))
          local got = read_all({ role = role }, data)
          local want = ok and ev("text", s) or err_ev(1007)
          assert.are.same({ want }, got, ("%s %q cut at %d"):format(role, s, cut))
        end
      end
    end
    for _, s in ipairs(valid) do check(s, true) end
    for _, s in ipairs(invalid) do check(s, false) end
  end)

  it("agrees with the reference on thousands of random strings", function()
    math.randomseed(20240601)
    -- mostly well-formed pieces, some near-miss bytes, so both outcomes occur
    local pieces = {
      function() return string.char(math.random(0x20, 0x7E)) end,
      function() return enc(math.random(0x80, 0x7FF)) end,
      function() return enc(math.random(0x800, 0xFFFF)) end,
      function() return enc(math.random(0x10000, 0x10FFFF)) end,
      function() return string.char(math.random(0x80, 0xFF)) end,
      function() return string.char(math.random(0xC0, 0xC1), math.random(0x80, 0xBF)) end,
      function() return string.char(0xE0, math.random(0x80, 0xBF), math.random(0x80, 0xBF)) end,
      function() return string.char(0xED, math.random(0x80, 0xBF), math.random(0x80, 0xBF)) end,
      function() return string.char(0xF4, math.random(0x80, 0x9F), 0x80, 0x80) end,
    }
    local nvalid, ninvalid = 0, 0
    for i = 1, 4000 do
      local t = {}
      if i % 4 == 0 then
        t[1] = randbytes(math.random(0, 12))
      else
        for j = 1, math.random(0, 20) do
          local k = math.random() < 0.9 and math.random(1, 4) or math.random(5, #pieces)
          t[j] = pieces[k]()
        end
      end
      local s = table.concat(t)
      -- a truncated tail now and then
      if i % 7 == 0 and #s > 0 then s = s:sub(1, #s - 1) end
      local want = utf8_ref(s)
      assert.are.equal(want, core.utf8_valid(s), ("%q"):format(s))
      if want then nvalid = nvalid + 1 else ninvalid = ninvalid + 1 end
    end
    assert.is_true(nvalid > 300 and ninvalid > 300, nvalid .. " valid, " .. ninvalid .. " invalid")
  end)

  it("long mostly-ASCII strings: a bad byte anywhere is found (ASCII fast path)", function()
    local ascii = string.rep("abcdefgh", 12) -- 96 bytes
    local bad = { "\255", "\128", B.hex "c0 80", B.hex "ed a0 80", B.hex "f4 90 80 80", "\195" }
    for pos = 0, #ascii do
      local pre, post = ascii:sub(1, pos), ascii:sub(pos + 1)
      assert.is_true(core.utf8_valid(pre .. B.hex "c3 a9" .. post))
      assert.is_true(core.utf8_valid(pre .. B.hex "f0 9f 98 80" .. post))
      for _, b in ipairs(bad) do
        assert.is_false(core.utf8_valid(pre .. b .. post), ("%q at %d"):format(b, pos))
      end
      -- truncated at the very end
      assert.is_false(core.utf8_valid(pre .. B.hex "e2 82"))
    end
    -- and through the reader, a 1 KiB text with one bad byte per position class
    for pos = 1000, 1016 do
      local good = string.rep("x", pos) .. "z" .. string.rep("y", 23)
      local broken = string.rep("x", pos) .. "\255" .. string.rep("y", 23)
      assert_fails(SERVER, peer("server", "text", broken), 1007)
      assert_fails(CLIENT, peer("client", "text", broken), 1007)
      assert.are.same({ ev("text", good) }, read_all(SERVER, peer("server", "text", good)))
    end
  end)
end)

describe("mask()", function()
  it("equals the pure-Lua XOR for every length 0..300 and key position 0..3", function()
    local data, key = randbytes(300), randbytes(4)
    for n = 0, 300 do
      local d = data:sub(1, n)
      for pos = 0, 3 do
        assert.are.equal(xor(d, key, pos), core.mask(d, key, pos), "len " .. n .. " pos " .. pos)
      end
      assert.are.equal(xor(d, key, 0), core.mask(d, key))
    end
  end)

  it("is its own inverse", function()
    for _, n in ipairs { 0, 1, 7, 8, 9, 31, 32, 33, 1000, 65536 } do
      local d, key = randbytes(n), randbytes(4)
      for pos = 0, 3 do
        local m = core.mask(d, key, pos)
        if n >= 16 then assert.are_not.equal(d, m) end
        assert.are.equal(d, core.mask(m, key, pos))
      end
    end
  end)

  it("substrings at offsets 0..7 of a larger string, and pieces that chain", function()
    local big, key = randbytes(200), randbytes(4)
    for off = 0, 7 do
      for _, n in ipairs { 0, 1, 5, 8, 13, 31, 32, 33, 64, 100, 150 } do
        local d = big:sub(off + 1, off + n)
        assert.are.equal(xor(d, key), core.mask(d, key))
        -- masking in pieces, continuing at the key position where the last piece ended
        local whole = core.mask(big:sub(1, off + n), key)
        assert.are.equal(whole, core.mask(big:sub(1, off), key) .. core.mask(d, key, off % 4))
      end
    end
  end)

  it("raises for a bad key or position", function()
    assert.has_error(function() core.mask("abc", "123") end)
    assert.has_error(function() core.mask("abc", "12345") end)
    assert.has_error(function() core.mask("abc", "1234", 4) end)
    assert.has_error(function() core.mask("abc", "1234", -1) end)
    assert.has_error(function() core.mask({}, "1234") end)
  end)
end)

describe("parse_request / parse_response / build_response", function()
  local function head(lines) return table.concat(lines, "\r\n") .. "\r\n\r\n" end
  local function req_with(extra_lines, first)
    local lines = { first or "GET /chat HTTP/1.1", "Host: server.example.com" }
    for _, l in ipairs(extra_lines) do lines[#lines + 1] = l end
    return head(lines)
  end
  local GOOD = { "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13" }
  local function without(name, add)
    local t = {}
    for _, l in ipairs(GOOD) do if not l:find("^" .. name .. ":") then t[#t + 1] = l end end
    for _, l in ipairs(add or {}) do t[#t + 1] = l end
    return t
  end

  it("parses the RFC 6455 section 1.3 request", function()
    local req = assert(core.parse_request(head {
      "GET /chat HTTP/1.1",
      "Host: server.example.com",
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Origin: http://example.com",
      "Sec-WebSocket-Protocol: chat, superchat",
      "Sec-WebSocket-Version: 13",
    }))
    assert.are.equal("GET", req.method)
    assert.are.equal("/chat", req.target)
    assert.are.equal("/chat", req.path)
    assert.is_nil(req.query)
    assert.are.equal("1.1", req.version)
    assert.are.same({
      host = "server.example.com",
      upgrade = "websocket",
      connection = "Upgrade",
      ["sec-websocket-key"] = "dGhlIHNhbXBsZSBub25jZQ==",
      origin = "http://example.com",
      ["sec-websocket-protocol"] = "chat, superchat",
      ["sec-websocket-version"] = "13",
    }, req.headers)
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", req.ws_accept)
    assert.is_nil(req.ws_status)
    assert.is_nil(req.ws_error)
  end)

  it("header names are case-insensitive and lower-cased; repeats are joined", function()
    local req = assert(core.parse_request(req_with {
      "uPgRaDe: WebSocket", "CONNECTION: keep-alive", "connection: UPGRADE",
      "SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==", "Sec-Websocket-Version:13",
      "X-Thing:   padded value \t", "x-thing: two",
    }))
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", req.ws_accept)
    assert.are.equal("WebSocket", req.headers.upgrade)
    assert.are.equal("keep-alive, UPGRADE", req.headers.connection)
    assert.are.equal("13", req.headers["sec-websocket-version"])
    assert.are.equal("padded value, two", req.headers["x-thing"])
    assert.is_nil(req.headers.Upgrade)
  end)

  it("splits path and query", function()
    local function target(t)
      return assert(core.parse_request(req_with(GOOD, "GET " .. t .. " HTTP/1.1")))
    end
    local r = target("/chat?room=1&x=2")
    assert.are.same({ "/chat?room=1&x=2", "/chat", "room=1&x=2" }, { r.target, r.path, r.query })
    r = target("/a/b?")
    assert.are.same({ "/a/b", "" }, { r.path, r.query })
    r = target("/?a?b")
    assert.are.same({ "/", "a?b" }, { r.path, r.query })
    r = target("/plain")
    assert.are.same({ "/plain" }, { r.path, r.query })
    -- the absolute form: its path, and its authority as the host (RFC 9112
    -- section 3.2.2: the Host header the request still needs is ignored)
    r = target("http://example.com:8080/chat?room=1")
    assert.are.same({ "http://example.com:8080/chat?room=1", "/chat", "room=1", "example.com:8080" },
      { r.target, r.path, r.query, r.headers.host })
    assert.is_string(r.ws_accept)
    r = target("wss://example.com")
    assert.are.same({ "/", "example.com" }, { r.path, r.headers.host })
    r = target("HTTP://example.com?q")
    assert.are.same({ "/", "q" }, { r.path, r.query })
    -- the origin form keeps the Host header
    assert.are_not.equal("example.com", target("/x").headers.host)
    for _, bad in ipairs { "http://u@example.com/x", "http:///x", "http://", "http://h#f/x", "http://[/x",
                           "http://h:8x/", "http://h%zz/" } do
      local req, st, err = core.parse_request(req_with(GOOD, "GET " .. bad .. " HTTP/1.1"))
      assert.is_nil(req, bad)
      assert.are.same({ 400, "malformed request target" }, { st, err })
    end
  end)

  it("a valid head that is not a valid upgrade gives ws_status and ws_error", function()
    local function status(h)
      local req, st, err = core.parse_request(h)
      assert.is_table(req, tostring(st) .. " " .. tostring(err))
      assert.is_nil(req.ws_accept)
      assert.is_string(req.ws_error)
      return req.ws_status
    end
    assert.are.equal(405, status(req_with(GOOD, "POST /chat HTTP/1.1")))
    assert.are.equal(405, status(req_with(GOOD, "get /chat HTTP/1.1")))
    assert.are.equal(426, status(req_with(without("Sec%-WebSocket%-Version", { "Sec-WebSocket-Version: 8" }))))
    assert.are.equal(426, status(req_with(without("Sec%-WebSocket%-Version"))))
    assert.are.equal(426, status(req_with(without("Sec%-WebSocket%-Version", { "Sec-WebSocket-Version: 13, 8" }))))
    assert.are.equal(426, status(req_with(without("Sec%-WebSocket%-Version",
      { "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13" }))))
    assert.are.equal(400, status(req_with(without("Sec%-WebSocket%-Key"))))
    for _, key in ipairs { "abc", b64encode(string.rep("k", 15)), b64encode(string.rep("k", 17)), "" } do
      assert.are.equal(400, status(req_with(without("Sec%-WebSocket%-Key", { "Sec-WebSocket-Key: " .. key }))))
    end
    assert.are.equal(400, status(req_with(without("Sec%-WebSocket%-Key",
      { "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" }))))
    assert.are.equal(400, status(req_with(without("Upgrade"))))
    assert.are.equal(400, status(req_with(without("Upgrade", { "Upgrade: h2c" }))))
    assert.are.equal(400, status(req_with(without("Connection"))))
    assert.are.equal(400, status(req_with(without("Connection", { "Connection: keep-alive" }))))
    assert.are.equal(400, status(req_with(GOOD, "GET /chat HTTP/1.0")))
    assert.are.equal(400, status(head { "GET /chat HTTP/1.1", B.unpack(GOOD) }))  -- no Host
    assert.are.equal(400, status(req_with(without("X", { "Host: again" }))))
    -- RFC 9112 section 3.2: a Host value that is no uri-host [":" port] is a 400 too
    for _, bad in ipairs { "a b", "evil.com/x", "user@h", "h#f", "h:80x", "[::1", "h%zz" } do
      local req = core.parse_request(head { "GET /chat HTTP/1.1", "Host: " .. bad, B.unpack(GOOD) })
      assert.are.same({ 400, "invalid host header" }, { req.ws_status, req.ws_error }, bad)
    end
    for _, good in ipairs { "", "h:80", "[::1]:8080", "127.0.0.1", "xn--caf-dma.example" } do
      assert.is_string(core.parse_request(head { "GET /chat HTTP/1.1", "Host: " .. good, B.unpack(GOOD) }).ws_accept, good)
    end
    -- token lists: Upgrade among others works
    local req = core.parse_request(req_with(without("Connection", { "Connection: keep-alive, Upgrade" })))
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", req.ws_accept)
    req = core.parse_request(req_with(without("Upgrade", { "Upgrade: foo/1, websocket" })))
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", req.ws_accept)
  end)

  it("64 headers are fine, 65 give 431", function()
    local lines = without("X")
    while #lines < 63 do lines[#lines + 1] = "X-Filler-" .. #lines .. ": v" end
    local req = core.parse_request(req_with(lines))   -- 63 + Host = 64
    assert.is_table(req)
    assert.is_string(req.ws_accept)
    lines[#lines + 1] = "X-One-Too-Many: v"
    local none, status, err = core.parse_request(req_with(lines))
    assert.is_nil(none)
    assert.are.equal(431, status)
    assert.is_string(err)
  end)

  it("malformed heads give nil, 400", function()
    local good = req_with(GOOD)
    local bad = {
      "",
      "GET /chat HTTP/1.1",                                  -- no CRLF at all
      "GET /chat HTTP/1.1\r\nHost: x\r\n",                   -- no empty line
      (good:gsub("\r\n", "\n")),                             -- bare LF
      (good:gsub("\r\nUpgrade", "\rUpgrade")),               -- bare CR
      (good:gsub("Upgrade:", "Upgrade :")),                  -- space before colon
      (good:gsub("\r\nUpgrade", "\r\n Upgrade")),            -- obsolete folding
      (good:gsub("Upgrade: websocket", "Upgrade websocket")), -- no colon
      (good:gsub("Upgrade:", ":")),                          -- empty name
      (good:gsub("Upgrade: websocket", "Upgrade: web\1socket")), -- control in value
      (good:gsub("^GET ", "GET  ")),                         -- double space
      (good:gsub("^GET ", " GET ")),
      (good:gsub("^GET /chat", "GET")),                      -- no target
      (good:gsub(" HTTP/1.1", "")),                          -- no version
      (good:gsub("HTTP/1.1", "http/1.1")),
      (good:gsub("HTTP/1.1", "HTTP/1.1 ")),
      (good:gsub("HTTP/1.1", "HTTP/11")),
      (good:gsub("/chat", "/ch\127at")),
    }
    for _, h in ipairs(bad) do
      local req, status, err = core.parse_request(h)
      assert.is_nil(req, ("%q"):format(h))
      assert.are.equal(400, status, ("%q"):format(h))
      assert.is_string(err)
    end
    -- a well-formed but unsupported version is 505
    local req, status = core.parse_request((good:gsub("HTTP/1.1", "HTTP/2.0")))
    assert.is_nil(req)
    assert.are.equal(505, status)
    -- a later HTTP/1 minor is read as 1.1, and empty lines before the request line are skipped
    req = assert(core.parse_request((good:gsub("HTTP/1.1", "HTTP/1.7"))))
    assert.are.equal("1.1", req.version)
    assert.is_string(req.ws_accept)
    assert.is_string(assert(core.parse_request("\r\n" .. good)).ws_accept)
  end)

  it("stops at the empty line: bytes after it are not parsed", function()
    local req = core.parse_request(req_with(GOOD) .. "\129\133garbage\r\n\n")
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", req.ws_accept)
  end)

  local RES = head {
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    "Sec-WebSocket-Protocol: chat",
  }
  local KEY16 = "dGhlIHNhbXBsZSBub25jZQ=="

  it("parse_response without a key: just parses", function()
    local res = assert(core.parse_response(RES))
    assert.are.equal(101, res.status)
    assert.are.equal("Switching Protocols", res.reason)
    assert.are.same({
      upgrade = "websocket", connection = "Upgrade",
      ["sec-websocket-accept"] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ["sec-websocket-protocol"] = "chat",
    }, res.headers)
    local r404 = assert(core.parse_response("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    assert.are.equal(404, r404.status)
    assert.are.equal("Not Found", r404.reason)
    assert.are.equal("0", r404.headers["content-length"])
    local noreason = assert(core.parse_response("HTTP/1.1 200\r\n\r\n"))
    assert.are.same({ 200, "" }, { noreason.status, noreason.reason })
  end)

  it("parse_response with a key checks the handshake", function()
    assert.is_table(core.parse_response(RES, KEY16))
    -- frames right after the head are not looked at
    assert.is_table(core.parse_response(RES .. "\129\005Hello", KEY16))
    local function rejects(h, why)
      local none, err, res = core.parse_response(h, KEY16)
      assert.is_nil(none, why)
      assert.is_string(err, why)
      assert.is_table(res, why)
      return res
    end
    local other = core.new_key()
    local none, err, res = core.parse_response(RES, other)   -- wrong accept for this key
    assert.is_nil(none)
    assert.is_string(err)
    assert.are.equal(101, res.status)
    rejects((RES:gsub("s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=", "s3pPLMBiTxaQ9kYGzzhZRbK+xOA=")), "wrong accept")
    rejects((RES:gsub("Sec%-WebSocket%-Accept: [^\r]*\r\n", "")), "no accept")
    rejects((RES:gsub("101 Switching Protocols", "200 OK")), "status")
    rejects((RES:gsub("Upgrade: websocket", "Upgrade: h2c")), "upgrade")
    rejects((RES:gsub("Connection: Upgrade", "Connection: close")), "connection")
    rejects((RES:gsub("\r\n\r\n$", "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")), "two accepts")
    local r = assert(core.parse_response(head {
      "HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
      "Sec-WebSocket-Accept: " .. accept_of(other) }, other))
    assert.are.equal(101, r.status)
  end)

  it("parse_response replaces each obs-fold with SP (RFC 9112 section 5.2: a user agent must)", function()
    local folded = "HTTP/1.1 101 Switching Protocols\r\nUpgrade:\r\n websocket\r\n" ..
      "Connection: keep-alive,\r\n\tUpgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n \r\n" ..
      "X-Long: one \r\n\t two\r\n\r\n\129\005 \r\n x"
    local res = assert(core.parse_response(folded, KEY16))
    assert.are.same({
      upgrade = "websocket", connection = "keep-alive,   Upgrade",
      ["sec-websocket-accept"] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ["x-long"] = "one     two",
    }, res.headers)
    -- a line starting with whitespace right after the status line is no fold
    assert.is_nil(core.parse_response("HTTP/1.1 101 Switching Protocols\r\n X: y\r\n\r\n"))
    -- requests keep refusing it (400)
    assert.are.same({ nil, 400, "obsolete line folding" },
      { core.parse_request("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n") })
  end)

  it("malformed responses give nil, err", function()
    for _, h in ipairs {
      "", "HTTP/1.1 101 Switching Protocols\r\n", "HTTP/2.0 101 x\r\n\r\n", "HTTP/1.1 1011\r\n\r\n",
      "HTTP/1.1 99 x\r\n\r\n", "HTTP/1.1 600 x\r\n\r\n", "HTTP/1.1 10x x\r\n\r\n",
      "HTTP/1.1 101 ok\nUpgrade: websocket\r\n\r\n", "HTTP/1.1 101 ok\r\nUpgrade : websocket\r\n\r\n",
    } do
      local res, err, extra = core.parse_response(h, KEY16)
      assert.is_nil(res, ("%q"):format(h))
      assert.is_string(err)
      assert.is_nil(extra)
    end
    -- an HTTP/1.0 head parses (a refusal from an old server is read), but a 101 needs 1.1
    assert.are.same({ 404, "Not Found" }, { assert(core.parse_response("HTTP/1.0 404 Not Found\r\n\r\n")).status,
      core.parse_response("HTTP/1.0 404 Not Found\r\n\r\n").reason })
    local none, err, res = core.parse_response("HTTP/1.0 101 x\r\n\r\n", KEY16)
    assert.is_nil(none)
    assert.equal("http/1.1 required", err)
    assert.equal(101, res.status)
  end)

  it("build_response: a 101 with the accept and protocol that parse_response accepts", function()
    local key = core.new_key()
    local acc = core.accept_key(key)
    local r = core.build_response(acc)
    assert.matches("^HTTP/1%.1 101 [^\r\n]*\r\n", r)
    assert.truthy(r:find("\r\nSec-WebSocket-Accept: " .. acc .. "\r\n", 1, true))
    assert.is_nil(r:find("Sec-WebSocket-Protocol", 1, true))
    assert.are.equal("\r\n\r\n", r:sub(-4))
    assert.is_table(core.parse_response(r, key))

    r = core.build_response(acc, "chat")
    assert.truthy(r:find("\r\nSec-WebSocket-Protocol: chat\r\n", 1, true))
    local res = assert(core.parse_response(r, key))
    assert.are.equal("chat", res.headers["sec-websocket-protocol"])
    assert.are.equal(acc, res.headers["sec-websocket-accept"])

    r = core.build_response(acc, nil, "permessage-deflate")
    assert.truthy(r:find("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n", 1, true))
    assert.is_nil(r:find("Sec-WebSocket-Protocol", 1, true))
    assert.is_table(core.parse_response(r, key))
  end)

  it("build_response refuses CR, LF and other controls in header values", function()
    local acc = core.accept_key(core.new_key())
    assert.has_error(function() core.build_response(acc, "chat\r\nX-Evil: 1") end)
    assert.has_error(function() core.build_response(acc, "chat\n") end)
    assert.has_error(function() core.build_response(acc, "chat\r") end)
    assert.has_error(function() core.build_response(acc, "a\0b") end)
    assert.has_error(function() core.build_response(acc, "chat", "x\r\ny") end)
    assert.has_error(function() core.build_response(acc, "chat", "x\127") end)
  end)
end)

describe("new_table", function()
  it("makes an empty table that holds what it is given", function()
    local t = core.new_table(4, 64)
    assert.is_nil(next(t))
    for i = 1, 100 do t["k" .. i], t[i] = i, -i end
    assert.equal(100, #t)
    assert.equal(50, t.k50)
    assert.has_error(function() core.new_table(-1, 0) end)
    assert.has_error(function() core.new_table(0, 2 ^ 21) end)
  end)
end)

describe("close_payload", function()
  it("encodes the code big-endian, then the reason", function()
    assert.are.equal(B.hex "03 e8", core.close_payload(1000))
    assert.are.equal("\003\232bye", core.close_payload(1000, "bye"))
    assert.are.equal(B.hex "13 87", core.close_payload(4999))
    assert.are.equal("\011\184r\195\169", core.close_payload(3000, "r\195\169"))
    for _, code in ipairs { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999 } do
      local p = core.close_payload(code, "why " .. code)
      assert.are.equal(string.char(math.floor(code / 256), code % 256) .. "why " .. code, p)
      -- and the reader takes it back
      assert.are.same({ ev("close", p, code, "why " .. code) }, read_all(CLIENT, core.frame(p, "close")))
    end
  end)

  it("no code: an empty payload", function()
    assert.are.equal("", core.close_payload())
    assert.are.equal("", core.close_payload(nil))
  end)

  it("accepts a 123-byte reason, rejects 124", function()
    local p = core.close_payload(1000, string.rep("r", 123))
    assert.are.equal(125, #p)
    local none, err = core.close_payload(1000, string.rep("r", 124))
    assert.is_nil(none)
    assert.is_string(err)
  end)

  it("rejects codes that may not be sent and non-UTF-8 reasons", function()
    for _, code in ipairs { -1, 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535, 65536, 1000 + 65536 } do
      local none, err = core.close_payload(code, "x")
      assert.is_nil(none, code)
      assert.is_string(err)
    end
    for _, reason in ipairs { "\255", "ab\195", B.hex "ed a0 80", B.hex "c0 80" } do
      local none, err = core.close_payload(1000, reason)
      assert.is_nil(none)
      assert.is_string(err)
    end
  end)
end)

describe("argument errors and the reader's lifecycle", function()
  it("frame raises on bad arguments", function()
    assert.has_error(function() core.frame({}, "text") end)
    assert.has_error(function() core.frame("x", "bogus") end)
    assert.has_error(function() core.frame("x", "Text") end)
    assert.has_error(function() core.frame("x") end)
    assert.has_error(function() core.frame("x", 16) end)
    assert.has_error(function() core.frame("x", -1) end)
    assert.has_error(function() core.frame("x", "text", true, "123") end)
    assert.has_error(function() core.frame("x", "text", true, "12345") end)
    assert.has_error(function() core.frame("x", "text", true, false, 8) end)
    assert.has_error(function() core.frame("x", "text", true, false, -1) end)
  end)

  it("tls_context refuses a string option given as another type", function()
    -- a number converted to a string was referenced by nothing while
    -- OpenSSL read it (a use-after-free under an eager GC)
    for _, k in ipairs { "password", "cafile", "capath", "ciphers", "ciphersuites", "certificate", "key" } do
      local ok, err = pcall(core.tls_context, { mode = "client", verify = 0, [k] = 123456 })
      assert.is_false(ok)
      assert.matches("option '" .. k .. "' must be a string", err, 1, true)
    end
    assert.has_error(function() core.tls_context { mode = 1 } end)
    local tls = require "ws.tls"
    local ok, err = pcall(tls.context, { certificate = "c.pem", key = "k.pem", password = 123456 }, "server")
    assert.is_false(ok)
    assert.matches("tls.password: a string expected, got number", err, 1, true)
    assert.matches("core_spec", err, 1, true)   -- raised at the caller
  end)

  it("a ws.deflate outlives the load of ws.core that made it", function()
    -- hot reload: the shared zlib streams a deflate borrows must not go
    -- with the load that made it
    local saved = package.loaded["ws.core"]
    local function load_core()
      package.loaded["ws.core"] = nil
      local c = require "ws.core"
      package.loaded["ws.core"] = saved
      return c
    end
    local c2 = load_core()
    local d, inflate = c2.deflate { out_reset = true }, c2.deflate { in_reset = true }
    assert.equal("hello", inflate:decompress(d:compress("hello")))
    c2 = nil   -- luacheck: ignore 311
    load_core()           -- a third load: the methods are replaced
    collectgarbage()
    collectgarbage()      -- the second load's functions are gone
    for _ = 1, 3 do
      assert.equal("hello again", inflate:decompress(d:compress("hello again")))
      assert.equal("hello again", core.deflate { in_reset = true }:decompress(
        core.frame("hello again", "text", true, false, d):sub(3)))
    end
  end)

  it("frame and compress with a deflate: a finalizer that compresses meanwhile changes nothing", function()
    -- the compressed payload waits in the per-state buffer while its string
    -- is allocated, and a GC step there may run a finalizer that compresses
    -- a bigger message into that buffer (moving or overwriting it)
    local d1, d2 = core.deflate { out_reset = true }, core.deflate {}
    local small, mid, big = randbytes(20000), randbytes(10000), randbytes(100000)
    local want_frame, want_z = core.frame(small, "binary", true, false, d1), d1:compress(small)
    local armed, fired, bad = false, 0, 0
    local function gc()
      if not armed then return end
      armed, fired = false, fired + 1
      core.frame(mid, "binary", true, false, d2)   -- over it, then
      core.frame(big, "binary", true, false, d2)   -- moves it
      d2:compress(big)
    end
    B.eager_gc(function()
      for _ = 1, 100 do
        if fired >= 5 then break end
        for _ = 1, 300 do B.finalizer(gc) end
        for _ = 1, 10 do
          armed = true
          if core.frame(small, "binary", true, false, d1) ~= want_frame then bad = bad + 1 end
          armed = true
          if d1:compress(small) ~= want_z then bad = bad + 1 end
        end
      end
      armed = false
    end)
    assert.is_true(fired > 0)
    assert.equal(0, bad)
  end)

  it("kill refuses a pid that is no pid_t", function()
    -- cast to pid_t, 2^32 - 1 was -1: every process we may signal. (These
    -- values name no process once truncated, so a regression signals none.)
    for _, pid in ipairs { 2 ^ 32 + 4194305, 2 ^ 31, 0, -1 } do
      assert.has_error(function() core.kill(pid, "TERM") end)
    end
  end)

  it("poller:wait and signals:next refuse a NaN timeout", function()
    -- (int) of NaN was INT_MIN: wait forever. Something is ready here, so
    -- a regression returns at once instead of raising.
    if not core.epoll then return end   -- Linux only
    local socket = require "socket"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    local c = assert(socket.connect(host, port))
    local a = assert(srv:accept())
    local p = assert(core.epoll())
    local s = assert(core.signals { "USR2" })
    finally(function() p:close(); s:close(); c:close(); a:close(); srv:close() end)
    assert(p:watch(a:getfd()))
    assert(c:send("x"))
    assert.has_error(function() p:wait(0 / 0, {}, {}) end)
    assert.has_error(function() p:wait(1, {}, {}, nil, nil, 0 / 0) end)
    assert.equal(1, p:wait(math.huge, {}, {}))     -- clamped, and ready
    assert(core.kill(core.getpid(), "USR2"))      -- pending: next returns at once
    assert.has_error(function() s:next(0 / 0) end)
    assert.equal("USR2", s:next(math.huge))
  end)

  it("a descriptor argument out of int range raises (it was truncated into another descriptor)", function()
    -- (2^32 + 2^30 was descriptor 2^30: none open, so a regression does no harm)
    local big = 2 ^ 32 + 2 ^ 30
    local l = assert(core.listen("127.0.0.1", 0))
    local p = core.epoll and assert(core.epoll())
    finally(function() l:close(); if p then p:close() end end)
    local uses = {
      function() core.send_frame(big, "x", "text") end,
      function() core.send_queue(big, { "x" }, 1, 1, 1) end,
      function() core.fanout("x", { big }, 1) end,
      function() core.reader { role = "server" }:next(big) end,
      function() core.accept(big) end,
      function() core.nodelay(big) end,
      function() core.wrap_fd(big) end,
      function() core.adopt(big) end,
      function() l:setfd(big) end,
      function() core.listen_fd(big) end,
      function() core.proxy_header(big) end,
      function() core.read_fd(big) end,
      function() core.send_frame(-2, "x", "text") end,
    }
    if p then
      uses[#uses + 1] = function() p:watch(big) end
      uses[#uses + 1] = function() p:unwatch(big) end
    end
    for i, use in ipairs(uses) do
      local ok, err = pcall(use)
      assert.is_false(ok, "use " .. i)
      assert.matches("descriptor out of range", err, 1, true)
    end
    assert.matches("^ws%.fd: %d+$", tostring(l))   -- setfd left it as it was
    assert.same({ 0, "closed" }, { core.send_queue(-1, { "x" }, 1, 1, 1) })   -- -1: none
  end)

  it("reader raises on bad options", function()
    assert.has_error(function() core.reader { role = "x" } end)
    assert.has_error(function() core.reader { role = "Server" } end)
    assert.has_error(function() core.reader { max_message = -1 } end)
    assert.has_error(function() core.reader { max_message = "big" } end)
    assert.has_error(function() core.reader { rsv_allowed = 8 } end)
    assert.has_error(function() core.reader { rsv_allowed = -1 } end)
    assert.has_error(function() core.reader("server") end)
    assert.has_error(function() core.reader() end)
  end)

  it("the default role is server", function()
    local r = core.reader {}
    r:feed(build("text", "x"))   -- unmasked: a server must refuse it
    local _, _, code = r:next()
    assert.are.equal(1002, code)
    assert.are.same({ ev("text", "x") }, read_all({}, build("text", "x", { key = KEY })))
  end)

  it("reader methods, reader:next's descriptor and send_frame check their userdata's type", function()
    local r = core.reader(SERVER)
    local l = assert(core.listen("127.0.0.1", 0))   -- a ws.fd
    local p = core.epoll and core.epoll()           -- another userdata type
    -- a ws.fd or another userdata as the reader, a reader as the descriptor
    assert.has_error(function() r.next(l) end)
    assert.has_error(function() r.pending(l) end)
    if p then assert.has_error(function() r.next(p) end) end
    assert.has_error(function() r:next(r) end)
    assert.has_error(function() core.send_frame(r, "x", "text") end)
    if p then assert.has_error(function() core.send_frame(p, "x", "text") end) end
    assert.has_error(function() core.send_frame(io.stdout, "x", "text") end)
    -- the right types pass
    local got, err = r:next(l)                      -- (a listener cannot be read: an error, not a raise)
    assert.is_nil(got)
    assert.equal("string", type(err))
    l:close()
    if p then p:close() end
  end)

  it("feed raises on a non-string chunk", function()
    local r = core.reader(SERVER)
    assert.has_error(function() r:feed({}) end)
    assert.has_error(function() r:feed() end)
  end)

  it("tostring shows the role and state", function()
    local s, c = core.reader(SERVER), core.reader(CLIENT)
    assert.matches("^ws%.reader %(server%)", tostring(s))
    assert.matches("^ws%.reader %(client%)", tostring(c))
    c:feed(build("text", "x", { key = KEY }))
    local _, why = c:next()
    assert.matches("^ws%.reader %(failed: ", tostring(c))
    assert.truthy(tostring(c):find(why, 1, true))
    s:close()
    assert.are.equal("ws.reader (closed)", tostring(s))
  end)

  it("a closed reader raises on use; close is idempotent", function()
    local r = core.reader(SERVER)
    r:feed(build("text", "x", { key = KEY }))
    r:close()
    r:close()
    assert.has_error(function() r:next() end, nil)
    assert.has_error(function() r:feed("x") end)
    assert.has_error(function() r:pending() end)
    local ok, err = pcall(r.next, r)
    assert.is_false(ok)
    assert.matches("closed", err)
  end)

  it("poller:wait with a map fills the ready lists with map[fd] (false for a descriptor not in it)", function()
    if not core.epoll then return end   -- Linux only
    local socket = require "socket"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    local c1, c2 = assert(socket.connect(host, port)), assert(socket.connect(host, port))
    local a1, a2 = assert(srv:accept()), assert(srv:accept())
    local p = assert(core.epoll())
    finally(function() p:close(); c1:close(); c2:close(); a1:close(); a2:close(); srv:close() end)
    assert(p:watch(a1:getfd()))
    assert(p:watch(a2:getfd()))
    assert(c1:send("x"))
    assert(c2:send("y"))
    local r, w, clean = {}, {}, {}
    local map = { [a1:getfd()] = "first" }               -- (a2 not in it)
    local got, seen = {}, 0
    for _ = 1, 50 do                                     -- (both edges, within a second)
      local nr, nw = p:wait(0.02, r, w, clean, map)
      for i = 1, nr do got[#got + 1] = r[i] end
      for i = 1, nw do assert.truthy(w[i] == "first" or w[i] == false) end
      seen = seen + nr
      if seen >= 2 then break end
    end
    table.sort(got, function(x, y) return tostring(x) < tostring(y) end)
    assert.same({ false, "first" }, got)
    -- without a map: the descriptors
    assert(c1:send("z"))
    local nr = p:wait(1, r, w)
    assert.equal(1, nr)
    assert.equal(a1:getfd(), r[1])
  end)

  -- a loopback TCP connection: the listener, the client's end, the server's
  local function tcp_pair()
    local socket = require "socket"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    local c = assert(socket.connect(host, port))
    return srv, c, assert(srv:accept())
  end

  it("poller:wait with a wmap reports writable only to a waiter in it, once; other write edges mark it true", function()
    if not core.epoll then return end   -- Linux only
    local srv, c1, a1 = tcp_pair()
    local p = assert(core.epoll())
    finally(function() p:close(); c1:close(); a1:close(); srv:close() end)
    local fd = a1:getfd()
    assert(p:watch(fd))   -- (writable at once: its first edge says so)
    local r, w, clean, wmap = {}, {}, {}, {}
    local function round(timeout)
      return p:wait(timeout, r, w, clean, { [fd] = "sock" }, nil, wmap)
    end
    -- nobody waits to write: the readable event comes alone, the write
    -- edge is kept as wmap[fd] = true
    assert(c1:send("x"))
    local nr, nw = round(1)
    assert.equal(1, nr)
    assert.equal("sock", r[1])
    assert.equal(0, nw)
    assert.is_true(wmap[fd])
    -- a waiter: the next write edge is reported as wmap[fd], and only once
    wmap[fd] = "writer"
    assert(c1:send("y"))   -- (a read edge, which says "writable" too)
    nr, nw = round(1)
    assert.equal(1, nr)
    assert.equal(1, nw)
    assert.equal("writer", w[1])
    assert.is_nil(wmap[fd])
    assert(c1:send("z"))
    nr, nw = round(1)
    assert.equal(1, nr)
    assert.equal(0, nw)
    assert.is_true(wmap[fd])
  end)

  it("ws.loop: a wait to write on a registered, writable socket returns at once (the write edge nobody took)", function()
    local loop = require "ws.loop"
    local socket = require "socket"
    local srv, c1, a1 = tcp_pair()
    a1:settimeout(0)
    finally(function() c1:close(); a1:close(); srv:close() end)
    local l = loop.new { logger = false }
    local got = {}
    l:spawn(function()
      got[#got + 1] = { l:wait(a1, "r", socket.gettime() + 2) }   -- (registers it, for both)
      got[#got + 1] = { l:wait(a1, "w", socket.gettime() + 2) }
      got[#got + 1] = socket.gettime()
    end)
    local t0 = socket.gettime()
    assert(c1:send("x"))
    for _ = 1, 100 do if not l:step(0.05) then break end end
    assert.equal(3, #got)
    assert.is_true(got[1][1])
    assert.is_true(got[2][1])
    assert.is_true(got[3] - t0 < 1, "the write wait waited for its deadline")
  end)

  -- The spin tests: what fn(), a 0.3 s wait with nothing to wake it, cost.
  -- A sleep costs about none, but a guest's time stolen by its host while it
  -- runs counts as its CPU (seen: over 2 ms for a sleep), so the bounds are
  -- far apart. A spin of 0.2 s is CPU for as long as the machine gives it:
  -- on a busy one only a share of that (seen: under 50 ms), but all of it
  -- on a CPU or waiting on a run queue for one, never asleep. So "polled"
  -- counts both (/proc/self/schedstat), "slept" only the CPU (os.clock).
  -- (The collector is stopped: its steps are not the wait's.)
  local SPIN, POLLED, SLEPT = 0.2, 0.05, 0.02
  -- seconds on a CPU or runnable (waiting for one) so far; nil if unknown
  local function busy_seconds()
    local f = io.open("/proc/self/schedstat")
    if not f then return nil end
    local run, wait = f:read("*n", "*n")
    f:close()
    return run and wait and (run + wait) / 1e9
  end
  -- CPU seconds of fn(), the seconds it was busy (as above; its CPU seconds
  -- where schedstat is missing), and fn's result
  local function cpu_of(fn)
    collectgarbage()
    collectgarbage("stop")
    local c0, b0 = os.clock(), busy_seconds()
    local res = fn()
    local used, b1 = os.clock() - c0, busy_seconds()
    collectgarbage("restart")
    return used, (b0 and b1) and b1 - b0 or used, res
  end

  it("poller:wait's spin polls before sleeping, and only while events come within it", function()
    if not core.epoll then return end   -- Linux only
    local srv, c, a = tcp_pair()
    local p = assert(core.epoll())
    finally(function() p:close(); c:close(); a:close(); srv:close() end)
    assert(p:watch(a:getfd()))
    local r, w = {}, {}
    -- (CPU seconds and busy seconds of a wait)
    local function waits(spin)
      local used, busy, n = cpu_of(function() return p:wait(0.3, r, w, nil, nil, spin) end)
      assert.equal(0, n)
      return used, busy
    end
    for _ = 1, 20 do if p:wait(0.01, r, w) == 0 then break end end   -- (the new socket's edges)
    assert.is_true(select(2, waits(SPIN)) >= POLLED, "polled first")
    assert.is_true(waits(SPIN) < SLEPT, "that wait ran past its spin: the next sleeps at once")
    assert(c:send("x"))   -- a wait that ends within the spin ...
    local nr = p:wait(0.3, r, w, nil, nil, SPIN)
    assert.equal(1, nr)
    assert.is_true(select(2, waits(SPIN)) >= POLLED, "... turns polling back on")
    assert.is_true(waits(nil) < SLEPT, "no spin, no polling")
  end)

  it("ws.loop spins only after a round that ran tasks or a watch", function()
    if not core.epoll then return end
    local loop = require "ws.loop"
    local l = loop.new { spin = SPIN }
    l:spawn(function() l:sleep(5) end)   -- (keeps the loop waiting)
    l:step(0)                            -- runs it
    l:step(0)                            -- runs nothing
    local function step() l:step(0.3) end
    assert.is_true(cpu_of(step) < SLEPT, "after an idle round: sleeps at once")
    l:spawn(function() end)
    l:step(0)                            -- runs a task
    assert.is_true(select(2, cpu_of(step)) >= POLLED, "after a busy round: polls first")
    -- a read edge a watch handles (conn:serve's way: no task runs) is work
    -- too (a new loop: that last wait ran past its spin, so this one's
    -- poller would sleep at once until a wait ends within it)
    local l2 = loop.new { spin = SPIN }
    l2:spawn(function() l2:sleep(5) end)
    l2:step(0)
    l2:step(0)
    local srv, c, a = tcp_pair()
    finally(function() c:close(); a:close(); srv:close() end)
    local seen = 0
    local watcher = { readable = function() seen = seen + 1; a:receive(1) end }
    l2:watch(a, watcher)   -- (a new socket: no edge came before)
    assert(c:send("x"))
    for _ = 1, 20 do if seen > 0 then break end; l2:step(0.3) end
    assert.equal(1, seen, "the watch saw the edge")
    assert.is_true(select(2, cpu_of(function() l2:step(0.3) end)) >= POLLED,
      "after a round a watch handled: polls first")
    l2:unwatch(a, watcher)
  end)

  it("ws.poller and ws.fd: tostring shows the state, close is idempotent", function()
    if core.epoll then   -- Linux only
      local p = assert(core.epoll())
      assert.matches("^ws%.poller: %d+$", tostring(p))
      p:close()
      p:close()
      assert.equal("ws.poller (closed)", tostring(p))
      local ok, err = pcall(p.fd, p)
      assert.is_false(ok)
      assert.matches("attempt to use a closed poller", err, 1, true)
    end
    local l = assert(core.listen("127.0.0.1", 0))
    assert.matches("^ws%.fd: %d+$", tostring(l))
    l:close()
    l:close()
    assert.equal("ws.fd (closed)", tostring(l))
  end)

  it("ws.tls_context and ws.signals: tostring shows the state, close is idempotent", function()
    local c = assert(core.tls_context { mode = "client" })
    assert.matches("^ws%.tls_context %(client%): ", tostring(c))
    c:close()
    c:close()
    assert.equal("ws.tls_context (closed)", tostring(c))
    if core.signals then   -- Linux only
      local s = assert(core.signals { "USR2", "USR1" })
      assert.matches("^ws%.signals: USR2, USR1 %(fd %d+%)$", tostring(s))
      assert.is_true(usr2_blocked())
      s:close()
      s:close()
      assert.equal("ws.signals (closed)", tostring(s))
      assert.is_false(usr2_blocked())
      local none, err = s:next()
      assert.is_nil(none)
      assert.is_string(err)
    end
  end)

  -- to-be-closed variables are Lua 5.4 syntax: compiled only there
  it54("ws.signals under <close> releases every signal, whatever the error value", function()
    if not core.signals then return end
    local ok = pcall(assert(load([[
      local core = ...
      local s <close> = core.signals { "USR2" }
      error({ "USR2" })   -- (a table, as close's keep list would be)
    ]])), core)
    assert.is_false(ok)
    assert.is_false(usr2_blocked())
  end)

  it54("can be closed with <close>", function()
    local scope = assert(load([[
      local core, SERVER, CLIENT, frame = ...
      local kept, first
      do
        local r <close> = core.reader(SERVER)
        kept = r
        r:feed(frame)
        first = r:next()
      end
      local after_scope, next_ok = tostring(kept), pcall(kept.next, kept)
      -- closed on error unwinding too
      local ok = pcall(function()
        local r <close> = core.reader(CLIENT)
        kept = r
        error("boom")
      end)
      return first, after_scope, next_ok, ok, tostring(kept)
    ]]))
    assert.are.same({ "text", "ws.reader (closed)", false, false, "ws.reader (closed)" },
      { scope(core, SERVER, CLIENT, build("text", "x", { key = KEY })) })
  end)

  it("readers are independent, and survive collection mid-message", function()
    local a, b = core.reader(SERVER), core.reader(CLIENT)
    local pa = randbytes(3000)
    a:feed(build("binary", pa:sub(1, 1000), { key = KEY, fin = false }))
    b:feed(build("text", "he", { fin = false }))
    assert.is_nil(a:next())
    assert.is_nil(b:next())
    for _ = 1, 50 do   -- garbage readers holding partial messages
      local g = core.reader(SERVER)
      g:feed(build("binary", string.rep("g", 5000), { key = KEY, fin = false }))
      g:next()
    end
    collectgarbage()
    collectgarbage()
    b:feed(build("continuation", "llo"))
    a:feed(build("continuation", pa:sub(1001), { key = "\9\8\7\6" }))
    assert.are.same({ "text", "hello" }, { b:next() })
    assert.are.same({ "binary", pa }, { a:next() })
  end)
end)
