-- lua-ws inside the event loops Lua applications run: cqueues, luv and copas
-- (ws.accept / ws.connect through the adapters), and a ws.listen server
-- nested in cqueues and luv (pollfd / timeout / step). Each host runs as a
-- real process (spec/servers/host_server.lua) under the Lua being tested;
-- a loop that is not packaged for that Lua is reported pending.
-- WS_COPAS_PATH=DIR runs the copas host with the copas found in DIR (its
-- copas.lua, copas/*.lua and their dependencies), e.g. copas 4 on Lua 5.4.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime

local COPAS_PATH = os.getenv("WS_COPAS_PATH")
if COPAS_PATH then package.path = COPAS_PATH .. "/?.lua;" .. COPAS_PATH .. "/?/init.lua;" .. package.path end

local HOSTS = {
  { name = "cqueues", lib = "cqueues" },
  { name = "luv", lib = "luv" },
  { name = "copas", lib = "copas" },
  { name = "cqueues-nested", lib = "cqueues" },
  { name = "luv-nested", lib = "luv" },
}

local LIMITS = "--set handshake_timeout=1 --set ping_interval=0.3 --set ping_timeout=0.5 " ..
               "--set max_message=2097152 --set idle_timeout=30"

local function start(host, args)
  return H.start_lua("spec/servers/host_server.lua", "--loop " .. host.name .. " " .. (args or LIMITS),
    "host-" .. host.name)
end

-- Seconds this process has waited on a run queue for a CPU so far (0 if
-- unknown), as spec/servers/host_server.lua counts them.
local function cpu_wait()
  local f = io.open("/proc/self/schedstat")
  if not f then return 0 end
  local _, wait = f:read("*n", "*n")
  f:close()
  return (wait or 0) / 1e9
end

-- Run fn as a task of a fresh ws.loop (the clients), bounded by secs.
local function clients(secs, fn)
  return H.run_task(loop.new(), secs, fn)
end

-- (a while loop: PUC Lua 5.1 cannot wait inside a for iterator)
local function ask(conn, message)
  assert(conn:send(message))
  return (assert(conn:receive(5)))
end

for _, host in ipairs(HOSTS) do
  local available, lib = pcall(require, host.lib)
  local version = available and type(lib) == "table" and lib._VERSION
  describe("lua-ws in " .. host.name .. (version and " (" .. version .. ")" or ""), function()
    if not available then
      it("(skipped)", function() pending(host.lib .. " is not packaged for " .. _VERSION) end)
      return
    end
    local proc, base
    setup(function()
      proc = start(host)
      base = "ws://127.0.0.1:" .. proc.port
    end)
    teardown(function() if proc then proc.stop() end end)

    it("keeps the host loop's ticker under 50 ms while serving three clients, one silent (cut at handshake_timeout)",
      function()
        -- one round of the load; returns the ticker's worst gap in it
        local function round()
          -- (a stats connection at a time: an idle client reads no pings)
          local stats = assert(ws.connect(base .. "/stats"))
          assert.equal("ok", ask(stats, "reset"))
          stats:close()
          local l = loop.current()
          local silent = assert(socket.connect("127.0.0.1", proc.port))
          local t0 = gettime()
          local done, echoed = 0, 0
          for c = 1, 2 do
            l:spawn(function()
              local conn = assert(ws.connect(base .. "/echo"))
              for i = 1, 20 do
                local msg = ("c" .. c):rep(i * 300)
                assert(conn:send(msg, "binary"))
                assert.equal(msg, (conn:receive(5)))
                echoed = echoed + 1
                l:sleep(0.05)
              end
              conn:close()
              done = done + 1
            end)
          end
          -- the silent one: the server drops it after handshake_timeout (1 s)
          silent:settimeout(0)
          local cut
          while not cut and gettime() - t0 < 5 do
            local _, err = silent:receive(1)
            if err == "closed" then cut = gettime() - t0 else l:wait(silent, "r", t0 + 5) end
          end
          silent:close()
          while done < 2 and gettime() - t0 < 15 do l:sleep(0.05) end
          assert.equal(40, echoed)
          assert.is_truthy(cut, "the silent client was never cut")
          assert.is_true(cut > 0.8 and cut < 2.5, "silent client cut after " .. tostring(cut) .. " s")
          stats = assert(ws.connect(base .. "/stats"))
          local worst = tonumber(ask(stats, "get"))
          stats:close()
          return worst
        end
        clients(40, function()
          -- a stall our loop causes comes back in every round; a pause of
          -- the VM (seen once: 101 ms, with no time waiting for a CPU) does
          -- not, so one round may be repeated
          local worst = round()
          if worst >= 0.05 then worst = math.min(worst, round()) end
          assert.is_true(worst < 0.05, "the host loop's ticker stalled " .. worst .. " s (in two rounds)")
        end)
      end)

    it("echoes messages of 0 B to 1 MiB, text and binary", function()
      clients(20, function()
        local conn = assert(ws.connect(base .. "/echo", { max_message = 2 * 1024 * 1024 }))
        for _, n in ipairs { 0, 1, 125, 126, 65535, 65536, 1024 * 1024 } do
          for _, kind in ipairs { "binary", "text" } do
            local msg = ("\0\1x"):rep(math.floor(n / 3) + 1):sub(1, n)
            if kind == "text" then msg = ("é"):rep(math.floor(n / 2)) end
            assert(conn:send(msg, kind))
            local got, k = conn:receive(10)
            assert.equal(#msg, #(got or ""))
            assert.is_true(got == msg and k == kind, "echo of " .. #msg .. " B " .. kind)
          end
        end
        assert.same({ true, 1000, "" }, { conn:close() })
      end)
    end)

    it("answers a message over max_message with 1009", function()
      clients(10, function()
        local conn = assert(ws.connect(base .. "/echo"))
        assert(conn:send(("x"):rep(2097153), "binary"))
        local data, err, code = conn:receive(5)
        assert.is_nil(data)
        assert.equal("closed", err)
        assert.equal(1009, code)
      end)
    end)

    it("times out a receive, and keeps the connection", function()
      clients(10, function()
        local conn = assert(ws.connect(base .. "/timeout"))
        local t = gettime()
        assert.equal("timeout:timeout", conn:receive(5))
        local dt = gettime() - t
        assert.is_true(dt > 0.25 and dt < 1.5, "receive(0.3) returned after " .. dt .. " s")
        assert.equal("still here", ask(conn, "still here"))
        conn:close()
      end)
    end)

    it("pings on the wire at ping_interval, and drops a peer whose pong is late with 1011", function()
      local r = H.raw(proc.port, nil, { path = "/echo", timeout = 3 })
      local t = gettime()
      local f = assert(r:read_frame())
      assert.equal(9, f.opcode)
      local first = gettime() - t
      assert.is_true(first > 0.2 and first < 1.0, "first ping after " .. first .. " s")
      r:send_frame(10, f.payload)                    -- answered: the connection lives on
      f = assert(r:read_frame())
      assert.equal(9, f.opcode)
      local code, reason = r:read_close()            -- not answered: dropped
      assert.equal(1011, code)
      assert.equal("keepalive ping timeout", reason)
      assert.is_true(gettime() - t < 3)
      r:close()
    end)

    it("connects as a client from inside the host loop", function()
      clients(10, function()
        local conn = assert(ws.connect(base .. "/dial"))
        -- (the echo server answers the dialer's close with its code)
        assert.equal("dialed:hi:true:4001", ask(conn, base .. "/echo"))
        conn:close()
      end)
      -- the dialer's close code reached the server side (same process)
      assert.is_truthy(H.wait_output(proc, "closed 127%.0%.0%.1:%d+ (4001) dialer done"))
    end)

    it("closes cleanly both ways with the codes given", function()
      clients(10, function()
        local conn = assert(ws.connect(base .. "/echo"))
        assert.equal("x", ask(conn, "x"))
        assert.same({ true, 4000, "" }, { conn:close(4000, "client bye") })
        conn = assert(ws.connect(base .. "/bye"))
        assert.equal("y", ask(conn, "y"))
        local data, err, code, reason = conn:receive(5)
        assert.same({ "closed", 4002, "server bye" }, { err, code, reason })
        assert.is_nil(data)
      end)
      assert.is_truthy(H.wait_output(proc, "closed 127%.0%.0%.1:%d+ 4000 client bye"))
    end)

    it("holds send_timeout, max_queue and close_timeout against a peer that does not read", function()
      local p = start(host, "--set send_timeout=0.5 --set close_timeout=0.5 --set max_queue=1048576")
      local raws = {}
      for _, path in ipairs { "/flood", "/queue", "/close" } do
        raws[#raws + 1] = H.raw(p.port, nil, { path = path, timeout = 3 })   -- and then reads nothing
      end
      local flood = H.wait_output(p, "flood: (nil timeout after [%d.]+)", 10)
      local queue = H.wait_output(p, "queue: (nil send queue full after [%d.]+)", 10)
      local close = H.wait_output(p, "close: (nil timeout after [%d.]+)", 10)
      for _, r in ipairs(raws) do r:close() end
      p.stop()
      assert.is_truthy(flood, "send_timeout did not end the flood:\n" .. p.output())
      assert.is_truthy(queue, "max_queue did not stop the queue:\n" .. p.output())
      assert.is_truthy(close, "close_timeout did not end the close:\n" .. p.output())
      local function secs(line) return tonumber(line:match("after ([%d.]+)")) end
      assert.is_true(secs(flood) > 0.4 and secs(flood) < 3, flood)
      assert.is_true(secs(close) > 0.4 and secs(close) < 3, close)
    end)

    if host.name == "copas" then
      it("accepts the socket copas.wrap made of it, with its limits", function()
        local p = start(host, LIMITS .. " --wrap yes")
        local url = "ws://127.0.0.1:" .. p.port
        clients(10, function()
          local conn = assert(ws.connect(url .. "/timeout"))
          assert.equal("timeout:timeout", conn:receive(5))   -- receive(0.3) timed out
          assert.equal(("w"):rep(70000), ask(conn, ("w"):rep(70000)))
          assert.same({ true, 4000, "" }, { conn:close(4000, "wrapped bye") })
        end)
        local closed = H.wait_output(p, "closed 127%.0%.0%.1:%d+ 4000 wrapped bye")
        p.stop()
        assert.is_truthy(closed, p.output())
      end)

      it("copas.loop() returns once the server is removed and the last connection is closed", function()
        if not lib.finished then return pending(version .. " has no copas.finished: its loop never returns") end
        local p = start(host)
        local url = "ws://127.0.0.1:" .. p.port
        clients(10, function()
          local open = assert(ws.connect(url .. "/echo"))
          local quit = assert(ws.connect(url .. "/quit"))
          assert.equal("quitting", (quit:receive(5)))
          assert.same({ nil, "closed", 1000, "" }, { quit:receive(5) })
          assert.equal("still served", ask(open, "still served"))   -- the server is gone, not its connections
          open:close()
        end)
        local returned = H.wait_output(p, "copas loop returned", 5)
        local t = gettime()
        while p.alive() and gettime() - t < 5 do socket.sleep(0.05) end
        local alive = p.alive()
        p.stop()
        assert.is_truthy(returned, "copas.loop() did not return:\n" .. p.output())
        assert.is_false(alive)
      end)
    end

    it("closes an idle connection at idle_timeout with 1001", function()
      local p = start(host, "--set idle_timeout=0.6")
      local r = H.raw(p.port, nil, { path = "/echo", timeout = 3 })
      local t = gettime()
      local code, reason = r:read_close()
      local dt = gettime() - t
      p.stop()
      assert.equal(1001, code)
      assert.equal("idle timeout", reason)
      assert.is_true(dt > 0.5 and dt < 2, "idle close after " .. dt .. " s")
    end)
  end)
end

-- In-process: a connection of a ws.loop nested in luv or cqueues, or of the
-- cqueues and copas adapters, used from the host loop's own code (a
-- callback, another coroutine, the main thread), against a raw peer in
-- this process.
describe("a connection used from a host loop's own code", function()
  local N, SIZE = 40, 256 * 1024
  local WANT = N * (SIZE + 10)   -- binary frames of 256 KiB: 10-byte headers
  local OPTS = { ping_interval = false, idle_timeout = false, max_queue = 64 * 1024 * 1024, send_timeout = 5,
                 close_timeout = 2 }

  -- A raw client (its upgrade request sent, the answer not read yet) and
  -- the server's end of its TCP connection, for ws.accept.
  local function raw_pair()
    local lsn = assert(socket.bind("127.0.0.1", 0))
    local _, port = lsn:getsockname()
    local raw = H.raw(port, false)
    local sock = assert(lsn:accept())
    lsn:close()
    assert(raw:send(H.request(port, "/")))
    return raw, sock
  end

  -- Bytes the raw peer reads now, without waiting (its 101 head first).
  local function read_now(raw)
    if not raw.seen then
      raw.seen = assert(raw:read_head())
      return #raw.buf
    end
    raw.sock:settimeout(0)
    local data, _, partial = raw.sock:receive(1024 * 1024)
    return #(data or partial or "")
  end

  local function host(name)
    local ok, lib = pcall(require, name)
    if not ok then pending(name .. " is not packaged for " .. _VERSION) end
    return ok and lib
  end

  it("luv: a send from a callback after the attached loop ran out of tasks is written", function()
    local uv = host("luv")
    if not uv then return end
    local wsluv = require "ws.luv"
    local raw, sock = raw_pair()
    local conn
    wsluv.spawn(function() conn = assert(ws.accept(sock, OPTS)) end)   -- and the loop has no task left
    local sent, got, t0 = 0, 0, gettime()
    local timer = uv.new_timer()
    timer:start(10, 10, function()
      if not conn then return end
      if sent < N then
        sent = sent + 1
        assert(conn:send(("x"):rep(SIZE), "binary"))   -- a slow reader: queued, a task writes it
      elseif gettime() - t0 > 0.3 then
        got = got + read_now(raw)
      end
      if got >= WANT or gettime() - t0 > 5 then
        timer:stop()
        timer:close()
      end
    end)
    uv.run()
    conn:abort()
    raw:close()
    assert.equal(WANT, got)
  end)

  it("cqueues: a send from a coroutine after the attached loop ran out of tasks is written", function()
    local cqueues = host("cqueues")
    if not cqueues then return end
    local raw, sock = raw_pair()
    local l, cq, conn = loop.new(), cqueues.new(), nil
    l:spawn(function() conn = assert(ws.accept(sock, OPTS)) end)
    require("ws.cqueues").attach(cq, l)
    local got, t0 = 0, gettime()
    cq:wrap(function()
      while not conn do cqueues.sleep(0.01) end
      for _ = 1, N do
        assert(conn:send(("x"):rep(SIZE), "binary"))
        cqueues.sleep(0.005)
      end
      cqueues.sleep(0.2)
      while got < WANT and gettime() - t0 < 5 do
        got = got + read_now(raw)
        cqueues.sleep(0.01)
      end
    end)
    while not cq:empty() and gettime() - t0 < 8 do assert(cq:step(0.1)) end
    conn:abort()
    raw:close()
    assert.equal(WANT, got)
  end)
  it("cqueues: a send from the main thread between cq:step calls neither blocks nor is lost", function()
    local cqueues = host("cqueues")
    if not cqueues then return end
    local raw, sock = raw_pair()
    local cq, conn = cqueues.new(), nil
    cq:wrap(function() conn = assert(ws.accept(sock, OPTS)) end)   -- waits through ws.cqueues
    local t0 = gettime()
    while not conn and gettime() - t0 < 5 do assert(cq:step(0.05)) end
    assert.equal(require("ws.cqueues").sched, getmetatable(conn.sched).__index)   -- (this controller's)
    -- (how long the sends held this thread: a send that waited for the
    -- reader would sleep here; waiting for a CPU on a busy machine (seen:
    -- 1.9 s under ASan) is not the sends' doing and is left out)
    local t1, w1 = gettime(), cpu_wait()
    for _ = 1, N do assert(conn:send(("x"):rep(SIZE), "binary")) end   -- a slow reader: queued
    local took = gettime() - t1 - (cpu_wait() - w1)
    local got = 0
    while got < WANT and gettime() - t0 < 8 do
      assert(cq:step(0.01))
      got = got + read_now(raw)
    end
    conn:abort()
    raw:close()
    assert.is_true(took < 1, "the sends held the main thread " .. took .. " s")
    assert.equal(WANT, got)
  end)

  it("cqueues: a close from the main thread is finished by one task (Lua 5.1: it spawned itself forever)", function()
    local cqueues = host("cqueues")
    if not cqueues then return end
    local raw, sock = raw_pair()
    local cq, conn = cqueues.new(), nil
    cq:wrap(function() conn = assert(ws.accept(sock, OPTS)) end)
    local t0 = gettime()
    while not conn and gettime() - t0 < 5 do assert(cq:step(0.05)) end
    assert.is_true(conn:close(1000, "bye"))                 -- queued; a task finishes
    raw:read_head()
    local frame = raw:read_frame()
    assert.equal(8, frame.opcode)
    assert(raw:send(H.frame(8, "\3\232", { mask = true })))   -- our answer: 1000
    local steps = 0
    while conn.state ~= "closed" and steps < 200 and gettime() - t0 < 5 do
      assert(cq:step(0.02))
      steps = steps + 1
    end
    raw:close()
    assert.equal("closed", conn.state)
    assert.equal(1000, conn.close_code)
    assert.is_true(steps < 100, steps .. " steps")
    assert.is_true(cq:empty())
  end)

  it("cqueues: a close from the main thread runs in the connection's controller, not the last one used", function()
    local cqueues = host("cqueues")
    if not cqueues then return end
    local raw1, sock1 = raw_pair()
    local raw2, sock2 = raw_pair()
    local cq1, cq2, a, b = cqueues.new(), cqueues.new(), nil, nil
    cq1:wrap(function() a = assert(ws.accept(sock1, OPTS)) end)
    local t0 = gettime()
    while not a and gettime() - t0 < 5 do assert(cq1:step(0.02)) end
    cq2:wrap(function() b = assert(ws.accept(sock2, OPTS)) end)
    while not b and gettime() - t0 < 5 do assert(cq2:step(0.02)) end
    assert.is_true(a:close(1000))                      -- queued: a task of cq1 finishes it
    raw1:read_head()
    assert.equal(8, raw1:read_frame().opcode)
    assert(raw1:send(H.frame(8, "\3\232", { mask = true })))
    while a.state ~= "closed" and gettime() - t0 < 5 do assert(cq1:step(0.02)) end
    assert.equal(1000, a.close_code)
    assert.is_true(cq2:empty())
    b:abort()
    raw1:close(); raw2:close()
  end)

  it("copas: a send from the main thread between copas steps is written", function()
    local copas = host("copas")
    if not copas then return end
    local wscopas = require "ws.copas"
    local raw, sock = raw_pair()
    local conn
    copas.addthread(function() conn = assert(ws.accept(sock, OPTS)) end)   -- waits through ws.copas
    local t0 = gettime()
    while not conn and gettime() - t0 < 5 do wscopas.step(0.05) end
    assert.equal(wscopas.sched, conn.sched)
    for _ = 1, N do assert(conn:send(("x"):rep(SIZE), "binary")) end   -- a slow reader: queued
    local got = 0
    while got < WANT and gettime() - t0 < 8 do
      wscopas.step(0.01)
      got = got + read_now(raw)
    end
    assert.is_false(conn.writer)
    conn:abort()
    raw:close()
    assert.equal(WANT, got)
  end)
  it("luv: close() from a callback returns true at once, and a task finishes the handshake", function()
    local uv = host("luv")
    if not uv then return end
    local wsluv = require "ws.luv"
    local idle_raw, idle_sock = raw_pair()   -- nobody receives on this one
    local busy_raw, busy_sock = raw_pair()   -- a task receives on this one
    local idle, busy, got, res
    wsluv.spawn(function() idle = assert(ws.accept(idle_sock, OPTS)) end)
    wsluv.spawn(function()
      busy = assert(ws.accept(busy_sock, OPTS))
      got = { busy:receive() }
    end)
    local t0 = gettime()
    local timer = uv.new_timer()
    timer:start(20, 20, function()
      if not res and idle and busy then
        res = { idle = { pcall(idle.close, idle, 1000, "bye") }, busy = { pcall(busy.close, busy, 1000, "bye") } }
        -- a receive meanwhile waits for the closing task, then says closed
        wsluv.spawn(function() res.later = { idle:receive(2) } end)
      elseif res and not res.answered then
        res.answered = true
        -- the peers read the close frames (written at once) and answer them
        for _, raw in ipairs { idle_raw, busy_raw } do
          assert(raw:read_head())
          assert.equal(1000, (raw:read_close()))
          raw:send_frame(8, "\3\232")
        end
      end
      if (got and res and res.later) or gettime() - t0 > 3 then
        timer:stop()
        timer:close()
      end
    end)
    uv.run()
    assert.same({ true, true }, res.idle)
    assert.same({ true, true }, res.busy)
    assert.same({ nil, "closed", 1000, "" }, got)
    assert.same({ nil, "closed", 1000, "" }, res.later)
    for _, conn in ipairs { idle, busy } do
      assert.equal("closed", conn.state)
      assert.equal(1000, conn.close_code)
      assert.is_false(conn.receiver)
    end
    assert.is_true(idle_raw:closed_by_peer(1))
    assert.is_true(busy_raw:closed_by_peer(1))
    idle_raw:close()
    busy_raw:close()
  end)
end)
