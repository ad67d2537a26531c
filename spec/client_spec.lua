-- Our client: against examples/echo.lua as a process, against our server in
-- one in-process loop, and against misbehaving servers (every refusal is
-- nil, err, bounded in time, never an error raised).
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"
local B = require "spec.bits"

local gettime = socket.gettime

-- Run a shell command with a hard time limit; returns stdout, exit code.
local function run(cmd) return H.run("timeout 20 " .. cmd) end

local shell_quote = H.shell_quote

local wait_output = H.wait_output

-- An in-process server on a free port in a fresh loop.
local function loop_server(opts, routes)
  local l = loop.new()
  opts = opts or {}
  opts.port, opts.loop = 0, l
  local srv = assert(ws.listen(opts))
  for path, handler in pairs(routes or {}) do srv:route(path, handler) end
  return srv, l, "ws://127.0.0.1:" .. srv.port
end

local function close_server(srv)
  srv:close()
  H.step_until(srv.loop, 5, function() return srv.loop.stopped end)
end

-- (a while loop: PUC Lua 5.1 cannot wait inside a for iterator)
local echo_handler = H.echo

-- ws.connect must return nil, err (a string) in bounded time and never raise.
local function refused(url, opts, max_secs)
  local t = gettime()
  local ok, conn, err = pcall(ws.connect, url, opts)
  local dt = gettime() - t
  assert.is_true(ok, "ws.connect raised: " .. tostring(conn))
  assert.is_nil(conn)
  assert.is_string(err)
  assert.is_true(dt < (max_secs or 2), string.format("refusal took %.2f s: %s", dt, err))
  return err, dt
end

describe("examples/echo_client.lua", function()
  local echo, url
  local client = H.ROOT .. "/examples/echo_client.lua"

  setup(function()
    echo = H.start_lua("examples/echo.lua", nil, "echo-for-client")
    url = "ws://127.0.0.1:" .. echo.port .. "/ws"
  end)
  teardown(function() echo.stop() end)

  it("echoes its arguments, one per line, and closes with 1000", function()
    local out, code = run(table.concat({ H.LUA, client, url, "hello", shell_quote("two words"), "é" }, " "))
    assert.equal(0, code)
    assert.equal("hello\ntwo words\né\n", out)
    assert.truthy(wait_output(echo, "disconnect [^\n]*%((1000)"), echo.output())
  end)

  it("prints hello against the echo server", function()
    local out, code = run(table.concat({ H.LUA, client, url, "hello" }, " "))
    assert.equal(0, code)
    assert.equal("hello\n", out)
  end)

  it("echoes stdin line by line without messages", function()
    local out, code = run("printf 'one\\ntwo 2\\n\\nlast\\n' | " .. H.LUA .. " " .. client .. " " .. url)
    assert.equal(0, code)
    assert.equal("one\ntwo 2\n\nlast\n", out)
  end)

  it("fails with a non-zero status and a message on stderr", function()
    local port = H.free_port()
    local err, code = run(table.concat({ H.LUA, client, "ws://127.0.0.1:" .. port .. "/ws", "x", "2>&1 >/dev/null" }, " "))
    assert.is_not.equal(0, code)
    assert.matches("refused", err)
    err, code = run(table.concat({ H.LUA, client, "ws://127.0.0.1:" .. echo.port .. "/nope", "x", "2>&1 >/dev/null" }, " "))
    assert.is_not.equal(0, code)
    assert.matches("404", err)
    err, code = run(table.concat({ H.LUA, client, "2>&1 >/dev/null" }, " "))
    assert.is_not.equal(0, code)
    assert.matches("usage", err)
  end)
end)

describe("examples/echo.lua --quiet", function()
  it("echoes, and writes no line per connection", function()
    local echo = H.start_lua("examples/echo.lua", "--quiet", "echo-quiet")
    local ok, err = pcall(function()
      local out, code = run(table.concat({ H.LUA, H.ROOT .. "/examples/echo_client.lua",
        "ws://127.0.0.1:" .. echo.port .. "/ws", "one", "two" }, " "))
      assert.equal(0, code)
      assert.equal("one\ntwo\n", out)
      -- the start-up line is there; a connect or disconnect line never comes
      assert.truthy(wait_output(echo, "echo server on ws://"), echo.output())
      socket.sleep(0.3)
      assert.falsy(echo.output():find("connect "), echo.output())
    end)
    echo.stop()
    assert(ok, err)
  end)
end)

