-- permessage-deflate (RFC 7692): negotiation units, the zlib transforms,
-- interop with Node ws, python-websockets and Chromium in both directions,
-- and hostile peers (bombs, misplaced RSV1, bad data).
local json = require "dkjson"
local ws = require "ws"
local core = require "ws.core"
local deflate = require "ws.deflate"
local H = require "spec.helpers"
local B = require "spec.bits"

local ROOT = H.ROOT
local NODE = "node"
local MiB = 1024 * 1024

local run_json = H.run_json

local shell_quote = H.shell_quote

-- Start spec/servers/deflate_server.lua; args: a string of its options.
local function deflate_server(args, name)
  return H.start_lua("spec/servers/deflate_server.lua", args, name or "deflate-server")
end

local wait_output = H.wait_output

-- A raw client on path offering `ext` (nil: no offer); returns it and the 101 head.
local function raw(port, path, ext)
  local extra = ext and ("Sec-WebSocket-Extensions: " .. ext .. "\r\n") or nil
  local r, head = H.raw(port, H.request(port, path or "/echo", extra), { timeout = 5 })
  assert.matches("^HTTP/1.1 101", head)
  return r, head
end

local function answered_ext(head)
  return head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Ee]xtensions: ([^\r]*)\r\n")
end

-- What conn's deflate object counted (ws.deflate:stats()): inflated and
-- deflated messages, wire_in and wire_out their compressed bytes, streams
-- the zlib streams it holds of its own. Read live, counting from the spy's
-- creation: s.inflated is the count since then.
local function spy(conn)
  local d = conn.deflate
  local base = d:stats()
  base.streams = 0
  return setmetatable({}, { __index = function(_, k) return d:stats()[k] - base[k] end })
end

