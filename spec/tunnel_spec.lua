-- ws.connect through an HTTP proxy (CONNECT): which proxy a URL takes
-- (the option, the environment, no_proxy, loopback), and ws:// and wss://
-- through a real tinyproxy, with and without its credentials; a proxy that
-- is down or never answers.
local ws = require "ws"
local loop = require "ws.loop"
local tunnel = require "ws.tunnel"
local H = require "spec.helpers"
local socket = require "socket"

local q = H.shell_quote
local HAVE_TINYPROXY = H.sh("command -v tinyproxy >/dev/null 2>&1")

-- A tinyproxy on a free loopback port; auth: "user password" or nil.
-- Its log (LogLevel Connect) names every tunnel it opened.
local function start_tinyproxy(auth, name)
  local dir = H.tmpdir()
  local p = H.start_server(function(port)
    local conf = table.concat({
      "Port " .. port, "Listen 127.0.0.1", "Timeout 30", "LogLevel Connect", "MaxClients 64",
      "Allow 127.0.0.1", "DisableViaHeader Yes", auth and ("BasicAuth " .. auth) or "",
    }, "\n") .. "\n"
    local f = assert(io.open(dir .. "/tp.conf", "w"))
    f:write(conf)
    f:close()
    return "exec tinyproxy -d -c " .. q(dir .. "/tp.conf")
  end, name or "tinyproxy", 10)
  local stop = p.stop
  function p.stop() stop(); H.sh("rm -rf " .. q(dir)) end
  p.url = "http://127.0.0.1:" .. p.port
  return p
end

-- A ws:// or wss:// echo server in loop l.
local function echo_server(l, tls)
  local srv = assert(ws.listen { port = 0, loop = l, logger = false, tls = tls })
  srv:route("/ws", H.echo)
  return srv
end

describe("ws.tunnel: which proxy a URL takes", function()
  local function env(t) return function(name) return t[name] end end

  it("parses proxy URLs, with credentials percent-decoded into Basic auth", function()
    local p = assert(tunnel.parse("http://al%40ice:p%3Ass@proxy.example:3128"))
    assert.same({ host = "proxy.example", port = 3128, auth = "Basic YWxAaWNlOnA6c3M=",
      url = "http://proxy.example:3128" }, p)
    p = assert(tunnel.parse("proxy.example"))          -- no scheme: http://, port 80 (as curl)
    assert.same({ "proxy.example", 80 }, { p.host, p.port })
    p = assert(tunnel.parse("http://[::1]:8080/"))
    assert.same({ "::1", 8080 }, { p.host, p.port })
    for _, bad in ipairs { "socks5://h:1080", "https://h:443", "http://h:0", "http://h:70000", "http://:80" } do
      local np, err = tunnel.parse(bad)
      assert.is_nil(np)
      assert.matches("^proxy ", err)
    end
    local _, err = tunnel.parse("http://a:%zz@h:1")
    assert.matches("bad percent%-encoding", err)
  end)

  it("base64 (ws.core's, for Basic credentials) matches RFC 4648's vectors, and binary bytes", function()
    local want = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
      foobar = "Zm9vYmFy", ["\0\255\254"] = "AP/+" }
    for s, b in pairs(want) do assert.equal(b, require("ws.core").base64(s)) end
  end)

  it("reads the environment as curl and Go do", function()
    local e = { https_proxy = "http://s:1", http_proxy = "http://p:2", ALL_PROXY = "http://a:3" }
    assert.equal("s", tunnel.pick("wss", "example.com", 443, nil, env(e)).host)
    assert.equal("p", tunnel.pick("ws", "example.com", 80, nil, env(e)).host)
    -- all_proxy for the rest; lower case first
    assert.equal("a", tunnel.pick("ws", "example.com", 80, nil, env { ALL_PROXY = "http://a:3" }).host)
    assert.equal("l", tunnel.pick("ws", "x.org", 80, nil, env { http_proxy = "l:1", HTTP_PROXY = "u:1" }).host)
    assert.equal("u", tunnel.pick("ws", "x.org", 80, nil, env { http_proxy = "", HTTP_PROXY = "u:1" }).host)
    -- never for loopback hosts
    for _, host in ipairs { "localhost", "LOCALHOST", "a.localhost", "127.0.0.1", "127.9.8.7", "::1" } do
      assert.is_nil(tunnel.pick("ws", host, 80, nil, env(e)), host)
    end
    -- no_proxy: names cover subdomains, ports must match when given, "*" is everything
    local n = { http_proxy = "http://p:2", no_proxy = "example.com, .internal,10.1.2.3,[fd00::1]:8080,api.x:81" }
    for _, c in ipairs {
      { "example.com", 80, true }, { "www.example.com", 80, true }, { "notexample.com", 80, false },
      { "db.internal", 80, true }, { "internal", 80, true }, { "10.1.2.3", 80, true }, { "10.1.2.30", 80, false },
      { "fd00::1", 8080, true }, { "fd00::1", 80, false }, { "api.x", 81, true }, { "api.x", 80, false },
    } do
      local picked = tunnel.pick("ws", c[1], c[2], nil, env(n))
      assert.equal(c[3], picked == nil, c[1] .. ":" .. c[2])
    end
    assert.is_nil(tunnel.pick("ws", "x.org", 80, nil, env { http_proxy = "p:1", NO_PROXY = "*" }))
    -- inside a CGI request HTTP_PROXY is the client's "Proxy:" header: not read
    assert.is_nil(tunnel.pick("ws", "x.org", 80, nil, env { HTTP_PROXY = "evil:1", REQUEST_METHOD = "GET" }))
    -- the option wins: false is none, a URL is used even for loopback
    assert.is_nil(tunnel.pick("ws", "x.org", 80, false, env(e)))
    assert.equal("o", tunnel.pick("ws", "127.0.0.1", 80, "http://o:1", env(e)).host)
    local p, err = tunnel.pick("ws", "x.org", 80, nil, env { http_proxy = "socks5://s:1080" })
    assert.is_nil(p)
    assert.matches("only http:// proxies", err)
  end)

  it("ws.connect checks the option's type, and fails on a proxy it cannot use", function()
    assert.has_error(function() ws.connect("ws://127.0.0.1:1/", { proxy = 1 }) end)
    local conn, err = ws.connect("ws://127.0.0.1:1/", { proxy = "socks5://127.0.0.1:1080" })
    assert.is_nil(conn)
    assert.matches("only http:// proxies are supported", err)
  end)
