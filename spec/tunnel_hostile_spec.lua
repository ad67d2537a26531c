-- ws.connect through a hostile HTTP proxy (spec/peers/evil_proxy.py: the
-- CONNECT target's host name picks the misbehaviour): every answer it can
-- give ends in a connection or a clean nil, err within the timeout, the
-- loop ticking all along; credentials reach it as the right Basic header
-- and never show in an error.
local ws = require "ws"
local loop = require "ws.loop"
local tunnel = require "ws.tunnel"
local H = require "spec.helpers"
local socket = require "socket"

local function start_proxy()
  return H.start_server(function(port)
    return string.format("exec python3 %s/spec/peers/evil_proxy.py %d", H.ROOT, port)
  end, "evil-proxy")
end

-- Run fn as a task of l beside a ticker; returns the ticker's longest gap.
local function ticking(l, secs, fn)
  local done, max_gap = false, 0
  H.run_task(l, secs, function()
    l:spawn(function()
      local last = socket.gettime()
      while not done do
        l:sleep(0.01)
        local now = socket.gettime()
        max_gap, last = math.max(max_gap, now - last), now
      end
    end)
    local ok, err = loop.xpcall(fn, debug.traceback)   -- (5.1: a task may wait inside it)
    done = true
    if not ok then error(err, 0) end
  end)
  return max_gap
end

describe("ws.connect through a hostile proxy", function()
  it("fails cleanly, in time, on every bad answer; takes the odd good ones", function()
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, logger = false })
    srv:route("/ws", H.echo)
    local proxy = start_proxy()
    finally(function() proxy.stop(); H.stop_server(srv, l) end)
    local P = "http://127.0.0.1:" .. proxy.port
    local sp = srv.port
    local cases = {
      -- { target, timeout, error pattern (nil: connects), status, at least, at most (s) }
      { "ws://extra.test:1/ws", 3, "^proxy http://127%.0%.0%.1:%d+: sent bytes after its 2xx answer$" },
      { "ws://nohead.test:1/ws", 0.6, "^proxy http://127%.0%.0%.1:%d+: timeout$", nil, 0.55, 2 },
      { "ws://huge.test:1/ws", 3, "^proxy http://127%.0%.0%.1:%d+: too large$", nil, 0, 2 },
      -- (a 2xx's Content-Length is no body, RFC 9110 section 9.3.6: those bytes would be the server's)
      { "ws://cl200.test:1/ws", 3, "^proxy http://127%.0%.0%.1:%d+: sent bytes after its 2xx answer$" },
      -- (bare LF line ends: refused, as in the server's own answer)
      { "ws://barelf.test:" .. sp .. "/ws", 3, "^proxy http://127%.0%.0%.1:%d+: malformed answer$" },
      { "ws://h2.test:1/ws", 3, "^proxy http://127%.0%.0%.1:%d+: malformed answer$" },
      { "ws://status204.test:" .. sp .. "/ws", 3 },
      { "ws://http10.test:" .. sp .. "/ws", 3 },
      { "ws://noreason.test:" .. sp .. "/ws", 3 },
      -- (curl and Go fail a CONNECT on any 1xx too)
      { "ws://interim.test:1/ws", 3, ": answered 100 Continue$", 100 },
      { "ws://p407cl.test:1/ws", 3, ": answered 407 Proxy Authentication Required$", 407 },
      { "ws://p407chunked.test:1/ws", 3, ": answered 407 Proxy Authentication Required$", 407 },
      { "ws://p302.test:1/ws", 3, ": answered 302 Found$", 302 },
      { "ws://close.test:1/ws", 3, "^proxy http://127%.0%.0%.1:%d+: closed$" },
      { "wss://rst.test:1/ws", 3, "^tls handshake failed: " },
      -- one byte per 50 ms: 39 bytes take 2 s
      { "ws://drip.test:" .. sp .. "/ws", 0.5, "^proxy http://127%.0%.0%.1:%d+: timeout$", nil, 0.45, 1.5 },
      { "ws://drip.test:" .. sp .. "/ws", 5 },
    }
    local gap = ticking(l, 60, function()
      for _, c in ipairs(cases) do
        local t0 = socket.gettime()
        local conn, err, res = ws.connect(c[1], { proxy = P, timeout = c[2], max_header = 4096 })
        local took = socket.gettime() - t0
        if c[3] then
          assert.is_nil(conn, c[1])
          assert.matches(c[3], err, 1, c[1])
          assert.equal(c[4], res and res.status, c[1])
        else
          assert(conn, c[1] .. ": " .. tostring(err))
          assert.is_true(conn:send("hello"))
          assert.equal("hello", conn:receive(5))
          conn:close()
        end
        assert.is_true(took >= (c[5] or 0) and took <= (c[6] or c[2] + 1), c[1] .. " took " .. took)
      end
    end)
    assert.is_true(gap < 0.25, "the loop stalled " .. gap .. " s")
  end)

  it("sends percent-decoded credentials as Basic, a name for the proxy, [::1]:PORT for IPv6", function()
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, logger = false })
    srv:route("/ws", H.echo)
    local proxy = start_proxy()
    finally(function() proxy.stop(); H.stop_server(srv, l) end)
    local gap = ticking(l, 30, function()
      -- the proxy by name (looked up through ws.resolve)
      local url = "http://us%3Aer:p%3Aa%40%25s%2Fs@localhost:" .. proxy.port
      local conn, err = ws.connect("ws://127.0.0.1:" .. srv.port .. "/ws", { proxy = url, timeout = 5 })
      assert(conn, err)
      conn:close()
      conn, err = ws.connect("ws://[::1]:" .. srv.port .. "/ws", { proxy = url, timeout = 5 })
      assert(conn, err)
      conn:close()
      -- a refusal's error names the proxy without the credentials
      conn, err = ws.connect("ws://p407cl.test:1/ws", { proxy = url, timeout = 5 })
      assert.is_nil(conn)
      assert.equal("proxy http://localhost:" .. proxy.port .. ": answered 407 Proxy Authentication Required", err)
    end)
    assert.is_true(gap < 0.25, "the loop stalled " .. gap .. " s")
    local out = proxy.output()
    assert.matches('"line": "CONNECT 127%.0%.0%.1:' .. srv.port .. ' HTTP/1%.1", "auth": "us:er:p:a@%%s/s"', out)
    assert.matches('"line": "CONNECT %[::1%]:' .. srv.port .. ' HTTP/1%.1"', out)
  end)

  it("never takes the environment's proxy for loopback, however the address is spelt (as Go)", function()
    local env = function(name) return ({ http_proxy = "http://p:1" })[name] end
    for _, host in ipairs { "127.0.0.1", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1", "::FFFF:127.0.0.1", "::ffff:7f00:1" } do
      assert.is_nil(tunnel.pick("ws", host, 80, nil, env), host)
    end
    for _, host in ipairs { "::2", "::ffff:10.0.0.1", "128.0.0.1", "example.com" } do
      assert.equal("p", tunnel.pick("ws", host, 80, nil, env).host, host)
    end
  end)

  it("never names the credentials in an error, even in a URL it cannot use", function()
    for _, url in ipairs {
      "user:s3cret@127.0.0.1:3128", "http://user:s3@cret@127.0.0.1:3128", "socks5://user:s3cret@h:1",
      "http://user:s3cret@h:0", "http://user:s3cret%zz@h:1", "http://user:s3cret@:80", "http://user:s3/cret@h:1",
    } do
      local p, err = tunnel.parse(url)
      local shown = p and p.url or err
      assert.is_nil(shown:find("s3", 1, true), url .. " -> " .. shown)
      assert.is_nil(shown:find("user", 1, true), url .. " -> " .. shown)
    end
    local conn, err = ws.connect("ws://127.0.0.1:1/", { proxy = "socks5://user:s3cret@127.0.0.1:1080" })
    assert.is_nil(conn)
    assert.equal("proxy socks5://127.0.0.1:1080: only http:// proxies are supported (CONNECT)", err)
  end)
end)
