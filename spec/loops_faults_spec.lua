-- Hostile peers against lua-ws embedded in cqueues, luv and copas: the host
-- loop's own work (a timer) must keep its time whatever one connection does.
-- loops_spec.lua holds the cases that work as sent (limits, one silent
-- client); this file the ones that push: a peer whose input never runs dry,
-- connections reset mid-handshake and mid-message, a handler that raises,
-- a server closed from inside the host loop.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime

local function host(name)
  local ok, lib = pcall(require, name)
  if not ok then pending(name .. " is not packaged for " .. _VERSION) end
  return ok and lib
end

-- A ticker for a host loop: tick() every ~10 ms; worst() is the longest gap.
-- (The bounds below are 0.25 s: a starved host loop stalls for the whole
-- burst, 0.5 s and more; a busy machine's scheduler costs tens of ms.)
local function ticker()
  local last, worst = gettime(), 0
  local t = {}
  function t.tick()
    local now = gettime()
    if now - last > worst then worst = now - last end
    last = now
  end
  function t.worst() return worst end
  return t
end

describe("a ws.loop nested in a host loop, with a task always ready", function()
  -- a task that yields for `secs` (a connection whose input never runs dry
  -- yields every 64 messages: the loop always has a task ready)
  local function busy(l, secs)
    l:spawn(function()
      local t0 = gettime()
      while gettime() - t0 < secs do l:yield() end
    end)
  end

  it("luv: the host's timers keep firing", function()
    local uv = host("luv")
    if not uv then return end
    local l = loop.new()
    local h = require("ws.luv").attach(l)
    -- (luv 1.44 crashes at exit on a handle closed after uv.run() returned,
    -- unless the loop runs once more to finish the close)
    finally(function() h.close(); uv.run() end)
    local t0, tk = gettime(), ticker()
    busy(l, 0.5)
    local timer = uv.new_timer()
    uv.update_time()
    timer:start(10, 10, function()
      tk.tick()
      if gettime() - t0 > 0.8 then timer:stop(); timer:close() end
    end)
    uv.run()
    assert.is_true(tk.worst() < 0.25, "the luv timer stalled " .. tk.worst() .. " s")
  end)

  it("cqueues: the controller's other coroutines keep running", function()
    local cqueues = host("cqueues")
    if not cqueues then return end
    local l, cq = loop.new(), cqueues.new()
    local t0, tk = gettime(), ticker()
    busy(l, 0.5)
    require("ws.cqueues").attach(cq, l)
    cq:wrap(function()
      while gettime() - t0 < 0.8 do cqueues.sleep(0.01); tk.tick() end
    end)
    while not cq:empty() and gettime() - t0 < 3 do assert(cq:step(0.1)) end
    assert.is_true(cq:empty())
    assert.is_true(tk.worst() < 0.25, "the cqueues ticker stalled " .. tk.worst() .. " s")
  end)
end)

-- The same hosts as loops_spec.lua, as real processes (spec/servers/host_server.lua).
local HOSTS = {
  { name = "cqueues", lib = "cqueues" },
  { name = "luv", lib = "luv" },
  { name = "copas", lib = "copas" },
  { name = "cqueues-nested", lib = "cqueues" },
  { name = "luv-nested", lib = "luv" },
}

local LIMITS = "--set handshake_timeout=1 --set ping_interval=false --set idle_timeout=30 " ..
               "--set close_timeout=0.5 --set send_timeout=0.5"

-- the host's /stats answer to msg ("reset", or "get": the ticker's worst gap)
local function stats(port, msg)
  return H.run_task(loop.new(), 10, function()
    local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/stats"))
    assert(c:send(msg))
    local m = assert(c:receive(5))
    c:close()
    return m
  end)
end

