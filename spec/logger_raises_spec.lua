-- A logger option that raises, in every host loop (spec/servers/logger_server.lua):
-- the server and its connections go on as if it had logged, and the error
-- is reported once on stderr. (It ended server:run, a luv process from
-- inside a uv callback, a cqueues loop, and left a connection whose
-- handler failed open, with its peer waiting, once the logger raised.)
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local HOSTS = {
  { name = "std" },
  { name = "luv", lib = "luv", accept = true },
  { name = "luv-nested", lib = "luv" },
  { name = "cqueues", lib = "cqueues", accept = true },
  { name = "cqueues-nested", lib = "cqueues" },
  { name = "copas", lib = "copas", accept = true },
}

local REPORT = "ws: the logger raised"

-- What a plain HTTP request (no upgrade) gets: the status line, or nil, err.
local function plain_get(port)
  local s = socket.tcp()
  s:settimeout(5)
  local ok, err = s:connect("127.0.0.1", port)
  if ok then ok, err = s:send("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") end
  local line
  if ok then line, err = s:receive("*l") end
  s:close()
  return line, err
end

-- A ws.connect client on a fresh loop: fn(conn) inside a task, bounded.
local function client(port, path, fn)
  local l = loop.new()
  return H.run_task(l, 15, function()
    local c = assert(ws.connect("ws://127.0.0.1:" .. port .. path, { timeout = 5, logger = false }))
    local r = { fn(c) }
    c:close()
    return (table.unpack or unpack)(r)
  end)
end

for _, hostdef in ipairs(HOSTS) do
  describe("a logger that raises, in " .. hostdef.name, function()
    if hostdef.lib and not pcall(require, hostdef.lib) then
      it("(skipped)", function() pending(hostdef.lib .. " is not packaged for " .. _VERSION) end)
      return
    end

    it("ends neither the server nor a connection; reported once on stderr", function()
      local p = H.start_lua("spec/servers/logger_server.lua", "--loop " .. hostdef.name, "logger-" .. hostdef.name)
      local stalled
      finally(function()
        if stalled then stalled:close() end
        p.stop()
      end)
      assert.truthy(H.wait_output(p, "(serving)", 10))
      -- a refusal is logged ("refused: ..."): the answer still goes out
      local line, err = plain_get(p.port)
      assert.equal("HTTP/1.1 400 Bad Request", line, tostring(err) .. "\n" .. p.output())
      if not hostdef.accept then
        -- a handler that raises is logged, and its connection closed with 1011
        local code = client(p.port, "/boom", function(c)
          assert(c:send("go"))
          local _, e, c2 = c:receive(5)
          return e == "closed" and c2 or e
        end)
        assert.equal(1011, code, p.output())
      end
      -- a peer that never reads: the send queue past max_queue is logged,
      -- and the sender is told (nil, "send queue full"), not raised at
      stalled = H.raw(p.port, false, { rcvbuf = 4096 })
      assert(stalled:send(H.request(p.port, "/queue")))
      assert.equal("nil send queue full", H.wait_output(p, "queue: ([^\n]*)", 10), p.output())
      -- and it serves on
      assert.equal("still here", client(p.port, "/echo", function(c)
        assert(c:send("still here"))
        return c:receive(5)
      end))
      assert.is_true(p.alive())
      local out = p.output()
      assert.equal(1, H.count(out, REPORT), out)
      assert.truthy(out:find("the logger broke on: ", 1, true), out)
    end)
  end)
end
