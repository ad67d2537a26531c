-- Pure-Lua oracles for the specs: SHA-1, base64 and UTF-8 validity, written
-- from the RFCs and sharing no code with ws.core, to check
-- Sec-WebSocket-Accept, keys and text independently.
local B = require "spec.bits"

local M = {}

M.GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   -- RFC 6455 section 1.3

-- SHA-1 (RFC 3174), for the accept key.
function M.sha1(msg)
  local band, bor, bxor, bnot = B.band, B.bor, B.bxor, B.bnot
  local function rol(x, n) return bor(B.lshift(x, n), B.rshift(x, 32 - n)) end
  local function add(...)   -- modulo 2^32
    local s = 0
    for i = 1, select("#", ...) do s = s + select(i, ...) end
    return s % 4294967296
  end
  local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local ml = #msg * 8
  msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64) .. B.u64(ml)
  for chunk = 1, #msg, 64 do
    local w = {}
    for i = 0, 15 do w[i] = B.get_u32(msg, chunk + i * 4) end
    for i = 16, 79 do w[i] = rol(bxor(bxor(w[i - 3], w[i - 8]), bxor(w[i - 14], w[i - 16])), 1) end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then f, k = bor(band(b, c), band(bnot(b), d)), 0x5A827999
      elseif i < 40 then f, k = bxor(bxor(b, c), d), 0x6ED9EBA1
      elseif i < 60 then f, k = bor(bor(band(b, c), band(b, d)), band(c, d)), 0x8F1BBCDC
      else f, k = bxor(bxor(b, c), d), 0xCA62C1D6 end
      e, d, c, b, a = d, c, rol(b, 30), a, add(rol(a, 5), f, e, k, w[i])
    end
    h0, h1, h2, h3, h4 = add(h0, a), add(h1, b), add(h2, c), add(h3, d), add(h4, e)
  end
  return B.u32(h0) .. B.u32(h1) .. B.u32(h2) .. B.u32(h3) .. B.u32(h4)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = (a * 256 + (b or 0)) * 256 + (c or 0)
    local q = {}
    for j = 1, 4 do
      local d = math.floor(v / 2 ^ (24 - 6 * j)) % 64
      q[j] = B64:sub(d + 1, d + 1)
    end
    if not b then q[3] = "=" end
    if not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

-- Lenient decoder (enough to look inside keys we are given); nil if not base64.
function M.b64decode(s)
  if #s % 4 ~= 0 or s:find("[^%w%+/=]") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local v, pad = 0, 0
    for j = 0, 3 do
      local ch = s:sub(i + j, i + j)
      if ch == "=" then pad = pad + 1; v = v * 64
      else v = v * 64 + B64:find(ch, 1, true) - 1 end
    end
    out[#out + 1] = B.u32(v):sub(2, 4 - pad)
  end
  return table.concat(out)
end

-- UTF-8 per RFC 3629, by decoding: the sequence length comes from the lead
-- byte's bit pattern, then the code point must be in range for that length
-- (no overlongs), not a surrogate, and at most U+10FFFF.
function M.utf8_valid(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, cp, min
    if c < 0x80 then len, cp, min = 1, c, 0
    elseif c < 0xC0 then return false                  -- 10xxxxxx: a continuation
    elseif c < 0xE0 then len, cp, min = 2, c - 0xC0, 0x80  -- 110xxxxx
    elseif c < 0xF0 then len, cp, min = 3, c - 0xE0, 0x800  -- 1110xxxx
    elseif c < 0xF8 then len, cp, min = 4, c - 0xF0, 0x10000  -- 11110xxx
    else return false end
    if i + len - 1 > n then return false end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if b < 0x80 or b >= 0xC0 then return false end   -- not 10xxxxxx
      cp = cp * 64 + (b - 0x80)
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false end
    i = i + len
  end
  return true
end

--- Sec-WebSocket-Accept for a key.
function M.accept(key) return M.base64(M.sha1(key .. M.GUID)) end

return M