for _, hostdef in ipairs(HOSTS) do
  local available = pcall(require, hostdef.lib)
  describe("hostile peers against lua-ws in " .. hostdef.name, function()
    if not available then
      it("(skipped)", function() pending(hostdef.lib .. " is not packaged for " .. _VERSION) end)
      return
    end

    local function start()
      return H.start_lua("spec/servers/host_server.lua", "--loop " .. hostdef.name .. " " .. LIMITS,
        "hostile-" .. hostdef.name)
    end

    it("a peer whose input never runs dry (echoed as fast as it reads) leaves the host's ticker on time", function()
      local p = start()
      local flood
      finally(function()
        if flood then flood.stop() end
        p.stop()
      end)
      assert.equal("ok", stats(p.port, "reset"))
      flood = H.spawn(H.PYTHON .. " " .. H.ROOT .. "/spec/peers/flooder.py " .. p.port .. " /echo 1.5", "flooder")
      local line = H.wait_output(flood, "(sent %d+ got %d+)", 10)
      assert.truthy(line, flood.output())
      local worst = tonumber(stats(p.port, "get"))
      assert.is_true(worst < 0.25, "the host loop's ticker stalled " .. worst .. " s under the flood (" .. line .. ")")
    end)

    it("connections reset mid-head, after the upgrade, mid-message and while flooded leave no descriptor", function()
      local p = start()
      finally(p.stop)
      socket.sleep(0.2)
      local base = H.fd_count(p.pid)
      local function rst(s)
        s:setoption("linger", { on = true, timeout = 0 })
        s:close()
      end
      local big = H.frame(2, ("x"):rep(100000))
      for i = 1, 100 do
        local s = socket.tcp()
        s:settimeout(2)
        assert(s:connect("127.0.0.1", p.port))
        local m = i % 5
        if m == 1 then s:send("GET /echo HTTP/1.1\r\nHost: x\r\n")
        elseif m == 2 then s:send(H.request(p.port, "/echo")); s:receive("*l")
        elseif m == 3 then s:send(H.request(p.port, "/echo")); s:receive("*l"); s:send(big:sub(1, 50000))
        elseif m == 4 then s:send(H.request(p.port, "/flood")); s:receive("*l"); socket.sleep(0.01) end
        if m == 0 then s:close() else rst(s) end
      end
      local t0 = gettime()
      local n = H.fd_count(p.pid)
      while n > base and gettime() - t0 < 5 do
        socket.sleep(0.1)
        n = H.fd_count(p.pid)
      end
      assert.is_true(n <= base, n .. " descriptors, " .. base .. " before")
      assert.is_true(p.alive())
      assert.truthy(tonumber(stats(p.port, "get")) < 0.25)   -- and it serves on, on time
    end)
  end)
end

-- A server nested in a host loop, closed from the host loop's own code
-- while it holds a client, a peer that never answers the close and a
-- half-sent head, with a route whose handler raises: the host loop goes
-- on, and returns once everything is released.
describe("a nested server closed from inside its host loop", function()
  -- the server and its clients, as tasks of l; returns the state table
  local function scene(l)
    local st = { lines = {} }
    st.server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l, ping_interval = 0.2,
      close_timeout = 0.5, handshake_timeout = 1,
      logger = function(level, msg) st.lines[#st.lines + 1] = level .. " " .. msg end })
    st.server:route("/ws", H.echo)
    st.server:route("/raise", function() error("handler boom") end)
    local port = st.server.port
    l:spawn(function()
      local bad = assert(ws.connect("ws://127.0.0.1:" .. port .. "/raise"))
      st.raised = { bad:receive(3) }
      st.good = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws"))
      st.got = { st.good:receive(5) }
    end)
    l:spawn(function()
      local function tcp()
        local s = socket.tcp()
        s:settimeout(0)
        s:connect("127.0.0.1", port)
        assert(l:wait(s, "w", gettime() + 1))
        return s
      end
      st.mute = tcp()
      st.mute:send(H.request(port, "/ws"))          -- upgraded, then never reads nor answers
      st.slow = tcp()
      st.slow:send("GET /ws HTTP/1.1\r\n")          -- a head never finished
    end)
    return st
  end

  local function check(st, took)
    assert.is_true(took < 1.5, "the host loop returned " .. took .. " s after the close")
    assert.same({ nil, "closed", 1011 }, { st.raised[1], st.raised[2], st.raised[3] })
    assert.same({ nil, "closed", 1001, "server shutting down" }, st.got)
    assert.truthy(table.concat(st.lines, "\n"):find("handler boom", 1, true))
    assert.equal(0, st.server.handshakes)
    assert.is_nil(next(st.server.conns))
    assert.is_nil(socket.connect("127.0.0.1", st.server.port))   -- the listener is gone
    st.mute:close()
    st.slow:close()
  end

  it("luv: uv.run() returns", function()
    local uv = host("luv")
    if not uv then return end
    local l = loop.new()
    local h = require("ws.luv").attach(l)
    finally(function() h.close(); uv.run() end)
    local st, t0 = scene(l), nil
    local timer = uv.new_timer()
    uv.update_time()   -- (uv's clock stands where the last uv.run() left it)
    timer:start(400, 0, function()
      timer:close()
      t0 = gettime()
      st.server:close()
    end)
    uv.run()
    check(st, gettime() - t0)
  end)

  it("cqueues: the controller empties", function()
    local cqueues = host("cqueues")
    if not cqueues then return end
    local l, cq = loop.new(), cqueues.new()
    local st, t0 = scene(l), nil
    require("ws.cqueues").attach(cq, l)
    cq:wrap(function()
      cqueues.sleep(0.4)
      t0 = gettime()
      st.server:close()
    end)
    local t1 = gettime()
    while not cq:empty() and gettime() - t1 < 5 do assert(cq:step(0.1)) end
    assert.is_true(cq:empty())
    check(st, gettime() - t0)
  end)
end)
