-- core.heap_keep and the server's heap_keep option: glibc keeps freed heap
-- instead of trimming it, so the blocks of one large message are reused by
-- the next instead of being faulted in again. mallopt is process-wide and
-- cannot be undone, so each case runs in a fresh interpreter.
local H = require "spec.helpers"

-- A child that (after SETUP) holds three 4 MiB strings, drops them, collects,
-- and prints its data segment size (VmData, KiB) at the peak and after.
local CHILD = [[
local core = require "ws.core"
SETUP
local function vmdata()
  local f = assert(io.open("/proc/self/status"))
  local kib = tonumber(f:read("*a"):match("VmData:%s*(%d+)"))
  f:close()
  return kib
end
local peak, after = 0, 0
for _ = 1, 3 do
  local t = {}
  for i = 1, 3 do t[i] = string.rep(string.char(64 + i), 4 * 1024 * 1024) end
  collectgarbage("collect")
  peak = math.max(peak, vmdata())
  t = nil
  collectgarbage("collect")
  collectgarbage("collect")
  after = vmdata()
end
io.write(tostring(KEPT), " ", peak, " ", after, "\n")
]]

local function child(setup)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write((CHILD:gsub("SETUP", setup)))
  f:close()
  local out, code = H.run(H.LUA .. " " .. H.shell_quote(script) .. " 2>&1")
  os.remove(script)
  assert(code == 0, out)
  local kept, peak, after = out:match("^(%S+) (%d+) (%d+)")
  assert(kept, out)
  return kept, tonumber(peak), tonumber(after)
end

-- ASan's allocator (make test-asan preloads it) takes no mallopt, and
-- LuaJIT allocates its strings itself, not with malloc
local skip = (os.getenv("LD_PRELOAD") or ""):find("asan") and "ASan's allocator has no mallopt"
  or rawget(_G, "jit") and "LuaJIT's strings do not come from malloc"

describe("core.heap_keep", function()
  it("rejects a negative size", function()
    local core = require "ws.core"
    assert.has_error(function() core.heap_keep(-1) end)
  end)

  it("keeps 12 MiB of freed strings in the heap; glibc's default gives them back", function()
    if skip then return pending(skip) end
    local kept, peak, after = child("KEPT = core.heap_keep(64 * 1024 * 1024)")
    assert.equal("true", kept)
    -- the three strings' 12 MiB stay mapped for the next ones
    assert.is_true(peak - after < 2048, ("peak %d KiB, after %d KiB"):format(peak, after))
    local _, dpeak, dafter = child("KEPT = 'default'")
    assert.is_true(dpeak - dafter > 8192, ("default: peak %d KiB, after %d KiB"):format(dpeak, dafter))
  end)

  it("is what ws.listen applies by default, and heap_keep = false leaves malloc alone", function()
    if skip then return pending(skip) end
    local listen = "local s = assert(require('ws').listen { port = 0%s }); s:close(); KEPT = 'listen'"
    local _, peak, after = child(listen:format(""))
    assert.is_true(peak - after < 2048, ("peak %d KiB, after %d KiB"):format(peak, after))
    local _, fpeak, fafter = child(listen:format(", heap_keep = false"))
    assert.is_true(fpeak - fafter > 8192, ("heap_keep = false: peak %d KiB, after %d KiB"):format(fpeak, fafter))
  end)

  it("is checked as an option", function()
    local ws = require "ws"
    assert.has_error(function() ws.listen { port = 0, heap_keep = -1 } end)
    assert.has_error(function() ws.listen { port = 0, heap_keep = "64M" } end)
  end)
end)

describe("a server's free heap past heap_keep #slow", function()
  -- (a server process: its RSS, once 300 clients that asked for 20 echoes
  -- of 60,000 bytes each, and never read them, have vanished; heap_keep is
  -- 4 MiB here: with the default 64 MiB a peak of 75 MB may all be kept, as
  -- it should)
  local SERVER = [[
local ws = require "ws"
local port = tonumber(arg[1])
local s = assert(ws.listen { host = "127.0.0.1", port = port, heap_keep = 4 * 1024 * 1024,
  max_message = 16 * 1024 * 1024 })
s:route("/ws", function(conn)
  while true do
    local m, kind = conn:receive()
    if not m or not conn:send(m, kind) then return end
  end
end)
s:run()
]]

  it("goes back to the kernel once the connections have gone", function()
    if skip then return pending(skip) end
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(SERVER)
    f:close()
    local srv = H.start_server(function(port)
      return ("exec %s %s %d"):format(H.LUA, H.shell_quote(script), port)
    end, "heap-trim")
    finally(function() srv.stop(); os.remove(script) end)
    local function kib(field)
      local fh = assert(io.open("/proc/" .. srv.pid .. "/status"))
      local v = tonumber(fh:read("*a"):match(field .. ":%s*(%d+)"))
      fh:close()
      return v
    end
    local out = H.run(H.PYTHON .. " " .. H.ROOT .. "/spec/peers/pipeliners.py " .. srv.port .. " 300 1")
    assert.truthy(out:find("upgraded 300\nreset 300", 1, true), out)
    local peak = kib("VmHWM")
    assert.is_true(peak > 50 * 1024, "peak " .. peak .. " KiB")
    -- the trim comes 2 s after the last connection went (a slow machine
    -- takes a while to see 300 resets): poll, 15 s at most.
    -- malloc's trim threshold gives back only the heap's top: without a
    -- trim, nearly all of it stayed (93 MB of 93)
    local now, deadline = kib("VmRSS"), require("socket").gettime() + 15
    while now >= peak / 2 and require("socket").gettime() < deadline do
      require("socket").sleep(0.25)
      now = kib("VmRSS")
    end
    assert.is_true(now < peak / 2, ("now %d KiB, peak %d KiB"):format(now, peak))
  end)
end)
