--- Autobahn-shaped cases for the client side: what a server sends after
-- the 101, and what an echo client (examples/autobahn_client.lua) must
-- send back. spec/servers/fuzzing_server.lua plays them; the case numbers
-- follow Autobahn|Testsuite's groups (1 framing, 2 pings, 3 reserved bits,
-- 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits, 10 misc).
--
-- A case: id, title, send (server bytes), chunk (write them this many bytes
-- at a time), replies (the frames the client must send, in order, as
-- { opcode, payload }), close (the code of the close frame the client must
-- send, 1005 for one without a code). With close = nil the client must do
-- nothing more: the server then closes with 1000, and the echo is 1000.
local H = require "spec.helpers"
local B = require "spec.bits"
local S = require "spec.samples"

local TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10

-- a server frame: unmasked unless opts.mask
local function F(opcode, payload, opts)
  opts = opts or {}
  return H.frame(opcode, payload, { fin = opts.fin, rsv = opts.rsv, len = opts.len, mask = opts.mask or false })
end

-- n bytes of every value, and n bytes of UTF-8 text (a 13-byte unit)
local BLOCK = {}
for i = 1, 256 do BLOCK[i] = string.char((i * 31 + 7) % 256) end
BLOCK = table.concat(BLOCK)
local function bytes(n)
  return (string.rep(BLOCK, math.ceil(n / 256)):sub(1, n))
end

local function text(n)
  return string.rep("κόσμε-ab", math.floor(n / 13)) .. string.rep("x", n % 13)
end

local M = {}

