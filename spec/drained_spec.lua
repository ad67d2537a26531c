-- Short reads (reader:next's trust_short, ws.loop's clean edges): after a
-- wake by an epoll edge without hang-up, a short plain read proves the
-- socket drained, so one message in flight costs one read(), not a second
-- that returns EAGAIN; yet a FIN that came with the data, or after the
-- edge, must still be seen (no connection left in CLOSE-WAIT).
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime

-- An echo server on a new loop; after the first echo it calls after_first().
-- Returns the loop, the server, its port and the state { closed_at }.
local function serve(after_first)
  local l = loop.new()
  local st = {}
  local port = H.free_port()
  local server = assert(ws.listen({ host = "127.0.0.1", port = port, loop = l, logger = false }))
  server:route("/ws", function(conn)
    conn:on_close(function() st.closed_at = gettime() end)
    local n = 0
    while true do
      local m, kind = conn:receive()
      if not m or not conn:send(m, kind) then return end
      n = n + 1
      if n == 1 and after_first then after_first() end
    end
  end)
  return l, server, port, st
end

-- A raw client in this process, upgraded while the loop l steps.
local function client(l, port)
  local s = assert(socket.tcp())
  s:settimeout(2)
  assert(s:connect("127.0.0.1", port))
  assert(s:send(H.request(port)))
  s:settimeout(0)
  local buf = ""
  assert(H.step_until(l, 5, function()
    local data, _, partial = s:receive(65536)
    buf = buf .. (data or partial or "")
    return buf:find("\r\n\r\n", 1, true)
  end), "no upgrade")
  assert(buf:match("^HTTP/1.1 101"), buf)
  return s
end

-- Step l until the server closed the connection or secs passed; then the
-- client must read the echo and the end of the stream.
local function closes_within(l, s, st, secs, started)
  H.step_until(l, secs, function() return st.closed_at end)
  assert(st.closed_at, string.format("server still holds the connection after %g s (CLOSE-WAIT)", secs))
  assert(st.closed_at - started < secs)
  s:settimeout(1)
  local got, err, partial = s:receive("*a")
  got = got or partial
  assert(got and got:find("hello", 1, true), "no echo before the end: " .. tostring(err))
end

describe("short reads", function()
  it("reader:next(fd, true) says dry (5th result) once a message used up a short read; the next call reads", function()
    local core = require "ws.core"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local host, port = srv:getsockname()
    local c = assert(socket.connect(host, port))
    local a = assert(srv:accept())
    finally(function() c:close(); a:close(); srv:close() end)
    local fd, r = a:getfd(), core.reader({ role = "server" })
    local function arrive(...)
      local frames = {}
      for i = 1, select("#", ...) do frames[i] = core.frame(select(i, ...), "text", true, true) end
      assert(c:send(table.concat(frames)))
      assert(socket.select({ a }, nil, 2)[1], "nothing arrived")
      socket.sleep(0.01)   -- (the whole send, not part of it)
    end
    arrive("one", "two")
    -- one read holds both: the first leaves input, so it is not dry
    assert.are.same({ "text", "one" }, { r:next(fd, true) })
    assert.are.same({ "text", "two", nil, nil, true }, { r:next(fd, true) })
    -- said once: a frame that came since is read by the next call, not
    -- reported as "timeout" without a read
    arrive("three")
    assert.are.same({ "text", "three", nil, nil, true }, { r:next(fd, true) })
    -- without trust_short: never dry, and "timeout" comes from an EAGAIN read
    arrive("four")
    assert.are.same({ "text", "four" }, { r:next(fd) })
    assert.are.same({ nil, "timeout" }, { r:next(fd) })
  end)

  it("sees a FIN that came in one edge with the last frame", function()
    local l, server, port, st = serve()
    finally(function() server:close() H.step_until(l, 3, function() return l.ntasks == 0 end) end)
    local s = client(l, port)
    for _ = 1, 5 do l:step(0.01) end              -- the handler waits in receive
    -- frame and FIN before the server's next epoll_wait: one edge, EPOLLRDHUP
    -- on it; the read returns the frame and only the next read sees EOF
    assert(s:send(H.frame(1, "hello")))
    assert(s:shutdown("send"))
    socket.sleep(0.05)
    closes_within(l, s, st, 1, gettime())
    s:close()
  end)

  it("sees a FIN that came after the clean edge of the frame, before the next read", function()
    local s
    -- (runs in the handler after the echo, before it receives again: the
    -- short read after a clean edge is trusted, so the FIN must come as a new edge)
    local l, server, port, st = serve(function()
      assert(s:shutdown("send"))
      socket.sleep(0.05)
    end)
    finally(function() server:close() H.step_until(l, 3, function() return l.ntasks == 0 end) end)
    s = client(l, port)
    for _ = 1, 5 do l:step(0.01) end
    assert(s:send(H.frame(1, "hello")))
    closes_within(l, s, st, 1, gettime())
    s:close()
  end)

  it("reads once per echoed message with one message in flight, no read for EAGAIN", function()
    local srv = H.start_strace("examples/echo.lua", "read", "strace-echo")
    if not srv then
      pending("strace cannot trace here")   -- ptrace forbidden
      return
    end
    finally(function() srv.stop() end)
    local function reads()
      local f = assert(io.open(srv.trace))
      local t = f:read("*a")
      f:close()
      return H.count(t, "read%("), H.count(t, "= %-1 EAGAIN")
    end
    local c = H.raw(srv.port)
    assert.truthy(c.head:match("^HTTP/1.1 101"))
    socket.sleep(0.1)
    local r0, e0 = reads()
    local N = 100
    for i = 1, N do
      assert(c:send(H.frame(1, "m" .. i)))
      assert.equal("m" .. i, assert(c:read_frame()).payload)
      socket.sleep(0.003)   -- the server is surely waiting again: its read would find nothing
    end
    socket.sleep(0.1)
    local r, e = reads()
    r, e = r - r0, e - e0
    -- one read per message (the old code made two, the second EAGAIN)
    assert(r >= N and r <= N + 5, r .. " reads for " .. N .. " messages")
    assert(e <= 5, e .. " reads returned EAGAIN for " .. N .. " messages")
    c:close()
  end)
end)
