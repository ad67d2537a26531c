-- TLS reload under pressure: reloads while many handshakes are in flight
-- (some stalled right after their ClientHello), files half-written or
-- missing at the moment of a reload, a reload storm (memory stays flat),
-- and `ws serve --cert/--key` with files it cannot use.
local ws = require "ws"
local loop = require "ws.loop"
local io_ = require "ws.io"
local tls_ = require "ws.tls"
local core = require "ws.core"
local H = require "spec.helpers"
local socket = require "socket"

local q = H.shell_quote
-- (under ASan, which make test-asan preloads, RSS holds its quarantine and
-- shadow of everything freed: there only the process's health is checked)
local ASAN = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil

local function own_rss()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local UPGRADE = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

describe("TLS reload under pressure", function()
  it("handshakes in flight (some stalled after their ClientHello) all finish across 20 reloads", function()
    local one, two, live = H.throwaway_ca(), H.throwaway_ca(), H.tmpdir()
    assert(H.sh(string.format("cp %s/server.pem %s/server.key %s/ && cat %s/ca.pem %s/ca.pem > %s/both.pem",
      q(one), q(one), q(live), q(one), q(two), q(live))))
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, logger = false,
      tls = { certificate = live .. "/server.pem", key = live .. "/server.key" } })
    srv:route("/ws", H.echo)
    local raw = {}
    finally(function()
      for _, c in ipairs(raw) do c:close() end
      H.stop_server(srv, l)
      H.sh("rm -rf " .. q(one) .. " " .. q(two) .. " " .. q(live))
    end)
    local both = live .. "/both.pem"
    local url = "wss://127.0.0.1:" .. srv.port .. "/ws"
    local cctx = assert(tls_.context({ cafile = both }, "client"))
    H.run_task(l, 60, function()
      local old = assert(ws.connect(url, { timeout = 5, tls = { cafile = both } }))
      -- 25 stalled: TCP, then one handshake step (the ClientHello goes out)
      for i = 1, 25 do
        local s = assert(socket.connect("127.0.0.1", srv.port))
        local fd = s:getfd()
        s:setfd(-1)
        local c = assert(core.wrap_fd(fd))
        raw[i] = c
        assert(c:starttls(cctx, "127.0.0.1"))
        local ok, err = c:handshake()
        assert.is_nil(ok)
        assert.equal("wantread", err)
      end
      local results, pending = {}, 50
      -- 25 full clients meanwhile
      for i = 1, 25 do
        l:spawn(function()
          local conn, err = ws.connect(url, { timeout = 10, tls = { cafile = both } })
          if conn then
            local ok = conn:send("c" .. i)
            local got = ok and conn:receive(10)
            conn:close()
            results[#results + 1] = got == "c" .. i or ("client " .. i .. ": echo " .. tostring(got))
          else
            results[#results + 1] = "client " .. i .. ": " .. tostring(err)
          end
          pending = pending - 1
        end)
      end
      -- the reloads, alternating the two certificates, while all that runs
      for r = 1, 20 do
        local from = r % 2 == 1 and two or one
        assert(H.sh(string.format("cp %s/server.pem %s/.p && cp %s/server.key %s/.k && mv %s/.p %s/server.pem"
          .. " && mv %s/.k %s/server.key", q(from), q(live), q(from), q(live), q(live), q(live), q(live), q(live))))
        local ok, err = srv:reload_tls()
        assert(ok, err)
        collectgarbage()   -- (an old context freed under a live session would show now)
        l:sleep(0.01)
      end
      -- the stalled ones finish now, and upgrade
      for i, c in ipairs(raw) do
        l:spawn(function()
          local deadline = socket.gettime() + 10
          local ok, err = tls_.handshake(c, deadline, l)
          if ok then ok, err = io_.write(c, UPGRADE, 1, deadline, l) end
          local head
          if ok then head, err = io_.read_head(c, deadline, 8192, nil, l) end
          results[#results + 1] = head and head:find("^HTTP/1%.1 101 ") ~= nil
            or ("stalled " .. i .. ": " .. tostring(err or head))
          pending = pending - 1
        end)
      end
      local deadline = socket.gettime() + 20
      while pending > 0 and socket.gettime() < deadline do l:sleep(0.02) end
      local bad = {}
      for _, r in ipairs(results) do if r ~= true then bad[#bad + 1] = r end end
      assert.equal(50, #results)
      assert.same({}, bad)
      -- the connection from before every reload still echoes
      assert.is_true(old:send("old"))
      assert.equal("old", old:receive(5))
      old:close()
    end)
  end)

  it("a key half-written or missing at the moment of the reload: refused, the old one serves", function()
    local one, two, live = H.throwaway_ca(), H.throwaway_ca(), H.tmpdir()
    assert(H.sh(string.format("cp %s/server.pem %s/server.key %s/", q(one), q(one), q(live))))
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, logger = false,
      tls = { certificate = live .. "/server.pem", key = live .. "/server.key" } })
    srv:route("/ws", H.echo)
    finally(function()
      H.stop_server(srv, l)
      H.sh("rm -rf " .. q(one) .. " " .. q(two) .. " " .. q(live))
    end)
    local url = "wss://127.0.0.1:" .. srv.port .. "/ws"
    H.run_task(l, 30, function()
      local function works()
        local c = assert(ws.connect(url, { timeout = 5, tls = { cafile = one .. "/ca.pem" } }))
        assert.is_true(c:send("x"))
        assert.equal("x", c:receive(5))
        c:close()
      end
      -- the new certificate in place, its key cut in half
      assert(H.sh(string.format("cp %s/server.pem %s/server.pem && head -c 100 %s/server.key > %s/server.key",
        q(two), q(live), q(two), q(live))))
      local ok, err = srv:reload_tls()
      assert.is_nil(ok)
      assert.matches("^tls: key: .*server%.key: cannot read a PEM key from it", err)
      works()
      -- the key gone (a renewal tool between its unlink and its write)
      assert(H.sh("rm " .. q(live .. "/server.key")))
      ok, err = srv:reload_tls()
      assert.is_nil(ok)
      assert.matches("^tls: key: .*server%.key: No such file or directory$", err)
      works()
      -- an empty certificate
      assert(H.sh(string.format(": > %s/server.pem && cp %s/server.key %s/", q(live), q(two), q(live))))
      ok, err = srv:reload_tls()
      assert.is_nil(ok)
      assert.matches("^tls: certificate: .*server%.pem: not a PEM certificate %(no start line%)$", err)
      works()
    end)
  end)

  it("a storm of reloads frees each old context (memory stays flat)", function()
    local dir = H.throwaway_ca()
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, logger = false,
      tls = { certificate = dir .. "/server.pem", key = dir .. "/server.key" } })
    finally(function()
      collectgarbage("restart")
      H.stop_server(srv, l)
      H.sh("rm -rf " .. q(dir))
    end)
    for _ = 1, 50 do assert(srv:reload_tls()) end   -- (the allocator's steady state)
    collectgarbage()
    -- with the collector stopped, as one that has not come round yet
    collectgarbage("stop")
    local before = own_rss()
    for _ = 1, 1000 do assert(srv:reload_tls()) end
    local grew = own_rss() - before
    collectgarbage("restart")
    assert.is_true(ASAN or grew < 3000, "1000 reloads grew the process by " .. grew .. " KiB")
  end)

  it("SIGHUP storm on `ws serve`: it stays responsive; descriptors and memory stay flat", function()
    local dir = H.throwaway_ca()
    local srv = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d --cert %s --key %s",
        H.LUA, H.ROOT, port, q(dir .. "/server.pem"), q(dir .. "/server.key"))
    end, "tls-hup-storm", 15)
    finally(function() srv.stop(); H.sh("rm -rf " .. q(dir)) end)
    local function echo()
      local c, err = ws.connect("wss://127.0.0.1:" .. srv.port .. "/", { timeout = 5, tls = { cafile = dir .. "/ca.pem" } })
      assert(c, err)
      assert.is_true(c:send("hi"))
      assert.equal("hi", c:receive(5))
      c:close(1000, "", 2)
    end
    echo()
    local fds, rss = H.fd_count(srv.pid), H.rss_kib(srv.pid)
    for _ = 1, 5 do
      for _ = 1, 100 do assert(H.sh("kill -HUP " .. srv.pid)) end
      echo()
    end
    assert.is_true(srv.alive())
    assert.matches("SIGHUP: TLS certificate reloaded", srv.output())
    assert.equal(fds, H.fd_settled(srv.pid, fds))
    local grew = H.rss_kib(srv.pid) - rss
    assert.is_true(ASAN or grew < 2500, "500 HUPs grew it by " .. grew .. " KiB")
  end)

  it("--workers: a HUP while the key is unusable leaves every worker on the old certificate, serving", function()
    local one, two, live = H.throwaway_ca(), H.throwaway_ca(), H.tmpdir()
    assert(H.sh(string.format("cp %s/server.pem %s/server.key %s/", q(one), q(one), q(live))))
    local srv = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d --workers 2 --cert %s --key %s",
        H.LUA, H.ROOT, port, q(live .. "/server.pem"), q(live .. "/server.key"))
    end, "tls-hup-workers", 15)
    finally(function() srv.stop(); H.sh("rm -rf " .. q(one) .. " " .. q(two) .. " " .. q(live)) end)
    local function echo(ca)
      local c, err = ws.connect("wss://127.0.0.1:" .. srv.port .. "/", { timeout = 5, tls = { cafile = ca } })
      if not c then return nil, err end
      c:send("hi")
      local got = c:receive(5)
      c:close(1000, "", 2)
      return got
    end
    local function logged(pattern, want)
      local deadline, n = socket.gettime() + 10, 0
      while n < want and socket.gettime() < deadline do
        socket.sleep(0.05)
        n = select(2, srv.output():gsub(pattern, ""))
      end
      return n
    end
    assert.equal("hi", (echo(one .. "/ca.pem")))
    -- the new certificate, its key not written yet (cut short)
    assert(H.sh(string.format("cp %s/server.pem %s/server.pem && head -c 50 %s/server.key > %s/server.key",
      q(two), q(live), q(two), q(live))))
    assert(H.sh("kill -HUP " .. srv.pid))
    assert.equal(2, logged("TLS certificate not reloaded, the old one stays", 2), srv.output())
    for _ = 1, 8 do assert.equal("hi", (echo(one .. "/ca.pem"))) end
    -- the key in place: the next HUP takes it, in both
    assert(H.sh(string.format("cp %s/server.key %s/server.key", q(two), q(live))))
    assert(H.sh("kill -HUP " .. srv.pid))
    assert.equal(2, logged("SIGHUP: TLS certificate reloaded", 2), srv.output())
    for _ = 1, 8 do assert.equal("hi", (echo(two .. "/ca.pem"))) end
    assert.is_true(srv.alive())
  end)

  it("`ws serve --cert/--key` with files it cannot use: one clear line, exit 1 (with --workers too)", function()
    local dir = H.throwaway_ca()
    finally(function() H.sh("rm -rf " .. q(dir)) end)
    assert(H.sh(string.format("echo garbage > %s/garbage.pem", q(dir))))
    local cert, key = dir .. "/server.pem", dir .. "/server.key"
    for _, c in ipairs {
      { dir .. "/nope.pem", key, "", "tls: certificate: .*nope%.pem: No such file or directory" },
      { key, cert, "", "tls: certificate: .*server%.key: not a PEM certificate %(no start line%)" },
      { cert, dir .. "/garbage.pem", "", "tls: key: .*garbage%.pem: cannot read a PEM key from it" },
      { dir, key, "", "tls: certificate: .*: Is a directory" },
      { cert, dir .. "/nokey.pem", "--workers 2 --port " .. H.free_port(), "tls: key: .*nokey%.pem: No such file" },
    } do
      local t0 = socket.gettime()
      local out, code = H.run(string.format("timeout 20 %s %s/bin/ws serve --echo --cert %s --key %s %s 2>&1",
        H.LUA, H.ROOT, q(c[1]), q(c[2]), c[3]))
      assert.equal(1, code, out)
      assert.matches("^ws serve: " .. c[4] .. "[^\n]*\n$", out)
      assert.is_true(socket.gettime() - t0 < 3, "took " .. (socket.gettime() - t0) .. " s:\n" .. out)
    end
  end)
end)
