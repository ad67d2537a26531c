-- lua-ws behind the real Debian nginx and HAProxy, started on loopback
-- ports with examples/deploy/nginx.conf and haproxy.cfg themselves (ports,
-- certificates and timeouts templated), in front of examples/echo.lua.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

local HAPROXY = read(H.ROOT .. "/examples/deploy/haproxy.cfg")
local SIZES = { 0, 125, 126, 65535, 65536, 1024 * 1024 }

-- a TCP socket connected to 127.0.0.1:port from the address `from` (any
-- 127/8 address is local on Linux): a client the servers do not trust
local function connect_from(from, port)
  local s = socket.tcp()
  assert(s:bind(from, 0))
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  return s
end

local function echo_all(c)
  for _, n in ipairs(SIZES) do
    local text = string.rep("é", math.floor(n / 2)) .. string.rep("a", n % 2)
    assert(c:send(text))
    assert.same({ text, "text" }, { c:receive(10) })
    local bin = string.rep("\0\255", math.floor(n / 2)) .. string.rep("\1", n % 2)
    assert(c:send(bin, "binary"))
    assert.same({ bin, "binary" }, { c:receive(10) })
  end
end

-- run fn as a task of a fresh loop (clients wait through it)
local function task(secs, fn)
  H.run_task(loop.new(), secs, fn)
end

-- echo_all from a client at address `from` through port; the client's port
local function echo_from(from, port)
  local client_port
  task(30, function()
    local s = connect_from(from, port)
    client_port = select(2, s:getsockname())
    local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { sock = s }))
    echo_all(c)
    c:close()
  end)
  return client_port
end

local function echo_server(args, name)
  return H.start_lua("examples/echo.lua", args, name)
end

describe("behind nginx #slow", function()
  local ca, w1, w2, pp, nginx, HTTP, TLS, STREAM
  setup(function()
    ca = H.throwaway_ca()
    -- two upstream workers with pings below nginx's (templated) 3 s read timeout
    w1 = echo_server("--trusted-proxy 127.0.0.1 --ping 1 --same-origin", "nginx-w1")
    w2 = echo_server("--trusted-proxy 127.0.0.1 --ping 1 --same-origin", "nginx-w2")
    pp = echo_server("--proxy-protocol --trusted-proxy 127.0.0.1", "nginx-pp")
    nginx = H.nginx_in_front { w1 = w1.port, w2 = w2.port, pp = pp.port, tls = ca,
      subs = { ["proxy_read_timeout 75s"] = "proxy_read_timeout 3s" } }
    HTTP, TLS, STREAM = nginx.http, nginx.tls, nginx.stream
  end)
  teardown(function()
    for _, p in ipairs { nginx, w1, w2, pp } do if p then p.stop() end end
    if ca then H.sh("rm -rf " .. H.shell_quote(ca)) end
  end)

  -- the server log line for the connection whose client port (as the
  -- server saw it) or address is `who`
  local function connect_line(who)
    local pat = "connect " .. who:gsub("%.", "%%.") .. "[ :]"
    local deadline = gettime() + 3
    repeat
      for _, p in ipairs { w1, w2, pp } do
        if p.output():find(pat) then return true end
      end
      socket.sleep(0.05)
    until gettime() > deadline
    return false
  end

  it("text and binary echo up to 1 MiB through the HTTP proxy", function()
    task(60, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws"))
      echo_all(c)
      c:close()
    end)
  end)

  it("wss:// terminated at nginx; X-Forwarded-Proto https reaches the server", function()
    task(60, function()
      local c = assert(ws.connect("wss://localhost:" .. TLS .. "/ws", { tls = { cafile = ca .. "/ca.pem" } }))
      echo_all(c)
      c:close()
    end)
  end)

  it("a browser-style Origin with a port passes the default same-origin check (Host $http_host)", function()
    task(30, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws", { origin = "http://127.0.0.1:" .. HTTP }))
      assert(c:send("hi"))
      assert.equal("hi", c:receive(5))
      c:close()
      local bad, err = ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws", { origin = "http://evil.example:" .. HTTP })
      assert.is_nil(bad)
      assert.truthy(err:find("403"))
    end)
  end)

  it("with Host $host instead (the port dropped) the same browser is refused: the line that matters", function()
    local other = H.nginx_in_front { w1 = w1.port, w2 = w2.port, pp = pp.port,
      subs = { ["proxy_set_header Host $http_host;"] = "proxy_set_header Host $host;" } }
    local port = other.http
    finally(other.stop)
    task(30, function()
      local c, err = ws.connect("ws://127.0.0.1:" .. port .. "/ws", { origin = "http://127.0.0.1:" .. port })
      assert.is_nil(c)
      assert.truthy(err:find("403"))
    end)
  end)

  it("a forged X-Forwarded-For is ignored: conn.peer is the real client", function()
    task(30, function()
      local s = connect_from("127.0.0.2", HTTP)
      local c = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws",
        { sock = s, headers = { ["X-Forwarded-For"] = "6.6.6.6", ["X-Real-IP"] = "6.6.6.7" } }))
      assert(c:send("x"))
      assert.equal("x", c:receive(5))
      c:close()
    end)
    assert.is_true(connect_line("127.0.0.2"))
    for _, p in ipairs { w1, w2 } do
      assert.falsy(p.output():find("connect 6%.6%.6%.[67]"))
      assert.falsy(p.output():find("connect 127%.0%.0%.1:"))   -- never nginx's own address
    end
  end)

  it("PROXY protocol v1 from the stream proxy gives the client's address and port", function()
    local port = echo_from("127.0.0.3", STREAM)
    assert.is_true(connect_line("127.0.0.3:" .. port))
  end)

  it("an idle connection outlives nginx's 3 s read timeout thanks to ping_interval = 1", function()
    task(30, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws"))
      assert.same({ nil, "timeout" }, { c:receive(5) })   -- 5 s idle (pings are answered inside)
      assert.equal("open", c.state)
      assert(c:send("still here"))
      assert.equal("still here", c:receive(5))
      c:close()
    end)
  end)
