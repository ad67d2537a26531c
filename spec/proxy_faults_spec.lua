-- Faults behind proxies: PROXY headers that are slow, cut short, split,
-- forged or unusual (TLVs, LOCAL, UNKNOWN, unix), in one process; and the
-- real nginx and HAProxy in front (a client's own PROXY header passed on,
-- HAProxy's TLVs and LOCAL health checks, a proxy closing idle tunnels).
-- proxy_spec.lua and deploy_spec.lua hold the cases that work as sent.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"
local B = require "spec.bits"

local gettime = socket.gettime

local function v2(cmd, fam, addr)
  return "\r\n\r\n\0\r\nQUIT\n" .. string.char(0x20 + cmd, fam) .. B.u16(#addr) .. addr
end

-- 203.0.113.8:4260 -> 127.0.0.1:80
local A4 = "\203\0\113\8\127\0\0\1\16\164\0\80"

describe("forwarding headers that lie", function()
  it("Forwarded: the scheme is the proto= of the client's own element, not a forged one left of it", function()
    local proxy = require "ws.proxy"
    local t = proxy.matcher { "10.0.0.0/8" }
    local function from(v) return { proxy.from_headers({ forwarded = v }, t, "forwarded") } end
    -- a proxy that appends for= alone: the client's proto=https is its own word
    assert.same({ "1.2.3.4" }, from("for=6.6.6.6;proto=https, for=1.2.3.4"))
    -- two trusted hops: the first saw the client over https, the second got it over http
    assert.same({ "1.2.3.4", "https" }, from("for=1.2.3.4;proto=https, for=10.0.0.5;proto=http"))
    assert.same({ "1.2.3.4", "http" }, from("for=1.2.3.4;proto=http, for=10.0.0.5;proto=https"))
    assert.same({ "1.2.3.4", "https" }, from("proto=https;for=1.2.3.4"))
    assert.same({ "1.2.3.4", "https" }, from("for=6.6.6.6;proto=http, for=1.2.3.4;proto=https"))
  end)
end)

describe("PROXY protocol faults (one process)", function()
  local l, server, lines
  before_each(function()
    l, lines = loop.new(), {}
    server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l,
      trusted_proxies = { "127.0.0.1" }, proxy_protocol = true, handshake_timeout = 1,
      logger = function(level, msg) lines[#lines + 1] = level .. " " .. msg end })
    server:route("/ws", function(conn)
      conn:send(conn.peer .. "|" .. tostring(conn.proxy_peer))
      repeat until not conn:receive()
    end)
  end)
  after_each(function() server:close() end)

  -- a socket to the server that has sent `first`
  local function raw(first)
    local s = socket.tcp()
    s:settimeout(5)
    assert(s:connect("127.0.0.1", server.port))
    if first ~= "" then assert(s:send(first)) end
    return s
  end

  -- the first message on s after the upgrade, or nil, err
  local function who(s, headers)
    local c, err = ws.connect("ws://127.0.0.1:" .. server.port .. "/ws", { sock = s, timeout = 3, headers = headers })
    if not c then return nil, err end
    local m = c:receive(3)
    c:close()
    return m
  end

  -- seconds until the server closes s (reads EOF or a reset), at most secs
  local function closed_after(s, secs)
    local t0 = gettime()
    s:settimeout(0)
    while gettime() - t0 < secs do
      local _, err = s:receive(1)
      if err == "closed" or (err and err ~= "timeout") then return gettime() - t0 end
      l:wait(s, "r", t0 + secs)
    end
  end

  it("a header sent a byte at a time, never finished, is cut at handshake_timeout; others are served meanwhile",
    function()
      H.run_task(l, 10, function()
        local header = "PROXY TCP4 198.51.100.1 127.0.0.1 5000 80"   -- (no CRLF: never complete)
        local slow = raw(header:sub(1, 1))
        local cut
        l:spawn(function() cut = closed_after(slow, 3) end)
        local served = {}
        for i = 2, #header do
          l:sleep(0.02)
          if not cut then slow:send(header:sub(i, i)) end
          if i % 10 == 0 then served[#served + 1] = who(raw("PROXY TCP4 192.0.2.1 127.0.0.1 7000 80\r\n")) end
        end
        local t0 = gettime()
        while not cut and gettime() - t0 < 3 do l:sleep(0.05) end
        slow:close()
        assert.equal(4, #served)
        for _, m in ipairs(served) do assert.truthy(m:match("^192%.0%.2%.1:7000|"), m) end
        assert.truthy(cut and cut > 0.8 and cut < 2, "the slow header was cut after " .. tostring(cut))
      end)
      assert.truthy(table.concat(lines, "\n"):find("refused: timeout", 1, true))
    end)

  it("a header cut short, then FIN or RST, is refused at once, not at handshake_timeout", function()
    H.run_task(l, 15, function()
      local c0 = os.clock()
      for _, first in ipairs { "PROXY TCP4 1.2.3.4", "\r\n\r\n\0\r\nQ", v2(1, 0x11, A4):sub(1, 20) } do
        local s = raw(first)
        l:sleep(0.05)                         -- read and found short first
        s:shutdown("send")
        local cut = closed_after(s, 3)
        s:close()
        assert.truthy(cut and cut < 0.5, "cut after " .. tostring(cut))
        s = raw(first)
        l:sleep(0.05)
        s:setoption("linger", { on = true, timeout = 0 })
        s:close()                             -- RST
      end
      local t0 = gettime()
      while server.handshakes > 0 and gettime() - t0 < 2 do l:sleep(0.02) end
      assert.truthy(gettime() - t0 < 0.5, "the reset ones held until " .. (gettime() - t0))
      assert.truthy(os.clock() - c0 < 0.5, "CPU " .. (os.clock() - c0) .. " s")
      assert.equal(0, server.handshakes)
    end)
    local all = table.concat(lines, "\n")
    assert.falsy(all:find("refused: timeout", 1, true), all)
  end)

  it("a header split in the v2 signature and in its address block is awaited", function()
    H.run_task(l, 10, function()
      local h = v2(1, 0x11, A4)
      local s = raw(h:sub(1, 5))
      l:sleep(0.05)
      assert(s:send(h:sub(6, 20)))
      l:sleep(0.05)
      assert(s:send(h:sub(21)))
      assert.truthy((who(s) or ""):match("^203%.0%.113%.8:4260|127%.0%.0%.1:%d+$"))
    end)
  end)

  it("v2 with TLVs, LOCAL with addresses or any family, UNSPEC and unix families, v1 UNKNOWN with addresses", function()
    H.run_task(l, 10, function()
      local xff = { ["X-Forwarded-For"] = "6.6.6.6" }
      -- TLVs after the addresses (CRC32C, unique id, a 0-length NOOP) are skipped
      local tlvs = "\3\0\4\0\0\0\0" .. "\5\0\5abcde" .. "\4\0\0"
      local m = who(raw(v2(1, 0x11, A4 .. tlvs)), xff)
      assert.truthy(m and m:match("^203%.0%.113%.8:4260|127%.0%.0%.1:%d+$"), m)
      -- no client named: the TCP peer, and the end client's headers not believed
      for _, first in ipairs { v2(0, 0x11, A4), v2(0, 0x00, tlvs), v2(0, 0x45, ""), v2(1, 0x00, ""),
                               v2(1, 0x31, ("\0"):rep(216)),
                               v2(1, 0x12, A4), "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n" } do
        m = who(raw(first), xff)
        assert.truthy(m and m:match("^127%.0%.0%.1:%d+|127%.0%.0%.1:%d+$"), m)
      end
      -- a family the protocol does not define, a command past LOCAL/PROXY: refused
      for _, first in ipairs { v2(1, 0x41, A4), v2(2, 0x11, A4) } do
        assert.is_nil((who(raw(first))))
      end
    end)
  end)

  it("a trusted proxy's TCP check (connect, close, nothing sent) is no warning, as without proxy_protocol", function()
    H.run_task(l, 10, function()
      for _ = 1, 3 do
        local s = raw("")
        s:close()
      end
      l:sleep(0.2)
    end)
    local all = table.concat(lines, "\n")
    assert.falsy(all:find("^warn") or all:find("\nwarn"), all)
    assert.truthy(all:find("closed", 1, true), all)   -- (still there for debugging)
  end)

  it("a second PROXY header after the proxy's, or one from an untrusted peer sent straight: refused", function()
    H.run_task(l, 10, function()
      local inner = "PROXY TCP4 6.6.6.6 127.0.0.1 6666 80\r\n"
      local c, err = who(raw("PROXY TCP4 192.0.2.2 127.0.0.1 7001 80\r\n" .. inner))
      assert.is_nil(c)
      assert.truthy(err:find("400"), err)
      -- straight from 127.0.0.2 (not a trusted proxy), with a v2 header
      local s = socket.tcp()
      assert(s:bind("127.0.0.2", 0))
      s:settimeout(3)
      assert(s:connect("127.0.0.1", server.port))
      assert(s:send(v2(1, 0x11, A4)))
      assert.truthy(closed_after(s, 1), "not closed at once")
      s:close()
    end)
    local all = table.concat(lines, "\n")
    assert.falsy(all:find("6.6.6.6", 1, true), all)
    assert.truthy(all:find("PROXY header from an untrusted peer", 1, true), all)
  end)
end)

-- a TCP socket to 127.0.0.1:port from address `from`
local function connect_from(from, port)
  local s = socket.tcp()
  assert(s:bind(from, 0))
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  return s
end

local function task(secs, fn)
  return H.run_task(loop.new(), secs, fn)
end

describe("PROXY headers through the real nginx #slow", function()
  it("a client's own PROXY header after nginx's is answered 400, its address never believed", function()
    local pp = H.start_lua("examples/echo.lua", "--proxy-protocol --trusted-proxy 127.0.0.1", "pf-nginx-pp")
    local nginx
    finally(function()
      if nginx then nginx.stop() end
      pp.stop()
    end)
    nginx = H.nginx_in_front { w1 = pp.port, pp = pp.port }
    task(20, function()
      local s = connect_from("127.0.0.6", nginx.stream)
      assert(s:send("PROXY TCP4 6.6.6.6 127.0.0.1 6666 80\r\n"))
      local c, err = ws.connect("ws://127.0.0.1:" .. nginx.stream .. "/ws", { sock = s, timeout = 3 })
      assert.is_nil(c)
      assert.truthy(err:find("400"), err)
      -- and an honest client through the same proxy is served as itself
      s = connect_from("127.0.0.6", nginx.stream)
      local port = select(2, s:getsockname())
      c = assert(ws.connect("ws://127.0.0.1:" .. nginx.stream .. "/ws", { sock = s, timeout = 3 }))
      assert(c:send("x"))
      assert.equal("x", c:receive(5))
      c:close()
      assert.truthy(H.wait_output(pp, "()connect 127%.0%.0%.6:" .. port .. " "))
    end)
    assert.falsy(pp.output():find("6.6.6.6", 1, true), pp.output())
  end)

  it("Forwarded appended by nginx (for= alone): a client's own proto=https does not make conn.scheme https", function()
    local l = loop.new()
    local server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l, logger = false,
      trusted_proxies = { "127.0.0.1" }, forwarded_header = "forwarded" })
    server:route("/ws", function(conn) conn:send(conn.peer .. "|" .. conn.scheme) end)
    local nginx
    finally(function()
      if nginx then nginx.stop() end
      server:close()
    end)
    nginx = H.nginx_in_front { w1 = server.port, subs = {
      ["proxy_set_header X-Real-IP $remote_addr;"] = 'proxy_set_header Forwarded "$http_forwarded, for=$remote_addr";' } }
    H.run_task(l, 20, function()
      local s = connect_from("127.0.0.10", nginx.http)
      local c = assert(ws.connect("ws://127.0.0.1:" .. nginx.http .. "/ws",
        { sock = s, timeout = 3, headers = { Forwarded = "for=6.6.6.6;proto=https" } }))
      assert.equal("127.0.0.10|http", c:receive(3))
      c:close()
    end)
  end)

  it("proxy_read_timeout below the ping interval: nginx cuts the quiet WebSocket and the server lets it go", function()
    local w = H.start_lua("examples/echo.lua", "--trusted-proxy 127.0.0.1 --ping 5", "pf-nginx-quiet")
    local nginx
    finally(function()
      if nginx then nginx.stop() end
      w.stop()
    end)
    nginx = H.nginx_in_front { w1 = w.port, subs = { ["proxy_read_timeout 75s"] = "proxy_read_timeout 1s" } }
    task(20, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. nginx.http .. "/ws", { ping_interval = false }))
      assert(c:send("once"))
      assert.equal("once", c:receive(3))
      local t0 = gettime()
      local data, err = c:receive(5)
      local took = gettime() - t0
      assert.is_nil(data)
      assert.equal("closed", err)
      assert.truthy(took > 0.8 and took < 2.5, "cut after " .. took)
      assert.truthy(H.wait_output(w, "()disconnect 127%.0%.0%.1 %(1006", 2), w.output())
    end)
  end)
end)

describe("behind the real HAProxy, layer 4 #slow", function()
  -- HAProxy in TCP mode before a --proxy-protocol echo server: send-proxy-v2
  -- with extra: more server-line options; tunnel: its timeout
  local function start(pp, extra, tunnel)
    local port = H.free_port()
    local cfg = table.concat({
      "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 30s", "  timeout server 30s",
      "  timeout tunnel " .. (tunnel or "30s"),
      "frontend f", "  bind 127.0.0.1:" .. port, "  default_backend b",
      "backend b",
      "  option httpchk GET /healthz", "  http-check expect status 200",
      "  unique-id-format %{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt",
      "  server p1 127.0.0.1:" .. pp.port .. " send-proxy-v2 " .. (extra or ""), "" }, "\n")
    local proc = H.start_haproxy(cfg, port)
    proc.port = port
    return proc
  end

  it("TLVs (CRC32C, unique id) and LOCAL health checks: the server stays up and names the client", function()
    local pp = H.start_lua("examples/echo.lua", "--proxy-protocol --trusted-proxy 127.0.0.1 --healthz", "pf-hap-pp")
    local hap
    finally(function()
      if hap then hap.stop() end
      pp.stop()
    end)
    hap = start(pp, "proxy-v2-options crc32c,unique-id check inter 200ms fall 1 rise 1")
    socket.sleep(1)                           -- five health checks, each a LOCAL header
    task(20, function()
      local s = connect_from("127.0.0.9", hap.port)
      local port = select(2, s:getsockname())
      local c = assert(ws.connect("ws://127.0.0.1:" .. hap.port .. "/ws", { sock = s, timeout = 3 }))
      assert(c:send(("t"):rep(70000), "binary"))
      assert.equal(("t"):rep(70000), c:receive(5))
      c:close()
      assert.truthy(H.wait_output(pp, "()connect 127%.0%.0%.9:" .. port .. " "), pp.output())
    end)
    assert.falsy(hap.output():find("is DOWN", 1, true), hap.output())
    assert.falsy(pp.output():find("refused: PROXY", 1, true), pp.output())
  end)

  it("timeout tunnel: a quiet tunnel is cut by HAProxy and the server lets it go; pings keep one open", function()
    local quiet = H.start_lua("examples/echo.lua", "--proxy-protocol --trusted-proxy 127.0.0.1", "pf-hap-quiet")
    local pinged = H.start_lua("examples/echo.lua", "--proxy-protocol --trusted-proxy 127.0.0.1 --ping 0.3",
      "pf-hap-ping")
    local h1, h2
    finally(function()
      for _, p in ipairs { h1, h2, quiet, pinged } do if p then p.stop() end end
    end)
    h1, h2 = start(quiet, nil, "1s"), start(pinged, nil, "1s")
    task(20, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. h1.port .. "/ws", { ping_interval = false }))
      local t0 = gettime()
      local data, err = c:receive(5)
      local took = gettime() - t0
      assert.is_nil(data)
      assert.equal("closed", err)
      assert.truthy(took > 0.8 and took < 2.5, "cut after " .. took)
      -- the server saw the end (no connection left to it)
      assert.truthy(H.wait_output(quiet, "()disconnect 127%.0%.0%.1:%d+ %(1006", 2), quiet.output())
      c = assert(ws.connect("ws://127.0.0.1:" .. h2.port .. "/ws", { ping_interval = false }))
      assert.same({ nil, "timeout" }, { c:receive(2.5) })   -- 2.5 s quiet but for the server's pings
      assert(c:send("alive"))
      assert.equal("alive", c:receive(3))
      c:close()
    end)
  end)
end)
