-- Microbenchmarks of the codec through its Lua API (ws.core).
--   lua5.4 bench/codec.lua            (BENCH_CODEC_SECS=seconds per row, default 0.3)
-- Every row is CPU time (os.clock) over repeated calls. The throughput
-- baseline is s:sub(1): Lua allocating a fresh string of the same size and
-- memcpy-ing into it, which is the least any call returning a new string of
-- that size (core.mask) can cost; utf8_valid returns no string, so for it
-- the baseline is an upper bound on "as cheap as touching the bytes once".
local core = require "ws.core"

local SECS = tonumber(os.getenv("BENCH_CODEC_SECS")) or 0.3
local clock = os.clock

-- Run f(n) with a growing n until it takes SECS; returns calls per second.
local function rate(f)
  local n = 1
  while true do
    local t0 = clock()
    f(n)
    local dt = clock() - t0
    if dt >= SECS then return n / dt end
    n = dt < SECS / 10 and n * 10 or math.ceil(n * SECS * 1.2 / dt)
  end
end

local rows = {}
local function row(name, what, value, note)
  rows[#rows + 1] = { name, what, value, note or "" }
end

local KEY = "\1\2\3\4"
local sizes = { { "1 MiB", 1 << 20 }, { "64 KiB", 64 << 10 } }
local multi = "héllo wörld ✓ 日本語 🙂 "   -- 1-, 2-, 3- and 4-byte sequences

for _, sz in ipairs(sizes) do
  local label, size = sz[1], sz[2]
  local ascii = string.rep("a", size)
  local utf = string.rep(multi, size // #multi + 1):sub(1, size)
  -- cut at a sequence boundary so the input stays valid UTF-8
  while not core.utf8_valid(utf) do utf = utf:sub(1, -2) end
  local function gbps(s, f) return #s * rate(f) / 1e9 end
  local base = gbps(ascii, function(n) for _ = 1, n do local _ = ascii:sub(1) end end)
  row("baseline s:sub(1) copy", label, base, "GB/s")
  local m = gbps(ascii, function(n) for _ = 1, n do local _ = core.mask(ascii, KEY) end end)
  row("core.mask", label, m, string.format("GB/s (%.2fx baseline)", m / base))
  local ua = gbps(ascii, function(n) for _ = 1, n do local _ = core.utf8_valid(ascii) end end)
  row("core.utf8_valid ASCII", label, ua, string.format("GB/s (%.2fx baseline)", ua / base))
  local um = gbps(utf, function(n) for _ = 1, n do local _ = core.utf8_valid(utf) end end)
  row("core.utf8_valid mixed UTF-8", label, um, string.format("GB/s (%.2fx baseline)", um / base))
end

-- Reader: one big chunk of 10,000 masked 32-byte client frames, parsed by a
-- server-role reader with next() until it needs more input.
local FRAMES = 10000
for _, kind in ipairs { "text", "binary" } do
  local payload = string.rep("x", 32)
  local parts = {}
  for i = 1, FRAMES do parts[i] = core.frame(payload, kind, true, true) end
  local chunk = table.concat(parts)
  local r = core.reader { role = "server", max_message = 16 << 20 }
  local per = rate(function(n)
    for _ = 1, n do
      r:feed(chunk)
      local got = 0
      while r:next() do got = got + 1 end
      assert(got == FRAMES, "reader lost frames")
    end
  end) * FRAMES
  row("reader:next() 32 B masked " .. kind, "frames", per / 1e6, "M frames/s")
end

local p32 = string.rep("y", 32)
row("core.frame 32 B text, unmasked (server)", "frames",
  rate(function(n) for _ = 1, n do local _ = core.frame(p32, "text") end end) / 1e6, "M frames/s")
row("core.frame 32 B text, masked (client)", "frames",
  rate(function(n) for _ = 1, n do local _ = core.frame(p32, "text", true, true) end end) / 1e6, "M frames/s")

print(string.format("Codec microbenchmarks (%s, %s, %.2f s per row)", _VERSION, os.date("%Y-%m-%d"), SECS))
print()
print("| benchmark | size | value | unit |")
print("|---|---|---:|---|")
for _, r in ipairs(rows) do
  print(string.format("| %s | %s | %.2f | %s |", r[1], r[2], r[3], r[4]))
end
