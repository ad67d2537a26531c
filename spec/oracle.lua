-- Pure-Lua oracles for the specs: SHA-1 and base64, written from the RFCs
-- and sharing no code with ws.core, to check Sec-WebSocket-Accept and keys
-- independently.
local M = {}

M.GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   -- RFC 6455 section 1.3

-- SHA-1 (RFC 3174), for the accept key.
function M.sha1(msg)
  local function rol(x, n) return ((x << n) | (x >> (32 - n))) & 0xffffffff end
  local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local ml = #msg * 8
  msg = msg .. "\x80" .. string.rep("\0", (55 - #msg) % 64) .. string.pack(">I8", ml)
  for chunk = 1, #msg, 64 do
    local w = {}
    for i = 0, 15 do w[i] = string.unpack(">I4", msg, chunk + i * 4) end
    for i = 16, 79 do w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1) end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then f, k = (b & c) | (~b & d), 0x5A827999
      elseif i < 40 then f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else f, k = b ~ c ~ d, 0xCA62C1D6 end
      local t = (rol(a, 5) + (f & 0xffffffff) + e + k + w[i]) & 0xffffffff
      e, d, c, b, a = d, c, rol(b, 30), a, t
    end
    h0 = (h0 + a) & 0xffffffff; h1 = (h1 + b) & 0xffffffff; h2 = (h2 + c) & 0xffffffff
    h3 = (h3 + d) & 0xffffffff; h4 = (h4 + e) & 0xffffffff
  end
  return string.pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a << 16 | (b or 0) << 8 | (c or 0)
    local q = {}
    for j = 1, 4 do
      local d = (v >> (24 - 6 * j)) & 63
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
      if ch == "=" then pad = pad + 1; v = v << 6
      else v = v << 6 | (B64:find(ch, 1, true) - 1) end
    end
    out[#out + 1] = string.char(v >> 16 & 255, v >> 8 & 255, v & 255):sub(1, 3 - pad)
  end
  return table.concat(out)
end

--- Sec-WebSocket-Accept for a key.
function M.accept(key) return M.base64(M.sha1(key .. M.GUID)) end

return M