end)

describe("ws.connect through an HTTP proxy", function()
  if not HAVE_TINYPROXY then
    it("needs tinyproxy (scripts/deps.sh installs it)", function() error("tinyproxy is not installed") end)
    return
  end

  it("tunnels ws:// and wss:// through tinyproxy with its credentials; without them, 407", function()
    local dir = H.throwaway_ca()
    local l = loop.new()
    local plain, secure = echo_server(l), echo_server(l, { certificate = dir .. "/server.pem", key = dir .. "/server.key" })
    local tp = start_tinyproxy("alice s3cr3t", "tinyproxy-auth")
    finally(function()
      tp.stop()
      H.stop_server(plain, l)
      H.stop_server(secure, l)
      H.sh("rm -rf " .. q(dir))
    end)
    local good = "http://alice:s3cr3t@127.0.0.1:" .. tp.port
    H.run_task(l, 30, function()
      for _, c in ipairs {
        { "ws://127.0.0.1:" .. plain.port .. "/ws", plain.port },
        { "wss://127.0.0.1:" .. secure.port .. "/ws", secure.port },
      } do
        local conn = assert(ws.connect(c[1], { proxy = good, timeout = 5, tls = { cafile = dir .. "/ca.pem" } }))
        assert.is_true(conn:send(("through the proxy "):rep(1000)))
        assert.equal(("through the proxy "):rep(1000), conn:receive(5))
        conn:close()
        -- the proxy opened that tunnel (not a direct connection)
        assert.matches("127%.0%.0%.1:" .. c[2], tp.output())
      end
      local conn, err, res = ws.connect("ws://127.0.0.1:" .. plain.port .. "/ws",
        { proxy = "http://alice:wrong@127.0.0.1:" .. tp.port, timeout = 5 })
      assert.is_nil(conn)
      -- (tinyproxy 1.11 refuses bad credentials with 401, not 407)
      assert.equal("proxy http://127.0.0.1:" .. tp.port .. ": answered 401 Unauthorized", err)
      assert.equal(401, res.status)
      assert.is_nil(err:find("wrong", 1, true))   -- (credentials stay out of errors)
    end)
  end)

  it("says which proxy failed: down, or silent past the timeout (the loop runs meanwhile)", function()
    local l = loop.new()
    local silent = assert(socket.bind("127.0.0.1", 0))   -- accepts into its backlog, never answers
    local _, sport = silent:getsockname()
    local dead = H.free_port()
    finally(function() silent:close() end)
    local ticks, max_gap = 0, 0
    H.run_task(l, 20, function()
      local done = false
      l:spawn(function()
        local last = socket.gettime()
        while not done do
          l:sleep(0.01)
          local now = socket.gettime()
          ticks, max_gap = ticks + 1, math.max(max_gap, now - last)
          last = now
        end
      end)
      local conn, err = ws.connect("ws://example.invalid:80/", { proxy = "http://127.0.0.1:" .. dead, timeout = 2 })
      assert.is_nil(conn)
      assert.matches("^proxy http://127%.0%.0%.1:" .. dead .. ": connect 127%.0%.0%.1:" .. dead .. ": connection refused", err)
      local t0 = socket.gettime()
      conn, err = ws.connect("ws://example.invalid:80/", { proxy = "http://127.0.0.1:" .. sport, timeout = 0.5 })
      local took = socket.gettime() - t0
      done = true
      assert.is_nil(conn)
      assert.equal("proxy http://127.0.0.1:" .. sport .. ": timeout", err)
      assert.is_true(took >= 0.45 and took < 2, "took " .. took)
    end)
    assert.is_true(ticks >= 20, "ticks " .. ticks)
    assert.is_true(max_gap < 0.25, "the loop stalled " .. max_gap .. " s")
  end)

  it("the ws command: --proxy, and the environment's http_proxy (not for loopback)", function()
    local tp = start_tinyproxy(nil, "tinyproxy-cli")
    local srv = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d", H.LUA, H.ROOT, port)
    end, "tunnel-cli-server")
    finally(function() tp.stop(); srv.stop() end)
    local url = "ws://127.0.0.1:" .. srv.port .. "/"
    local function ws_cmd(envs, args)
      local out, code = H.run(string.format("echo hello | %s timeout 20 %s %s/bin/ws %s %s 2>&1",
        envs, H.LUA, H.ROOT, url, args))
      return out, code
    end
    local out, code = ws_cmd("", "--proxy " .. tp.url)
    assert.equal(0, code, out)
    assert.matches("\nhello\n", out)
    assert.matches("127%.0%.0%.1:" .. srv.port, tp.output())
    -- a dead proxy in the environment: loopback goes direct
    out, code = ws_cmd("http_proxy=http://127.0.0.1:" .. H.free_port(), "")
    assert.equal(0, code, out)
    -- and --proxy to a dead one fails, naming it
    local dead = H.free_port()
    out, code = ws_cmd("", "--proxy http://127.0.0.1:" .. dead)
    assert.equal(1, code, out)
    assert.matches("proxy http://127%.0%.0%.1:" .. dead .. ": connect", out)
  end)

  it("the environment's proxy for a host that is not loopback (in a network namespace), and no_proxy", function()
    if not H.sh("unshare -rn true 2>/dev/null") then
      error("unshare -rn is not allowed here: this test needs a network namespace")
    end
    local dir = H.tmpdir()
    finally(function() H.sh("rm -rf " .. q(dir)) end)
    -- inside the namespace: 10.200.0.1 on lo, tinyproxy and `ws serve` on
    -- it, then the ws command with http_proxy set, once plain and once
    -- with no_proxy naming the server; tinyproxy's log says which went
    -- through it
    local script = table.concat({
      "set -e", "ROOT=$(cd " .. q(H.ROOT) .. " && pwd)", "cd " .. q(dir),
      "ip link set lo up", "ip addr add 10.200.0.1/32 dev lo",
      "printf 'Port 18080\\nListen 127.0.0.1\\nLogLevel Info\\nAllow 127.0.0.1\\nDisableViaHeader Yes\\n' > tp.conf",
      "tinyproxy -d -c tp.conf > tp.log 2>&1 & TP=$!",
      H.LUA .. " \"$ROOT/bin/ws\" serve --echo --host 10.200.0.1 --port 9000 > srv.log 2>&1 & SRV=$!",
      "trap 'kill $TP $SRV 2>/dev/null' EXIT",
      "for i in $(seq 1 100); do grep -q 'echo server on' srv.log && grep -q 'listening on fd' tp.log && break; sleep 0.05; done",
      "echo one | http_proxy=http://127.0.0.1:18080 timeout 20 " .. H.LUA ..
        " \"$ROOT/bin/ws\" ws://10.200.0.1:9000/ > one.out 2>&1",
      "grep -c '10.200.0.1' tp.log > via1 || true",
      "echo two | http_proxy=http://127.0.0.1:18080 no_proxy=10.200.0.1 timeout 20 " .. H.LUA ..
        " \"$ROOT/bin/ws\" ws://10.200.0.1:9000/ > two.out 2>&1",
      "grep -c '10.200.0.1' tp.log > via2 || true",
    }, "\n")
    local out, code = H.run("timeout 60 unshare -rn sh -c " .. q(script) .. " 2>&1")
    local function read(name)
      local f = io.open(dir .. "/" .. name)
      local s = f and f:read("*a") or "(no " .. name .. ")"
      if f then f:close() end
      return s
    end
    assert.equal(0, code, out .. read("srv.log") .. read("tp.log") .. read("one.out") .. read("two.out"))
    assert.matches("\none\n", read("one.out"))
    assert.matches("\ntwo\n", read("two.out"))
    local via1, via2 = tonumber(read("via1")), tonumber(read("via2"))
    assert.is_true(via1 >= 1, "the first went direct:\n" .. read("tp.log"))
    assert.equal(via1, via2, "no_proxy went through the proxy:\n" .. read("tp.log"))
  end)
end)