local function utf8_text(n, seed)
  local pool = { "a", "z", "0", " ", "é", "ß", "ж", "€", "中", "ㅎ", "😀", "𝄞" }
  local rnd = seed or 1
  local t, len = {}, 0
  while len < n do
    rnd = (rnd * 1103515245 + 12345) % 2147483648
    local c = pool[math.floor(rnd / 65536) % #pool + 1]
    if len + #c > n then c = string.rep("a", n - len) end
    t[#t + 1] = c
    len = len + #c
  end
  return table.concat(t)
end

local function random_bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n) or ""
  f:close()
  return s
end

------------------------------------------------------------------------------
describe("ws.deflate negotiation", function()
  describe("parse()", function()
    local function parse(h)
      local list = deflate.parse(h)
      if not list then return nil end
      local out = {}
      for i, e in ipairs(list) do out[i] = { e.name, e.params, e.duplicate or nil } end
      return out
    end

    it("reads names and parameters, with and without values", function()
      assert.same({ { "permessage-deflate", {} } }, parse("permessage-deflate"))
      assert.same({ { "permessage-deflate", { client_max_window_bits = true } } },
        parse("permessage-deflate; client_max_window_bits"))
      assert.same({ { "permessage-deflate", { server_max_window_bits = "10", server_no_context_takeover = true } } },
        parse("permessage-deflate;server_max_window_bits=10;server_no_context_takeover"))
    end)

    it("accepts spaces around ';' and '=' and quoted values", function()
      assert.same({ { "permessage-deflate", { server_max_window_bits = "10" } } },
        parse("  permessage-deflate ;  server_max_window_bits = \"10\"  "))
      assert.same({ { "permessage-deflate", { client_max_window_bits = "12" } } },
        parse("permessage-deflate;\tclient_max_window_bits=\"12\""))
    end)

    it("lower-cases names and parameter names", function()
      assert.same({ { "permessage-deflate", { server_no_context_takeover = true } } },
        parse("PerMessage-Deflate; Server_No_Context_Takeover"))
    end)

    it("reads several offers in order, skipping empty list elements", function()
      assert.same({
        { "permessage-deflate", { client_max_window_bits = "10" } },
        { "permessage-deflate", {} },
        { "x-webkit-deflate-frame", {} },
      }, parse("permessage-deflate; client_max_window_bits=10, , permessage-deflate,x-webkit-deflate-frame"))
      assert.same({}, parse(""))
      assert.same({}, parse(" , "))
    end)

    it("reads quoted-strings whole: ',' and ';' inside, quoted-pairs unescaped (RFC 7230 section 3.2.6)", function()
      assert.same({ { "x-foo", { a = "1" } }, { "permessage-deflate", { client_max_window_bits = "10" } } },
        parse('x-foo; a="1" , permessage-deflate; client_max_window_bits="1\\0"'))
      -- a quoted value must still be a token once unescaped (RFC 6455 section 9.1)
      assert.is_nil(parse('x-foo; a="1,2", permessage-deflate'))
      assert.is_nil(parse('x-foo; a="1;2\\"", permessage-deflate'))
    end)

    it("flags duplicate parameters", function()
      assert.same({ { "permessage-deflate", { server_no_context_takeover = true }, true } },
        parse("permessage-deflate; server_no_context_takeover; server_no_context_takeover"))
      local list = deflate.parse("permessage-deflate; client_max_window_bits=10; Client_Max_Window_Bits=11")
      assert.is_true(list[1].duplicate)
    end)

    it("refuses malformed headers", function()
      for _, h in ipairs {
        ";foo",                                           -- no name
        "permessage-deflate;;",                           -- empty parameter
        "permessage-deflate; a=1 b",                      -- junk after a value
        "foo bar",                                        -- two tokens
        "permessage-deflate; k=\"a b\"",                  -- space inside a (token) value
        "permessage-deflate; server_max_window_bits=\"10",   -- unbalanced quote
        "permessage-deflate; server_max_window_bits=10\"",   -- unbalanced quote
        "permessage-deflate; server_max_window_bits=",       -- '=' without a value
        "permessage-deflate x",
      } do
        assert.is_nil(deflate.parse(h), h)
      end
    end)
  end)

  describe("accept() (server)", function()
    local function resp(h, conf) return (deflate.accept(h, conf or true)) end

    it("accepts a plain offer with the defaults", function()
      local r, o = deflate.accept("permessage-deflate", true)
      assert.equal("permessage-deflate", r)
      assert.same({ level = 1, threshold = 64, out_bits = 15, in_bits = 15, out_reset = false, in_reset = false }, o)
    end)

    it("declines nothing offered, other extensions and malformed headers", function()
      assert.is_nil(resp(nil))
      assert.is_nil(resp(""))
      assert.is_nil(resp("x-webkit-deflate-frame"))
      assert.is_nil(resp("permessage-deflate;;"))
    end)

    it("picks the first acceptable offer", function()
      assert.equal("permessage-deflate; server_max_window_bits=10",
        resp("x-foo, permessage-deflate; server_max_window_bits=10, permessage-deflate"))
      -- the first offer has an unknown parameter: the second is taken
      assert.equal("permessage-deflate",
        resp("permessage-deflate; x_foo, permessage-deflate; client_max_window_bits=9"))
      assert.equal("permessage-deflate; server_no_context_takeover",
        resp("permessage-deflate; server_max_window_bits=16, permessage-deflate; server_no_context_takeover"))
    end)

    it("declines a malformed offer alone: ',' and ';' in quotes do not split, the offers after it count", function()
      for _, h in ipairs {
        'x-foo; a="1,2", permessage-deflate',
        'x-foo; a="1;2", permessage-deflate',
        'x-foo; a="1\\",2;", permessage-deflate',    -- a quoted-pair \" inside
        'x-foo; a=, permessage-deflate',
        'x-foo bar, permessage-deflate',
        'permessage-deflate; x="a, b", permessage-deflate',
      } do
        assert.equal("permessage-deflate", resp(h), h)
      end
      assert.equal("permessage-deflate; server_max_window_bits=10",
        resp('x-foo; a="1,2", permessage-deflate; server_max_window_bits="1\\0"'))
      -- an unclosed quote swallows the rest of the header
      assert.is_nil(resp('x-foo; a="1, permessage-deflate'))
    end)

    it("declines offers with unknown, duplicate or invalid parameters", function()
      for _, h in ipairs {
        "permessage-deflate; x_foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits=10; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",          -- needs a value
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=09",       -- leading zero
        "permessage-deflate; server_max_window_bits=1x",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=010",
        "permessage-deflate; server_no_context_takeover=1",    -- takes no value
        "permessage-deflate; client_no_context_takeover=\"\"",
      } do
        assert.is_nil(resp(h), h)
      end
    end)

    it("answers server_no_context_takeover when offered and resets its compressor", function()
      local r, o = deflate.accept("permessage-deflate; server_no_context_takeover", true)
      assert.equal("permessage-deflate; server_no_context_takeover", r)
      assert.is_true(o.out_reset)
      assert.is_false(o.in_reset)
    end)

    it("answers client_no_context_takeover when offered and resets its decompressor", function()
      local r, o = deflate.accept("permessage-deflate; client_no_context_takeover", true)
      assert.equal("permessage-deflate; client_no_context_takeover", r)
      assert.is_true(o.in_reset)
      assert.is_false(o.out_reset)
    end)

    it("applies server_max_window_bits, taking the smaller of offer and configuration", function()
      local r, o = deflate.accept("permessage-deflate; server_max_window_bits=10", true)
      assert.equal("permessage-deflate; server_max_window_bits=10", r)
      assert.equal(10, o.out_bits)
      r, o = deflate.accept("permessage-deflate; server_max_window_bits=\"12\"", { server_max_window_bits = 11 })
      assert.equal("permessage-deflate; server_max_window_bits=11", r)
      assert.equal(11, o.out_bits)
      r, o = deflate.accept("permessage-deflate; server_max_window_bits=9", { server_max_window_bits = 11 })
      assert.equal("permessage-deflate; server_max_window_bits=9", r)
      assert.equal(9, o.out_bits)
      r, o = deflate.accept("permessage-deflate; server_max_window_bits=8", true)
      assert.equal("permessage-deflate; server_max_window_bits=8", r)
      assert.equal(8, o.out_bits)
    end)

    it("includes client_max_window_bits only when the client offered it", function()
      local conf = { client_max_window_bits = 10 }
      assert.equal("permessage-deflate", resp("permessage-deflate", conf))
      assert.equal("permessage-deflate; client_max_window_bits=10",
        resp("permessage-deflate; client_max_window_bits", conf))
      assert.equal("permessage-deflate; client_max_window_bits=9",
        resp("permessage-deflate; client_max_window_bits=9", conf))
      -- offered, but the server does not limit it: nothing to say
      assert.equal("permessage-deflate", resp("permessage-deflate; client_max_window_bits=12", true))
    end)

    it("inflates with the client's window it answered", function()
      for b = 8, 15 do
        local r, o = deflate.accept("permessage-deflate; client_max_window_bits", { client_max_window_bits = b })
        assert.equal("permessage-deflate; client_max_window_bits=" .. b, r)
        assert.equal(b, o.in_bits)
        assert.equal(15, o.out_bits)
      end
      local _, o = deflate.accept("permessage-deflate; client_max_window_bits=9", { client_max_window_bits = 12 })
      assert.equal(9, o.in_bits)
    end)

    it("never answers a window size that was not offered", function()
      local conf = { server_max_window_bits = 10, client_max_window_bits = 10 }
      local r, o = deflate.accept("permessage-deflate", conf)
      assert.equal("permessage-deflate", r)
      assert.equal(10, o.out_bits)        -- a smaller window needs no agreement
      assert.equal(15, o.in_bits)
    end)

    it("every answer is an acceptable response for our own client", function()
      for _, h in ipairs {
        "permessage-deflate", "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
      } do
        for _, conf in ipairs { true, { client_max_window_bits = 11, server_no_context_takeover = true } } do
          local r = deflate.accept(h, conf)
          assert.truthy(r, h)
          assert.truthy(deflate.parse(r), r)
          for k in pairs(deflate.parse(r)[1].params) do
            -- the RFC lets a server add *_no_context_takeover; anything else must have been offered
            if not k:match("no_context_takeover$") then assert.truthy(h:find(k, 1, true), k .. " in " .. r) end
          end
        end
      end
    end)
  end)

  describe("offer() and agree() (client)", function()
    it("offers client_max_window_bits and what is configured", function()
      assert.equal("permessage-deflate; client_max_window_bits", deflate.offer(true))
      assert.equal("permessage-deflate; client_max_window_bits=10; server_no_context_takeover; " ..
        "client_no_context_takeover; server_max_window_bits=12",
        deflate.offer { client_max_window_bits = 10, server_no_context_takeover = true,
                        client_no_context_takeover = true, server_max_window_bits = 12 })
    end)

    it("turns a valid answer into compressor settings", function()
      assert.same({ level = 1, threshold = 64, out_bits = 15, in_bits = 15, out_reset = false, in_reset = false },
        deflate.agree("permessage-deflate", true))
      local o = deflate.agree("permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
        "client_max_window_bits=10; server_max_window_bits=9", { level = 1, threshold = 0 })
      assert.same({ level = 1, threshold = 0, out_bits = 10, in_bits = 9, out_reset = true, in_reset = true }, o)
    end)

    it("inflates with the server's window it answered, and fails an answer that drops the one we asked", function()
      for b = 8, 15 do
        local o = deflate.agree("permessage-deflate; server_max_window_bits=" .. b, { server_max_window_bits = 15 })
        assert.equal(b, o.in_bits)
      end
      local o, err = deflate.agree("permessage-deflate", { server_max_window_bits = 10 })
      assert.is_nil(o)
      assert.matches("server_max_window_bits", err)
    end)

    it("rejects an extension we did not offer, or more than one", function()
      assert.is_nil((deflate.agree("x-webkit-deflate-frame", true)))
      assert.is_nil((deflate.agree("permessage-deflate, permessage-deflate", true)))
      assert.is_nil((deflate.agree("permessage-deflate;;", true)))
    end)

    it("rejects unknown, duplicate and invalid parameters", function()
      for _, h in ipairs {
        "permessage-deflate; x_foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_max_window_bits",          -- an answer needs a value
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
      } do
        assert.is_nil((deflate.agree(h, true)), h)
      end
    end)

    it("accepts client_max_window_bits=8 (zlib's 9-bit window reaches back at most 250 bytes)", function()
      assert.equal(8, deflate.agree("permessage-deflate; client_max_window_bits=8", true).out_bits)
    end)

    it("rejects a window larger than the one offered", function()
      local conf = { client_max_window_bits = 10, server_max_window_bits = 12 }
      assert.truthy(deflate.agree("permessage-deflate; client_max_window_bits=9; server_max_window_bits=12", conf))
      for _, h in ipairs {
        "permessage-deflate; client_max_window_bits=11",
        "permessage-deflate; server_max_window_bits=13",
      } do
        local o, err = deflate.agree(h, conf)
        assert.is_nil(o, h)
        assert.matches("above our offer", err)
      end
    end)

    it("rejects an answer that drops the server_no_context_takeover we asked for", function()
      local o, err = deflate.agree("permessage-deflate", { server_no_context_takeover = true })
      assert.is_nil(o)
      assert.matches("server_no_context_takeover", err)
      assert.truthy(deflate.agree("permessage-deflate; server_no_context_takeover", { server_no_context_takeover = true }))
    end)
  end)
end)

------------------------------------------------------------------------------
describe("ws.core.deflate", function()
  local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

  it("produces the RFC 7692 section 7.2.3.2 examples, sharing the window across messages", function()
    local d = core.deflate {}
    assert.equal("f248cdc9c90700", hex(d:compress("Hello")))
    assert.equal("f200110000", hex(d:compress("Hello")))
    local i = core.deflate {}
    assert.equal("Hello", i:decompress(B.hex "f2 48 cd c9 c9 07 00"))
    assert.equal("Hello", i:decompress(B.hex "f2 00 11 00 00"))
  end)

  it("forgets the window with no context takeover", function()
    local d = core.deflate { out_reset = true }
    assert.equal(d:compress("Hello"), d:compress("Hello"))
    local i = core.deflate { in_reset = true }
    assert.equal("Hello", i:decompress(B.hex "f2 48 cd c9 c9 07 00"))
    assert.is_nil((i:decompress(B.hex "f2 00 11 00 00")))   -- refers to a forgotten window
  end)

  it("reads an uncompressed (stored) block and an empty message", function()
    assert.equal("Hello", core.deflate {}:decompress("\000\005\000\250\255Hello\000"))
    assert.equal("", core.deflate {}:decompress("\000"))
  end)

  it("compresses an empty message to 00, also after other messages (RFC 7692 section 7.2.3.6)", function()
    local d = core.deflate {}
    local i = core.deflate {}
    for _, m in ipairs { "", "", "abc", "", "", "abc", "" } do
      local c = d:compress(m)
      if m == "" then assert.equal("\0", c) end
      assert.equal(m, i:decompress(c))
    end
  end)

  it("refuses a message that does not end between blocks (cut short, or empty)", function()
    -- payload + 00 00 ff ff must end on a block boundary; else the next
    -- message would be read from the middle of a block
    local c = core.deflate {}:compress(string.rep("hello world ", 1000))
    assert.same({ nil, "invalid compressed data" }, { core.deflate {}:decompress(c:sub(1, -2)) })
    assert.same({ nil, "invalid compressed data" }, { core.deflate {}:decompress("\000\005\000\250\255Hello") })
    local i = core.deflate {}
    assert.same({ nil, "invalid compressed data" }, { i:decompress("") })
    assert.equal("Hello", i:decompress(B.hex "f2 48 cd c9 c9 07 00"))
  end)

  it("reads a message whose DEFLATE block has BFINAL set (RFC 7692 section 7.2.3.3)", function()
    local i = core.deflate {}
    assert.equal("Hello", i:decompress(B.hex "f3 48 cd c9 c9 07 00 00"))
    -- the window survives the end of that DEFLATE stream
    assert.equal("Hello", i:decompress(B.hex "f2 00 11 00 00"))
    -- without the empty block after it (Z_FINISH): whole all the same, as
    -- python-websockets and Node ws take it, and the window goes on too
    assert.equal("Hello", i:decompress(B.hex "f3 48 cd c9 c9 07 00"))
    assert.equal("Hello", i:decompress(B.hex "f2 00 11 00 00"))
    assert.equal("Hello", i:decompress("\001\005\000\250\255Hello"))
    assert.equal("Hello", i:decompress(B.hex "f2 00 11 00 00"))
    assert.equal("", i:decompress("\001"))   -- the tail is a final block's LEN and NLEN
    -- and junk after a final block is still junk
    assert.same({ nil, "invalid compressed data" },
      { core.deflate {}:decompress(B.hex "f3 48 cd c9 c9 07 00 ff ff") })
  end)

  it("round-trips text and binary of many sizes with every window size", function()
    for bits = 8, 15 do
      local d = core.deflate { out_bits = bits, in_bits = bits }
      for _, n in ipairs { 0, 1, 100, 5000, 70000, 300000 } do
        for _, s in ipairs { utf8_text(n, n + bits), random_bytes(n), string.rep("ab", math.floor(n / 2)) } do
          assert.equal(s, d:decompress(d:compress(s)))
        end
      end
    end
  end)

  it("inflates with the window it was given: 512 bytes keep too little of a message 1000 bytes back", function()
    -- (zlib checks distances against the window between calls, so across messages)
    local msg = random_bytes(1000)
    for bits, ok in pairs { [15] = true, [10] = true, [9] = false } do
      local d, i = core.deflate {}, core.deflate { in_bits = bits }
      assert.equal(msg, i:decompress(d:compress(msg)))
      local again = d:compress(msg)
      assert.is_true(#again < 100)
      if ok then assert.equal(msg, i:decompress(again))
      else assert.same({ nil, "invalid compressed data" }, { i:decompress(again) }) end
    end
  end)

  it("stops inflating at max: a bomb costs at most max + 1 bytes", function()
    local d = core.deflate {}
    local bomb = d:compress(string.rep("\0", 64 * MiB))
    assert.is_true(#bomb < 100 * 1024)
    assert.same({ nil, "message too big" }, { core.deflate {}:decompress(bomb, MiB) })
    local exact = d:compress(string.rep("x", 1000))
    local i = core.deflate { in_reset = true }
    assert.equal(1000, #i:decompress(exact, 1000))
    assert.same({ nil, "message too big" }, { i:decompress(exact, 999) })
  end)

  it("refuses invalid data", function()
    assert.same({ nil, "invalid compressed data" }, { core.deflate {}:decompress(B.hex "ff ff ff ff") })
    assert.same({ nil, "invalid compressed data" }, { core.deflate {}:decompress("\007") })
    -- a decompressor that saw an error starts afresh
    local i = core.deflate {}
    assert.is_nil((i:decompress(B.hex "ff ff")))
    assert.equal("Hello", i:decompress(B.hex "f2 48 cd c9 c9 07 00"))
  end)

  it("inflates RSV1 messages inside reader:next, checking UTF-8 and max_message on what comes out", function()
    local c, z = core.deflate {}, core.deflate {}
    local r = core.reader { role = "server", max_message = 1000, rsv_allowed = 4, deflate = z }
    local function feed(reader, payload, kind, rsv) reader:feed(core.frame(payload, kind, true, true, rsv)) end
    feed(r, c:compress("héllo"), "text", 4)
    feed(r, c:compress("\0\1\2"), "binary", 4)
    feed(r, "plain", "text")
    assert.same({ "text", "héllo" }, { r:next() })
    assert.same({ "binary", "\0\1\2" }, { r:next() })
    assert.same({ "text", "plain" }, { r:next() })
    assert.equal(2, z:stats().inflated)
    -- each fault fails the reader with its close code, and it stays failed
    local faults = {
      { c:compress("\255"), "text", "invalid utf-8", 1007 },
      { core.deflate {}:compress(string.rep("a", 1001)), "binary", "message too big", 1009 },
      { "\255\255", "binary", "invalid compressed data", 1007 },
    }
    for _, f in ipairs(faults) do
      local bad = core.reader { role = "server", max_message = 1000, rsv_allowed = 4, deflate = core.deflate {} }
      feed(bad, f[1], f[2], 4)
      feed(bad, "after", "text")
      assert.same({ nil, f[3], f[4] }, { bad:next() })
      assert.same({ nil, f[3], f[4] }, { bad:next() })
    end
    -- exactly max_message inflated bytes pass
    local edge = core.reader { role = "server", max_message = 1000, rsv_allowed = 4, deflate = core.deflate {} }
    feed(edge, core.deflate {}:compress(string.rep("a", 1000)), "binary", 4)
    assert.same({ "binary", string.rep("a", 1000) }, { edge:next() })
  end)

  it("compresses inside frame(payload, kind, fin, mask, deflate): a masked RSV1 frame", function()
    local d, msg = core.deflate {}, string.rep("client text ", 200)
    local f = core.frame(msg, "text", true, true, d)
    assert.equal(0xC1, f:byte(1))                    -- FIN, RSV1, text
    assert.equal(0x80, f:byte(2) - f:byte(2) % 128)  -- masked
    assert.is_true(#f < #msg / 4)
    local r = core.reader { role = "server", rsv_allowed = 4, deflate = core.deflate {} }
    r:feed(f)
    r:feed(core.frame(msg, "text", true, true, d))   -- the window carries over
    assert.same({ "text", msg }, { r:next() })
    assert.same({ "text", msg }, { r:next() })
    assert.equal(2, d:stats().deflated)
  end)

  it("compresses inside send_frame(fd, data, kind, deflate): one RSV1 frame on the socket", function()
    local a, b = H.tcp_pair()
    local d, msg = core.deflate { out_reset = true }, string.rep("lua-ws ", 300)
    assert.is_true(core.send_frame(b:getfd(), msg, "text", d))
    assert.same({ nil, "invalid utf-8" }, { core.send_frame(b:getfd(), "\255", "text", d) })
    assert.equal(1, d:stats().deflated)   -- the refused text was not compressed
    a:settimeout(5)
    local head = assert(a:receive(2))
    assert.equal(0xC1, head:byte(1))      -- FIN, RSV1, text
    local n = head:byte(2)
    assert.is_true(n < 126, "compressed to " .. n .. " bytes")
    assert.equal(msg, core.deflate {}:decompress(assert(a:receive(n))))
    assert.equal(n, d:stats().wire_out)
    a:close()
    b:close()
  end)

  it("send_frame's rest is right when a finalizer compresses while it is allocated", function()
    -- the rest of a compressed frame the socket did not take is copied from
    -- the per-state buffer into a string whose allocation may run a
    -- finalizer that compresses into that buffer (moving or overwriting it)
    local a, b = H.tcp_pair()
    local parts = {}
    for i = 1, 16 do parts[i] = core.random(65536) end
    local big = table.concat(parts)
    local d1, d2 = core.deflate { out_reset = true }, core.deflate {}
    local msg = big:sub(1, 300000)
    local want = core.frame(msg, "binary", true, false, d1)
    local armed, fired, bad, partial = false, 0, 0, 0
    local function gc()
      if not armed then return end
      armed, fired = false, fired + 1
      d2:compress(big:sub(-100000))   -- over it, then
      d2:compress(big)                -- moves it
    end
    B.eager_gc(function()
      for _ = 1, 200 do
        if fired >= 3 and partial >= 3 then break end
        for _ = 1, 300 do B.finalizer(gc) end
        armed = true
        local rest = core.send_frame(b:getfd(), msg, "binary", d1)
        if rest ~= true then
          partial = partial + 1
          if rest ~= want:sub(-#rest) then bad = bad + 1 end
        end
      end
      armed = false
    end)
    a:close()
    b:close()
    assert.is_true(fired > 0 and partial > 0)
    assert.equal(0, bad)
  end)

  it("masks inside send_frame(fd, data, kind, rsv | deflate, true): client frames a server reader takes", function()
    local a, b = H.tcp_pair()
    local d, msg = core.deflate { out_reset = true }, string.rep("lua-ws ", 300)
    assert.is_true(core.send_frame(b:getfd(), msg, "text", 0, true))
    assert.is_true(core.send_frame(b:getfd(), msg, "text", 0, true))
    assert.is_true(core.send_frame(b:getfd(), msg, "binary", d, true))
    assert.same({ nil, "invalid utf-8" }, { core.send_frame(b:getfd(), "\255", "text", 0, true) })
    a:settimeout(5)
    local n = #msg
    local f1 = assert(a:receive(8 + n))
    local f2 = assert(a:receive(8 + n))
    assert.equal(0x81, f1:byte(1))
    assert.equal(0xFE, f1:byte(2))                   -- MASK bit, 16-bit length
    assert.equal(n, f1:byte(3) * 256 + f1:byte(4))
    assert.not_equal(f1:sub(5, 8), f2:sub(5, 8))     -- a fresh key per frame
    assert.not_equal(msg, f1:sub(9))
    local head = assert(a:receive(2))
    assert.equal(0xC2, head:byte(1))                 -- FIN, RSV1, binary
    assert.is_true(head:byte(2) >= 128 and head:byte(2) < 128 + 126)   -- masked, short
    local z = assert(a:receive(4 + head:byte(2) - 128))
    -- a server reader refuses unmasked frames (1002), so these are masked
    local r = core.reader { role = "server", rsv_allowed = 4, deflate = core.deflate { in_reset = true } }
    r:feed(f1 .. f2 .. head .. z)
    assert.same({ "text", msg }, { r:next() })
    assert.same({ "text", msg }, { r:next() })
    assert.same({ "binary", msg }, { r:next() })
    a:close()
    b:close()
  end)

  it("has the reader's lifecycle: tostring shows the state, a closed one raises on use, close is idempotent", function()
    local d = core.deflate {}
    local r = core.reader { role = "server", rsv_allowed = 4, deflate = d }
    assert.matches("^ws%.deflate: ", tostring(d))
    local f = core.frame(d:compress("x"), "text", true, true, 4)
    d:close()
    d:close()
    assert.equal("ws.deflate (closed)", tostring(d))
    assert.equal(1, d:stats().deflated)   -- the counters outlive it
    assert.equal(0, d:stats().streams)
    for _, use in ipairs {
      function() d:compress("x") end,
      function() d:decompress("x") end,
      function() core.frame("x", "text", true, true, d) end,
      function() core.send_frame(-1, "x", "text", d) end,
      function() core.reader { role = "server", rsv_allowed = 4, deflate = d } end,
      function() r:feed(f); r:next() end,       -- a reader made with it before
    } do
      local ok, err = pcall(use)
      assert.is_false(ok)
      assert.matches("attempt to use a closed deflate", err, 1, true)
    end
  end)

  it("checks its options", function()
    assert.has_error(function() core.deflate { level = 10 } end)
    assert.has_error(function() core.deflate { out_bits = 16 } end)
    assert.has_error(function() core.deflate { in_bits = 7 } end)
    assert.has_error(function() core.deflate {}:decompress("x", -1) end)
  end)
end)

------------------------------------------------------------------------------
-- Echo results: every echo the same bytes and kind; echoes of messages
-- >= 64 bytes (our server's threshold) came back compressed. Each size was
-- sent as text and binary, `variants` times each (Node 2, python 3).
local function check_echoes(lines, sizes, label, variants)
  local n = 0
  for _, l in ipairs(lines) do
    if l.test == "error" then error(label .. ": " .. l.error) end
    if l.test == "echo" then
      n = n + 1
      local what = string.format("%s %s %s %d", label, l.kind, l.data, l.size)
      assert.is_true(l.same, what)
      assert.equal(l.kind, l.got_kind, what)
      assert.equal(l.size, l.got_size, what)
      assert.equal(l.size >= 64 and 1 or 0, l.compressed_frames, what .. " compressed frames")
    end
  end
  assert.equal(2 * variants * #sizes, n, label .. ": echo count")
end

describe("our server + Node ws client", function()
  local server
  setup(function() server = deflate_server(nil, "deflate-node") end)
  teardown(function() server.stop() end)

  local function node_client(cfg)
    return run_json(string.format("%s %s/spec/peers/deflate_node.js client ws://127.0.0.1:%d/echo %s",
      NODE, ROOT, server.port, shell_quote(json.encode(cfg))), 60)
  end

  it("echoes text and binary, 0 B .. 4 MiB, compressible and random, compressed both ways", function()
    local sizes = { 0, 1, 63, 64, 125, 126, 65535, 65536, MiB, 4 * MiB }
    local lines, out = node_client { sizes = sizes, fragmented = true }
    assert.equal("open", lines[1] and lines[1].test, out)
    assert.equal("permessage-deflate", lines[1].header)
    assert.equal("permessage-deflate", lines[1].extensions)
    check_echoes(lines, sizes, "default", 2)
    local frags = 0
    for _, l in ipairs(lines) do
      if l.test == "fragmented" then
        frags = frags + 1
        assert.is_true(l.same, l.kind)
        assert.equal(l.kind, l.got_kind)
        assert.equal(1, l.compressed_frames)
      end
      -- 4 MiB of a repeated phrase crosses the wire in far fewer bytes
      if l.test == "echo" and l.data == "compressible" and l.size == 4 * MiB then
        assert.is_true(l.wire < 64 * 1024, "wire bytes " .. l.wire)
      end
    end
    assert.equal(2, frags)
    assert.equal(1000, lines[#lines].code)
  end)

  for _, case in ipairs {
    { name = "serverNoContextTakeover", pmd = { serverNoContextTakeover = true },
      header = "permessage-deflate; server_no_context_takeover", params = { server_no_context_takeover = true } },
    { name = "clientNoContextTakeover", pmd = { clientNoContextTakeover = true },
      header = "permessage-deflate; client_no_context_takeover", params = { client_no_context_takeover = true } },
    { name = "serverMaxWindowBits 10", pmd = { serverMaxWindowBits = 10 },
      header = "permessage-deflate; server_max_window_bits=10", params = { server_max_window_bits = 10 } },
    { name = "serverMaxWindowBits 8", pmd = { serverMaxWindowBits = 8 },
      header = "permessage-deflate; server_max_window_bits=8", params = { server_max_window_bits = 8 } },
    { name = "all three, clientMaxWindowBits 9", pmd = { serverNoContextTakeover = true, clientNoContextTakeover = true,
        serverMaxWindowBits = 10, clientMaxWindowBits = 9 },
      header = "permessage-deflate; server_max_window_bits=10; server_no_context_takeover; client_no_context_takeover",
      params = { server_max_window_bits = 10, server_no_context_takeover = true, client_no_context_takeover = true,
                 client_max_window_bits = 9 } },
  } do
    it("agrees on " .. case.name .. " and echoes exactly", function()
      local sizes = { 0, 200, 70000, 300000 }
      local lines, out = node_client { pmd = case.pmd, sizes = sizes, fragmented = true }
      assert.equal("open", lines[1] and lines[1].test, out)
      assert.equal(case.header, lines[1].header)
      assert.same(case.params, lines[1].params)
      check_echoes(lines, sizes, case.name, 2)
      local frags = 0
      for _, l in ipairs(lines) do
        if l.test == "fragmented" then frags = frags + 1; assert.is_true(l.same, l.kind) end
      end
      assert.equal(2, frags)
    end)
  end
end)

describe("our server + python-websockets client", function()
  local server
  setup(function() server = deflate_server(nil, "deflate-py") end)
  teardown(function() server.stop() end)

  it("negotiates by default and echoes text and binary, 0 B .. 4 MiB, compressed both ways", function()
    local sizes = { 0, 1, 63, 64, 125, 126, 65535, 65536, MiB, 4 * MiB }
    local lines, out = run_json(string.format("%s %s/spec/peers/deflate_py.py client ws://127.0.0.1:%d/echo %s",
      H.PYTHON, ROOT, server.port, shell_quote(json.encode(sizes))), 60)
    assert.equal("open", lines[1] and lines[1].test, out)
    assert.equal("permessage-deflate", lines[1].header)
    assert.same({ "PerMessageDeflate" }, lines[1].extensions)
    check_echoes(lines, sizes, "python", 3)
    assert.equal(1000, lines[#lines].code, out)
  end)

  it("honours server_max_window_bits=8: python inflates our messages with a 256-byte window", function()
    -- websockets inflates with exactly the agreed window; each random
    -- message is sent twice in a row, so a compressor reaching back further
    -- than 256 bytes into the previous message would break its inflater
    local sizes = { 64, 200, 300, 5000, 65536 }
    local lines, out = run_json(string.format("%s %s/spec/peers/deflate_py.py client ws://127.0.0.1:%d/echo %s %s",
      H.PYTHON, ROOT, server.port, shell_quote(json.encode(sizes)),
      shell_quote(json.encode { server_max_window_bits = 8 })), 60)
    assert.equal("open", lines[1] and lines[1].test, out)
    assert.equal("permessage-deflate; server_max_window_bits=8", lines[1].header)
    assert.same({ { 15, 8 } }, lines[1].windows)
    check_echoes(lines, sizes, "python window 8", 3)
    assert.equal(1000, lines[#lines].code, out)
  end)

  it("examples/echo.lua --compression too; without the flag it declines the offer", function()
    local sizes = { 0, 126, 65536, MiB }
    for _, on in ipairs { true, false } do
      local echo = H.start_lua("examples/echo.lua", on and "--compression" or "", "deflate-echo-example")
      local lines, out = run_json(string.format("%s %s/spec/peers/deflate_py.py client ws://127.0.0.1:%d/ws %s",
        H.PYTHON, ROOT, echo.port, shell_quote(json.encode(sizes))), 60)
      echo.stop()
      assert.equal("open", lines[1] and lines[1].test, out)
      if on then
        assert.equal("permessage-deflate", lines[1].header)
        check_echoes(lines, sizes, "python", 3)
      else
        assert.is_nil(lines[1].header, out)
        assert.same({}, lines[1].extensions)
      end
      assert.equal(1000, lines[#lines].code, out)
    end
  end)
end)

describe("every message compressed (threshold 0), empty ones included", function()
  local server
  setup(function() server = deflate_server("--c threshold=0", "deflate-threshold0") end)
  teardown(function() server.stop() end)
  local sizes = { 0, 0, 1, 0, 100, 0 }

  local function check(lines, out, label, variants)
    local n = 0
    for _, l in ipairs(lines) do
      assert.is_not.equal("error", l.test, out)
      if l.test == "echo" then
        n = n + 1
        assert.is_true(l.same, label .. " " .. l.kind .. " " .. l.size)
        assert.equal(1, l.compressed_frames, label .. " " .. l.kind .. " " .. l.size)
      end
    end
    assert.equal(2 * variants * #sizes, n, out)
  end

  it("with Node ws", function()
    local lines, out = run_json(string.format("%s %s/spec/peers/deflate_node.js client ws://127.0.0.1:%d/echo %s",
      NODE, ROOT, server.port, shell_quote(json.encode { pmd = { threshold = 0 }, sizes = sizes })), 30)
    check(lines, out, "node", 2)
  end)

  it("with python-websockets", function()
    local lines, out = run_json(string.format("%s %s/spec/peers/deflate_py.py client ws://127.0.0.1:%d/echo %s",
      H.PYTHON, ROOT, server.port, shell_quote(json.encode(sizes))), 30)
    check(lines, out, "python", 3)
  end)
end)

------------------------------------------------------------------------------
-- Our client: echo through a peer server, count what arrived compressed on
-- each side. stats() asks the peer for its counters.
local function client_round(url, conf, sizes)
  local conn = assert(ws.connect(url, { compression = conf or true, max_message = 16 * MiB, timeout = 10 }))
  assert.truthy(conn.deflate, "permessage-deflate was not agreed")
  local s = spy(conn)
  local sent_compressed = 0
  for _, kind in ipairs { "text", "binary" } do
    for _, n in ipairs(sizes) do
      for _, data in ipairs { kind == "text" and utf8_text(n, n) or random_bytes(n), string.rep("a", n) } do
        local before = s.inflated
        assert.is_true(conn:send(data, kind))
        if n >= 64 then sent_compressed = sent_compressed + 1 end
        local got, gkind = conn:receive(20)
        assert.equal(kind, gkind)
        assert.equal(#data, got and #got)
        assert.is_true(got == data, kind .. " " .. n)
        if n > 0 then assert.equal(before + 1, s.inflated, "echo of " .. n .. " bytes arrived compressed") end
      end
    end
  end
  return conn, s, sent_compressed
end

local function stats(conn)
  assert.is_true(conn:send("__stats__"))
  local reply = assert(conn:receive(10))
  return json.decode(reply)
end

describe("our client (compression = true)", function()
  local sizes = { 0, 1, 200, 65536, MiB }

  it("against a Node ws server: echoes exactly, compressed both ways, far fewer bytes on the wire", function()
    local node = H.start_server(function(port)
      return string.format("exec %s %s/spec/peers/deflate_node.js server %d '{\"pmd\":{\"threshold\":0}}'",
        NODE, ROOT, port)
    end, "deflate-node-server")
    finally(node.stop)
    local url = "ws://127.0.0.1:" .. node.port .. "/"
    local conn, s, sent = client_round(url, true, sizes)
    local st = stats(conn)
    assert.equal("permessage-deflate", st.header)
    assert.equal(sent, st.compressed_frames)
    -- the wire: 1 MiB of "a" each way in a few KiB
    local before = st.bytes_read
    assert.is_true(conn:send(string.rep("a", MiB)))
    local w0 = s.wire_in
    assert.equal(string.rep("a", MiB), conn:receive(10))
    local after = stats(conn).bytes_read
    assert.is_true(after - before < 16 * 1024, "node read " .. (after - before) .. " bytes for 1 MiB")
    assert.is_true(s.wire_in - w0 < 16 * 1024, "we read " .. (s.wire_in - w0) .. " bytes for 1 MiB")
    -- context takeover both ways: a compressor and a decompressor of its own,
    -- whose ~300 KiB (invisible to Lua's GC) go with the connection
    assert.equal(2, s.streams)
    assert.is_true(conn:close())
    assert.equal(0, s.streams)
  end)

  it("against a Node ws server with no context takeover both ways and small windows", function()
    local cfg = { pmd = { threshold = 0, serverNoContextTakeover = true, clientNoContextTakeover = true,
                          serverMaxWindowBits = 9, clientMaxWindowBits = 9 } }
    local node = H.start_server(function(port)
      return string.format("exec %s %s/spec/peers/deflate_node.js server %d %s",
        NODE, ROOT, port, shell_quote(json.encode(cfg)))
    end, "deflate-node-server")
    finally(node.stop)
    local conn = client_round("ws://127.0.0.1:" .. node.port .. "/", true, { 0, 200, 70000 })
    local st = stats(conn)
    local p = deflate.parse(st.header)[1].params
    assert.same({ server_no_context_takeover = true, client_no_context_takeover = true,
                  server_max_window_bits = "9", client_max_window_bits = "9" }, p)
    assert.is_true(conn:close())
  end)

  it("against a python-websockets server: echoes exactly, compressed both ways", function()
    local py = H.start_server(function(port)
      return string.format("exec %s %s/spec/peers/deflate_py.py server %d", H.PYTHON, ROOT, port)
    end, "deflate-py-server")
    finally(py.stop)
    local conn, _, sent = client_round("ws://127.0.0.1:" .. py.port .. "/", true, sizes)
    local st = stats(conn)
    assert.equal(sent, st.compressed_frames)
    assert.matches("^permessage%-deflate", st.header)
    assert.is_true(conn:close())
  end)

  it("against a python-websockets server that inflates with the 8-bit window it asked of us", function()
    local py = H.start_server(function(port)
      return string.format("exec %s %s/spec/peers/deflate_py.py server %d %s", H.PYTHON, ROOT, port,
        shell_quote(json.encode { client_max_window_bits = 8 }))
    end, "deflate-py-server-8")
    finally(py.stop)
    local conn, _, sent = client_round("ws://127.0.0.1:" .. py.port .. "/", true, { 0, 200, 300, 65536 })
    assert.equal("permessage-deflate; client_max_window_bits=8", conn.response.headers["sec-websocket-extensions"])
    -- random data twice in a row: a reference back into the first copy
    -- further than 256 bytes would break python's inflater
    local r = random_bytes(5000)
    for _ = 1, 2 do
      assert.is_true(conn:send(r, "binary"))
      assert.is_true(conn:receive(10) == r)
    end
    local st = stats(conn)
    assert.equal(sent + 2, st.compressed_frames)
    assert.is_true(conn:close())
  end)

  it("against our own server, with every option on both sides", function()
    local server = deflate_server("--c server_no_context_takeover=true --c client_max_window_bits=10", "deflate-own")
    finally(server.stop)
    local url = "ws://127.0.0.1:" .. server.port .. "/info"
    local conn = assert(ws.connect(url, { compression = { client_no_context_takeover = true,
      server_max_window_bits = 11, level = 9, threshold = 0 }, timeout = 5 }))
    assert.equal("deflate=true;offer=permessage-deflate; client_max_window_bits; client_no_context_takeover; " ..
      "server_max_window_bits=11", conn:receive(5))
    assert.equal("permessage-deflate; server_max_window_bits=11; server_no_context_takeover; " ..
      "client_no_context_takeover; client_max_window_bits=10", conn.response.headers["sec-websocket-extensions"])
    local s = spy(conn)
    for i = 1, 20 do
      local msg = string.rep("message " .. i .. " ", i * 50)
      assert.is_true(conn:send(msg))
      assert.equal(msg, conn:receive(5))
    end
    assert.equal(20, s.inflated)
    assert.equal(20, s.deflated)
    -- no context takeover either way: the streams are borrowed per message
    assert.equal(0, s.streams)
    assert.is_true(conn:close())
  end)

  describe("against a hand-made server", function()
    local raw_server
    setup(function()
      raw_server = H.start_lua("spec/peers/deflate_raw_server.lua", "", "deflate-raw-server")
    end)
    teardown(function() raw_server.stop() end)
    local function url(path) return "ws://127.0.0.1:" .. raw_server.port .. path end
    local function esc(s) return (s:gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end)) end

    it("fails the handshake on answers it cannot accept", function()
      for _, h in ipairs {
        "x-webkit-deflate-frame", "permessage-deflate; x_foo", "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate, permessage-deflate", "permessage-deflate; server_max_window_bits=16",
      } do
        local conn, err = ws.connect(url("/ext?h=" .. esc(h)), { compression = true, timeout = 5 })
        assert.is_nil(conn, h)
        assert.matches("^handshake: ", err)
      end
      -- an extension answer to a client that offered none
      local conn, err = ws.connect(url("/ext?h=permessage-deflate"), { timeout = 5 })
      assert.is_nil(conn)
      assert.matches("did not offer", err)
      -- what it accepts
      conn = assert(ws.connect(url("/ext?h=" .. esc("permessage-deflate; server_no_context_takeover")),
        { compression = true, timeout = 5 }))
      assert.equal("hi", conn:receive(5))
      conn:close(1000, nil, 2)
    end)

    it("fails with 1009 on a compressed bomb and 1002 on RSV1 it did not agree to", function()
      local conn = assert(ws.connect(url("/bomb"), { compression = true, timeout = 5 }))
      local data, err, code = conn:receive(10)
      assert.same({ nil, "message too big", 1009 }, { data, err, code })
      assert.truthy(wait_output(raw_server, "/bomb close 1009", 5), raw_server.output())
      conn = assert(ws.connect(url("/plain"), { compression = true, timeout = 5 }))
      assert.is_nil(conn.deflate)
      data, err, code = conn:receive(10)
      assert.same({ nil, "protocol error", 1002 }, { data, err, code })
      assert.truthy(wait_output(raw_server, "/plain close 1002", 5), raw_server.output())
    end)

    it("reads a message with BFINAL set and one that refers back to it", function()
      local conn = assert(ws.connect(url("/bfinal"), { compression = true, timeout = 5 }))
      assert.equal("Hello", conn:receive(5))
      assert.equal("Hello", conn:receive(5))
      conn:close(1000, nil, 2)
    end)
  end)
end)

------------------------------------------------------------------------------
describe("Chromium #browser", function()
  it("negotiates permessage-deflate with our server and gets every echo back exactly", function()
    local server = deflate_server(nil, "deflate-chromium")
    local dir = os.tmpname()
    os.remove(dir)
    -- busted keeps one finally per test
    finally(function()
      server.stop()
      os.execute("rm -rf " .. dir)
    end)
    assert(H.sh("mkdir -p " .. dir))
    local p = io.popen(string.format("timeout 60 /usr/bin/chromium --headless --no-sandbox --disable-gpu " ..
      "--disable-quic --no-first-run --disable-background-networking --disable-component-update " ..
      "--disable-sync --user-data-dir=%s --virtual-time-budget=30000 --dump-dom http://127.0.0.1:%d/ 2>/dev/null",
      dir, server.port))
    local dom = p:read("*a")
    p:close()
    local result = dom:match('<pre id="result">(.-)</pre>') or ""
    -- the same results reached the server over /report
    local report = wait_output(server, "report ([^\n]*)", 5)
    assert.equal(result, report, dom)
    local items = {}
    for item in result:gmatch("[^|]+") do items[#items + 1] = item end
    assert.equal("info deflate=true;offer=permessage-deflate; client_max_window_bits", items[1], result)
    assert.equal("extensions permessage-deflate", items[2], result)
    local ok = 0
    for i = 3, #items do
      assert.truthy(items[i]:match(" ok$"), items[i])
      ok = ok + 1
    end
    assert.equal(15, ok, result)
  end)
end)

------------------------------------------------------------------------------
describe("hostile peers against our server", function()
  local server, off
  setup(function()
    server = deflate_server("--set max_message=1048576", "deflate-hostile")
    off = deflate_server("--off", "deflate-off")
  end)
  teardown(function()
    server.stop()
    off.stop()
  end)
  local EXT = "permessage-deflate"

  -- the close code the server sends, and that it then drops TCP
  local function closes_with(r, code)
    local c, reason = r:read_close()
    assert.equal(code, c, reason)
    assert.is_true(r:closed_by_peer(3))
    r:close()
    return reason
  end

  it("closes 1009 on a zip bomb (100 KiB inflating to 100 MiB) and RSS stays flat", function()
    local bomb = core.deflate {}:compress(string.rep("\0", 100 * MiB))
    assert.is_true(#bomb > 90 * 1024 and #bomb < MiB)
    -- warm up: one connection, one compressed message
    local r = raw(server.port, "/echo", EXT)
    r:send_frame(1, core.deflate {}:compress(string.rep("x", 1000)), { rsv = 4 })
    assert.equal(4, r:read_frame().rsv)
    r:close()
    local rss0 = H.rss_kib(server.pid)
    for _ = 1, 10 do
      r = raw(server.port, "/echo", EXT)
      r:send_frame(2, bomb, { rsv = 4 })
      assert.equal("message too big", closes_with(r, 1009))
    end
    -- the same bomb in fragments
    r = raw(server.port, "/echo", EXT)
    local cut = math.floor(#bomb / 3)
    r:send_frame(2, bomb:sub(1, cut), { rsv = 4, fin = false })
    r:send_frame(0, bomb:sub(cut + 1, 2 * cut), { fin = false })
    r:send_frame(0, bomb:sub(2 * cut + 1))
    closes_with(r, 1009)
    local grown = H.rss_kib(server.pid) - rss0
    assert.is_true(grown < 16 * 1024, "server RSS grew by " .. grown .. " KiB")
    -- the server still serves
    r = raw(server.port, "/echo", EXT)
    r:send_frame(1, "hello")
    assert.equal("hello", r:read_frame().payload)
    r:close()
  end)

  it("accepts a message that inflates to exactly max_message, closes 1009 one byte above", function()
    local r = raw(server.port, "/echo", EXT)
    r:send_frame(2, core.deflate {}:compress(string.rep("b", MiB)), { rsv = 4 })
    local f = r:read_frame()
    assert.equal(4, f.rsv)
    assert.equal(string.rep("b", MiB), core.deflate {}:decompress(f.payload))
    r:send_frame(2, core.deflate {}:compress(string.rep("b", MiB + 1)), { rsv = 4 })
    closes_with(r, 1009)
  end)

  it("accepts max_message incompressible bytes, which DEFLATE makes a little longer on the wire", function()
    local msg = random_bytes(MiB)
    local r = raw(server.port, "/echo", EXT)
    for _, level in ipairs { 1, 9 } do
      local c = core.deflate { level = level }:compress(msg)
      assert.is_true(#c > MiB, #c)
      r:send_frame(2, c, { rsv = 4 })
      local f = r:read_frame()
      assert.equal(2, f.opcode)
      assert.equal(msg, core.deflate {}:decompress(f.payload))
    end
    r:close()
  end)

  it("closes 1009 at once on a bomb as long on the wire as a compressed max_message may be", function()
    -- 1 GiB of zeros in 1.1 MiB: compressed 1 MiB blocks joined by the
    -- sync flush's 00 00 ff ff, so they make one DEFLATE stream
    local block = core.deflate {}:compress(string.rep("\0", MiB)) .. "\0\0\255\255"
    local bomb = string.rep(block, math.floor(1.1 * MiB / #block))
    assert.is_true(#bomb > MiB and #bomb < 1.13 * MiB, #bomb)
    local rss0 = H.rss_kib(server.pid)
    local t0 = require("socket").gettime()
    for _ = 1, 3 do
      local r = raw(server.port, "/echo", EXT)
      r:send_frame(2, bomb, { rsv = 4 })
      assert.equal("message too big", closes_with(r, 1009))
    end
    assert.is_true(require("socket").gettime() - t0 < 5)
    local grown = H.rss_kib(server.pid) - rss0
    assert.is_true(grown < 16 * 1024, "server RSS grew by " .. grown .. " KiB")
  end)

  it("takes the permessage-deflate offer after a foreign one with a quoted ',', on one line or two", function()
    for _, lines in ipairs {
      'Sec-WebSocket-Extensions: x-foo; a="1,2", permessage-deflate\r\n',
      'Sec-WebSocket-Extensions: x-foo; a="1;2"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n',
    } do
      local r, head = H.raw(server.port, H.request(server.port, "/echo", lines), { timeout = 5 })
      assert.matches("^HTTP/1.1 101", head)
      assert.equal("permessage-deflate", answered_ext(head), lines)
      r:close()
    end
  end)

  it("closes 1002 on RSV1 when compression was not negotiated", function()
    local compressed = core.deflate {}:compress("hello hello hello")
    -- no offer
    local r, head = raw(server.port, "/echo")
    assert.is_nil(answered_ext(head))
    r:send_frame(1, compressed, { rsv = 4 })
    closes_with(r, 1002)
    -- an offer to a server without compression
    r, head = raw(off.port, "/echo", EXT)
    assert.is_nil(answered_ext(head))
    r:send_frame(1, compressed, { rsv = 4 })
    closes_with(r, 1002)
    -- RSV2 and RSV3 are never allowed
    for _, rsv in ipairs { 2, 1, 6 } do
      r = raw(server.port, "/echo", EXT)
      r:send_frame(1, "x", { rsv = rsv })
      closes_with(r, 1002)
    end
  end)

  it("closes 1002 on RSV1 on a continuation frame or a control frame", function()
    local c = core.deflate {}:compress("hello hello hello hello")
    local r = raw(server.port, "/echo", EXT)
    r:send_frame(1, c:sub(1, 4), { rsv = 4, fin = false })
    r:send_frame(0, c:sub(5), { rsv = 4 })
    closes_with(r, 1002)
    r = raw(server.port, "/echo", EXT)
    r:send_frame(1, "plain", { fin = false })
    r:send_frame(0, " text", { rsv = 4 })
    closes_with(r, 1002)
    for _, op in ipairs { 9, 10, 8 } do   -- ping, pong, close
      r = raw(server.port, "/echo", EXT)
      r:send_frame(op, op == 8 and "\3\232" or "p", { rsv = 4 })
      closes_with(r, 1002)
    end
  end)

  it("closes 1007 on invalid compressed data", function()
    for _, bad in ipairs {
      B.hex "ff ff ff ff ff",                 -- reserved block type
      "\000\005\000\000\000Hello",            -- stored block with a bad length check
      B.hex "f2 00 11 00 00",                  -- refers to a window nobody sent
      B.hex "f3 48 cd c9 c9 07 00 ff ff",  -- junk after a final block
    } do
      local r = raw(server.port, "/echo", EXT)
      r:send_frame(2, bad, { rsv = 4 })
      assert.equal("invalid compressed data", closes_with(r, 1007))
    end
  end)

  it("closes 1007 on compressed text that inflates to invalid UTF-8, single or fragmented", function()
    local d = core.deflate {}
    local bad = d:compress("valid start \255\254 then invalid")
    local r = raw(server.port, "/echo", EXT)
    r:send_frame(1, bad, { rsv = 4 })
    closes_with(r, 1007)
    -- a 4-byte character cut at the end of the message
    r = raw(server.port, "/echo", EXT)
    local cut = core.deflate {}:compress(string.rep("a", 100) .. ("😀"):sub(1, 3))
    r:send_frame(1, cut:sub(1, 3), { rsv = 4, fin = false })
    r:send_frame(0, cut:sub(4))
    closes_with(r, 1007)
    -- the same bytes as binary are fine
    r = raw(server.port, "/echo", EXT)
    local bin = string.rep("valid start \255\254 then invalid", 3)
    r:send_frame(2, core.deflate {}:compress(bin), { rsv = 4 })
    local f = r:read_frame()
    assert.equal(2, f.opcode)
    assert.equal(4, f.rsv)
    assert.equal(bin, core.deflate {}:decompress(f.payload))
    r:close()
  end)

  it("reads compressed messages split at any byte, with control frames in between", function()
    local msg = utf8_text(20000, 3)
    local d = core.deflate {}
    local c = d:compress(msg)
    local r = raw(server.port, "/echo", EXT)
    local inflate = core.deflate {}
    for _, parts in ipairs { 2, 7, #c } do
      local step = math.max(1, math.floor(#c / parts))
      local i, first = 1, true
      while i <= #c do
        local j = math.min(#c, i + step - 1)
        r:send_frame(first and 1 or 0, c:sub(i, j), { rsv = first and 4 or 0, fin = j == #c })
        if first then r:send_frame(9, "ping") end
        first, i = false, j + 1
      end
      local f = r:read_frame()
      if f.opcode == 10 then f = r:read_frame() end
      assert.equal(1, f.opcode)
      assert.equal(msg, inflate:decompress(f.payload))
      c = d:compress(msg)   -- the next round refers back to this one
      if parts == 2 then assert.is_true(#c < 2000, "second copy: " .. #c .. " bytes") end
    end
    r:close()
  end)

  it("reads a BFINAL message (RFC 7692 section 7.2.3.3) and keeps the window after it", function()
    local r = raw(server.port, "/echo", EXT)
    r:send_frame(1, B.hex "f3 48 cd c9 c9 07 00 00", { rsv = 4 })
    assert.equal("Hello", r:read_frame().payload)   -- below the threshold: sent plain
    r:send_frame(1, B.hex "f2 00 11 00 00", { rsv = 4 })
    assert.equal("Hello", r:read_frame().payload)
    -- and one that ends with its final block, with no empty block after it
    r:send_frame(1, B.hex "f3 48 cd c9 c9 07 00", { rsv = 4 })
    assert.equal("Hello", r:read_frame().payload)
    r:send_frame(1, B.hex "f2 00 11 00 00", { rsv = 4 })
    assert.equal("Hello", r:read_frame().payload)
    r:close()
  end)

  describe("context takeover", function()
    local MSG = random_bytes(1800)   -- does not compress on its own, to a few bytes as a repeat

    -- send MSG three times (compressed by `d`), return the sizes of the echoes
    local function echo_sizes(r, d)
      local inflate = core.deflate {}
      local sizes = {}
      for i = 1, 3 do
        r:send_frame(2, d:compress(MSG), { rsv = 4 })
        local f = r:read_frame()
        assert.equal(4, f.rsv)
        assert.equal(MSG, inflate:decompress(f.payload), "echo " .. i)
        sizes[i] = #f.payload
      end
      return sizes
    end

    it("with takeover the second identical message is much smaller on the wire", function()
      local r, head = raw(server.port, "/echo", EXT)
      assert.equal("permessage-deflate", answered_ext(head))
      local s = echo_sizes(r, core.deflate {})
      assert.is_true(s[1] > 1500 and s[2] < 100, table.concat(s, " "))
      assert.is_true(s[3] < 100, table.concat(s, " "))
      r:close()
    end)

    it("with server_no_context_takeover every message stands alone", function()
      local r, head = raw(server.port, "/echo", EXT .. "; server_no_context_takeover")
      assert.equal("permessage-deflate; server_no_context_takeover", answered_ext(head))
      -- each echo must inflate on its own
      local d = core.deflate {}
      for _ = 1, 3 do
        r:send_frame(2, d:compress(MSG), { rsv = 4 })
        local f = r:read_frame()
        assert.equal(MSG, core.deflate {}:decompress(f.payload))
        assert.is_true(#f.payload > 1500)
      end
      r:close()
    end)

    it("with client_no_context_takeover the server reads independent messages", function()
      local r, head = raw(server.port, "/echo", EXT .. "; client_no_context_takeover")
      assert.equal("permessage-deflate; client_no_context_takeover", answered_ext(head))
      local s = echo_sizes(r, core.deflate { out_reset = true })
      assert.is_true(s[1] > 1500 and s[2] < 100, table.concat(s, " "))   -- the server's direction still takes over
      r:close()
    end)

    it("a client that keeps its context after agreeing not to is failed with 1007", function()
      local r = raw(server.port, "/echo", EXT .. "; client_no_context_takeover")
      local d = core.deflate {}
      r:send_frame(2, d:compress(MSG), { rsv = 4 })
      r:read_frame()
      r:send_frame(2, d:compress(MSG), { rsv = 4 })   -- refers to the first message
      closes_with(r, 1007)
    end)
  end)
end)
