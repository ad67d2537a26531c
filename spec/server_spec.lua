-- The server under load and misuse: real processes, real sockets, raw peers.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local connection = require "ws.connection"
local H = require "spec.helpers"
local B = require "spec.bits"

local gettime = socket.gettime

local wait_output = H.wait_output

-- Start spec/servers/test_server.lua with listen options.
local function test_server(settings, name)
  local args = {}
  for k, v in pairs(settings or {}) do args[#args + 1] = "--set " .. k .. "=" .. tostring(v) end
  return H.start_lua("spec/servers/test_server.lua", table.concat(args, " "), name or "test-server")
end

-- A raw client, upgraded on path, with a socket timeout.
local function raw(port, path, timeout)
  local r, head = H.raw(port, nil, { path = path, timeout = timeout or 5 })
  assert.matches("^HTTP/1.1 101", tostring(head))
  return r
end

-- One echo round trip on a blocking client; returns seconds taken.
local function round_trip(conn, msg)
  local t = gettime()
  assert.is_true(conn:send(msg))
  local data, err = conn:receive(5)
  assert.equal(msg, data, err)
  return gettime() - t
end

describe("server against examples/echo.lua", function()
  local echo, url
  setup(function()
    echo = H.start_lua("examples/echo.lua", nil, "echo-server-spec")
    url = "ws://127.0.0.1:" .. echo.port .. "/ws"
  end)
  teardown(function() echo.stop() end)

  it("echoes 100 messages each for 200 concurrent clients, all correct", function()
    local N, M = 200, 100
    local l = loop.new()
    local good, failures, done, connected = 0, {}, 0, 0
    local t0 = gettime()
    H.run_task(l, 60, function()
      for i = 1, N do
        l:spawn(function()
          local ok, err = loop.pcall(function()
            local conn = assert(ws.connect(url, { timeout = 10 }))
            connected = connected + 1
            -- wait until everyone is connected so all 200 are live at once
            while connected < N do l:sleep(0.01) end
            for j = 1, M do
              local msg = string.format("%d:%d:%s", i, j, ("abcdefgh"):rep((i + j) % 16))
              assert(conn:send(msg, j % 10 == 0 and "binary" or "text"))
              local data, kind = conn:receive(10)
              if data == msg and kind == (j % 10 == 0 and "binary" or "text") then
                good = good + 1
              else
                failures[#failures + 1] = string.format("client %d msg %d: %s %s", i, j, tostring(data), tostring(kind))
              end
            end
            assert(conn:close())
          end)
          if not ok then failures[#failures + 1] = tostring(err) end
          done = done + 1
        end)
      end
      while done < N do l:sleep(0.02) end
    end)
    assert.same({}, { B.unpack(failures, 1, math.min(#failures, 5)) })
    assert.equal(N * M, good)
    assert.is_true(gettime() - t0 < 45)
    assert.is_true(echo.alive())
  end)

  it("a client that sends half a frame and stalls does not delay others", function()
    -- stalled mid-header, and mid-payload with 1000 bytes announced
    local a = raw(echo.port, "/ws")
    a:send(H.frame(1, "hello"):sub(1, 3))
    local b = raw(echo.port, "/ws")
    local full = H.frame(1, ("z"):rep(1000))
    b:send(full:sub(1, 20))
    local conn = assert(ws.connect(url, { timeout = 3 }))
    local worst = 0
    for i = 1, 30 do
      worst = math.max(worst, round_trip(conn, "others " .. i))
    end
    assert.is_true(worst < 1, "slowest round trip " .. worst)
    -- the stalled ones finish their frames and get their echoes
    a:send(H.frame(1, "hello"):sub(4))
    b:send(full:sub(21))
    local fa, fb = a:read_frame(), b:read_frame()
    assert.equal("hello", fa.payload)
    assert.equal(("z"):rep(1000), fb.payload)
    assert.is_true(conn:close())
    a:close()
    b:close()
  end)

  it("file descriptors return to the baseline after 100 abrupt drops", function()
    socket.sleep(0.2)
    local base = H.fd_count(echo.pid)
    assert.truthy(base)
    local socks = {}
    local function rst(s) s:setoption("linger", { on = true, timeout = 0 }) end
    for i = 1, 100 do
      local r = H.raw(echo.port, false, { timeout = 3 })
      local s = r.sock
      local req = H.request(echo.port, "/ws")
      if i <= 50 then
        -- mid-handshake: part of the request head
        assert(s:send(req:sub(1, 20 + i)))
      else
        -- mid-frame: full handshake, then part of a frame
        assert(s:send(req))
        assert.matches("^HTTP/1.1 101", r:read_head())
        assert(s:send(H.frame(2, ("q"):rep(300)):sub(1, 2 + i)))
      end
      if i % 2 == 0 then rst(s) end
      socks[i] = s
    end
    socket.sleep(0.2)
    local peak = H.fd_count(echo.pid)
    assert.is_true(peak >= base + 90, string.format("base %d peak %d", base, peak))
    for i = 1, 100 do socks[i]:close() end
    local deadline = gettime() + 5
    local n
    repeat
      socket.sleep(0.05)
      n = H.fd_count(echo.pid)
    until n <= base or gettime() > deadline
    assert.equal(base, n)
    -- and it still serves
    local conn = assert(ws.connect(url, { timeout = 3 }))
    round_trip(conn, "after the drops")
    conn:close()
  end)
end)

describe("server behaviour (spec/servers/test_server.lua)", function()
  local srv
  setup(function() srv = test_server({}, "test-server-default") end)
  teardown(function() srv.stop() end)

  it("a crashing handler closes its connection with 1011 and the server goes on", function()
    local other = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/echo", { timeout = 3 }))
    round_trip(other, "before")
    local r = raw(srv.port, "/crash")
    r:send_frame(1, "hi")
    local f = assert(r:read_frame())
    assert.equal("hi", f.payload)
    local code, reason = r:read_close()
    assert.equal(1011, code)
    assert.is_string(reason)
    r:send_frame(8, B.u16(1011))
    assert.is_true(r:closed_by_peer(3))
    r:close()
    assert.truthy(wait_output(srv, "handler error[^\n]*boom: deliberate test crash"), srv.output())
    -- a connection opened before keeps working, and new ones are served
    round_trip(other, "after")
    local new = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/echo", { timeout = 3 }))
    round_trip(new, "new")
    new:close()
    other:close()
    assert.is_true(srv.alive())
  end)

  it("a receiving coroutine and a sending coroutine never interleave frames", function()
    local r = raw(srv.port, "/concurrent", 10)
    local msgs, echoes, sent = 0, 0, 0
    while msgs < 100 or echoes < 10 do
      local f = assert(r:read_frame())
      assert.is_true(f.fin)
      assert.equal(0, f.rsv)
      assert.equal(1, f.opcode)
      assert.is_false(f.masked)
      local n = f.payload:match("^msg (%d%d%d)|")
      if n then
        msgs = msgs + 1
        n = tonumber(n)
        assert.equal(msgs, n, "messages out of order")
        assert.equal(8 + 1000 * n, #f.payload)
        assert.equal(string.rep(string.char(97 + n % 26), 1000 * n), f.payload:sub(9))
      else
        echoes = echoes + 1
        assert.equal("echo:c" .. echoes, f.payload)
      end
      -- keep the receiving coroutine busy while the sender streams
      if sent < 10 then
        sent = sent + 1
        r:send_frame(1, "c" .. sent)
      end
    end
    r:send_frame(8, B.u16(1000))
    assert.equal(1000, r:read_close())
    assert.is_true(r:closed_by_peer(3))
    r:close()
  end)
end)

describe("descriptor limit", function()
  it("serves more connections than the soft limit it started with (raised to the hard limit)", function()
    local N = 300
    local srv = H.start_lua("spec/servers/test_server.lua", "", "test-server-nofile", "ulimit -S -n 128;")
    local conns = {}
    local ok, err = pcall(function()
      for i = 1, N do conns[i] = raw(srv.port, "/echo", 5) end
      for _, i in ipairs { 1, N / 2, N } do
        conns[i]:send_frame(1, "conn " .. i)
        assert.equal("conn " .. i, assert(conns[i]:read_frame()).payload)
      end
    end)
    for _, r in pairs(conns) do r:close() end
    srv.stop()
    assert(ok, err)
  end)
end)

describe("keepalive and idle timeout", function()
  it("drops a client that never answers pings (1011) and keeps one that does", function()
    local srv = test_server({ ping_interval = 0.2, ping_timeout = 0.3 }, "test-server-keepalive")
    local ok, err = pcall(function()
      local t = gettime()
      local mute = raw(srv.port, "/echo", 3)
      local pings = 0
      local code
      while true do
        local f = assert(mute:read_frame())
        if f.opcode == 9 then
          pings = pings + 1
        elseif f.opcode == 8 then
          code = B.get_u16(f.payload)
          break
        end
      end
      assert.equal(1011, code)
      assert.is_true(pings >= 1)
      assert.is_true(mute:closed_by_peer(1))
      local dt = gettime() - t
      assert.is_true(dt < 1.5, "dropped after " .. dt)
      mute:close()

      local polite = raw(srv.port, "/echo", 3)
      polite.sock:settimeout(0.05)
      local stop, answered = gettime() + 1.5, 0
      while gettime() < stop do
        local f, ferr = polite:read_frame()
        if f then
          assert.equal(9, f.opcode, "unexpected frame")
          polite:send_frame(10, f.payload)
          answered = answered + 1
        else
          assert.equal("timeout", ferr)
        end
      end
      assert.is_true(answered >= 4, "answered " .. answered .. " pings")
      polite.sock:settimeout(3)
      polite:send_frame(1, "still here")
      local f
      repeat f = assert(polite:read_frame()) until f.opcode ~= 9
      assert.equal("still here", f.payload)
      polite:close()
    end)
    srv.stop()
    assert(ok, err)
  end)

  it("idle_timeout closes a silent client with 1001; a chatty one stays", function()
    local srv = test_server({ idle_timeout = 0.5 }, "test-server-idle")
    local ok, err = pcall(function()
      local chatty = raw(srv.port, "/echo", 3)
      local t = gettime()
      local silent = raw(srv.port, "/echo", 3)
      assert.equal(1001, silent:read_close())
      local dt = gettime() - t
      assert.is_true(dt >= 0.4 and dt < 1.5, "closed after " .. dt)
      assert.is_true(silent:closed_by_peer(1))
      silent:close()
      -- the first one has been silent as long: it is closed too
      assert.equal(1001, chatty:read_close())
      chatty:close()

      chatty = raw(srv.port, "/echo", 3)
      for i = 1, 8 do
        socket.sleep(0.15)
        chatty:send_frame(1, "tick " .. i)
        assert.equal("tick " .. i, assert(chatty:read_frame()).payload)
      end
      chatty:close()
    end)
    srv.stop()
    assert(ok, err)
  end)
end)

describe("slow reader", function()
  it("is dropped after send_timeout with bounded memory; others keep echoing", function()
    local srv = test_server({ send_timeout = 1 }, "test-server-slow")
    local ok, err = pcall(function()
      local rss0 = H.rss_kib(srv.pid)
      local bad = raw(srv.port, "/echo", 3)
      bad.sock:settimeout(0)
      local chunk = H.frame(2, ("\090"):rep(64 * 1024))
      local good = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/echo", { timeout = 3 }))
      local deadline = gettime() + 10
      local sent, peak, dropped, worst, trips = 0, rss0, nil, 0, 0
      local i = 1
      while gettime() < deadline and not dropped do
        -- push as much as the socket takes, never reading
        local last, serr, partial = bad.sock:send(chunk, i)
        if last then
          sent, i = sent + #chunk - i + 1, 1
        elseif serr == "timeout" then
          if partial and partial >= i then sent, i = sent + partial - i + 1, partial + 1 end
          if i > #chunk then i = 1 end
          worst = math.max(worst, round_trip(good, "good " .. trips))
          trips = trips + 1
          socket.sleep(0.02)
        else
          dropped = serr
        end
        peak = math.max(peak, H.rss_kib(srv.pid) or 0)
      end
      assert.truthy(dropped, "the slow reader was not dropped")
      assert.is_true(sent > 1024 * 1024, "sent only " .. sent)
      assert.is_true(peak - rss0 < 100 * 1024, string.format("RSS grew %d KiB", peak - rss0))
      assert.is_true(trips > 0)
      assert.is_true(worst < 1, "slowest good round trip " .. worst)
      assert.truthy(wait_output(srv, "closed [^\n]* 1006 send timeout"), srv.output())
      round_trip(good, "after the drop")
      good:close()
      bad:close()
    end)
    srv.stop()
    assert(ok, err)
  end)
end)

describe("a send from outside the loop's tasks", function()
  it("that the socket cannot take at once is queued for a task, not an error mid-frame", function()
    -- (a host loop's callback, another loop's coroutine or the main thread
    -- sends; it cannot wait through the connection's loop)
    local l = loop.new()
    local srv = assert(ws.listen { host = "127.0.0.1", port = 0, loop = l, logger = false })
    local conn, client
    srv:route("/ws", function(c) conn = c; repeat until not c:receive() end)
    H.run_task(l, 10, function()
      client = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/ws", { max_message = 16 * 1024 * 1024 }))
      while not conn do l:sleep(0.01) end
    end)
    local big = string.rep("x", 8 * 1024 * 1024)   -- more than loopback's buffers take
    assert.is_false(l:in_task())
    assert.is_true(conn:send(big, "binary"))        -- from the main thread
    assert.is_true(conn.writer ~= false, "the whole message went out at once: the test proves nothing")
    local got
    H.run_task(l, 20, function()
      assert.is_true(l:in_task())
      got = client:receive(10)
      assert(conn:send("after"))                    -- the connection goes on
      assert.equal("after", client:receive(5))
    end)
    assert.equal(#big, got and #got)
    client:abort()
    srv:close()
  end)
end)

describe("on_request: the application decides before the upgrade", function()
  local srv
  setup(function() srv = H.start_lua("spec/servers/test_server.lua", "--auth", "test-server-auth") end)
  teardown(function() srv.stop() end)
  local function url(token) return "ws://127.0.0.1:" .. srv.port .. "/echo?token=" .. token end

  -- the raw answer to an upgrade request for token: status line, head,
  -- body (an HTTP answer must be followed by the end of the connection)
  local function answer(token)
    local r, head = H.raw(srv.port, nil, { path = "/echo?token=" .. token })
    local len = tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength: (%d+)\r\n"))
    local body = len and len > 0 and r:read(len) or ""
    if not head:match("^HTTP/1.1 101") then assert.is_true(r:closed_by_peer(3)) end
    r:close()
    return head:match("^[^\r]*"), head, body
  end

  it("refuses with the status, headers and body it returns (401 here)", function()
    local status, head, body = answer("wrong")
    assert.equal("HTTP/1.1 401 Unauthorized", status)
    assert.matches('\r\nWWW%-Authenticate: Bearer realm="ws"\r\n', head)
    assert.equal("who are you?\n", body)
    local conn, err = ws.connect(url("wrong"), { timeout = 3 })
    assert.is_nil(conn)
    assert.equal("handshake: server answered 401 Unauthorized", err)
    -- and a real peer sees the same
    local out = H.run(H.PYTHON .. [[ -c "
import asyncio, sys, websockets
async def main():
    try:
        await websockets.connect(sys.argv[1])
    except websockets.exceptions.InvalidStatusCode as e:
        print('status', e.status_code)
asyncio.run(main())" ]] .. H.shell_quote(url("wrong")))
    assert.equal("status 401\n", out)
  end)

  it("upgrades on nil, and on 101 with its headers added to the 101", function()
    local status, head = answer("good")
    assert.equal("HTTP/1.1 101 Switching Protocols", status)
    assert.matches("\r\nSet%-Cookie: session=1\r\n", head)
    assert.matches("\r\nSec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", head)
    for _, token in ipairs { "good", "plain" } do
      local conn = assert(ws.connect(url(token), { timeout = 3 }))
      assert.equal(token == "good" and "session=1" or nil, conn.response.headers["set-cookie"])
      round_trip(conn, "let in with " .. token)
      assert.is_true(conn:close())
    end
  end)

  it("what it stores on the request reaches the handler as conn.request", function()
    for token, user in pairs { good = "alice", plain = "nobody" } do
      local conn = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/whoami?token=" .. token, { timeout = 3 }))
      assert.is_true(conn:send("who?"))
      assert.equal(user, (conn:receive(3)))
      assert.is_true(conn:close())
    end
  end)

  it("answers 500 (and logs) when it raises, returns a bad status or a header with CR/LF", function()
    for _, token in ipairs { "boom", "status", "inject" } do
      local status, head = answer(token)
      assert.equal("HTTP/1.1 500 Internal Server Error", status, token)
      assert.is_nil(head:find("X-B", 1, true), "a header was injected")
    end
    assert.truthy(wait_output(srv, "on_request error[^\n]*deliberate on_request failure"), srv.output())
    assert.truthy(wait_output(srv, "invalid response %(status nope"), srv.output())
    assert.truthy(wait_output(srv, "on_request: invalid header X%-A %(peer="), srv.output())
    -- and it goes on serving
    local conn = assert(ws.connect(url("plain"), { timeout = 3 }))
    round_trip(conn, "still here")
    conn:close()
  end)
end)

describe("ws.accept on a socket accepted elsewhere", function()
  local listener, port
  setup(function()
    listener = assert(socket.bind("127.0.0.1", 0))
    listener:settimeout(3)
    port = select(2, listener:getsockname())
  end)
  teardown(function() listener:close() end)

  it("does the handshake and echoes", function()
    local r = H.raw(port, false)
    r:send(H.request(port, "/anything", "Sec-WebSocket-Protocol: x, y\r\n"))
    local s = assert(listener:accept())
    local conn, err = ws.accept(s, { protocols = { "y" } })
    assert.truthy(conn, err)
    assert.equal("/anything", conn.request.path)
    -- its options are its own: it holds its settings, with no class made for it alone
    assert.equal(connection.defaults.max_queue, rawget(conn, "max_queue"))
    assert.is_nil(rawget(getmetatable(conn), "max_queue"))
    assert.equal("y", conn.protocol)
    local head = r:read_head()
    assert.matches("^HTTP/1.1 101", head)
    assert.matches("[Ss]ec%-[Ww]eb[Ss]ocket%-[Aa]ccept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", head)
    r:send_frame(1, "ping me")
    local data, kind = conn:receive(3)
    assert.equal("ping me", data)
    assert.equal("text", kind)
    assert.is_true(conn:send(data, kind))
    assert.equal("ping me", r:read_frame().payload)
    r:send_frame(8, B.u16(1000))
    local _, rerr, code = conn:receive(3)
    assert.equal("closed", rerr)
    assert.equal(1000, code)
    assert.equal(1000, r:read_close())
    assert.is_true(r:closed_by_peer(2))
    r:close()
  end)

  it("answers a bad request with 400 and returns nil, err", function()
    local r = H.raw(port, false)
    r:send("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    local s = assert(listener:accept())
    local t = gettime()
    local conn, err = ws.accept(s, { handshake_timeout = 2 })
    assert.is_nil(conn)
    assert.is_string(err)
    assert.is_true(gettime() - t < 2)
    assert.matches("^HTTP/1.1 400", r:read_head())
    assert.is_true(r:closed_by_peer(2))
    r:close()
  end)

  it("answers a head in bare-LF form with 400 at once, not at handshake_timeout (RFC 9112 section 2.2)", function()
    local up = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
      "Sec-WebSocket-Version: 13\r\n"
    for _, head in ipairs {
      "GET /ws HTTP/1.1\nHost: x\n\n",                                    -- every line
      "GET /ws HTTP/1.1\nHost: x\n\r\n",                                  -- LF CR LF
      "GET /ws HTTP/1.1\r\nHost: x\r\n" .. up .. "\n",                     -- CRLF lines, LF at the end
      "GET /ws HTTP/1.1\r\nHost: x\n" .. up .. "\r\n",                     -- one line in a CRLF head
    } do
      local r = H.raw(port, false)
      r:send(head)
      local s = assert(listener:accept())
      local t = gettime()
      local conn, err = ws.accept(s, { handshake_timeout = 3 })
      assert.is_nil(conn)
      assert.equal("bare lf", err, head)
      assert.is_true(gettime() - t < 1, head)
      assert.matches("^HTTP/1.1 400", r:read_head())
      assert.is_true(r:closed_by_peer(2))
      r:close()
    end
  end)

  it("gives up on a silent peer after handshake_timeout", function()
    local r = H.raw(port, false)
    local s = assert(listener:accept())
    local t = gettime()
    local conn, err = ws.accept(s, { handshake_timeout = 0.3 })
    assert.is_nil(conn)
    assert.equal("timeout", err)
    assert.is_true(gettime() - t < 1)
    r:close()
  end)
end)

describe("broadcast and close", function()
  it("broadcast reaches every client exactly once; close sends 1001 to all", function()
    local l = loop.new()
    local server = assert(ws.listen { port = 0, loop = l })
    server:route("/b", function(conn)
      repeat until not conn:receive()
    end)
    local N = 30
    local got, results, connected, finished = {}, {}, 0, 0
    for i = 1, N do
      got[i] = {}
      l:spawn(function()
        local conn = assert(ws.connect("ws://127.0.0.1:" .. server.port .. "/b", { timeout = 3 }))
        connected = connected + 1
        while true do
          local data, err, code = conn:receive(5)
          if not data then
            results[i] = { err, code }
            break
          end
          got[i][#got[i] + 1] = data
        end
        finished = finished + 1
      end)
    end
    local function nconns()
      local n = 0
      for _ in pairs(server.conns) do n = n + 1 end
      return n
    end
    assert.is_true(H.step_until(l, 5, function() return connected == N and nconns() == N end))
    assert.equal(N, server:broadcast("news for everyone"))
    assert.equal(N, server:broadcast("\0\1\2", "binary"))
    assert.is_true(H.step_until(l, 5, function()
      for i = 1, N do if #got[i] < 2 then return false end end
      return true
    end))
    server:close()
    assert.is_true(H.step_until(l, 10, function() return finished == N end))
    for i = 1, N do
      assert.same({ "news for everyone", "\0\1\2" }, got[i])
      assert.same({ "closed", 1001 }, results[i])
    end
    assert.is_true(H.step_until(l, 5, function() return l.stopped end))
    assert.equal(0, nconns())
  end)
  it("run() that raises gives back its runner mark and its signals: close() stops a later run", function()
    local l = loop.new()
    local a = assert(ws.listen { port = 0, loop = l })   -- (signals on: run() reads them)
    l.step = function() error("step failed") end
    local ok, err = pcall(a.run, a)
    l.step = nil
    assert.is_false(ok)
    assert.matches("step failed", tostring(err))
    a:close()
    -- the loop run by loop:run(): b's close() stops it (a's mark, left
    -- behind, made it wait for someone else's stop)
    local b = assert(ws.listen { port = 0, loop = l, signals = false })
    local early = true
    l:spawn(function() l:sleep(0.1); b:close() end)
    l:spawn(function() l:sleep(3); early = false; l:stop() end)   -- (the bound)
    local t = gettime()
    l:run()
    assert.is_true(early)
    assert.is_true(gettime() - t < 2)
    -- and a later run() of a server on it serves, and ends at its close()
    local c = assert(ws.listen { port = 0, loop = l, signals = false })
    c:route("/", H.echo)
    local echoed
    l:spawn(function()
      local conn = assert(ws.connect("ws://127.0.0.1:" .. c.port .. "/", { timeout = 3 }))
      assert(conn:send("after the raise"))
      echoed = conn:receive(3)
      conn:close()
      c:close()
    end)
    t = gettime()
    c:run()
    assert.equal("after the raise", echoed)
    assert.is_true(gettime() - t < 2)
  end)

  it("close() of one server on a shared loop does not stop another server's run()", function()
    local l = loop.new()
    local a = assert(ws.listen { port = 0, loop = l, signals = false })
    local b = assert(ws.listen { port = 0, loop = l, signals = false })
    b:route("/", H.echo)
    local echoed, a_closed, b_closed
    l:spawn(function()
      l:sleep(0.1)
      a:close()
      a_closed = true
      l:sleep(0.1)
      -- B still serves, through its run()
      local conn = assert(ws.connect("ws://127.0.0.1:" .. b.port .. "/", { timeout = 3 }))
      assert(conn:send("still here"))
      echoed = conn:receive(3)
      conn:close()
      b_closed = true
      b:close()
    end)
    b:run()
    assert.is_true(a_closed)
    assert.equal("still here", echoed)
    assert.is_true(b_closed)
  end)
end)
