--- In-process checks of lua-ws on the Lua that runs this script: Lua 5.1,
-- LuaJIT, 5.3 or 5.4. Plain Lua, no busted, nothing newer than 5.1 (no
-- bitwise operators, string.pack, goto, \x escapes, or yields across pcall).
--   LUA_PATH=... LUA_CPATH=... luajit spec/compat/smoke.lua [LUA-COMMAND]
-- LUA-COMMAND (default $LUA, else this interpreter) runs examples/echo.lua
-- as a subprocess. Prints FAIL lines, then "compat NAME: N passed, N failed"
-- as its last line; exits non-zero if anything failed.
local socket = require "socket"
local core = require "ws.core"
local ws = require "ws"
local loop = require "ws.loop"

local gettime, floor = socket.gettime, math.floor
local unpack = table.unpack or unpack
local LUA = arg[1] or os.getenv("LUA") or arg[-1] or "lua"
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/compat/smoke%.lua$")) or "."
local NAME = (LUA:match("([^/%s]+)$") or LUA) .. " (" .. (rawget(_G, "jit") and jit.version or _VERSION) .. ")"

local passed, failed = 0, 0
local function record(name, ok, err)
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    print("FAIL " .. name .. ": " .. tostring(err))
  end
end

--- A test that does not wait: errors are failures.
local function test(name, fn)
  record(name, xpcall(fn, debug.traceback))
end

local function eq(want, got, what)
  if want ~= got then
    local function show(v)
      if type(v) == "string" and #v > 60 then return string.format("%q...(%d bytes)", v:sub(1, 60), #v) end
      return type(v) == "string" and string.format("%q", v) or tostring(v)
    end
    error((what or "value") .. ": expected " .. show(want) .. ", got " .. show(got), 2)
  end
end

---- pure-Lua helpers (no ws.core): bytes, xor, frames ------------------------

local bytes = string.char

local function be16(n) return bytes(floor(n / 256), n % 256) end

local function bxor(a, b)
  local r, p = 0, 1
  while a > 0 or b > 0 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + p end
    a, b, p = (a - x) / 2, (b - y) / 2, p * 2
  end
  return r
end

-- payload xor key, starting at key position pos (0..3)
local function xor_mask(payload, key, pos)
  local k, t = { key:byte(1, 4) }, {}
  pos = pos or 0
  for i = 1, #payload do t[i] = bytes(bxor(payload:byte(i), k[(i - 1 + pos) % 4 + 1])) end
  return table.concat(t)
end

local OP = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }
local KEY = bytes(0x37, 0xfa, 0x21, 0x3d)

