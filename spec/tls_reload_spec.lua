-- A renewed certificate without a restart: server:reload_tls() and SIGHUP
-- (in one process, in `ws serve --cert --key`, and under --workers), and
-- the server's default TLS 1.2 cipher list (forward-secret AEAD only).
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"
local socket = require "socket"

local q = H.shell_quote

-- Two throwaway CAs, and a folder the server reads its files from: live/
-- holds CA one's certificate and key until a test copies CA two's over them.
local function setup_dirs()
  local one, two, live = H.throwaway_ca(), H.throwaway_ca(), H.tmpdir()
  assert(H.sh(string.format("cp %s/server.pem %s/server.key %s/", q(one), q(one), q(live))))
  local d = { one = one, two = two, live = live }
  function d.cert() return live .. "/server.pem" end
  function d.key() return live .. "/server.key" end
  -- (cp to a temporary name and mv: a reader sees the old file or the new one)
  function d.install(from, what)
    for _, f in ipairs(what or { "server.pem", "server.key" }) do
      local src = f == "server.key" and from.key or from.pem
      assert(H.sh(string.format("cp %s %s/.new && mv %s/.new %s/%s", q(src), q(live), q(live), q(live), f)))
    end
  end
  function d.from(dir, key) return { pem = dir .. "/server.pem", key = dir .. "/" .. (key or "server.key") } end
  function d.remove() H.sh("rm -rf " .. q(one) .. " " .. q(two) .. " " .. q(live)) end
  return d
end

-- Connect (blocking, no loop) with ca's trust, echo one message; returns
-- the echo or nil, err.
local function echo_once(port, ca)
  local conn, err = ws.connect("wss://127.0.0.1:" .. port .. "/ws", { timeout = 5, tls = { cafile = ca } })
  if not conn then return nil, err end
  local ok, serr = conn:send("hi")
  if not ok then conn:close(); return nil, serr end
  local data, rerr = conn:receive(5)
  conn:close(1000, "", 2)
  return data, rerr
end

describe("TLS certificate reload", function()
  it("reload_tls(): new handshakes get the new certificate, open connections keep theirs; a bad file keeps the old", function()
    local d = setup_dirs()
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, logger = false,
      tls = { certificate = d.cert(), key = d.key() } })
    srv:route("/ws", H.echo)
    finally(function()
      H.stop_server(srv, l)
      d.remove()
    end)
    local url = "wss://127.0.0.1:" .. srv.port .. "/ws"
    H.run_task(l, 20, function()
      local old = assert(ws.connect(url, { timeout = 5, tls = { cafile = d.one .. "/ca.pem" } }))
      d.install(d.from(d.two))
      -- the files changed on disk: nothing changes until the reload
      local c, err = ws.connect(url, { timeout = 5, tls = { cafile = d.two .. "/ca.pem" } })
      assert.is_nil(c)
      assert.matches("certificate verify failed", err)
      assert.is_true(srv:reload_tls())
      c, err = ws.connect(url, { timeout = 5, tls = { cafile = d.one .. "/ca.pem" } })
      assert.is_nil(c)
      assert.matches("certificate verify failed", err)
      c = assert(ws.connect(url, { timeout = 5, tls = { cafile = d.two .. "/ca.pem" } }))
      assert.is_true(c:send("new"))
      assert.equal("new", c:receive(5))
      c:close()
      -- the connection made before the reload still works
      assert.is_true(old:send("old"))
      assert.equal("old", old:receive(5))
      old:close()
      -- a key that does not match the certificate: refused, the server keeps the context it has
      d.install(d.from(d.one), { "server.pem" })
      local ok, rerr = srv:reload_tls()
      assert.is_nil(ok)
      assert.matches("^tls: key: .*key values mismatch", rerr)
      -- a missing file: the same
      ok, rerr = srv:reload_tls { certificate = d.live .. "/nope.pem", key = d.key() }
      assert.is_nil(ok)
      assert.matches("^tls: certificate: ", rerr)
      c = assert(ws.connect(url, { timeout = 5, tls = { cafile = d.two .. "/ca.pem" } }))
      assert.is_true(c:send("still"))
      assert.equal("still", c:receive(5))
      c:close()
      -- a new table: CA one's files, by their own paths
      assert.is_true(srv:reload_tls { certificate = d.one .. "/server.pem", key = d.one .. "/server.key" })
      c = assert(ws.connect(url, { timeout = 5, tls = { cafile = d.one .. "/ca.pem" } }))
      c:close()
    end)
    -- a programmer's mistake: a plain server has no certificate
    local plain = assert(ws.listen { port = 0, loop = l, logger = false })
    assert.has_error(function() plain:reload_tls() end, "reload_tls: this server does not serve TLS")
    plain:close()
  end)

  it("SIGHUP reloads `ws serve --echo --cert --key`, and every worker under --workers", function()
    local d = setup_dirs()
    local single, multi
    finally(function()
      if single then single.stop() end
      if multi then multi.stop() end
      d.remove()
    end)
    local function start(extra, name)
      return H.start_server(function(port)
        return string.format("exec %s %s/bin/ws serve --echo --port %d --cert %s --key %s %s",
          H.LUA, H.ROOT, port, q(d.cert()), q(d.key()), extra or "")
      end, name, 15)
    end
    single = start("", "tls-reload-single")
    multi = start("--workers 2", "tls-reload-workers")
    for _, s in ipairs { single, multi } do
      assert.equal("hi", (echo_once(s.port, d.one .. "/ca.pem")))
    end
    assert.matches("echo server on wss://", single.output())
    -- a key that does not match: logged, and the old certificate stays
    d.install(d.from(d.two), { "server.pem" })
    assert(H.sh("kill -HUP " .. single.pid))
    local deadline = socket.gettime() + 10
    while not single.output():find("not reloaded", 1, true) and socket.gettime() < deadline do socket.sleep(0.05) end
    assert.matches("SIGHUP: TLS certificate not reloaded, the old one stays: tls: key: .*key values mismatch", single.output())
    assert.equal("hi", (echo_once(single.port, d.one .. "/ca.pem")))
    d.install(d.from(d.two))
    for _, s in ipairs { single, multi } do
      assert(H.sh("kill -HUP " .. s.pid))
      -- (the supervisor passes it on: each worker reloads, and logs it)
      local want = s == multi and 2 or 1
      deadline = socket.gettime() + 10
      local n = 0
      while n < want and socket.gettime() < deadline do
        socket.sleep(0.05)
        n = select(2, s.output():gsub("SIGHUP: TLS certificate reloaded", ""))
      end
      assert.equal(want, n, s.output())
      -- every connection now (SO_REUSEPORT spreads them over the workers)
      for _ = 1, s == multi and 12 or 2 do
        local data, err = echo_once(s.port, d.two .. "/ca.pem")
        assert.equal("hi", data, err)
      end
      local c, err = ws.connect("wss://127.0.0.1:" .. s.port .. "/ws",
        { timeout = 5, tls = { cafile = d.one .. "/ca.pem" } })
      assert.is_nil(c)
      assert.matches("certificate verify failed", err)
    end
    -- a reload is not a stop: both still serve
    assert.equal("hi", (echo_once(multi.port, d.two .. "/ca.pem")))
  end)

  it("--cert and --key go together, and only with serve", function()
    local cli = require "ws.cli"
    local o, err = cli.parse { "serve", "--echo", "--cert", "c.pem" }
    assert.is_nil(o)
    assert.equal("--cert and --key go together", err)
    o, err = cli.parse { "ws://127.0.0.1:1/", "--cert", "c.pem", "--key", "k.pem" }
    assert.is_nil(o)
    assert.equal("--cert and --key are options of ws serve", err)
    o = assert(cli.parse { "serve", "--echo", "--cert", "c.pem", "--key", "k.pem" })
    assert.equal("c.pem", o.cert)
    assert.equal("k.pem", o.key)
  end)
