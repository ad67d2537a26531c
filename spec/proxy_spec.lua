-- Behind proxies, in one process: trusted_proxies and the forwarding
-- headers, the PROXY protocol header (v1, v2) read before HTTP, health
-- paths, drain, signals through the loop, inherited and shared listeners.
local socket = require "socket"
local ws = require "ws"
local core = require "ws.core"
local loop = require "ws.loop"
local proxy = require "ws.proxy"
local H = require "spec.helpers"
local B = require "spec.bits"

local gettime = socket.gettime

-- a server on a fresh port that answers each connection with one message
-- "peer|proxy_peer|scheme", then echoes
local function whoami_server(l, opts)
  opts.host, opts.port, opts.loop, opts.logger = "127.0.0.1", H.free_port(), l, false
  local server = assert(ws.listen(opts))
  server:route("/ws", function(conn)
    conn:send(table.concat({ conn.peer, tostring(conn.proxy_peer), tostring(conn.scheme) }, "|"))
    repeat until not conn:receive()
  end)
  return server
end

-- a TCP socket to port from address `from`, after writing `first` on it
local function raw_from(from, port, first)
  local s = socket.tcp()
  assert(s:bind(from, 0))
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  if first and first ~= "" then assert(s:send(first)) end
  return s
end

local function whoami(port, from, first, headers)
  local s = raw_from(from or "127.0.0.1", port, first)
  local c, err = ws.connect("ws://127.0.0.1:" .. port .. "/ws", { sock = s, headers = headers, timeout = 3 })
  if not c then return nil, err end
  local m = c:receive(3)
  c:close()
  return m
end