local function case(id, title, send, replies, close, chunk)
  M[#M + 1] = { id = id, title = title, send = send, replies = replies or {}, close = close, chunk = chunk }
end

-- 1 framing
local SIZES = { 0, 1, 125, 126, 127, 128, 65535, 65536, 65537, 1024 * 1024 }
for i, n in ipairs(SIZES) do
  local s = text(n)
  case("1.1." .. i, "text message of " .. n .. " bytes", F(TEXT, s), { { TEXT, s } })
end
for i, n in ipairs(SIZES) do
  local s = bytes(n)
  case("1.2." .. i, "binary message of " .. n .. " bytes", F(BINARY, s), { { BINARY, s } })
end
case("1.3.1", "a 300-byte text frame written one byte at a time", F(TEXT, text(300)), { { TEXT, text(300) } }, nil, 1)
case("1.3.2", "non-minimal 16- and 64-bit length encodings",
  string.char(0x81, 126) .. B.u16(5) .. "hello" .. string.char(0x82, 127) .. B.u64(5) .. "world",
  { { TEXT, "hello" }, { BINARY, "world" } })
case("1.3.3", "three messages in one write, echoed in order",
  F(TEXT, "a") .. F(BINARY, "bb") .. F(TEXT, "ccc"), { { TEXT, "a" }, { BINARY, "bb" }, { TEXT, "ccc" } })
case("1.3.4", "a 64 KiB binary frame written 1000 bytes at a time", F(BINARY, bytes(65536)),
  { { BINARY, bytes(65536) } }, nil, 1000)

-- 2 ping/pong
case("2.1", "a ping without payload gets an empty pong", F(PING, ""), { { PONG, "" } })
case("2.2", "a ping of 125 bytes gets the same pong", F(PING, text(125)), { { PONG, text(125) } })
case("2.3", "a binary ping payload comes back byte for byte", F(PING, bytes(125)), { { PONG, bytes(125) } })
case("2.4", "a ping of 126 bytes fails with 1002", F(PING, bytes(126)), {}, 1002)
case("2.5", "a ping declaring a 64-bit length of 1 MiB fails with 1002",
  string.char(0x89, 127) .. B.u64(1024 * 1024), {}, 1002)
case("2.6", "an unsolicited pong is ignored", F(PONG, "unasked") .. F(TEXT, "after"), { { TEXT, "after" } })
local pings, pongs = {}, {}
for i = 1, 10 do pings[i] = F(PING, "ping " .. i); pongs[i] = { PONG, "ping " .. i } end
case("2.7", "ten pings in a row get ten pongs in order", table.concat(pings), pongs)
case("2.8", "a ping written one byte at a time", F(PING, "slow"), { { PONG, "slow" } }, nil, 1)
case("2.9", "a fragmented ping (FIN=0) fails with 1002", F(PING, "frag", { fin = false }), {}, 1002)

-- 3 reserved bits (no extension agreed)
for rsv = 1, 7 do
  case("3." .. rsv, "RSV=" .. rsv .. " on a text frame fails with 1002", F(TEXT, "rsv", { rsv = rsv }), {}, 1002)
end
case("3.8", "RSV on a binary frame after a valid message: the message is echoed, then 1002",
  F(TEXT, "ok") .. F(BINARY, "bad", { rsv = 2 }), { { TEXT, "ok" } }, 1002)
case("3.9", "RSV on a ping fails with 1002", F(PING, "p", { rsv = 1 }), {}, 1002)
case("3.10", "RSV on a close fails with 1002", F(CLOSE, B.u16(1000), { rsv = 4 }), {}, 1002)

-- 4 opcodes
local n4 = 0
for _, op in ipairs { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 } do
  n4 = n4 + 1
  case("4." .. n4, "reserved opcode " .. op .. " fails with 1002", F(op, ""), {}, 1002)
  n4 = n4 + 1
  case("4." .. n4, "reserved opcode " .. op .. " with payload after a valid message: echo, then 1002",
    F(TEXT, "fine") .. F(op, "payload"), { { TEXT, "fine" } }, 1002)
end

-- 5 fragmentation
case("5.1", "a text message in two fragments is echoed whole",
  F(TEXT, "frag", { fin = false }) .. F(0, "ment"), { { TEXT, "fragment" } })
case("5.2", "a binary message in three fragments is echoed whole",
  F(BINARY, "a", { fin = false }) .. F(0, "b", { fin = false }) .. F(0, "c"), { { BINARY, "abc" } })
case("5.3", "a ping between fragments is answered before the message",
  F(TEXT, "fra", { fin = false }) .. F(PING, "mid") .. F(0, "gment"), { { PONG, "mid" }, { TEXT, "fragment" } })
case("5.4", "fragments written one byte at a time, with a ping between them",
  F(TEXT, "fra", { fin = false }) .. F(PING, "mid") .. F(0, "gment"), { { PONG, "mid" }, { TEXT, "fragment" } }, nil, 1)
local ones = {}
local word = "fragmented in single bytes"
for i = 1, #word do ones[i] = F(i == 1 and TEXT or 0, word:sub(i, i), { fin = i == #word }) end
case("5.5", "a message of one-byte fragments", table.concat(ones), { { TEXT, word } })
case("5.6", "a message made of empty fragments",
  F(TEXT, "", { fin = false }) .. F(0, "", { fin = false }) .. F(0, ""), { { TEXT, "" } })
case("5.7", "a continuation with nothing started fails with 1002", F(0, "orphan"), {}, 1002)
case("5.8", "a non-final continuation with nothing started fails with 1002", F(0, "orphan", { fin = false }), {}, 1002)
case("5.9", "a continuation after a complete message fails with 1002",
  F(TEXT, "done") .. F(0, "more"), { { TEXT, "done" } }, 1002)
case("5.10", "a text frame while a fragmented message is in progress fails with 1002",
  F(TEXT, "one", { fin = false }) .. F(TEXT, "two"), {}, 1002)
case("5.11", "a fragmented binary message of 64 KiB in 1 KiB fragments", (function()
  local t, data = {}, bytes(65536)
  for i = 1, 64 do t[i] = F(i == 1 and BINARY or 0, data:sub(i * 1024 - 1023, i * 1024), { fin = i == 64 }) end
  return table.concat(t)
end)(), { { BINARY, bytes(65536) } })

-- 6 UTF-8
for i, s in ipairs(S.VALID_UTF8) do
  case("6.1." .. i, "valid text #" .. i .. " is echoed", F(TEXT, s), { { TEXT, s } })
end
for i, c in ipairs(S.INVALID_UTF8) do
  case("6.2." .. i, "invalid text (" .. c[1] .. ") fails with 1007", F(TEXT, c[2]), {}, 1007)
end
case("6.3.1", "a surrogate split across two fragments fails with 1007",
  F(TEXT, "ab\237", { fin = false }) .. F(0, "\160\128cd"), {}, 1007)
case("6.3.2", "fails fast: invalid bytes in a first fragment whose rest never comes",
  F(TEXT, B.hex "c0 af", { fin = false }), {}, 1007)
case("6.3.3", "fails fast: invalid bytes early in a frame whose payload never ends",
  F(TEXT, "abc\255defghi" .. string.rep("z", 990)):sub(1, 4 + 10), {}, 1007)
do
  local s, frames, replies = "κόσμε \240\159\152\128", {}, {}
  for i = 1, #s - 1 do
    frames[i] = F(TEXT, s:sub(1, i), { fin = false }) .. F(0, s:sub(i + 1))
    replies[i] = { TEXT, s }
  end
  case("6.3.4", "valid text split at every byte position", table.concat(frames), replies)
end
case("6.3.5", "binary messages are not checked for UTF-8", F(BINARY, "\255\254"), { { BINARY, "\255\254" } })

-- 7 close
case("7.1", "a close without payload is answered with an empty close", F(CLOSE, ""), {}, 1005)
case("7.2", "a close with 1000 and a reason is echoed", F(CLOSE, B.u16(1000) .. "bye"), {}, 1000)
for i, code in ipairs(S.VALID_CLOSE) do
  case("7.3." .. i, "close code " .. code .. " is echoed", F(CLOSE, B.u16(code) .. "reason"), {}, code)
end
for i, code in ipairs(S.INVALID_CLOSE) do
  case("7.4." .. i, "close code " .. code .. " fails with 1002", F(CLOSE, B.u16(code)), {}, 1002)
end
case("7.5.1", "a close payload of 1 byte fails with 1002", F(CLOSE, "\3"), {}, 1002)
case("7.5.2", "a close reason that is not UTF-8 fails with 1007",
  F(CLOSE, B.u16(1000) .. "ok\237\160\128"), {}, 1007)
case("7.5.3", "a close of 125 bytes (123-byte reason) is echoed", F(CLOSE, B.u16(1000) .. text(123)), {}, 1000)
case("7.5.4", "a close of 126 bytes fails with 1002", F(CLOSE, B.u16(1000) .. text(124)), {}, 1002)
case("7.5.5", "a fragmented close (FIN=0) fails with 1002", F(CLOSE, B.u16(1000), { fin = false }), {}, 1002)
case("7.6.1", "messages before a close are echoed, nothing after it",
  F(TEXT, "before") .. F(CLOSE, B.u16(1000)) .. F(TEXT, "after") .. F(PING, "after"), { { TEXT, "before" } }, 1000)
case("7.6.2", "a close in the middle of a fragmented message is answered",
  F(TEXT, "half", { fin = false }) .. F(CLOSE, B.u16(1000)), {}, 1000)
case("7.6.3", "a close written one byte at a time", F(CLOSE, B.u16(1001) .. "slow"), {}, 1001, 1)

-- 9 limits (the client allows 16 MiB messages)
case("9.1", "a frame declaring 2^63-1 bytes fails with 1009 at once", string.char(0x82, 127) .. H.MAX_LEN, {}, 1009)
case("9.2", "a frame declaring 16 MiB + 1 bytes fails with 1009 at once",
  string.char(0x82, 127) .. B.u64(16 * 1024 * 1024 + 1), {}, 1009)
case("9.3", "fragments adding up to 16 MiB + 1 fail with 1009 at once",
  string.char(0x02, 127) .. B.u64(8 * 1024 * 1024) .. bytes(8 * 1024 * 1024) ..
  string.char(0x80, 127) .. B.u64(8 * 1024 * 1024 + 1), {}, 1009)
case("9.4", "a 64-bit length with the top bit set fails with 1002", string.char(0x82, 127) .. B.hex "80 00 00 00 00 00 00 05", {}, 1002)

-- 10 misc
case("10.1", "a masked frame from the server fails with 1002", F(TEXT, "masked", { mask = true }), {}, 1002)

return M