--- A frame built by hand. o: fin (default true), rsv, key (masks when given).
local function build(op, payload, o)
  o = o or {}
  op = OP[op] or op
  local b0 = (o.fin == false and 0 or 128) + (o.rsv or 0) * 16 + op
  local n, m = #payload, o.key and 128 or 0
  local len
  if n < 126 then
    len = bytes(m + n)
  elseif n < 65536 then
    len = bytes(m + 126) .. be16(n)
  else
    local t = { m + 127 }
    for i = 7, 0, -1 do t[#t + 1] = floor(n / 256 ^ i) % 256 end
    len = bytes(unpack(t))
  end
  if o.key then payload = xor_mask(payload, o.key) end
  return bytes(b0) .. len .. (o.key or "") .. payload
end

--- Feed data to a new reader in chunks of `chunk` bytes; returns the
-- events as strings "kind|payload|code|reason", and "error|reason|code".
local function read_all(opts, data, chunk)
  local r = core.reader(opts)
  local out, pos = {}, 1
  chunk = chunk or math.max(#data, 1)
  repeat
    r:feed(data:sub(pos, pos + chunk - 1))
    pos = pos + chunk
    while true do
      local a, b, c, d = r:next()
      if a == nil then
        if b then
          out[#out + 1] = "error|" .. b .. "|" .. tostring(c)
          return out
        end
        break
      end
      out[#out + 1] = a .. "|" .. b .. (c and "|" .. c or "") .. (d and "|" .. d or "")
    end
  until pos > #data
  return out
end

local function join(t) return table.concat(t, "; ") end

-- n bytes of valid UTF-8 with 1- to 4-byte characters
local UNIT = "a\195\169\226\130\172\240\157\132\158"   -- a é € 𝄞: 10 bytes
local function text_of(n)
  return string.rep(UNIT, floor(n / 10)) .. string.rep("a", n % 10)
end

-- n random bytes (core.random gives at most 64 KiB at a time)
local function binary_of(n)
  local t, left = {}, n
  while left > 0 do
    local k = math.min(left, 65536)
    t[#t + 1] = core.random(k)
    left = left - k
  end
  return table.concat(t)
end

local SERVER, CLIENT = { role = "server" }, { role = "client" }

---- ws.core ---------------------------------------------------------------------

test("accept key: RFC 6455 section 1.3", function()
  eq("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", core.accept_key("dGhlIHNhbXBsZSBub25jZQ=="))
  local key = core.new_key()
  eq(24, #key, "new_key length")
  assert(core.accept_key(key), "new_key is a valid key")
  eq(nil, (core.accept_key("short")), "short key")
end)

test("RFC 6455 section 5.7 examples", function()
  local hello = "Hello"
  local unmasked = bytes(0x81, 0x05) .. hello
  local masked = bytes(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58)
  eq(unmasked, core.frame(hello, "text"), "unmasked text frame")
  eq(masked, core.frame(hello, "text", true, KEY), "masked text frame")
  eq(masked, build("text", hello, { key = KEY }), "the oracle")
  eq("text|Hello", join(read_all(CLIENT, unmasked)))
  eq("text|Hello", join(read_all(SERVER, masked)))
  local frags = bytes(0x01, 0x03) .. "Hel" .. bytes(0x80, 0x02) .. "lo"
  eq("text|Hello", join(read_all(CLIENT, frags)))
  eq("text|Hello", join(read_all(CLIENT, frags, 1)), "byte by byte")
  eq("ping|Hello", join(read_all(CLIENT, bytes(0x89, 0x05) .. hello)))
  eq("pong|Hello", join(read_all(SERVER, bytes(0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58))))
  local b256 = binary_of(256)
  eq(bytes(0x82, 0x7e, 0x01, 0x00) .. b256, core.frame(b256, "binary"), "256 bytes")
  local b64k = binary_of(65536)
  eq(bytes(0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0) .. b64k, core.frame(b64k, "binary"), "64 KiB")
  eq("binary|" .. b64k, join(read_all(CLIENT, core.frame(b64k, "binary"), 1000)))
end)

test("frame/reader round trips: sizes, kinds, masks, chunkings", function()
  for _, n in ipairs { 0, 1, 125, 126, 127, 65535, 65536, 70000 } do
    for _, kind in ipairs { "text", "binary" } do
      local p = kind == "text" and text_of(n) or binary_of(n)
      -- server frames (unmasked) to a client reader, client frames to a server
      eq(build(kind, p), core.frame(p, kind), "unmasked " .. kind .. " " .. n)
      eq(build(kind, p, { key = KEY }), core.frame(p, kind, true, KEY), "masked " .. kind .. " " .. n)
      for _, chunk in ipairs { 1, 7, 4096, 1e9 } do
        if chunk > 1 or n <= 1000 then
          eq(kind .. "|" .. p, join(read_all(CLIENT, core.frame(p, kind), chunk)), kind .. " " .. n .. " to client")
          eq(kind .. "|" .. p, join(read_all(SERVER, core.frame(p, kind, true, true), chunk)),
            kind .. " " .. n .. " to server, chunks of " .. chunk)
        end
      end
    end
  end
  -- 1 MiB, and a random mask key each time
  local big = binary_of(1024 * 1024)
  eq("binary|" .. big, join(read_all({ role = "server", max_message = 0 }, core.frame(big, "binary", true, true), 65536)))
  eq("text|" .. text_of(1024 * 1024), join(read_all(CLIENT, core.frame(text_of(1024 * 1024), "text"))))
end)

test("fragmented and masked messages, control frames in between", function()
  local data = build("text", "Hel", { fin = false, key = KEY }) .. build("ping", "p1", { key = KEY })
    .. build("continuation", "lo ", { fin = false, key = bytes(1, 2, 3, 4) })
    .. build("continuation", "", { fin = false, key = KEY })
    .. build("continuation", "world", { key = bytes(255, 0, 255, 0) })
  for _, chunk in ipairs { 1, 2, 3, 5, 1e9 } do
    eq("ping|p1; text|Hello world", join(read_all(SERVER, data, chunk)), "chunks of " .. chunk)
  end
  -- built by core.frame with fin=false, rsv, opcodes as numbers
  local parts = core.frame("ab", "binary", false, true) .. core.frame("", 0, false, true) .. core.frame("c", 0, true, true)
  eq("binary|abc", join(read_all(SERVER, parts)))
  -- a multi-byte character split across fragments is fine
  eq("text|\226\130\172", join(read_all(CLIENT, build("text", "\226", { fin = false }) .. build("continuation", "\130\172"))))
  -- protocol errors
  local bad = {
    { SERVER, build("text", "x"), 1002 },                                      -- unmasked to a server
    { CLIENT, build("text", "x", { key = KEY }), 1002 },                       -- masked to a client
    { SERVER, build("continuation", "x", { key = KEY }), 1002 },               -- nothing to continue
    { SERVER, build("text", "a", { fin = false, key = KEY }) .. build("text", "b", { key = KEY }), 1002 },
    { SERVER, build("ping", "x", { fin = false, key = KEY }), 1002 },          -- fragmented control
    { SERVER, build("ping", string.rep("a", 126), { key = KEY }), 1002 },      -- control > 125
    { SERVER, build("text", "x", { rsv = 4, key = KEY }), 1002 },              -- RSV1, no extension
    { SERVER, build(3, "x", { key = KEY }), 1002 },                            -- reserved opcode
    { SERVER, build(11, "x", { key = KEY }), 1002 },
    { { role = "server", max_message = 10 }, build("text", "0123456789x", { key = KEY }), 1009 },
    { { role = "server", max_message = 10 },
      build("binary", "01234", { fin = false, key = KEY }) .. build("continuation", "56789x", { key = KEY }), 1009 },
  }
  for i, b in ipairs(bad) do
    local out = read_all(b[1], b[2])
    eq("error|", (out[#out] or ""):match("^error|") and "error|" or out[#out], "case " .. i)
    eq(tostring(b[3]), out[#out]:match("|(%d+)$"), "case " .. i .. " code")
  end
  -- exactly max_message is fine; RSV1 passes with rsv_allowed = 4
  eq("text|0123456789", join(read_all({ role = "server", max_message = 10 }, build("text", "0123456789", { key = KEY }))))
  eq("binary|abc|4", join(read_all({ role = "server", rsv_allowed = 4 }, build("binary", "abc", { rsv = 4, key = KEY }))))
end)

test("close codes: every code 0..5000 and 65535, both ways", function()
  local function valid(c)
    return (c >= 1000 and c <= 1003) or (c >= 1007 and c <= 1014) or (c >= 3000 and c <= 4999)
  end
  local codes = {}
  for c = 0, 5000 do codes[#codes + 1] = c end
  codes[#codes + 1] = 65535
  for _, c in ipairs(codes) do
    local p = core.close_payload(c, "why")
    if valid(c) then
      eq(be16(c) .. "why", p, "close_payload(" .. c .. ")")
      eq("close|" .. be16(c) .. "why|" .. c .. "|why", join(read_all(SERVER, build("close", be16(c) .. "why", { key = KEY }))))
      eq("close|" .. be16(c) .. "|" .. c .. "|", join(read_all(CLIENT, build("close", be16(c)))))
    else
      eq(nil, p, "close_payload(" .. c .. ")")
      local out = read_all(SERVER, build("close", be16(c), { key = KEY }))
      eq("error|1002", out[1]:match("^error|") .. out[1]:match("(%d+)$"), "close code " .. c)
    end
  end
  eq("", core.close_payload(), "no code")
  eq(nil, (core.close_payload(1000, string.rep("r", 124))), "reason too long")
  eq(be16(1000) .. string.rep("r", 123), core.close_payload(1000, string.rep("r", 123)))
  eq(nil, (core.close_payload(1000, "\255")), "reason not utf-8")
  eq("close||1005|", join(read_all(SERVER, build("close", "", { key = KEY }))), "empty close")
  local out = read_all(SERVER, build("close", "\15", { key = KEY }))
  eq("1002", out[1]:match("(%d+)$"), "1-byte close payload")
  out = read_all(CLIENT, build("close", be16(1000) .. "bad \255"))
  eq("1007", out[1]:match("(%d+)$"), "close reason not utf-8")
  assert(not pcall(core.close_payload, 1000.5), "non-integral code raises")
end)

test("UTF-8 vectors", function()
  local good = { "", "abc", "\195\169", "\226\130\172", "\240\157\132\158", "\244\143\191\191",
                 "\237\159\191", "\238\128\128", "\239\187\191", text_of(1000) }
  local bad = { "\255", "\254", "\192\128", "\193\191", "\224\128\128", "\224\159\191", "\237\160\128",
                "\237\191\191", "\240\128\128\128", "\244\144\128\128", "\195", "\226\130", "\128",
                "abc\191", "\248\136\128\128\128", "a\195(", text_of(1000) .. "\237\160\128" }
  for i, s in ipairs(good) do
    eq(true, core.utf8_valid(s), "good " .. i)
    eq("text|" .. s, join(read_all(CLIENT, build("text", s))), "good text " .. i)
  end
  for i, s in ipairs(bad) do
    eq(false, core.utf8_valid(s), "bad " .. i)
    local out = read_all(CLIENT, build("text", s))
    eq("1007", out[#out]:match("^error|.*|(%d+)$"), "bad text " .. i)
    eq("binary|" .. s, join(read_all(CLIENT, build("binary", s))), "binary is not checked " .. i)
  end
  -- checked across fragment boundaries
  local out = read_all(CLIENT, build("text", "\237", { fin = false }) .. build("continuation", "\160\128"))
  eq("1007", out[#out]:match("(%d+)$"), "surrogate split across fragments")
end)

test("mask round trips against a pure-Lua xor", function()
  local key = bytes(0x12, 0x9a, 0xff, 0x01)
  for n = 0, 70 do
    local d = binary_of(n)
    for pos = 0, 3 do
      local m = core.mask(d, key, pos)
      eq(xor_mask(d, key, pos), m, "mask " .. n .. " at " .. pos)
      eq(d, core.mask(m, key, pos), "unmask " .. n .. " at " .. pos)
    end
  end
  local big = binary_of(1024 * 1024 + 3)
  eq(big, core.mask(core.mask(big, key, 1), key, 1), "1 MiB + 3")
  eq(xor_mask(big:sub(1, 4099), key, 2), core.mask(big, key, 2):sub(1, 4099), "prefix of a big mask")
  assert(not pcall(core.mask, "x", "abc"), "3-byte key raises")
  assert(not pcall(core.frame, "x", 1.5), "opcode 1.5 raises")
  assert(not pcall(core.frame, "x", "bogus"), "unknown kind raises")
end)

test("permessage-deflate round trips", function()
  local tx, rx = core.deflate {}, core.deflate {}
  for _, n in ipairs { 0, 1, 100, 5000, 100000, 1024 * 1024 } do
    for _, p in ipairs { text_of(n), binary_of(n), string.rep("z", n) } do
      local c = tx:compress(p)
      eq(p, rx:decompress(c), "size " .. n)
    end
  end
  -- no context takeover, small windows
  local a = core.deflate { level = 9, out_bits = 9, in_bits = 9, out_reset = true, in_reset = true }
  local b = core.deflate { level = 1, out_bits = 9, in_bits = 9, out_reset = true, in_reset = true }
  for _ = 1, 3 do eq(text_of(3000), b:decompress(a:compress(text_of(3000)))) end
  local z = core.deflate {}
  local bomb = z:compress(string.rep("\0", 4 * 1024 * 1024))
  local got, err = core.deflate {}:decompress(bomb, 1024 * 1024)
  eq(nil, got)
  eq("message too big", err)
  got, err = core.deflate {}:decompress(bytes(255, 255, 255, 255, 0, 1))
  eq(nil, got)
  eq("invalid compressed data", err)
  tx:close(); rx:close()
  -- negotiation
  local deflate = require "ws.deflate"
  local ext, dopts = deflate.accept("permessage-deflate; client_max_window_bits", true)
  eq("permessage-deflate", ext)
  eq(15, dopts.out_bits)
  local agreed = deflate.agree("permessage-deflate; server_max_window_bits=10", true)
  eq(15, agreed.out_bits)
  ext = deflate.accept("permessage-deflate; server_max_window_bits=10", { server_max_window_bits = 12 })
  eq("permessage-deflate; server_max_window_bits=10", ext)
end)

test("HTTP parsing", function()
  local req = core.parse_request("GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
  eq("/ws", req.path)
  eq("x=1", req.query)
  eq("1, 2", req.headers["x-a"])
  eq("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", req.ws_accept)
  local res = core.build_response(req.ws_accept, "chat")
  local parsed = core.parse_response(res, "dGhlIHNhbXBsZSBub25jZQ==")
  eq(101, parsed.status)
  eq("chat", parsed.headers["sec-websocket-protocol"])
  local r2 = core.parse_request("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
  eq(426, r2.ws_status)
end)

---- a server and 20 clients in one ws.loop -------------------------------------------

local l = loop.new()
local MIB = 1024 * 1024
local server_closes = {}       -- close code seen by the server, per client index
local server = assert(ws.listen {
  host = "127.0.0.1", port = 0, loop = l, max_message = 2 * MIB,
  protocols = { "chat", "superchat" },
  on_disconnect = function(conn)
    local idx = conn.request.query and tonumber(conn.request.query:match("i=(%d+)"))
    if idx then server_closes[idx] = { conn.close_code, conn.close_reason } end
  end,
})
server:route("/echo", function(conn)
  while true do
    local data, kind = conn:receive()
    if not data then break end
    if not conn:send(data, kind) then break end
  end
end)
server:route("/proto", function(conn)
  conn:send(conn.protocol or "none")
  conn:receive()
end)
server:route("/close", function(conn)
  conn:close(4100, "server bye")
end)
server:route("/crash", function(conn)
  conn:receive()
  error("deliberate handler error")
end)
server:page("/slow", function(req)
  l:sleep(0.05)            -- a page function may wait too
  return 200, "slept " .. req.path, { ["Content-Type"] = "text/plain" }
end)
server:route("/iter", function(conn)
  if loop.LUA51 then
    -- Lua 5.1 cannot yield out of a for iterator: messages() says so at once
    local ok, err = pcall(conn.messages, conn)
    conn:send(ok and "no error" or (tostring(err):match("cannot wait inside a for loop") and "refused" or tostring(err)))
    return
  end
  for data, kind in conn:messages() do conn:send(data, kind) end
end)
local base = "ws://127.0.0.1:" .. server.port

--- Run fn as a task of l; a pass if it returns without error in secs.
local function in_loop(name, secs, fn)
  local done, ok, err = false, false, nil
  l:spawn(function()
    ok, err = loop.xpcall(fn, debug.traceback)
    done = true
  end)
  local deadline = gettime() + secs
  while not done and gettime() < deadline do l:step(0.05) end
  record(name, done and ok, done and err or "timed out after " .. secs .. " s")
end

in_loop("loop.xpcall: waits inside, catches errors, passes arguments and results", 5, function()
  local ok, a, b = loop.xpcall(function(x, y) l:sleep(0.01) return x + 1, y end, debug.traceback, 41, "y")
  eq(true, ok); eq(42, a); eq("y", b)
  local ok2, err = loop.xpcall(function() l:sleep(0.01) error("boom") end, debug.traceback)
  eq(false, ok2)
  assert(tostring(err):find("boom"), "error message kept")
  -- nested, and a task that is woken from inside
  local ok3, v = loop.xpcall(function()
    local co = coroutine.running()
    l:spawn(function() l:sleep(0.01) l:wake(co, "woken") end)
    return select(2, loop.xpcall(function() return l:suspend(gettime() + 2) end, debug.traceback))
  end, debug.traceback)
  eq(true, ok3); eq("woken", v)
end)

in_loop("20 clients: text and binary 0..1 MiB, ping/pong, close codes", 90, function()
  local N, finished, errors = 20, 0, {}
  local sizes = { 0, 1, 125, 126, 65535, 65536, MIB }
  for i = 1, N do
    l:spawn(function()
      local ok, err = loop.xpcall(function()
        local pongs = {}
        local conn = assert(ws.connect(base .. "/echo?i=" .. i, {
          max_message = 2 * MIB, timeout = 10,
          on_pong = function(_, data) pongs[#pongs + 1] = data end,
        }))
        for k, n in ipairs(sizes) do
          local kind = (i + k) % 2 == 0 and "text" or "binary"
          local msg = kind == "text" and text_of(n) or binary_of(n)
          assert(conn:send(msg, kind))
          local data, got = conn:receive(20)
          eq(msg, data, "client " .. i .. " " .. kind .. " " .. n)
          eq(kind, got)
        end
        assert(conn:ping("p" .. i))
        assert(conn:send("after ping"))
        eq("after ping", (conn:receive(5)))
        eq("p" .. i, pongs[1], "pong")
        local ok2, code, reason = conn:close(4000 + i, "bye " .. i)
        eq(true, ok2, "close")
        eq(4000 + i, code, "close code echoed")
        eq("closed", conn.state)
      end, debug.traceback)
      if not ok then errors[#errors + 1] = err end
      finished = finished + 1
    end)
  end
  local deadline = gettime() + 80
  while finished < N and gettime() < deadline do l:sleep(0.02) end
  eq(N, finished, "clients finished")
  if errors[1] then error(#errors .. " clients failed; first: " .. errors[1], 0) end
  -- the server saw each client's close code and reason
  while gettime() < deadline do
    local n = 0
    for _ in pairs(server_closes) do n = n + 1 end
    if n >= N then break end
    l:sleep(0.02)
  end
  for i = 1, N do
    local c = server_closes[i]
    eq(4000 + i, c and c[1], "server side close code of client " .. i)
    eq("bye " .. i, c and c[2], "server side close reason of client " .. i)
  end
end)

in_loop("subprotocols: the server's preference, never the whole list", 10, function()
  local conn = assert(ws.connect(base .. "/proto", { protocols = { "superchat", "chat" } }))
  eq("chat", conn.protocol)
  eq("chat", (conn:receive(5)))
  conn:close()
  conn = assert(ws.connect(base .. "/proto", { protocols = { "superchat", "x" } }))
  eq("superchat", conn.protocol)
  eq("superchat", (conn:receive(5)))
  conn:close()
  conn = assert(ws.connect(base .. "/proto", { protocols = { "x" } }))
  eq(nil, conn.protocol)
  eq("none", (conn:receive(5)))
  conn:close()
end)

in_loop("a page function that waits", 10, function()
  local io_ = require "ws.io"
  local c = assert(socket.connect("127.0.0.1", server.port))
  c:settimeout(0)
  assert(io_.write(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 1, gettime() + 5))
  local head, rest = io_.read_head(c, gettime() + 5, 4096)
  assert(head, rest)
  eq("HTTP/1.1 200 OK", head:match("^[^\r]*"))
  while #rest < #"slept /slow" do rest = rest .. assert(io_.read(c, gettime() + 5)) end
  eq("slept /slow", rest)
  c:close()
end)

print("(the handler error logged next is deliberate)")
in_loop("server-side close 4100, handler error 1011, bad close codes refused", 10, function()
  local conn = assert(ws.connect(base .. "/close"))
  local data, err, code, reason = conn:receive(5)
  eq(nil, data); eq("closed", err); eq(4100, code); eq("server bye", reason)
  conn = assert(ws.connect(base .. "/crash"))
  assert(conn:send("x"))
  data, err, code = conn:receive(5)
  eq(nil, data); eq("closed", err); eq(1011, code)
  conn = assert(ws.connect(base .. "/echo"))
  for _, bad in ipairs { 1005, 1006, 999, 5000 } do
    assert(not pcall(conn.close, conn, bad), "close(" .. bad .. ") raises")
  end
  eq(true, (conn:close(1000)))
  -- 404 for an unknown path
  local c2, e2 = ws.connect(base .. "/nope")
  eq(nil, c2)
  assert(tostring(e2):find("404"), tostring(e2))
end)

in_loop("conn:messages()" .. (loop.LUA51 and " refuses to run in a task on Lua 5.1" or " in a for loop"), 10, function()
  local conn = assert(ws.connect(base .. "/iter"))
  if loop.LUA51 then
    eq("refused", (conn:receive(5)))
  else
    for _, m in ipairs { "one", "two", "" } do
      assert(conn:send(m))
      eq(m, (conn:receive(5)))
    end
  end
  conn:close()
end)

server:close()
for _ = 1, 20 do l:step(0.01) end

---- our blocking client against examples/echo.lua under this Lua ------------------

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local port = free_port()
local logf = ROOT .. "/build/test-logs/compat-echo-" .. port .. ".log"
os.execute("mkdir -p " .. sh_quote(ROOT .. "/build/test-logs"))
local p = io.popen(string.format("(exec %s %s --port %d) >%s 2>&1 </dev/null & echo $!",
  LUA, sh_quote(ROOT .. "/examples/echo.lua"), port, sh_quote(logf)))
local pid = tonumber(p:read("*l"))
p:close()

local function listening()
  local deadline = gettime() + 10
  while gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then c:close() return true end
    c:close()
    socket.sleep(0.05)
  end
  return false
end

local up = listening()
test("examples/echo.lua starts under " .. LUA, function()
  if not up then
    local f = io.open(logf)
    error("nothing listening on " .. port .. "\n" .. (f and f:read("*a") or ""))
  end
end)

if up then
  local url = "ws://127.0.0.1:" .. port .. "/ws"
  test("blocking client (no loop) against examples/echo.lua", function()
    local pongs = 0
    local conn = assert(ws.connect(url, { max_message = 2 * MIB, on_pong = function() pongs = pongs + 1 end }))
    for _, n in ipairs { 0, 1, 126, 65536, MIB } do
      for _, kind in ipairs { "text", "binary" } do
        local msg = kind == "text" and text_of(n) or binary_of(n)
        assert(conn:send(msg, kind))
        local data, got = conn:receive(10)
        eq(msg, data, kind .. " " .. n)
        eq(kind, got)
      end
    end
    assert(conn:ping("hi"))
    assert(conn:send("x"))
    eq("x", (conn:receive(5)))
    eq(1, pongs, "pongs")
    -- messages() works outside a loop on every Lua
    assert(conn:send("iterated"))
    for data in conn:messages(5) do eq("iterated", data) break end
    local ok, code = conn:close(1000, "done")
    eq(true, ok); eq(1000, code)
  end)

  test("examples/echo_client.lua under " .. LUA, function()
    local pc = io.popen(string.format("%s %s %s hello %s 2>&1; echo \"rc=$?\"",
      LUA, sh_quote(ROOT .. "/examples/echo_client.lua"), url, sh_quote("two words")))
    local out = pc:read("*a")
    pc:close()
    eq("hello\ntwo words\nrc=0\n", out)
  end)

  test("the page of examples/echo.lua over HTTP", function()
    local c = assert(socket.connect("127.0.0.1", port))
    c:settimeout(5)
    c:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    local line = c:receive("*l")
    c:close()
    eq("HTTP/1.1 200 OK", line)
  end)
end
if pid then os.execute("kill " .. pid .. " 2>/dev/null") end

print(string.format("compat %s: %d passed, %d failed", NAME, passed, failed))
os.exit(failed == 0 and 0 or 1)
