--- Bit operations and big-endian integers for the specs, the same on Lua
-- 5.1, 5.3, 5.4 and LuaJIT: the specs run in-process on each, so they may
-- use nothing newer than 5.1 (no bitwise operators, string.pack, utf8, goto
-- or \x escapes: 5.1 would read "\x41" as "x41" without a word).
-- Results are unsigned 32-bit numbers; every operation is independent of
-- ws.core (the specs use these to check it).
local floor = math.floor
local M
if not rawget(_G, "jit") and _VERSION >= "Lua 5.3" then
  -- native operators, hidden from older parsers
  M = assert(load [[
    return {
      band = function(a, b) return a & b end,
      bor = function(a, b) return a | b end,
      bxor = function(a, b) return a ~ b end,
      bnot = function(a) return ~a & 0xffffffff end,
      lshift = function(a, n) return (a << n) & 0xffffffff end,
      rshift = function(a, n) return (a & 0xffffffff) >> n end,
    }]])()
else
  -- LuaJIT's bit library (signed results) or bit32 (5.2, or 5.1 with lua-bit32)
  local lib = rawget(_G, "jit") and require "bit" or rawget(_G, "bit32") or require "bit32"
  local function u32(f) return function(a, b) return f(a, b) % 4294967296 end end
  M = {
    band = u32(lib.band), bor = u32(lib.bor), bxor = u32(lib.bxor), bnot = u32(lib.bnot),
    lshift = u32(lib.lshift), rshift = u32(lib.rshift),
  }
end

M.unpack = rawget(table, "unpack") or rawget(_G, "unpack")
function M.pack(...) return { n = select("#", ...), ... } end

--- Big-endian encodings of a non-negative integer n (u64: n < 2^53).
function M.u16(n) return string.char(floor(n / 256) % 256, n % 256) end
function M.u32(n) return string.char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256) end
function M.u64(n) return M.u32(floor(n / 4294967296)) .. M.u32(n % 4294967296) end

--- Big-endian decodings at position i (default 1); u64 is exact below 2^53.
function M.get_u16(s, i)
  local a, b = s:byte(i or 1, (i or 1) + 1)
  return a * 256 + b
end
function M.get_u32(s, i)
  local a, b, c, d = s:byte(i or 1, (i or 1) + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
function M.get_u64(s, i)
  return M.get_u32(s, i) * 4294967296 + M.get_u32(s, (i or 1) + 4)
end

--- Bytes from a hex string ("ce ba" or "ceba"): 5.1-safe byte literals.
function M.hex(h)
  return (h:gsub("%s", ""):gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- XOR of every byte pair, built once: per-byte masking without operators
local XOR
--- XOR data with a 4-byte key, starting at key position pos (default 0).
function M.mask(data, key, pos)
  pos = pos or 0
  if not XOR then
    XOR = {}
    for a = 0, 255 do
      for b = 0, 255 do XOR[a * 256 + b] = M.bxor(a, b) end
    end
  end
  local kb = { key:byte(1, 4) }
  local k = {}
  for i = 1, 4 do k[i] = kb[(i - 1 + pos) % 4 + 1] * 256 end
  local out, t, char, unpack = {}, {}, string.char, M.unpack
  local n = #data
  for chunk = 1, n, 4096 do
    local last = chunk + 4095
    if last > n then last = n end
    local bs = { data:byte(chunk, last) }
    for j = 1, #bs do t[j] = XOR[k[(chunk + j - 2) % 4 + 1] + bs[j]] end
    out[#out + 1] = char(unpack(t, 1, #bs))
  end
  return table.concat(out)
end

--- An object whose collection calls f (5.1 and LuaJIT finalise userdata only).
function M.finalizer(f)
  local newproxy = rawget(_G, "newproxy")
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = f
    return p
  end
  return setmetatable({}, { __gc = f })
end

--- f() under an incremental GC that steps at almost every allocation (the
-- finalizers of garbage then run inside the C functions f calls); the
-- collector's settings are restored after.
function M.eager_gc(f)
  local mode = _VERSION == "Lua 5.4" and collectgarbage("incremental")
  local pause, mul = collectgarbage("setpause", 1), collectgarbage("setstepmul", 1000)
  collectgarbage()
  local ok, err = pcall(f)
  collectgarbage("setpause", pause)
  collectgarbage("setstepmul", mul)
  if mode then collectgarbage(mode) end
  assert(ok, err)
end

return M
