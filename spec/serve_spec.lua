-- conn:serve(fn): the loop calls fn per message itself (no task switch),
-- and hands everything else (control frames, the close, errors, long
-- bursts, idle limits) to the connection's task. Real sockets, one ws.loop
-- with the server and our client in it.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime
local SERVE   -- (the mode a case runs in: see MODES)

-- A server on loop l whose /ws handler is conn:serve(fn); what serve()
-- returned for each connection goes to the table returned, in order, and
-- log lines to the second.
local function serving(l, fn, opts)
  opts = opts or {}
  local ended, lines = {}, {}
  opts.host, opts.port, opts.loop = "127.0.0.1", H.free_port(), l
  opts.logger = function(level, msg) lines[#lines + 1] = level .. " " .. msg end
  local server = assert(ws.listen(opts))
  server:route("/ws", function(conn)
    local r = { SERVE(conn, fn) }   -- (not ended[#ended + 1] = {...}: # is taken before it waits)
    ended[#ended + 1] = r
  end)
  return server, opts.port, ended, lines
end

local function echo(conn, data, kind) conn:send(data, kind) end

local function connect(port, opts)
  opts = opts or {}
  opts.timeout = opts.timeout or 5
  return assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", opts))
end

local function stop(l, server)
  server:close()
  H.step_until(l, 5, function() return l.ntasks == 0 end)
end

-- Every case runs twice: with conn:serve, and with the loop over
-- conn:receive() it stands for, which must behave the same.
local MODES = {
  ["conn:serve"] = function(conn, fn) return conn:serve(fn) end,
  ["a receive loop"] = function(conn, fn)
    while true do
      local data, kind, code, reason = conn:receive()
      if not data then return data, kind, code, reason end
      fn(conn, data, kind)
    end
  end,
}

for name, serve in pairs(MODES) do
describe("conn:serve (" .. name .. ")", function()
  setup(function() SERVE = serve end)
  -- (serve's own: a receive loop's callback runs in the task, and may wait)
  local serve_only = name == "conn:serve" and it or function() end

  it("echoes messages in order (text, binary, empty, 1 MiB, 300 pipelined), then returns the peer's close", function()
    local l = loop.new()
    local server, port, ended = serving(l, echo)
    H.run_task(l, 30, function()
      local c = connect(port)
      for _, m in ipairs { { "hello", "text" }, { "", "text" }, { "\0\1\2", "binary" },
                           { ("x"):rep(1024 * 1024), "binary" } } do
        assert(c:send(m[1], m[2]))
        local data, kind = c:receive(5)
        assert.equal(m[2], kind)
        assert.equal(m[1], data)
      end
      -- more than a burst (64) arrives at once: the task reads the rest, in turns
      for i = 1, 300 do assert(c:send("m" .. i)) end
      for i = 1, 300 do assert.equal("m" .. i, (c:receive(5))) end
      -- (the server echoes the code, without a reason)
      assert.same({ true, 1000, "" }, { c:close(1000, "done") })
    end)
    assert.truthy(H.step_until(l, 5, function() return ended[1] end))
    assert.same({ nil, "closed", 1000, "done" }, ended[1])
    stop(l, server)
  end)

  for _, poller in ipairs { "epoll", "select" } do
  it("serves 16 clients sending random bursts, sizes and pings: every echo whole and in order (" .. poller .. ")", function()
    local l = loop.new { poller = poller }
    local server, port = serving(l, echo)
    math.randomseed(6455)
    local done, failures = 0, {}
    for k = 1, 16 do
      l:spawn(function()
        local ok, err = loop.pcall(function()
          local c = connect(port)
          for round = 1, 8 do
            local n, sent = math.random(1, 150), {}
            for i = 1, n do
              local size = math.random() < 0.9 and math.random(0, 200) or math.random(1000, 70000)
              sent[i] = ("%d.%d.%d:"):format(k, round, i) .. ("r"):rep(size)
              assert(c:send(sent[i], "binary"))
              if math.random() < 0.05 then assert(c:ping("p")) end
            end
            for i = 1, n do
              local data = c:receive(10)
              assert(data == sent[i], ("client %d round %d message %d: %s"):format(k, round, i,
                tostring(data and data:sub(1, 20))))
            end
            if math.random() < 0.3 then l:sleep(math.random() * 0.05) end
          end
          assert(c:close())
        end)
        if not ok then failures[#failures + 1] = tostring(err) end
        done = done + 1
      end)
    end
    assert.truthy(H.step_until(l, 60, function() return done == 16 end), done .. " of 16 done")
    assert.same({}, failures)
    stop(l, server)
  end)
  end

  it("answers a ping between messages and goes on serving; a close after a pause completes", function()
    -- (the edge after a handed-over ping must be read: a stale "drained"
    -- once left the close unread until the client gave up)
    local l = loop.new()
    local pongs = {}
    local server, port, ended = serving(l, echo)
    H.run_task(l, 20, function()
      local c = connect(port, { on_pong = function(_, data) pongs[#pongs + 1] = data end })
      assert(c:send("a"))
      assert.equal("a", (c:receive(5)))
      for i = 1, 3 do
        assert(c:ping("p" .. i))
        l:sleep(0.05)
        assert(c:send("b" .. i))
        assert.equal("b" .. i, (c:receive(5)))
      end
      assert(c:ping("last"))
      l:sleep(0.1)
      local t0 = gettime()
      assert.same({ true, 4001, "" }, { c:close(4001, "bye", 3) })
      assert.is_true(gettime() - t0 < 1)
    end)
    assert.same({ "p1", "p2", "p3", "last" }, pongs)
    assert.truthy(H.step_until(l, 5, function() return ended[1] end))
    assert.same({ nil, "closed", 4001, "bye" }, ended[1])
    stop(l, server)
  end)

  it("fails a peer that breaks the protocol (invalid UTF-8: 1007) and returns why", function()
    local l = loop.new()
    local server, port, ended = serving(l, echo)
    H.run_task(l, 20, function()
      local c = connect(port)
      assert(c:send("ok"))
      assert.equal("ok", (c:receive(5)))
      -- a masked text frame whose payload is not UTF-8, written raw
      assert(c.sock:send(H.frame(1, "\255\254")))
      local data, err, code = c:receive(5)
      assert.is_nil(data)
      assert.equal("closed", err)
      assert.equal(1007, code)
    end)
    assert.truthy(H.step_until(l, 5, function() return ended[1] end))
    assert.is_nil(ended[1][1])
    assert.equal(1007, ended[1][3])
    stop(l, server)
  end)

  it("ends with the error of a callback that raises: the server logs it and closes with 1011", function()
    local l = loop.new()
    local server, port, _, lines = serving(l, function(conn, data)
      if data == "boom" then error("deliberate") end
      conn:send(data)
    end)
    H.run_task(l, 20, function()
      local c = connect(port)
      assert(c:send("fine"))
      assert.equal("fine", (c:receive(5)))
      assert(c:send("boom"))
      local data, _, code = c:receive(5)
      assert.is_nil(data)
      assert.equal(1011, code)
    end)
    assert.truthy(H.step_until(l, 5, function()
      return table.concat(lines, "\n"):find("handler error: .*deliberate")
    end), table.concat(lines, "\n"))
    stop(l, server)
  end)

  it("a callback that aborts or closes the connection, then raises: the server still logs the error", function()
    for _, how in ipairs { "abort", "close" } do
      local l = loop.new()
      local server, port, _, lines = serving(l, function(conn, data)
        if data == "boom" then
          if how == "abort" then conn:abort() else conn:close(1000, "bye") end
          error("deliberate after " .. how)
        end
        conn:send(data)
      end)
      H.run_task(l, 20, function()
        local c = connect(port)
        assert(c:send("fine"))
        assert.equal("fine", (c:receive(5)))
        assert(c:send("boom"))
        assert.is_nil((c:receive(5)))
        c:abort()
      end)
      assert.truthy(H.step_until(l, 5, function()
        return table.concat(lines, "\n"):find("handler error: .*deliberate after " .. how)
      end), how .. ": " .. table.concat(lines, "\n"))
      stop(l, server)
    end
  end)

  serve_only("a callback that waits (receive) is an error, not a hang", function()
    local l = loop.new()
    local server, port, _, lines = serving(l, function(conn) conn:receive() end)
    H.run_task(l, 20, function()
      local c = connect(port)
      assert(c:send("x"))
      local data, _, code = c:receive(5)
      assert.is_nil(data)
      assert.equal(1011, code)
    end)
    assert.truthy(H.step_until(l, 5, function()
      return table.concat(lines, "\n"):find("handler error: .*already receiving")
    end), table.concat(lines, "\n"))
    stop(l, server)
  end)

  it("closes from the callback: the close handshake completes and serve returns", function()
    local l = loop.new()
    local server, port, ended = serving(l, function(conn, data)
      conn:send("last: " .. data)
      conn:close(4000, "enough")
    end)
    H.run_task(l, 20, function()
      local c = connect(port)
      assert(c:send("one"))
      assert.equal("last: one", (c:receive(5)))
      local data, err, code = c:receive(5)
      assert.is_nil(data)
      assert.same({ "closed", 4000 }, { err, code })
    end)
    assert.truthy(H.step_until(l, 5, function() return ended[1] end))
    -- (the code and reason of the peer's answer)
    assert.same({ nil, "closed", 4000, "" }, ended[1])
    stop(l, server)
  end)

  it("drops a silent peer after idle_timeout; one that keeps sending stays", function()
    local l = loop.new()
    local server, port, ended = serving(l, echo, { idle_timeout = 0.4, ping_interval = false })
    H.run_task(l, 20, function()
      local busy, silent = connect(port, { ping_interval = false }), connect(port, { ping_interval = false })
      assert(silent:send("hi"))
      assert.equal("hi", (silent:receive(5)))
      local t0 = gettime()
      for i = 1, 12 do   -- (1.2 s, three idle limits)
        assert(busy:send("tick" .. i))
        assert.equal("tick" .. i, (busy:receive(5)))
        l:sleep(0.1)
      end
      local data, err, code = silent:receive(5)
      assert.is_nil(data)
      assert.same({ "closed", 1001 }, { err, code })
      assert.is_true(gettime() - t0 < 5)
      assert.equal("open", busy.state)
      assert(busy:close())
    end)
    assert.truthy(H.step_until(l, 5, function() return #ended == 2 end))
    -- (the silent one's close completes as the busy one closes: either may end first)
    local codes = { ended[1][3], ended[2][3] }
    table.sort(codes)
    assert.same({ 1000, 1001 }, codes)
    stop(l, server)
  end)

  it("keeps a peer that answers its keepalive pings; fails one whose pong does not come (1011)", function()
    local l = loop.new()
    local server, port, ended = serving(l, echo, { ping_interval = 0.1, ping_timeout = 0.3 })
    H.run_task(l, 20, function()
      local c = connect(port, { ping_interval = false })
      for i = 1, 6 do   -- (our client answers pings while it receives)
        assert(c:send("m" .. i))
        assert.equal("m" .. i, (c:receive(5)))
        l:sleep(0.1)
      end
      assert.equal("open", c.state)
      -- now it stops reading: its pongs stop too
      l:sleep(1)
      assert.is_truthy(ended[1])
      assert.equal(1011, ended[1][3])
    end)
    stop(l, server)
  end)

  serve_only("never waits in the callback: past max_queue a peer that does not read is dropped (1008), others are served", function()
    local l = loop.new()
    local big = ("z"):rep(256 * 1024)
    local server, port, ended, lines = serving(l, function(conn, data)
      if data == "flood" then
        for _ = 1, 64 do if not conn:send(big) then return end end
      else
        conn:send(data)
      end
    end, { max_queue = 1024 * 1024 })
    H.run_task(l, 30, function()
      local reader, sink = connect(port), connect(port)
      local t0 = gettime()
      assert(sink:send("flood"))   -- 16 MiB of answers it never reads
      for i = 1, 20 do
        assert(reader:send("r" .. i))
        assert.equal("r" .. i, (reader:receive(5)))
      end
      assert.truthy(H.step_until(l, 10, function() return ended[1] end))
      assert.equal(1008, ended[1][3])
      assert.is_true(gettime() - t0 < 10)
      assert(reader:close())
      sink:abort()
    end)
    assert.truthy(table.concat(lines, "\n"):find("send queue full", 1, true), table.concat(lines, "\n"))
    stop(l, server)
  end)

  -- A socket connected to port with a small receive window (loopback's may
  -- take 32 MiB), so that answers it does not read soon wait for it.
  local function narrow(port) return H.raw(port, false, { rcvbuf = 32768 }).sock end

  -- An echo that answers "big" with big (binary), and notes that it did.
  local function big_echo(big)
    local cb = { asked = false }
    function cb.fn(conn, data, kind)
      if data == "big" then
        cb.asked = true
        data, kind = big, "binary"
      end
      conn:send(data, kind)
    end
    return cb
  end

  it("paces a peer that sends faster than it reads (TCP backpressure) instead of dropping it", function()
    -- 16 MiB of echoes to a reader slower than its writer: more than the
    -- kernel's buffers hold and far past max_queue, so only reading no more
    -- while answers wait to be written keeps the peer (as a receive loop
    -- does: its send waits)
    local l = loop.new()
    local server, port, ended, lines = serving(l, echo, { max_queue = 64 * 1024 })
    local chunk, n = ("b"):rep(16 * 1024 - 8), 1024
    H.run_task(l, 60, function()
      local c = connect(port, { timeout = 20, sock = narrow(port) })
      local sent = 0
      l:spawn(function()
        for i = 1, n do
          if not c:send(("%08d"):format(i) .. chunk, "binary") then return end
          sent = i
        end
      end)
      for i = 1, n do
        local data, err = c:receive(20)
        assert(data, ("echo %d: %s (%s)"):format(i, tostring(err), table.concat(lines, "; ")))
        assert.equal(("%08d"):format(i), data:sub(1, 8))
        assert.equal(16 * 1024, #data)
        if i % 32 == 0 then l:sleep(0.01) end   -- (slower than the writer)
      end
      assert.equal(n, sent)
      assert.same({ true, 1000, "" }, { c:close(1000, "done") })
    end)
    assert.truthy(H.step_until(l, 5, function() return ended[1] end))
    assert.same({ nil, "closed", 1000, "done" }, ended[1])
    assert.falsy(table.concat(lines, "\n"):find("send queue full", 1, true))
    stop(l, server)
  end)

  -- A raw peer in a task of l: the upgrade, a first echo, bytes sent; once sent()
  -- is true a half-close (FIN); once done() is true, what it reads until
  -- the server closes TCP, and whether it did. (Each wait: a second at most.)
  local function half_close(l, port, bytes, sent, done)
    local s = narrow(port)
    s:settimeout(0)
    local deadline, got, closed = gettime() + 10, {}, false
    local function send(pending)
      while #pending > 0 and gettime() < deadline do
        local n, err, part = s:send(pending)
        pending = pending:sub((n or part) + 1)
        if err == "timeout" then l:sleep(0.005) end
      end
    end
    -- (the upgrade and a first echo: the server waits for the next message)
    send(H.request(port) .. H.frame(1, "hi"))
    while not table.concat(got):find("\r\n\r\n\129\002hi$") and gettime() < deadline do
      local data, _, part = s:receive(65536)
      got[#got + 1] = data or part
      l:sleep(0.005)
    end
    send(bytes)
    local until_ = gettime() + 1
    while not sent() and gettime() < until_ do l:sleep(0.005) end
    assert(s:shutdown("send"))
    until_ = gettime() + 1
    while not done() and gettime() < until_ do l:sleep(0.01) end
    while not closed and gettime() < deadline do
      local data, err, part = s:receive(65536)
      got[#got + 1] = data or part
      closed = err == "closed"
      if err == "timeout" then l:sleep(0.005) end
    end
    s:close()
    local all = table.concat(got)
    return all:sub((all:find("\r\n\r\n\129\002hi", 1, true) or #all) + 8), closed
  end

  it("a peer that half-closes (FIN) gets the answers queued before, then TCP closes (1006)", function()
    -- an answer of 8 MiB fits neither the peer's receive window nor the
    -- kernel's send buffer (4 MiB at most): it is still being written when
    -- the server reads the FIN, and goes out whole before TCP closes (as a
    -- receive loop's send would); an echo corked behind buffered input (a
    -- frame the FIN cuts short) goes out too
    local l = loop.new()
    local big = ("q"):rep(8 * 1024 * 1024)
    local cb = big_echo(big)
    local server, port, ended = serving(l, cb.fn)
    local got, closed, got2, closed2
    H.run_task(l, 30, function()
      -- (the FIN once the answer is being written; read once the server has
      -- read the FIN: serve returned, or a second passed)
      got, closed = half_close(l, port, H.frame(1, "big"), function() return cb.asked end,
        function() return ended[1] end)
      got2, closed2 = half_close(l, port, H.frame(1, "a") .. H.frame(1, "hello"):sub(1, 5),
        function() return true end, function() return ended[2] end)
    end)
    assert.is_true(closed)
    assert.equal(#big + 10, #got)   -- (header: 2 + 8 bytes)
    assert.is_true(got == "\130\127" .. "\0\0\0\0\0\128\0\0" .. big, "the answer came cut short")
    assert.is_true(closed2)
    assert.equal("\129\001a", got2)
    assert.truthy(H.step_until(l, 5, function() return ended[2] end))
    assert.same({ nil, "closed", 1006, "" }, ended[1])
    assert.same({ nil, "closed", 1006, "" }, ended[2])
    stop(l, server)
  end)

  it("a half-closed peer gets its answer whole while keepalive pings are due", function()
    -- the keepalive task reads what is there while the answer waits for
    -- the socket: it finds the FIN, and must leave the close to the writer
    -- and the receiver
    local l = loop.new()
    local big = ("k"):rep(8 * 1024 * 1024)
    local cb = big_echo(big)
    local server, port, ended = serving(l, cb.fn, { ping_interval = 0.02, ping_timeout = 10 })
    local got, closed
    H.run_task(l, 30, function()
      got, closed = half_close(l, port, H.frame(1, "big"), function() return cb.asked end,
        function() return ended[1] end)
    end)
    assert.is_true(closed)
    assert.truthy(got:find("\130\127" .. "\0\0\0\0\0\128\0\0" .. big, 1, true), "the answer came cut short")
    assert.truthy(H.step_until(l, 5, function() return ended[1] end))
    assert.same({ nil, "closed", 1006, "" }, ended[1])
    stop(l, server)
  end)

  it("paces a peer that sends one message at a time and does not read, instead of dropping it", function()
    -- each message comes alone (the reads run dry), the peer reads nothing
    -- until its sends block: a receive loop's sends wait there, so TCP
    -- stops the peer; so must serve's (not a queue that fills to 1008)
    local l = loop.new()
    local server, port, ended, lines = serving(l, echo, { max_queue = 64 * 1024 })
    local chunk, n = ("d"):rep(16 * 1024 - 8), 640   -- (10 MiB: past the kernel's buffers)
    H.run_task(l, 60, function()
      local c = connect(port, { timeout = 20, sock = narrow(port) })
      local sent, last = 0, gettime()
      l:spawn(function()
        for i = 1, n do
          if not c:send(("%08d"):format(i) .. chunk, "binary") then return end
          sent, last = i, gettime()
          l:sleep(0.001)
        end
      end)
      -- (read once the sends block for half a second, all went, or the server gave up)
      local deadline = gettime() + 30
      while sent < n and gettime() - last < 0.5 and gettime() < deadline and
            not table.concat(lines, "\n"):find("send queue full", 1, true) do
        l:sleep(0.01)
      end
      for i = 1, n do
        local data, err, code = c:receive(20)
        assert(data, ("echo %d: %s %s (%s)"):format(i, tostring(err), tostring(code), table.concat(lines, "; ")))
        assert.equal(("%08d"):format(i), data:sub(1, 8))
      end
      assert.equal(n, sent)
      assert.same({ true, 1000, "" }, { c:close(1000, "done") })
    end)
    assert.truthy(H.step_until(l, 5, function() return ended[1] end))
    assert.same({ nil, "closed", 1000, "done" }, ended[1])
    assert.falsy(table.concat(lines, "\n"):find("send queue full", 1, true))
    stop(l, server)
  end)

  it("a drain or close() of the server while connections are served closes them with 1001", function()
    local l = loop.new()
    local server, port, ended = serving(l, echo)
    local codes = {}
    H.run_task(l, 20, function()
      local cs = {}
      for i = 1, 3 do
        cs[i] = connect(port)
        assert(cs[i]:send("x"))
        assert.equal("x", (cs[i]:receive(5)))
      end
      l:spawn(function() server:close() end)
      for i = 1, 3 do codes[i] = select(3, cs[i]:receive(5)) end
    end)
    assert.same({ 1001, 1001, 1001 }, codes)
    assert.truthy(H.step_until(l, 5, function() return #ended == 3 end))
    for i = 1, 3 do assert.equal(1001, ended[i][3]) end
    H.step_until(l, 5, function() return l.ntasks == 0 end)
  end)

  it("serves messages that came with the upgrade request, and compressed ones", function()
    local l = loop.new()
    local server, port = serving(l, echo, { compression = true })
    H.run_task(l, 20, function()
      -- a client that sends its first frame right behind the request
      local s = socket.tcp()
      s:settimeout(5)
      assert(s:connect("127.0.0.1", port))
      s:settimeout(0)
      local pending = H.request(port) .. H.frame(2, "early")
      while #pending > 0 do
        local n, err, part = s:send(pending)
        n = n or part
        pending = pending:sub(n + 1)
        if err == "timeout" then l:sleep(0.01) end
      end
      local got = ""
      local deadline = gettime() + 5
      while not got:find("early", 1, true) and gettime() < deadline do
        local data, err, part = s:receive(4096)
        got = got .. (data or part or "")
        if err == "closed" then break end
        l:sleep(0.01)
      end
      assert.truthy(got:find("^HTTP/1.1 101"), got)
      assert.truthy(got:find("\r\n\r\n\130\005early$"), got)
      s:close()
      local c = connect(port, { compression = true })
      assert.truthy(c.deflate)
      local text = ("compressible "):rep(1000)
      assert(c:send(text))
      assert.equal(text, (c:receive(5)))
      assert(c:close())
    end)
    stop(l, server)
  end)

  serve_only("works outside a loop too (a blocking client): messages reach the callback until it closes", function()
    local srv = H.start_lua("examples/echo.lua", "--quiet", "serve-echo")
    finally(srv.stop)
    local c = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/ws", { timeout = 5 }))
    local got = {}
    for i = 1, 3 do assert(c:send("n" .. i)) end
    local r = { c:serve(function(conn, data)
      got[#got + 1] = data
      if #got == 3 then conn:close(1000, "three") end
    end) }
    assert.same({ "n1", "n2", "n3" }, got)
    assert.same({ nil, "closed", 1000, "" }, r)
  end)

  serve_only("checks its argument", function()
    local l = loop.new()
    local server, port = serving(l, echo)
    H.run_task(l, 10, function()
      local c = connect(port)
      assert.has_error(function() c:serve("echo") end, "bad argument #1 to 'serve' (function expected)")
      assert(c:close())
    end)
    stop(l, server)
  end)

  serve_only("is served by examples/echo.lua over TLS too (wss_echo) with the same bytes back", function()
    local ca = H.throwaway_ca()
    local srv = H.start_lua("examples/wss_echo.lua",
      string.format("--cert %s/server.pem --key %s/server.key", ca, ca), "serve-wss")
    finally(function()   -- (busted keeps one finally per test)
      srv.stop()
      os.execute("rm -rf " .. H.shell_quote(ca))
    end)
    local l = loop.new()
    H.run_task(l, 20, function()
      local c = assert(ws.connect("wss://127.0.0.1:" .. srv.port .. "/ws",
        { timeout = 5, tls = { cafile = ca .. "/ca.pem" } }))
      for i = 1, 50 do assert(c:send(("s"):rep(i * 100))) end
      for i = 1, 50 do assert.equal(("s"):rep(i * 100), (c:receive(5))) end
      assert(c:ping("tls"))
      assert(c:send("after"))
      assert.equal("after", (c:receive(5)))
      assert.same({ true, 1000, "" }, { c:close() })
    end)
  end)
end)
end