describe("client and server in one loop", function()
  it("50 clients exchange 20 messages each; server:close() sends them 1001", function()
    local srv, l, base = loop_server({}, { ["/ws"] = echo_handler })
    local N, M = 50, 20
    local conns, results, done = {}, {}, 0
    H.run_task(l, 30, function()
      for i = 1, N do
        l:spawn(function()
          local ok, err = loop.pcall(function()
            local conn = assert(ws.connect(base .. "/ws", { timeout = 5 }))
            conns[i] = conn
            local good = 0
            for j = 1, M do
              local msg, kind
              if j % 2 == 0 then
                msg, kind = string.format("client %d message %d %s", i, j, ("é"):rep(j * 7)), "text"
              else
                local t = {}
                for k = 1, 40 * j do t[k] = string.char((i * 31 + j * 7 + k) % 256) end
                msg, kind = table.concat(t), "binary"
              end
              assert(conn:send(msg, kind))
              local data, dkind = conn:receive(5)
              if data == msg and dkind == kind then good = good + 1 end
            end
            results[i] = good
          end)
          if not ok then results[i] = err end
          done = done + 1
        end)
      end
      while done < N do l:sleep(0.01) end
    end)
    for i = 1, N do assert.equal(M, results[i], "client " .. i) end

    -- every client waits in receive(); closing the server reaches them all
    local got, ngot = {}, 0
    for i = 1, N do
      l:spawn(function()
        got[i] = B.pack(conns[i]:receive(5))
        ngot = ngot + 1
      end)
    end
    l:step(0)
    srv:close()
    assert.is_true(H.step_until(l, 10, function() return ngot == N end))
    for i = 1, N do
      assert.is_nil(got[i][1])
      assert.equal("closed", got[i][2])
      assert.equal(1001, got[i][3], "client " .. i)
      assert.equal("closed", conns[i].state)
    end
    assert.is_true(H.step_until(l, 5, function() return l.stopped end))
  end)

  describe("subprotocols", function()
    local function negotiate(server_protocols, client_protocols)
      local on_server = {}
      local srv, l, base = loop_server({ protocols = server_protocols }, {
        ["/p"] = function(conn)
          on_server[#on_server + 1] = conn.protocol or false
          conn:receive(3)
        end,
      })
      local conn, err = H.run_task(l, 5, ws.connect, base .. "/p", { protocols = client_protocols, timeout = 3 })
      assert.truthy(conn, err)
      local protocol = conn.protocol
      H.run_task(l, 5, conn.close, conn)
      close_server(srv)
      return protocol, on_server[1]
    end

    it("the server picks its first supported protocol among those offered", function()
      local c, s = negotiate({ "b", "c" }, { "a", "b" })
      assert.equal("b", c)
      assert.equal("b", s)
    end)

    it("the server may pick with a function", function()
      local offered_seen
      local c, s = negotiate(function(offered, request)
        offered_seen = offered
        assert.equal("/p", request.path)
        return offered[#offered]
      end, { "a", "b" })
      assert.same({ "a", "b" }, offered_seen)
      assert.equal("b", c)
      assert.equal("b", s)
    end)

    it("names that are not distinct tokens raise at the call, before anything is sent (RFC 6455 section 4.1)", function()
      local srv, l, base = loop_server({ protocols = { "superchat" } }, { ["/p"] = function(conn) conn:receive(3) end })
      for _, bad in ipairs { { "chat, superchat" }, { "" }, { "a b" }, { "x", "x" }, { "é" } } do
        local ok, err = pcall(H.run_task, l, 5, ws.connect, base .. "/p", { protocols = bad, timeout = 3 })
        assert.is_false(ok, table.concat(bad, "|"))
        assert.matches("ws.connect: option 'protocols' ", err)
      end
      local ok, err = pcall(ws.connect, base .. "/p", { protocols = { "a b" } })
      assert.is_false(ok)
      assert.matches("option 'protocols' must hold tokens (RFC 6455 section 4.1), got \"a b\"", err, 1, true)
      close_server(srv)
    end)

    it("no common protocol leaves conn.protocol nil on both sides", function()
      local c, s = negotiate({ "x" }, { "a", "b" })
      assert.is_nil(c)
      assert.is_false(s)
      c, s = negotiate(nil, { "a" })
      assert.is_nil(c)
      assert.is_false(s)
      c, s = negotiate(function() return "not-offered" end, { "a" })
      assert.is_nil(c)
      assert.is_false(s)
    end)
  end)

  it("for ... in conn:messages() gives every message, then ends at the close (PUC 5.1: a clear error)", function()
    local srv, l, base = loop_server({}, { ["/ws"] = function(conn)
      conn:send("one")
      conn:send("two", "binary")
      conn:close(1000, "done")
    end })
    local got = H.run_task(l, 10, function()
      local conn = assert(ws.connect(base .. "/ws", { timeout = 5 }))
      if loop.LUA51 then
        local ok, err = pcall(conn.messages, conn)
        conn:close()
        return { ok, err }
      end
      local t = {}
      for data, kind in conn:messages() do t[#t + 1] = kind .. ":" .. data end
      t[#t + 1] = conn.close_code .. " " .. conn.close_reason
      return t
    end)
    close_server(srv)
    if loop.LUA51 then
      assert.is_false(got[1])
      assert.matches("cannot wait inside a for loop on Lua 5.1", got[2], 1, true)
    else
      assert.same({ "text:one", "binary:two", "1000 done" }, got)
    end
  end)

  it("custom headers and the origin reach the server", function()
    local headers, origin_seen
    local srv, l, base = loop_server({
      check_origin = function(origin) origin_seen = origin; return true end,
    }, {
      ["/h"] = function(conn)
        headers = conn.request.headers
        conn:receive(3)
      end,
    })
    local conn, err = H.run_task(l, 5, ws.connect, base .. "/h?q=1", {
      headers = { ["X-Token"] = "abc 123", ["X-Empty-Not"] = "v" },
      origin = "https://example.com",
    })
    assert.truthy(conn, err)
    H.run_task(l, 5, conn.close, conn)
    assert.equal("https://example.com", origin_seen)
    assert.equal("abc 123", headers["x-token"])
    assert.equal("v", headers["x-empty-not"])
    assert.equal("https://example.com", headers.origin)
    assert.equal("127.0.0.1:" .. srv.port, headers.host)
    close_server(srv)
  end)

  it("a user Host or Origin replaces ours (any case); Upgrade, Connection, Sec-WebSocket-* are refused", function()
    local seen
    local srv, l, base = loop_server({ check_origin = function() return true end }, {
      ["/h"] = function(conn) seen = conn.request.headers; conn:receive(3) end,
    })
    -- (our server answers a second Host with 400)
    local conn, err = H.run_task(l, 5, ws.connect, base .. "/h", {
      headers = { host = "example.com", ORIGIN = "https://o.example" }, origin = "https://replaced.example",
    })
    assert.truthy(conn, err)
    H.run_task(l, 5, conn.close, conn)
    assert.equal("example.com", seen.host)
    assert.equal("https://o.example", seen.origin)
    close_server(srv)
    -- refused before connecting: nothing listens there
    local free = "ws://127.0.0.1:" .. H.free_port() .. "/"
    for _, name in ipairs { "Upgrade", "connection", "Sec-WebSocket-Key", "SEC-WEBSOCKET-VERSION" } do
      assert.equal("invalid header: " .. name .. " (the handshake sets it)", (refused(free, { headers = { [name] = "x" } })))
    end
  end)

  it("the client's idle_timeout and ping_interval options take effect", function()
    local srv, l, base = loop_server({}, {
      ["/quiet"] = function(conn) conn:receive(3) end,
    })
    -- a silent server: the client closes with 1001 after idle_timeout
    local dt, data, err, code = H.run_task(l, 5, function()
      local conn = assert(ws.connect(base .. "/quiet", { idle_timeout = 0.4 }))
      local t = gettime()
      local d, e, c = conn:receive()
      return gettime() - t, d, e, c
    end)
    assert.is_nil(data)
    assert.equal("closed", err)
    assert.equal(1001, code)
    assert.is_true(dt > 0.3 and dt < 2, "idle close after " .. dt)
    -- keepalive pings: the server's pongs reach on_pong, and count as traffic
    local pongs = 0
    local e1, e2 = H.run_task(l, 5, function()
      local conn = assert(ws.connect(base .. "/quiet", {
        idle_timeout = 0.3, ping_interval = 0.1, on_pong = function() pongs = pongs + 1 end,
      }))
      local _, e = conn:receive(0.7)
      local state = conn.state
      conn:close()
      return e, state
    end)
    assert.equal("timeout", e1)
    assert.equal("open", e2)
    assert.is_true(pongs >= 3, "pongs: " .. pongs)
    close_server(srv)
  end)

  it("refusals from our server: 404 for an unknown path, 403 for a foreign origin", function()
    local srv, l, base = loop_server({}, { ["/ws"] = echo_handler })
    local _, err = H.run_task(l, 5, ws.connect, base .. "/unknown", { timeout = 3 })
    assert.matches("404", err)
    _, err = H.run_task(l, 5, ws.connect, base .. "/ws", { timeout = 3, origin = "https://evil.example" })
    assert.matches("403", err)
    -- a bad header is refused before anything is sent
    _, err = H.run_task(l, 5, ws.connect, base .. "/ws", { headers = { ["Bad Name"] = "x" } })
    assert.matches("invalid header", err)
    _, err = H.run_task(l, 5, ws.connect, base .. "/ws", { headers = { ["X-A"] = "a\r\nX-B: b" } })
    assert.matches("invalid header", err)
    close_server(srv)
  end)

  it("header values: HTAB and SP inside go both ways (RFC 9110 field-value); at the edges they are refused", function()
    local srv, l, base = loop_server({
      on_request = function() return nil, nil, { ["X-Back"] = "x\ty z" } end,   -- into the 101
    }, { ["/ws"] = function(conn) conn:send(conn.request.headers["x-tab"]) end })
    local conn, err = H.run_task(l, 5, ws.connect, base .. "/ws", { headers = { ["X-Tab"] = "a\t b" } })
    assert.is_truthy(conn, err)
    assert.equal("x\ty z", conn.response.headers["x-back"])
    assert.equal("a\t b", (H.run_task(l, 5, function() return conn:receive(3) end)))
    H.run_task(l, 5, function() conn:close() end)
    for _, bad in ipairs { " a", "a\t", "a\0b", "a\127" } do
      _, err = H.run_task(l, 5, ws.connect, base .. "/ws", { headers = { ["X-Tab"] = bad } })
      assert.matches("invalid header", err)
    end
    close_server(srv)
  end)

  it("origins = { ... } allows those origins (any case) and clients without one; others get 403", function()
    local srv, l, base = loop_server({ origins = { "https://Good.example", "http://localhost:3000" } },
      { ["/ws"] = echo_handler })
    local function try(origin)
      return H.run_task(l, 5, function()
        local conn, err = ws.connect(base .. "/ws", { timeout = 3, origin = origin })
        if not conn then return err end
        local back = conn:send("hi") and conn:receive(3)
        conn:close()
        return back
      end)
    end
    assert.equal("hi", try("https://good.example"))
    assert.equal("hi", try("HTTP://LOCALHOST:3000"))
    assert.equal("hi", try(nil))
    assert.matches("403", try("https://evil.example"))
    assert.matches("403", try("https://good.example.evil"))
    assert.matches("403", try("http://127.0.0.1:" .. srv.port))   -- the list replaces same-origin
    close_server(srv)
  end)

  it("IPv6: a server on [::1] and a client to ws://[::1]:port", function()
    local srv, l = loop_server({ host = "::1" }, { ["/ws"] = echo_handler })
    assert.equal("[::1]:" .. srv.port, srv.address)
    local got = H.run_task(l, 5, function()
      local conn = assert(ws.connect("ws://" .. srv.address .. "/ws", { timeout = 3 }))
      assert(conn:send("over v6"))
      local back = conn:receive(3)
      conn:close()
      return { back, conn.peer }
    end)
    assert.same({ "over v6", "[::1]:" .. srv.port }, got)
    close_server(srv)
  end)

  it("opts.sock: the handshake runs on a socket the caller connected (a tunnel, say)", function()
    local srv, l = loop_server({}, { ["/ws"] = echo_handler })
    local got = H.run_task(l, 5, function()
      local sock = socket.tcp()
      sock:settimeout(0)
      sock:connect("127.0.0.1", srv.port)
      assert(l:wait(sock, "w", gettime() + 3))
      -- the URL names the host for the Host header (and TLS); nothing is resolved
      local conn = assert(ws.connect("ws://tunnelled.invalid/ws", { timeout = 3, sock = sock }))
      local host = conn.peer
      assert(conn:send("through"))
      local back = conn:receive(3)
      conn:close()
      return { back, host }
    end)
    assert.same({ "through", "tunnelled.invalid:80" }, got)
    close_server(srv)
  end)
end)

describe("blocking client in a plain script", function()
  local echo, url, raw
  setup(function()
    echo = H.start_lua("examples/echo.lua", nil, "echo-blocking")
    url = "ws://127.0.0.1:" .. echo.port .. "/ws"
    raw = H.start_lua("spec/servers/raw_server.lua", nil, "raw-server-blocking")
  end)
  teardown(function() echo.stop(); raw.stop() end)

  it("keepalive runs while receive() blocks: pongs keep a peer, a peer that never answers is closed with 1011", function()
    local pongs = 0
    local conn = assert(ws.connect(url, { timeout = 3, ping_interval = 0.1, ping_timeout = 0.3,
      on_pong = function() pongs = pongs + 1 end }))
    assert.same({ nil, "timeout" }, { conn:receive(0.8) })
    assert.equal("open", conn.state)
    assert.is_true(pongs >= 3, "pongs: " .. pongs)
    conn:close()
    -- (/deaf reads our pings and never answers them)
    conn = assert(ws.connect("ws://127.0.0.1:" .. raw.port .. "/deaf",
      { timeout = 3, ping_interval = 0.2, ping_timeout = 0.3, logger = false }))
    local t = gettime()
    local data, err, code = conn:receive(5)
    local dt = gettime() - t
    assert.is_nil(data)
    assert.equal("closed", err)
    assert.equal(1011, code)
    assert.is_true(dt > 0.4 and dt < 2, "closed after " .. dt)
    assert.equal("1 close 1011", wait_output(raw, "deaf pings (%d+ close %S+)"), raw.output())
  end)

  it("receive(timeout) returns nil, 'timeout' and the connection stays usable", function()
    local conn = assert(ws.connect(url, { timeout = 3 }))
    assert.equal("open", conn.state)
    assert.is_nil(conn.protocol)
    assert.truthy(conn.response)
    local t = gettime()
    local data, err = conn:receive(0.3)
    local dt = gettime() - t
    assert.is_nil(data)
    assert.equal("timeout", err)
    assert.is_true(dt >= 0.25 and dt < 1.5, "waited " .. dt)
    assert.equal("open", conn.state)
    for i = 1, 5 do
      assert.is_true(conn:send("still here " .. i))
      assert.equal("still here " .. i, conn:receive(3))
    end
    assert.is_true(conn:send("\0\1\2", "binary"))
    local d, kind = conn:receive(3)
    assert.equal("\0\1\2", d)
    assert.equal("binary", kind)
    local ok, code = conn:close()
    assert.is_true(ok)
    assert.equal(1000, code)
    assert.equal("closed", conn.state)
    -- after close, everything answers "closed"
    assert.same({ nil, "closed" }, { conn:send("x") })
    local _, e = conn:receive(0.1)
    assert.equal("closed", e)
  end)
end)

describe("client refusals", function()
  local raw, base
  setup(function()
    raw = H.start_lua("spec/servers/raw_server.lua", nil, "raw-server")
    base = "ws://127.0.0.1:" .. raw.port
  end)
  teardown(function() raw.stop() end)

  it("DNS failure", function()
    local err = refused("ws://no-such-host.invalid/", { timeout = 2 }, 5)
    assert.matches("no%-such%-host%.invalid", err)
  end)

  it("connection refused", function()
    local err = refused("ws://127.0.0.1:" .. H.free_port() .. "/ws")
    assert.matches("refused", err)
  end)

  it("a connect timeout is bounded", function()
    -- a listener that never accepts, with its backlog full: SYNs go unanswered
    local l = assert(socket.tcp())
    assert(l:bind("127.0.0.1", 0))
    assert(l:listen(0))
    local _, port = l:getsockname()
    local fillers = {}
    for i = 1, 3 do
      local c = socket.tcp()
      c:settimeout(0)
      c:connect("127.0.0.1", port)
      fillers[i] = c
    end
    local err, dt = refused("ws://127.0.0.1:" .. port .. "/", { timeout = 0.5 }, 2)
    assert.matches("timeout", err)
    assert.is_true(dt >= 0.4, "gave up after " .. dt)
    for _, c in ipairs(fillers) do c:close() end
    l:close()
  end)

  it("a handshake timeout is bounded", function()
    local err, dt = refused(base .. "/silent", { timeout = 0.5 }, 2)
    assert.matches("timeout", err)
    assert.is_true(dt >= 0.4)
  end)

  it("bad URLs", function()
    assert.matches("ws://", (refused("http://x")))
    assert.matches("host", (refused("ws://")))
    assert.matches("host", (refused("ws:///path")))
    assert.matches("port", (refused("ws://127.0.0.1:99999/")))
    assert.matches("url", (refused(42)))
  end)

  it("a server answering 200 OK", function()
    assert.matches("200", (refused(base .. "/200")))
  end)

  -- a refusal's body ends where HTTP says, not at the timeout
  local function refusal(path)
    local t = gettime()
    local conn, err, res = ws.connect(base .. path, { timeout = 5 })
    assert.is_nil(conn)
    assert.is_true(gettime() - t < 2, string.format("%s took %.2f s", path, gettime() - t))
    return err, res
  end

  it("an HTTP/1.0 server's refusal is read (RFC 9110 section 2.5)", function()
    local err, res = refusal("/http10")
    assert.equal("handshake: server answered 404 File not found", err)
    assert.are.same({ 404, "nope" }, { res.status, res.body })
  end)

  it("a 204 ends at its head, a chunked body at its last chunk (RFC 9112 sections 6.3, 7.1)", function()
    local err, res = refusal("/204")
    assert.equal("handshake: server answered 204 No Content", err)
    assert.equal("", res.body)
    err, res = refusal("/chunked")
    assert.equal("handshake: server answered 401 Unauthorized", err)
    assert.equal("nope! no", res.body)
  end)

  it("skips a 103 Early Hints before the 101 (RFC 9110 section 15.2)", function()
    local conn = assert(ws.connect(base .. "/early", { timeout = 3 }))
    assert.are.same({ "hi", "text" }, { conn:receive(3) })
    conn:abort()
  end)

  it("unfolds a 101 with obs-folds (RFC 9112 section 5.2: each replaced with SP)", function()
    local conn = assert(ws.connect(base .. "/folded", { timeout = 3 }))
    assert.are.same({ "hi", "text" }, { conn:receive(3) })
    assert.equal("a   b", conn.response.headers["x-long"])
    conn:abort()
  end)

  it("percent-encodes spaces, controls and non-ASCII bytes of the path", function()
    local err = refusal("/target/a b?q=é\t")
    assert.matches("404", err)
    assert.equal("/target/a%20b?q=%C3%A9%09", wait_output(raw, "target (%S+)"), raw.output())
  end)

  it("a 101 with a wrong Sec-WebSocket-Accept", function()
    assert.matches("[Aa]ccept", (refused(base .. "/badaccept")))
  end)

  it("a 101 whose Upgrade is not \"websocket\" alone (RFC 6455 section 4.1)", function()
    assert.equal("handshake: upgrade is not websocket", (refused(base .. "/upgrade-list")))
  end)

  it("a server closing mid-handshake", function()
    -- what it sent is quoted: not taken for a TLS port
    assert.equal('handshake: connection closed by server before the end of its answer ("HTTP/1.1 101 Swit")',
      (refused(base .. "/midclose")))
  end)

  it("a 101 whose head ends in bare LFs fails at once, not at the timeout (RFC 9112 section 2.2)", function()
    for _, k in ipairs { "lf", "mix" } do
      assert.equal("handshake: malformed response: bare lf", (refused(base .. "/barelf/" .. k, { timeout = 5 })), k)
    end
  end)

  it("a server choosing a subprotocol we did not offer", function()
    assert.matches("subprotocol", (refused(base .. "/proto", { protocols = { "a" } })))
    assert.matches("subprotocol", (refused(base .. "/proto")))
  end)

  it("a masked frame from the server fails the connection with 1002", function()
    local conn = assert(ws.connect(base .. "/masked", { timeout = 3 }))
    local data, err, code = conn:receive(3)
    assert.is_nil(data)
    assert.equal("protocol error", err)
    assert.equal(1002, code)
    assert.equal("closed", conn.state)
    assert.equal("1002", wait_output(raw, "masked%-close (%S+)"), raw.output())
  end)

  it("close() says closed, 1006 when the server drops TCP instead of answering the close", function()
    local conn = assert(ws.connect(base .. "/dropclose", { timeout = 3 }))
    assert.same({ nil, "closed", 1006, "" }, { conn:close(1000, "bye", 3) })
    assert.same({ nil, "closed", 1006, "" }, { conn:close() })   -- (and once closed)
  end)

  it("close() answered by an invalid close frame says closed, with the code we failed with", function()
    for k, want in pairs { short = { 1002, "invalid close payload" }, code = { 1002, "invalid close code" },
                           utf8 = { 1007, "invalid utf-8" } } do
      local conn = assert(ws.connect(base .. "/badclose/" .. k, { timeout = 3 }))
      assert.same({ nil, "closed", want[1], want[2] }, { conn:close(1000, "bye", 3) })
      assert.is_nil(conn.close_rcvd_code)
      assert.same({ nil, "closed", want[1], want[2] }, { conn:close() })   -- (and once closed)
    end
  end)
end)
