-- Our client against a hostile server (spec/servers/evil_server.lua): every
-- fault of the peer is nil, err (never an error raised), bounded in time,
-- with the close code RFC 6455 asks for, and the socket closed.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime

-- A task on l that sleeps 20 ms at a time until t.stop (at most 10 s):
-- t.gap is the longest time between two of its wakes (the loop stood still).
local function ticker(l)
  local t = { gap = 0, stop = false }
  l:spawn(function()
    local last = gettime()
    for _ = 1, 500 do
      if t.stop then return end
      l:sleep(0.02)
      t.gap, last = math.max(t.gap, gettime() - last), gettime()
    end
  end)
  return t
end

describe("client against a hostile server", function()
  local evil
  setup(function() evil = H.start_lua("spec/servers/evil_server.lua", nil, "evil-server") end)
  teardown(function() evil.stop() end)

  local function url(name) return "ws://127.0.0.1:" .. evil.port .. "/" .. name end

  -- what the server printed for its next connection to name (each call
  -- takes the next one): the client's close code ("none"), and "eof" once
  -- the client closed TCP
  local served = {}
  local function seen(name)
    local p, n = name:gsub("%p", "%%%0"), (served[name] or 0) + 1
    served[name] = n
    local function nth(pattern)
      local deadline = gettime() + 6
      repeat
        local i = 0
        for cap in evil.output():gmatch(p .. pattern) do
          i = i + 1
          if i == n then return cap end
        end
        socket.sleep(0.02)
      until gettime() > deadline
    end
    return nth(" close (%w+)"), nth(" (eof)")
  end

  -- ws.connect must give nil, err (a string) within max_secs, never raise
  local function refused(name, opts, max_secs)
    local t = gettime()
    local ok, conn, err = pcall(ws.connect, url(name), opts or { timeout = 3 })
    local dt = gettime() - t
    assert.is_true(ok, "ws.connect raised: " .. tostring(conn))
    assert.is_nil(conn)
    assert.is_string(err)
    assert.is_true(dt < (max_secs or 2), string.format("refusal took %.2f s: %s", dt, err))
    return err
  end

  -- timed(f, ...) -> seconds f took, and its results (it must not raise)
  local function timed(f, ...)
    local t = gettime()
    local r = { pcall(f, ...) }
    assert.is_true(r[1], tostring(r[2]))
    return gettime() - t, r[2], r[3], r[4], r[5]
  end

  -- a connected socket that ws.core cannot read itself: read through its
  -- own receive, as a LuaSec socket (getpeercertificate says so)
  local function wrapped()
    local tcp = assert(socket.connect("127.0.0.1", evil.port))
    local wrapper = { getpeercertificate = function() end }
    for _, m in ipairs { "getfd", "dirty", "settimeout", "receive", "send", "close", "shutdown" } do
      wrapper[m] = function(_, ...) return tcp[m](tcp, ...) end
    end
    -- wrapper.junk_until = t: until then, input that never runs dry (a
    -- server faster than we read): 1000 bytes whenever the socket has none
    local receive = wrapper.receive
    function wrapper.receive(self, n)
      local data, err, partial = receive(self, n)
      if not data and err == "timeout" and partial == "" and gettime() < (self.junk_until or 0) then
        return nil, "timeout", string.rep("j", 1000)
      end
      return data, err, partial
    end
    return wrapper
  end

  it("refuses 101 answers that break RFC 6455 section 4.1, and frees the socket", function()
    local p = { timeout = 3, protocols = { "a", "b" } }
    local z = { timeout = 3, compression = true }
    for _, case in ipairs {
      { "http10", p, "http/1.1 required" },
      { "no-upgrade", p, "missing upgrade: websocket" },
      { "no-connection", p, "missing connection: upgrade" },
      { "keep-alive", p, "missing connection: upgrade" },
      { "dup-upgrade", p, "upgrade is not websocket" },
      { "dup-accept", p, "wrong sec-websocket-accept" },
      { "no-accept", p, "missing sec-websocket-accept" },
      { "dup-proto", p, "server chose a subprotocol we did not offer: a, a" },
      { "proto-list", p, "server chose a subprotocol we did not offer: a, b" },
      { "proto-empty", p, "server chose a subprotocol we did not offer: " },
      { "ext-empty", z, "server chose an extension we did not offer: " },
      { "ext-dup", z, "server chose an extension we did not offer: permessage-deflate, permessage-deflate" },
      { "ext-repeat-param", z, "server chose an extension we did not offer: " ..
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10" },
      { "ext-bits-7", z, "bad server_max_window_bits" },
      { "huge-head", p, "too large" },
      { "many-interim", p, "server answered 103 Early Hints" },
    } do
      assert.equal("handshake: " .. case[3], refused(case[1], case[2]), case[1])
      assert.same({ "none", "eof" }, { seen(case[1]) }, case[1])
    end
    assert.equal('handshake: connection closed by server before the end of its answer ("HTTP/1.1 101 Switching")',
      refused("rst-head"))
    assert.equal("handshake: timeout", refused("stall-head", { timeout = 0.3 }))
    assert.same({ "none", "eof" }, { seen("stall-head") })
  end)

  it("reads a head written one byte at a time, and a head, frames and a close in one write", function()
    local conn = assert(ws.connect(url("split-head"), { timeout = 3 }))
    finally(function() conn:abort() end)
    assert.same({ "hi", "text" }, { conn:receive(3) })
    conn:abort()
    conn = assert(ws.connect(url("head-frames"), { timeout = 3 }))
    assert.same({ "a", "text" }, { conn:receive(3) })
    assert.same({ "bb", "binary" }, { conn:receive(3) })
    assert.same({ nil, "closed", 1000, "bye" }, { conn:receive(3) })
    assert.equal("closed", conn.state)
    assert.same({ "1000", "eof" }, { seen("head-frames") })
  end)

  it("a server stalled mid-frame: receive(timeout) and close(..., timeout) return at their deadlines", function()
    local conn = assert(ws.connect(url("stall-frame"), { timeout = 3 }))
    finally(function() conn:abort() end)
    assert.same({ "hi", "text" }, { conn:receive(3) })
    local dt, data, err = timed(conn.receive, conn, 0.3)
    assert.same({ nil, "timeout" }, { data, err })
    assert.is_true(dt < 1, string.format("receive(0.3) took %.2f s", dt))
    dt, data, err = timed(conn.close, conn, 1000, "bye", 0.3)
    assert.same({ nil, "timeout" }, { data, err })
    assert.is_true(dt < 1, string.format("close(..., 0.3) took %.2f s", dt))
    assert.equal("closed", conn.state)
    assert.same({ "1000", "eof" }, { seen("stall-frame") })
  end)

  it("a server that never answers the close: close() says timeout and closes TCP", function()
    local conn = assert(ws.connect(url("deaf-close"), { timeout = 3 }))
    finally(function() conn:abort() end)
    local dt, ok, err = timed(conn.close, conn, 1000, "bye", 0.3)
    assert.same({ nil, "timeout" }, { ok, err })
    assert.is_true(dt < 1, string.format("close(..., 0.3) took %.2f s", dt))
    assert.equal("closed", conn.state)
    assert.equal("1000", H.wait_output(evil, "deaf%-close close (%w+)", 3))
    assert.truthy(H.wait_output(evil, "deaf%-close held (%S+)", 3))
  end)

  it("a server that answers the close but keeps TCP open, or resets at it: close() ends, bounded", function()
    local conn = assert(ws.connect(url("close-no-fin"), { timeout = 3 }))
    finally(function() conn:abort() end)
    local dt, ok, code, reason = timed(conn.close, conn, 1000, "bye", 3)
    assert.same({ true, 1000, "" }, { ok, code, reason })
    assert.is_true(dt < 2, string.format("close() took %.2f s", dt))
    assert.equal("closed", conn.state)
    assert.same({ "1000", "eof" }, { seen("close-no-fin") })
    conn = assert(ws.connect(url("rst-on-close"), { timeout = 3 }))
    local err
    dt, ok, err, code = timed(conn.close, conn, 1000, "bye", 3)
    assert.same({ nil, "closed", 1006 }, { ok, err, code })
    assert.is_true(dt < 2, string.format("close() took %.2f s", dt))
    assert.equal("closed", conn.state)
  end)

  it("after the server's close, input that never runs dry is discarded for a second at most", function()
    local sock = wrapped()
    local conn = assert(ws.connect(url("close-first"), { timeout = 3, sock = sock }))
    finally(function() conn:abort() end)
    sock.junk_until = gettime() + 4
    local dt, data, err, code = timed(conn.receive, conn, 3)
    assert.same({ nil, "closed", 1000 }, { data, err, code })
    assert.is_true(dt < 2, string.format("receive() took %.2f s", dt))
    assert.equal("closed", conn.state)
    assert.same({ "1000", "eof" }, { seen("close-first") })
  end)

  it("... and the loop goes on meanwhile", function()
    local l = loop.new()
    local tick = ticker(l)
    local conn
    finally(function() if conn then conn:abort() end end)
    local data, err, code = H.run_task(l, 10, function()
      local sock = wrapped()
      conn = assert(ws.connect(url("close-first"), { timeout = 3, sock = sock }))
      sock.junk_until = gettime() + 4
      local d, e, c = conn:receive(3)
      l:sleep(0.1)   -- (the ticker's turn: a gap it has not seen yet)
      tick.stop = true
      return d, e, c
    end)
    assert.same({ nil, "closed", 1000 }, { data, err, code })
    assert.is_true(tick.gap < 0.5, string.format("the loop stood still for %.2f s", tick.gap))
    assert.same({ "1000", "eof" }, { seen("close-first") })
  end)

  it("a reset: the message before it, then closed with 1006", function()
    local conn = assert(ws.connect(url("rst-after"), { timeout = 3 }))
    finally(function() conn:abort() end)
    assert.same({ "hi", "text" }, { conn:receive(3) })
    assert.same({ nil, "closed", 1006, "" }, { conn:receive(3) })
    assert.equal("closed", conn.state)
    assert.same({ nil, "closed" }, { conn:send("x") })
  end)

  it("permessage-deflate faults: 1007 for bad data or text, 1002 for RSV1 where it may not be, 1009 for a bomb", function()
    for _, case in ipairs {
      { "pmd-garbage", "invalid compressed data", 1007 },
      { "pmd-text-utf8", "invalid utf-8", 1007 },
      { "pmd-ping", "protocol error", 1002 },
      { "pmd-cont", "protocol error", 1002 },
      { "pmd-rsv2", "protocol error", 1002 },
      { "pmd-bomb-frag", "message too big", 1009 },
    } do
      local conn = assert(ws.connect(url(case[1]), { timeout = 3, compression = true }))
      local data, err, code = conn:receive(3)
      assert.same({ nil, case[2], case[3] }, { data, err, code }, case[1])
      assert.equal("closed", conn.state)
      assert.same({ tostring(case[3]), "eof" }, { seen(case[1]) }, case[1])
    end
  end)

  it("a refusal whose Content-Length is no whole number is read as one without a length", function()
    assert.equal("handshake: server answered 403 Forbidden", refused("cl-frac", { timeout = 1 }))
    assert.same({ "none", "eof" }, { seen("cl-frac") })
  end)

  it("a chunked refusal whose chunk size overflows 64 bits ends, bounded", function()
    -- (in a process of its own: Lua 5.3+ looped there for good)
    local out = H.run(string.format("timeout 10 %s -e %s 2>&1", H.LUA, H.shell_quote(
      "print((select(2, require('ws').connect(" .. string.format("%q", url("chunk-huge")) .. ", { timeout = 1 }))))")))
    assert.equal("handshake: server answered 403 Forbidden\n", out)
    assert.same({ "none", "eof" }, { seen("chunk-huge") })
  end)

  it("receive(timeout) returns at its deadline while control frames or empty fragments keep coming", function()
    local conns = {}
    finally(function() for _, c in ipairs(conns) do c:abort() end end)
    for _, name in ipairs { "ping-torrent", "frag-torrent" } do
      local conn = assert(ws.connect(url(name), { timeout = 3 }))
      conns[#conns + 1] = conn
      local dt, data, err = timed(conn.receive, conn, 0.3)
      assert.same({ nil, "timeout" }, { data, err }, name)
      assert.is_true(dt < 1.5, string.format("%s: receive(0.3) took %.2f s", name, dt))
      conn:abort()
      assert.equal("closed", conn.state)
      assert.equal("eof", select(2, seen(name)), name)
    end
  end)

  it("... also on a socket ws.core cannot read itself (opts.sock: a wrapper, as LuaSec's)", function()
    local wrapper = wrapped()
    local conn = assert(ws.connect(url("frag-torrent"), { timeout = 3, sock = wrapper }))
    finally(function() conn:abort() end)
    assert.is_nil(conn.rfd)
    local dt, data, err = timed(conn.receive, conn, 0.3)
    assert.same({ nil, "timeout" }, { data, err })
    assert.is_true(dt < 1.5, string.format("receive(0.3) took %.2f s", dt))
    conn:abort()
    assert.equal("eof", select(2, seen("frag-torrent")))
  end)

  it("close(code, reason, timeout) gives up at its timeout while messages keep coming", function()
    local conn = assert(ws.connect(url("msg-torrent"), { timeout = 3 }))
    finally(function() conn:abort() end)
    assert.equal("m", (conn:receive(1)))
    local dt, ok, err = timed(conn.close, conn, 1000, "bye", 0.3)
    assert.same({ nil, "timeout" }, { ok, err })
    assert.is_true(dt < 1.5, string.format("close(..., 0.3) took %.2f s", dt))
    assert.equal("closed", conn.state)
    assert.same({ "1000", "eof" }, { seen("msg-torrent") })
  end)

  -- connect to name in a fresh loop with keepalive, receive nothing for 2 s
  -- while a ticker runs; returns the longest the ticker waited past its 20 ms
  local function keepalive_only(name, sock)
    local l = loop.new()
    local tick = ticker(l)
    local conn
    local ok, err = pcall(H.run_task, l, 10, function()
      conn = assert(ws.connect(url(name), { timeout = 3, ping_interval = 0.05, sock = sock }))
      l:sleep(2)
      tick.stop = true
    end)
    if conn then conn:abort() end
    assert(ok, err)
    assert.equal("eof", select(2, seen(name)))
    return tick.gap
  end

  it("a ping flood read by keepalive (nobody receives) does not hold the loop", function()
    local gap = keepalive_only("ping-torrent")
    assert.is_true(gap < 0.5, string.format("the loop stood still for %.2f s", gap))
  end)

  it("endless empty fragments read by keepalive on a socket ws.core cannot read do not hold the loop", function()
    local gap = keepalive_only("frag-torrent", wrapped())
    assert.is_true(gap < 0.5, string.format("the loop stood still for %.2f s", gap))
  end)

  it("endless empty fragments on a socket ws.core cannot read itself do not hold the loop", function()
    local l = loop.new()
    local tick = ticker(l)
    local conn
    finally(function() if conn then conn:abort() end end)
    local dt, data, err = H.run_task(l, 10, function()
      conn = assert(ws.connect(url("frag-torrent"), { timeout = 3, sock = wrapped() }))
      local t = gettime()
      local d, e = conn:receive(1)
      l:sleep(0.1)   -- (the ticker's turn: a gap it has not seen yet)
      tick.stop = true
      return gettime() - t, d, e
    end)
    assert.same({ nil, "timeout" }, { data, err })
    assert.is_true(dt < 2, string.format("receive(1) took %.2f s", dt))
    assert.is_true(tick.gap < 0.5, string.format("the loop stood still for %.2f s", tick.gap))
    conn:abort()
    assert.equal("eof", select(2, seen("frag-torrent")))
  end)
end)

describe("client against a TLS server whose certificate cannot be trusted", function()
  local dir
  setup(function()
    dir = H.throwaway_ca()
    -- expired (signed by the CA, valid until a day before it was made) and
    -- self-signed (right names, no CA), both for localhost and 127.0.0.1
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    local out, code = H.run("sh -c " .. H.shell_quote(table.concat({
      "set -e", "cd " .. H.shell_quote(dir),
      "openssl req " .. ec .. " -keyout expired.key -out expired.csr -subj '/CN=localhost'",
      "openssl x509 -req -in expired.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out expired.pem -days -1 -extfile ext.cnf",
      "openssl req -x509 " .. ec .. " -keyout self.key -out self.pem -days 2 -subj '/CN=localhost' " ..
        "-addext subjectAltName=DNS:localhost,IP:127.0.0.1",
    }, "\n")) .. " 2>&1")
    assert(code == 0, "openssl failed:\n" .. out)
  end)
  teardown(function() if dir then os.execute("rm -rf " .. H.shell_quote(dir)) end end)

  local function f(name) return dir .. "/" .. name end

  -- a wss:// echo server with this certificate; connect to it (in its
  -- loop) with these tls options: the echo, or nil, err
  local function try(cert, tls)
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, logger = false,
                                   tls = { certificate = f(cert .. ".pem"), key = f(cert .. ".key") } })
    srv:route("/ws", H.echo)
    local r = { pcall(H.run_task, l, 10, function()
      local conn, err = ws.connect("wss://localhost:" .. srv.port .. "/ws", { timeout = 3, tls = tls })
      if not conn then return nil, err end
      conn:send("hello")
      local data = conn:receive(3)
      conn:close()
      return data
    end) }
    srv:close()   -- (here, not in a finally: a test keeps only its last one)
    assert(r[1], r[2])
    return r[2], r[3]
  end

  it("an expired certificate fails verification with a clear nil, err", function()
    assert.same({ nil, "tls handshake failed: certificate verify failed: certificate has expired" },
      { try("expired", { cafile = f("ca.pem") }) })
    assert.equal("hello", try("expired", { verify = false }))
  end)

  it("a self-signed certificate fails verification unless it is the trust anchor", function()
    assert.same({ nil, "tls handshake failed: certificate verify failed: self-signed certificate" },
      { try("self", { cafile = f("ca.pem") }) })
    assert.same({ nil, "tls handshake failed: certificate verify failed: self-signed certificate" },
      { try("self", {}) })   -- (the system's trust store)
    assert.equal("hello", try("self", { cafile = f("self.pem") }))
  end)
end)