end)

describe("a wss:// server's TLS 1.2 ciphers", function()
  -- openssl s_client offering TLS 1.2 with one cipher, while step() runs
  -- (the server's loop, when it is in this process); true when the
  -- handshake finished with that cipher, and what s_client said
  local function offers(port, cipher, step)
    local p = H.spawn(string.format("exec timeout 10 openssl s_client -connect 127.0.0.1:%d -tls1_2 -cipher %s -brief",
      port, cipher), "s_client")
    local deadline = socket.gettime() + 12
    while p.alive() and socket.gettime() < deadline do
      if step then step() else socket.sleep(0.02) end
    end
    p.stop()
    local out = p.output()
    return out:find("Ciphersuite: " .. cipher, 1, true) ~= nil, out
  end

  it("takes forward-secret AEAD suites only by default; tls.ciphers still overrides", function()
    local dir = H.throwaway_ca()
    local s, srv, l
    finally(function()
      if s then s.stop() end
      if srv then srv:close(); l:step(0) end
      H.sh("rm -rf " .. q(dir))
    end)
    s = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d --cert %s/server.pem --key %s/server.key",
        H.LUA, H.ROOT, port, q(dir), q(dir))
    end, "tls-ciphers-default", 15)
    for _, good in ipairs { "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                            "ECDHE-ECDSA-CHACHA20-POLY1305" } do
      local ok, out = offers(s.port, good)
      assert.is_true(ok, out)
    end
    for _, bad in ipairs { "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256" } do
      local ok, out = offers(s.port, bad)
      assert.is_false(ok, out)
      assert.matches("handshake failure", out)
    end
    -- the same CBC suite, asked for by the application
    l = loop.new()
    srv = assert(ws.listen { port = 0, loop = l, logger = false, tls = {
      certificate = dir .. "/server.pem", key = dir .. "/server.key", ciphers = "ECDHE-ECDSA-AES128-SHA" } })
    local ok, out = offers(srv.port, "ECDHE-ECDSA-AES128-SHA", function() l:step(0.02) end)
    assert.is_true(ok, out)
  end)
end)