end)

describe("conformance through nginx #slow", function()
  it("the Autobahn-shaped server suite passes through examples/deploy/nginx.conf (but section 8, HTTP)", function()
    local out = H.run(string.format("cd %s && WS_CONFORMANCE_VIA=nginx timeout 600 %s /usr/bin/busted -o TAP %s 2>&1",
      H.shell_quote(H.ROOT), H.LUA, "spec/conformance_spec.lua"))
    local ok = select(2, out:gsub("\nok %d+", ""))
    assert.falsy(out:find("\nnot ok "), out:match("\nnot ok [^\n]*") or "")
    assert.truthy(ok > 150, ok .. " cases passed\n" .. out:sub(-1500))
  end)
end)

describe("behind HAProxy #slow", function()
  local ca, w1, w2, pp, haproxy, HTTP, TLS, TCP
  setup(function()
    ca = H.throwaway_ca()
    assert(H.sh("cat " .. ca .. "/server.pem " .. ca .. "/server.key > " .. ca .. "/both.pem"))
    w1 = echo_server("--trusted-proxy 127.0.0.1 --healthz --linger 4 --grace 30 --same-origin", "haproxy-w1")
    w2 = echo_server("--trusted-proxy 127.0.0.1 --healthz --same-origin", "haproxy-w2")
    pp = echo_server("--proxy-protocol --trusted-proxy 127.0.0.1", "haproxy-pp")
    HTTP, TLS, TCP = H.free_port(), H.free_port(), H.free_port()
    haproxy = H.start_haproxy(H.template(HAPROXY, {
      ["127.0.0.1:9001"] = "127.0.0.1:" .. w1.port,
      ["127.0.0.1:9002"] = "127.0.0.1:" .. w2.port,
      ["127.0.0.1:9003"] = "127.0.0.1:" .. pp.port,
      ["127.0.0.1:8080"] = "127.0.0.1:" .. HTTP,
      ["127.0.0.1:8443"] = "127.0.0.1:" .. TLS,
      ["127.0.0.1:8081"] = "127.0.0.1:" .. TCP,
      ["/etc/ssl/lua-ws/server-and-key.pem"] = ca .. "/both.pem",
      ["timeout tunnel 75s"] = "timeout tunnel 3s",
    }), HTTP)
    -- both servers UP (rise 2, inter 1s)
    socket.sleep(2.5)
  end)
  teardown(function()
    for _, p in ipairs { haproxy, w1, w2, pp } do if p then p.stop() end end
    if ca then H.sh("rm -rf " .. H.shell_quote(ca)) end
  end)

  it("text and binary echo up to 1 MiB, and over wss:// terminated at HAProxy", function()
    task(60, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws", { origin = "http://127.0.0.1:" .. HTTP }))
      echo_all(c)
      c:close()
      c = assert(ws.connect("wss://localhost:" .. TLS .. "/ws", { tls = { cafile = ca .. "/ca.pem" } }))
      echo_all(c)
      c:close()
    end)
  end)

  it("a forged X-Forwarded-For is ignored: conn.peer is the real client", function()
    task(30, function()
      local s = connect_from("127.0.0.4", HTTP)
      local c = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws",
        { sock = s, headers = { ["X-Forwarded-For"] = "6.6.6.6" } }))
      assert(c:send("x"))
      assert.equal("x", c:receive(5))
      c:close()
    end)
    local out = w1.output() .. w2.output()
    assert.truthy(out:find("connect 127%.0%.0%.4 "))
    assert.falsy(out:find("connect 6%.6%.6%.6"))
  end)

  it("PROXY protocol v2 (send-proxy-v2) gives the client's address and port", function()
    local port = echo_from("127.0.0.5", TCP)
    assert.truthy(H.wait_output(pp, "()connect 127%.0%.0%.5:" .. port .. " "))
  end)

  it("a draining server leaves the rotation (/healthz) while the other keeps serving", function()
    task(60, function()
      -- a client on each server (leastconn: the second goes to the other)
      local a = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws"))
      local b = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws"))
      for _, c in ipairs { a, b } do assert(c:send("before")); assert.equal("before", c:receive(5)) end
      local pid = w1.pid
      assert(H.sh("kill -TERM " .. pid))    -- w1 drains: /healthz 503 for 4 s, then 1001s over 30 s
      socket.sleep(0)
      local deadline = gettime() + 5
      while not w1.output():find("draining") and gettime() < deadline do loop.current():sleep(0.05) end
      -- taken out by the health check's 503, while w1 still accepts (inter
      -- 1s, fall 1: within a second or so; w1 lingers 4 s, after which a
      -- check would fail at layer 4, not with this 503)
      local down = "Server lua_ws/w1 is DOWN, reason: Layer7 wrong status, code: 503"
      deadline = gettime() + 10
      while not haproxy.output():find(down, 1, true) and gettime() < deadline do loop.current():sleep(0.05) end
      assert.truthy(haproxy.output():find(down, 1, true), haproxy.output())
      assert.falsy(haproxy.output():find("Server lua_ws/w2 is DOWN"))
      -- every new connection now lands on w2, and works
      local before = select(2, w2.output():gsub("%d connect ", ""))
      for i = 1, 10 do
        local c = assert(ws.connect("ws://127.0.0.1:" .. HTTP .. "/ws"))
        assert(c:send("n" .. i))
        assert.equal("n" .. i, c:receive(5))
        c:close()
      end
      assert.equal(before + 10, select(2, w2.output():gsub("%d connect ", "")))
      -- the connections already open keep working until their 1001
      for _, c in ipairs { a, b } do
        local m, err = c:send("after")
        if m then
          local got = c:receive(5)
          assert.truthy(got == "after" or (got == nil and c.close_code == 1001))
        else
          assert.equal(1001, c.close_code, err)
        end
      end
      a.sock:close(); b.sock:close()
    end)
  end)