local function v2(cmd, fam, addr)
  return "\r\n\r\n\0\r\nQUIT\n" .. string.char(0x20 + cmd, fam) .. B.u16(#addr) .. addr
end

describe("ws.proxy", function()
  it("matcher: addresses and CIDR blocks, IPv4 and IPv6, IPv4-mapped IPv6 as IPv4", function()
    local t = proxy.matcher { "127.0.0.1", "10.0.0.0/8", "192.168.1.128/25", "::1", "fd00::/8" }
    local yes = { "127.0.0.1", "10.255.0.1", "192.168.1.128", "192.168.1.255", "::1", "fd12::1", "::ffff:10.0.0.1" }
    for _, ip in ipairs(yes) do
      assert.is_true(t(ip), ip)
    end
    for _, ip in ipairs { "127.0.0.2", "11.0.0.1", "192.168.1.127", "::2", "fe00::1", "garbage", "" } do
      assert.is_false(t(ip), ip)
    end
    assert.has_error(function() proxy.matcher { "10.0.0.0/33" } end)
    assert.has_error(function() proxy.matcher { "example.com" } end)
    assert.has_error(function() proxy.matcher("127.0.0.1") end)
  end)

  it("from_headers: the one header the proxies write, from the right past trusted hops; the scheme", function()
    local t = proxy.matcher { "10.0.0.0/8" }
    assert.same({ "1.2.3.4" }, { proxy.from_headers({ ["x-forwarded-for"] = "6.6.6.6, 1.2.3.4, 10.0.0.2" }, t) })
    assert.same({ "6.6.6.6" }, { proxy.from_headers({ ["x-forwarded-for"] = "6.6.6.6,10.0.0.1,10.0.0.2" }, t) })
    assert.same({ "2001:db8::1" }, { proxy.from_headers({ ["x-forwarded-for"] = "[2001:db8::1]:443" }, t) })
    local fwd = { forwarded = 'for="[2001:db8::2]:4711";proto=https, for=10.0.0.1',
                  ["x-forwarded-for"] = "7.7.7.7", ["x-forwarded-proto"] = "http", ["x-real-ip"] = "5.5.5.5" }
    assert.same({ "2001:db8::2", "https" }, { proxy.from_headers(fwd, t, "forwarded") })
    assert.same({ "5.5.5.5", "http" }, { proxy.from_headers(fwd, t, "x-real-ip") })
    -- the headers the proxies do not write are the client's own: not read
    assert.same({ "7.7.7.7", "http" }, { proxy.from_headers(fwd, t) })
    assert.same({}, { proxy.from_headers({ forwarded = "for=6.6.6.6", ["x-real-ip"] = "6.6.6.6" }, t) })
    assert.same({}, { proxy.from_headers({ ["x-forwarded-for"] = "6.6.6.6" }, t, "forwarded") })
    -- a hop that is not an address: no client taken from that header
    assert.same({}, { proxy.from_headers({ ["x-forwarded-for"] = "6.6.6.6, evil" }, t) })
    assert.same({}, { proxy.from_headers({ ["x-forwarded-proto"] = "gopher" }, t) })
  end)

  it("core.proxy_parse: v1 and v2, incomplete, invalid", function()
    local n, info = core.proxy_parse("PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\nGET")
    assert.equal(36, n)
    assert.same({ version = 1, family = 4, src = "1.2.3.4", src_port = 1111, dst = "5.6.7.8", dst_port = 80 }, info)
    assert.equal(0, (core.proxy_parse("PROXY TCP4 1.2.3.4")))
    assert.same({ nil, "not a PROXY header" }, { core.proxy_parse("GET / HTTP/1.1\r\n") })
    n, info = core.proxy_parse(v2(1, 0x11, "\1\2\3\4\5\6\7\8\0\80\1\187"))
    assert.equal(28, n)
    assert.same({ version = 2, family = 4, src = "1.2.3.4", src_port = 80, dst = "5.6.7.8", dst_port = 443 }, info)
  end)
end)

describe("server behind proxies", function()
  local l
  before_each(function() l = loop.new() end)

  it("believes forwarding headers only from trusted_proxies; the raw peer stays in conn.proxy_peer", function()
    local server = whoami_server(l, { trusted_proxies = { "127.0.0.1" } })
    H.run_task(l, 20, function()
      local m = whoami(server.port, "127.0.0.1", nil,
        { ["X-Forwarded-For"] = "6.6.6.6, 10.1.1.1", ["X-Forwarded-Proto"] = "https" })
      local peer, raw, scheme = m:match("^(.-)|(.-)|(.-)$")
      assert.equal("10.1.1.1", peer)
      assert.truthy(raw:match("^127%.0%.0%.1:%d+$"))
      assert.equal("https", scheme)
      -- from an untrusted peer the same headers change nothing
      m = whoami(server.port, "127.0.0.2", nil, { ["X-Forwarded-For"] = "10.1.1.1", ["X-Forwarded-Proto"] = "https" })
      peer, raw, scheme = m:match("^(.-)|(.-)|(.-)$")
      assert.truthy(peer:match("^127%.0%.0%.2:%d+$"))
      assert.equal("nil", raw)
      assert.equal("http", scheme)
      -- a client's own Forwarded passed on by a proxy that writes X-Forwarded-For (nginx, HAProxy)
      m = whoami(server.port, "127.0.0.1", nil, { ["X-Forwarded-For"] = "10.2.2.2", Forwarded = "for=6.6.6.6" })
      assert.truthy(m:match("^10%.2%.2%.2|"), m)
    end)
    server:close()
    -- forwarded_header = "forwarded": RFC 7239 alone
    server = whoami_server(l, { trusted_proxies = { "127.0.0.1" }, forwarded_header = "Forwarded" })
    H.run_task(l, 20, function()
      local m = whoami(server.port, "127.0.0.1", nil,
        { ["X-Forwarded-For"] = "6.6.6.6", Forwarded = "for=10.3.3.3;proto=https" })
      assert.truthy(m:match("^10%.3%.3%.3|127%.0%.0%.1:%d+|https$"), m)
    end)
    server:close()
    assert.has_error(function()
      ws.listen { port = 0, trusted_proxies = { "127.0.0.1" }, forwarded_header = "x-client-ip", logger = false }
    end, 'ws.listen: option \'forwarded_header\' must be "x-forwarded-for", "forwarded" or "x-real-ip", got "x-client-ip"')
  end)

  it("proxy_protocol: v1 and v2 headers name the client; LOCAL keeps the TCP peer", function()
    local server = whoami_server(l, { trusted_proxies = { "127.0.0.1" }, proxy_protocol = true })
    H.run_task(l, 20, function()
      local m = whoami(server.port, "127.0.0.1", "PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\n")
      assert.truthy(m:match("^203%.0%.113%.7:4242|127%.0%.0%.1:%d+|http$"), m)
      m = whoami(server.port, "127.0.0.1", "PROXY TCP6 2001:db8::7 ::1 4243 80\r\n")
      assert.truthy(m:match("^%[2001:db8::7%]:4243|"), m)
      m = whoami(server.port, "127.0.0.1", v2(1, 0x11, "\203\0\113\8\127\0\0\1\16\164\0\80"))
      assert.truthy(m:match("^203%.0%.113%.8:4260|"), m)
      m = whoami(server.port, "127.0.0.1", v2(0, 0x00, ""))
      assert.truthy(m:match("^127%.0%.0%.1:%d+|127%.0%.0%.1:%d+|"), m)
      -- a header that names no client: the forwarding headers are the end
      -- client's own (a layer-4 proxy passes them on), not believed
      local xff = { ["X-Forwarded-For"] = "6.6.6.6" }
      for _, first in ipairs { "PROXY UNKNOWN\r\n", v2(0, 0x00, "") } do
        m = whoami(server.port, "127.0.0.1", first, xff)
        assert.truthy(m:match("^127%.0%.0%.1:%d+|127%.0%.0%.1:%d+|"), m)
      end
      -- one that names a client still has them read when that client is a trusted proxy
      m = whoami(server.port, "127.0.0.1", "PROXY TCP4 127.0.0.1 127.0.0.1 4000 80\r\n", xff)
      assert.truthy(m:match("^6%.6%.6%.6|"), m)
    end)
    server:close()
  end)

  it("proxy_protocol with wss://: the header is read before the TLS handshake", function()
    local ca = H.throwaway_ca()
    finally(function() H.sh("rm -rf " .. H.shell_quote(ca)) end)
    local server = whoami_server(l, { trusted_proxies = { "127.0.0.1" }, proxy_protocol = true,
      tls = { certificate = ca .. "/server.pem", key = ca .. "/server.key" } })
    H.run_task(l, 20, function()
      local s = raw_from("127.0.0.1", server.port, "PROXY TCP4 192.0.2.9 127.0.0.1 6000 443\r\n")
      local c = assert(ws.connect("wss://localhost:" .. server.port .. "/ws",
        { sock = s, timeout = 5, tls = { cafile = ca .. "/ca.pem" } }))
      assert.truthy(c:receive(3):match("^192%.0%.2%.9:6000|127%.0%.0%.1:%d+|https$"))
      c:close()
    end)
    server:close()
  end)

  it("proxy_protocol: a header split across writes is awaited", function()
    local server = whoami_server(l, { trusted_proxies = { "127.0.0.1" }, proxy_protocol = true })
    H.run_task(l, 20, function()
      local s = raw_from("127.0.0.1", server.port, "PROXY TCP4 198.51")
      l:sleep(0.1)
      assert(s:send(".100.9 127.0.0.1 5000 80\r\n"))
      local c = assert(ws.connect("ws://127.0.0.1:" .. server.port .. "/ws", { sock = s, timeout = 3 }))
      assert.truthy(c:receive(3):match("^198%.51%.100%.9:5000|"))
      c:close()
    end)
    server:close()
  end)

  it("proxy_protocol: no header, a bad header, or a header from an untrusted peer: refused", function()
    local server = whoami_server(l, { trusted_proxies = { "127.0.0.1" }, proxy_protocol = true })
    H.run_task(l, 20, function()
      local c, err = whoami(server.port, "127.0.0.1", nil)   -- plain HTTP, no header
      assert.is_nil(c)
      assert.truthy(err)
      c, err = whoami(server.port, "127.0.0.1", "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n")
      assert.is_nil(c)
      assert.truthy(err)
      c, err = whoami(server.port, "127.0.0.2", "PROXY TCP4 1.2.3.4 127.0.0.1 1 80\r\n")
      assert.is_nil(c)
      assert.truthy(err)
    end)
    server:close()
    assert.has_error(function() ws.listen { port = 0, proxy_protocol = true, logger = false } end,
      "ws.listen: proxy_protocol needs trusted_proxies (the addresses allowed to send the header)")
  end)
end)

-- a non-blocking TCP connection to port (connecting)
local function tcp_to(port)
  local s = socket.tcp()
  s:settimeout(0)
  s:connect("127.0.0.1", port)
  return s
end

-- GET path on connection s from a task of loop l: the whole response
-- (until the server closes), or nil, err
local function http_get(l, s, path)
  if not l:wait(s, "w", gettime() + 3) then return nil, "connect" end
  assert(s:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
  local out = {}
  while true do
    local ok, werr = l:wait(s, "r", gettime() + 3)
    if not ok then return nil, werr end
    local data, err, partial = s:receive(4096)
    data = data or partial
    if data and data ~= "" then out[#out + 1] = data end
    if err == "closed" then break end
  end
  s:close()
  return table.concat(out)
end

describe("drain, health paths, signals, listeners", function()
  local l
  before_each(function() l = loop.new() end)

  it("health_path: 200 ok; 503 once draining; drain closes every client with 1001 and stops accepting", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false,
      health_path = "/healthz", close_timeout = 2 })
    server:route("/ws", function(conn) repeat until not conn:receive() end)
    local function get(s) return http_get(l, s, "/healthz") end
    H.run_task(l, 20, function()
      local s = tcp_to(port)
      assert.truthy(get(s):match("^HTTP/1.1 200 OK\r\n.*\r\n\r\nok\n$"))
      local clients = {}
      for i = 1, 3 do clients[i] = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws")) end
      -- a health check connected (accepted) before the drain asks after it
      -- began (and the drain waits for its answer)
      local late = tcp_to(port)
      l:sleep(0.1)
      local got, answer = {}, nil
      for i, c in ipairs(clients) do
        l:spawn(function() c:receive(5); got[i] = c.close_code end)
      end
      l:spawn(function() l:sleep(0.05); answer = get(late) end)
      local t0 = gettime()
      assert.equal(3, server:drain { grace = 0.3 })
      assert.truthy(gettime() - t0 < 3)
      assert.same({ 1001, 1001, 1001 }, got)
      assert.truthy(answer:match("^HTTP/1.1 503 Service Unavailable\r\n.*\r\n\r\ndraining\n$"))
      local c, err = ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 1 })
      assert.is_nil(c)
      assert.truthy(err:find("refused"), err)
    end)
  end)

  it("drain{ linger }: still serving with the health path at 503, then it stops accepting", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false,
      health_path = { "/healthz", "/ready" } })
    server:route("/ws", function(conn) conn:send("served"); repeat until not conn:receive() end)
    H.run_task(l, 20, function()
      local done = false
      l:spawn(function() server:drain { linger = 0.5 }; done = true end)
      l:sleep(0.1)
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws"))   -- still accepted
      assert.equal("served", c:receive(3))
      for _, path in ipairs { "/healthz", "/ready" } do
        local answer = http_get(l, tcp_to(port), path)
        assert.truthy(answer:match("^HTTP/1.1 503 .*\r\n\r\ndraining\n$"), answer)
      end
      c:receive(5)                          -- the 1001 after the linger
      assert.equal(1001, c.close_code)
      while not done do l:sleep(0.05) end
      local refused = ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 1 })
      assert.is_nil(refused)
    end)
  end)

  it("drain: messages send accepted before the drain reach the client before its 1001", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false })
    local big = string.rep("z", 256 * 1024)
    local sent = 0
    server:route("/ws", function(conn)
      conn:receive()
      for _ = 1, 40 do if conn:send_encoded(core.frame(big, "binary")) then sent = sent + 1 end end
      repeat until not conn:receive()
    end)
    H.run_task(l, 30, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { max_message = 1024 * 1024 }))
      assert(c:send("go"))
      while sent < 40 do l:sleep(0.01) end    -- 10 MiB queued, unread
      local got = 0
      l:spawn(function() server:drain() end)
      while true do
        local m = c:receive(5)
        if not m then break end
        got = got + 1
      end
      assert.equal(40, got)
      assert.equal(1001, c.close_code)
    end)
  end)

  it("drain: a handshake still running when it began gets its 101, then 1001 at once", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false,
      on_request = function() l:sleep(0.5) end })
    local ran = false
    server:route("/ws", function(conn) ran = true; repeat until not conn:receive() end)
    H.run_task(l, 10, function()
      local t0, conn, code = gettime(), nil, nil
      l:spawn(function()
        conn = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 3 }))
        conn:receive(3)
        code = conn.close_code
      end)
      l:sleep(0.2)                          -- inside on_request now
      assert.equal(0, server:drain())
      while not code and gettime() - t0 < 3 do l:sleep(0.02) end
      assert.equal(1001, code)
      assert.is_false(ran)
    end)
  end)

  it("drain from outside the loop steps it until the close handshakes are done", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false })
    server:route("/ws", function(conn) repeat until not conn:receive() end)
    local clients, codes = {}, {}
    H.run_task(l, 10, function()
      for i = 1, 2 do clients[i] = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws")) end
      l:sleep(0.05)
    end)
    for i, c in ipairs(clients) do l:spawn(function() c:receive(5); codes[i] = c.close_code end) end
    assert.equal(2, server:drain())
    H.step_until(l, 2, function() return codes[1] and codes[2] end)
    assert.same({ 1001, 1001 }, codes)
  end)

  it("a check_origin that raises: 500, logged; no handshake left counted for a drain to wait on", function()
    local lines = {}
    local server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l,
      check_origin = function(origin) return origin:find("x") end,   -- (raises with no Origin)
      logger = function(level, msg) lines[#lines + 1] = level .. " " .. msg end })
    server:route("/ws", function(conn) conn:close() end)
    H.run_task(l, 10, function()
      local conn, err, res = ws.connect("ws://" .. server.address .. "/ws", { timeout = 3 })
      assert.is_nil(conn, err)
      assert.equal(500, res and res.status, err)
      -- (done once its answer is drained: at most half a second)
      local t1 = gettime()
      while server.handshakes > 0 and gettime() - t1 < 2 do l:sleep(0.02) end
      assert.equal(0, server.handshakes)
      local t0 = gettime()
      server:drain { grace = 0 }
      assert.is_true(gettime() - t0 < 1, "drain took " .. (gettime() - t0))
    end)
    assert.truthy(table.concat(lines, "\n"):find("error check_origin error: ", 1, true), table.concat(lines, "\n"))
    server:close()
  end)

  it("a drain called from a page does not wait for that page's own request", function()
    local server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l, logger = false })
    local took
    server:page("/admin/drain", function()
      local t0 = gettime()
      server:drain { grace = 0 }
      took = gettime() - t0
      return 200, "drained\n"
    end)
    -- (a client in its own process: one in this loop's tasks would wait on the drain)
    local client = H.spawn(H.PYTHON .. " -c 'import urllib.request; print(urllib.request.urlopen(" ..
      "\"http://" .. server.address .. "/admin/drain\", timeout=5).read().decode())'", "drain-page")
    H.run_task(l, 10, function()
      local t0 = gettime()
      while not took and gettime() - t0 < 8 do l:sleep(0.02) end
    end)
    client.stop()
    assert.is_true(took < 1, "drain took " .. tostring(took))
    server:close()
  end)

  it("SIGINT and SIGTERM read together (ws.workers sends both): one drain", function()
    local lines = {}
    local server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l,
      logger = function(_, msg) lines[#lines + 1] = msg end })
    local pid = core.getpid()
    -- both pending before the loop reads either (os.execute blocks it)
    l:spawn(function() l:sleep(0.1); os.execute("kill -INT " .. pid .. "; kill -TERM " .. pid) end)
    l:spawn(function() l:sleep(5); l:stop() end)   -- bounds run()
    server:run()
    local all = table.concat(lines, "\n")
    assert.equal(1, H.count(all, "draining %d+ connections"), all)
    assert.falsy(all:find("stopping now", 1, true), all)
    assert.falsy(all:find("SIGTERM: draining", 1, true), all)
  end)

  it("close() after a drain (a task's, or on_signal's) stops run()", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false })
    server:route("/ws", function(conn) repeat until not conn:receive() end)
    local client
    H.run_task(l, 10, function() client = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws")) end)
    l:spawn(function() client:receive(5) end)
    local t0
    l:spawn(function()
      l:sleep(0.1)
      t0 = gettime()
      server:drain { grace = 0 }
      server:close()
    end)
    l:spawn(function() l:sleep(5); l:stop() end)   -- bounds run()
    server:run()
    assert.truthy(gettime() - t0 < 1, "run() returned after " .. (gettime() - t0) .. " s")
    assert.equal(1001, client.close_code)
  end)

  it("SIGTERM reaches an idle run() through the loop at once: drain, run() returns; on_signal replaces it", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false })
    assert.has_error(function() server:on_signal("USR1", function() end) end)
    local pid = core.getpid()
    local t0
    l:spawn(function()
      l:sleep(0.2)
      t0 = gettime()
      os.execute("kill -TERM " .. pid)
    end)
    l:spawn(function() l:sleep(5); l:stop() end)   -- bounds run() if the signal is missed
    server:run()   -- would be killed by the SIGTERM without the signalfd
    assert.truthy(gettime() - t0 < 1)
    assert.is_true(server.draining)
    -- the signals are given back when run() returns; and a handler of our own
    local server2 = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l, logger = false })
    local seen
    server2:on_signal("HUP", function(s, name) seen = name; s.loop:stop() end)
    l:spawn(function() l:sleep(0.1); os.execute("kill -HUP " .. pid) end)
    server2:run()
    assert.equal("HUP", seen)
    server2:close()
  end)

  -- under ws.workers a worker may read two: the terminal's and the supervisor's
  it("a second SIGINT while draining stops the loop once, with one line, however many come", function()
    local lines = {}
    local server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l,
      logger = function(level, msg) lines[#lines + 1] = level .. " " .. msg end })
    local stops = 0
    local real_stop = l.stop
    l.stop = function(self) stops = stops + 1; return real_stop(self) end
    server.draining = true
    for _ = 1, 3 do require("ws.drain").default(server, "INT") end
    l.stop = nil
    assert.equal(1, stops)
    assert.same({ "warn SIGINT again: stopping now" }, lines)
    server:close()
  end)

  it("SIGTERM with clients open: run() returns as soon as their close handshakes are done", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false })
    server:route("/ws", function(conn) repeat until not conn:receive() end)
    local clients = {}
    H.run_task(l, 10, function()
      for i = 1, 2 do clients[i] = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws")) end
    end)
    for _, c in ipairs(clients) do l:spawn(function() c:receive(5) end) end
    local t0
    l:spawn(function() l:sleep(0.1); t0 = gettime(); os.execute("kill -TERM " .. core.getpid()) end)
    l:spawn(function() l:sleep(5); l:stop() end)   -- bounds run()
    server:run()
    assert.truthy(gettime() - t0 < 2, "run() returned after " .. (gettime() - t0) .. " s")
    assert.same({ 1001, 1001 }, { clients[1].close_code, clients[2].close_code })
  end)

  it("SIGTERM: a connection accepted before it, whose request comes after, gets its 503 before run() returns", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false })
    server:route("/ws", function(conn) repeat until not conn:receive() end)
    local raw = H.raw(port, false)          -- connected, its request not sent yet
    l:spawn(function()
      l:sleep(0.2)                          -- accepted: reading the request
      os.execute("kill -TERM " .. core.getpid())
      l:sleep(0.1)                          -- the drain is on
      assert(raw:send(H.request(port)))
    end)
    l:spawn(function() l:sleep(5); l:stop() end)   -- bounds run()
    server:run()
    local head = raw:read_head()
    assert.truthy(head and head:match("^HTTP/1.1 503 "), tostring(head))
    raw:close()
  end)

  it("SIGTERM during a handshake (on_request waits): its 101, then 1001, before run() returns", function()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false,
      close_timeout = 0.5, on_request = function() l:sleep(0.5) end })
    server:route("/ws", function(conn) repeat until not conn:receive() end)
    local raw = H.raw(port, false)
    assert(raw:send(H.request(port)))
    l:spawn(function() l:sleep(0.2); os.execute("kill -TERM " .. core.getpid()) end)   -- inside on_request
    l:spawn(function() l:sleep(5); l:stop() end)
    server:run()
    local head = raw:read_head()
    assert.truthy(head and head:match("^HTTP/1.1 101 "), tostring(head))
    assert.equal(1001, (raw:read_close()))
    raw:close()
  end)

  it("SIGTERM drains every server on the loop, not only the one whose run() was called", function()
    local servers, clients = {}, {}
    for i = 1, 2 do
      servers[i] = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l, logger = false })
      servers[i]:route("/ws", function(conn) repeat until not conn:receive() end)
    end
    H.run_task(l, 10, function()
      for i, s in ipairs(servers) do clients[i] = assert(ws.connect("ws://127.0.0.1:" .. s.port .. "/ws")) end
    end)
    for _, c in ipairs(clients) do l:spawn(function() c:receive(5) end) end
    l:spawn(function() l:sleep(0.1); os.execute("kill -TERM " .. core.getpid()) end)
    l:spawn(function() l:sleep(5); l:stop() end)   -- bounds run()
    servers[1]:run()
    assert.same({ 1001, 1001 }, { clients[1].close_code, clients[2].close_code })
    assert.same({ false, false }, { servers[1].open, servers[2].open })
  end)

  it("listen{ fd = N } serves an inherited listener; a descriptor that is not listening is refused", function()
    local lsock = assert(core.listen("127.0.0.1", 0, 16, false))
    local server = assert(ws.listen { fd = lsock:getfd(), loop = l, logger = false })
    assert.equal(select(2, lsock:getsockname()), server.port)
    server:route("/ws", function(conn) conn:send("inherited") end)
    H.run_task(l, 10, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. server.port .. "/ws"))
      assert.equal("inherited", c:receive(3))
      c:close()
    end)
    server:close()
    local s, err = ws.listen { fd = 0, loop = l, logger = false }   -- stdin: not a listening socket
    assert.is_nil(s)
    assert.truthy(err)
  end)

  it("reuseport: two servers share a port; a listener without it gets 'address already in use'", function()
    local port = H.free_port()
    local a = assert(ws.listen { host = "127.0.0.1", port = port, reuseport = true, loop = l, logger = false })
    local b = assert(ws.listen { host = "127.0.0.1", port = port, reuseport = true, loop = l, logger = false })
    local c, err = ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false }
    assert.is_nil(c)
    assert.equal("listen 127.0.0.1:" .. port .. ": address already in use", err)
    a:close()
    b:close()
  end)
end)