end)

-- The template unit's instances as systemd runs them: each as the user the
-- unit names (User= with %i expanded; without one, DynamicUser makes one
-- per instance from the unit's name), here through setpriv with a UID per
-- distinct user. SO_REUSEPORT joins only listeners of one UID.
describe("examples/deploy/lua-ws@.service #slow", function()
  local UNIT = read(H.ROOT .. "/examples/deploy/lua-ws@.service")
  local function field(k) return UNIT:match("\n" .. k .. "=([^\n]*)") end

  it("two instances listen on the one port: they run as one user", function()
    if not H.sh("[ \"$(id -u)\" = 0 ] && command -v setpriv >/dev/null") then
      pending("needs root and setpriv")
      return
    end
    assert.equal("yes", field("DynamicUser"))
    local function user(i) return field("User") and field("User"):gsub("%%i", i) or "lua-ws@" .. i end
    local port = H.free_port()
    local exec = field("ExecStart"):gsub("^/usr/bin/lua5%.4", H.LUA):gsub("/opt/lua%-ws", H.ROOT)
      :gsub("%-%-port %d+", "--port " .. port):gsub("%-%-host [%d.]+", "--host 127.0.0.1")
    local uids, next_uid, procs = {}, 61200, {}
    finally(function() for _, proc in ipairs(procs) do proc.stop() end end)   -- (busted keeps one finally per test)
    for i = 1, 2 do
      local u = user(i)
      if not uids[u] then uids[u], next_uid = next_uid, next_uid + 1 end
      local proc = H.spawn(string.format("exec setpriv --reuid=%d --regid=%d --clear-groups %s",
        uids[u], uids[u], exec), "unit-" .. i)
      procs[i] = proc
      assert.truthy(H.wait_output(proc, "echo server on", 5), "instance " .. i .. ": " .. proc.output())
    end
  end)
end)
