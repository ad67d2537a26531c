-- ws.tls: the tls option tables of server and client, against our own
-- server and client in one loop (a throwaway CA): bad files and options,
-- client certificates, server_name, and what errors say.
local ws = require "ws"
local loop = require "ws.loop"
local tls = require "ws.tls"
local H = require "spec.helpers"
local socket = require "socket"

describe("ws.tls options", function()
  local dir

  setup(function() dir = H.throwaway_ca() end)
  teardown(function() if dir then os.execute("rm -rf " .. H.shell_quote(dir)) end end)

  local function f(name) return dir .. "/" .. name end

  -- A wss:// echo server in a fresh loop with these tls options.
  local function server(t)
    local l = loop.new()
    local srv = assert(ws.listen { port = 0, loop = l, tls = t, logger = false })
    srv:route("/ws", function(conn)
      while true do
        local data, kind = conn:receive()
        if not data or not conn:send(data, kind) then break end
      end
    end)
    return srv, l
  end

  -- connect (in the loop) and echo one message; returns the echo or nil, err
  local function echo(srv, l, url_host, t)
    return H.run_task(l, 10, function()
      local conn, err = ws.connect("wss://" .. url_host .. ":" .. srv.port .. "/ws", { timeout = 3, tls = t })
      if not conn then return nil, err end
      conn:send("ping me")
      local data, rerr = conn:receive(3)
      conn:close()
      return data, rerr
    end)
  end

  it("refuses unknown keys and bad values (a programmer's mistake)", function()
    local good = { certificate = f("server.pem"), key = f("server.key") }
    assert.has_error(function()
      tls.context({ certificate = good.certificate, key = good.key, cert = "x" }, "server")
    end)
    assert.has_error(function() tls.context({ verify = "sometimes" }, "client") end)
    assert.has_error(function() tls.context({ protocol = "sslv3" }, "client") end)
    good.server_name = "x"   -- a client's key
    assert.has_error(function() ws.listen { port = 0, tls = good } end)
  end)

  it("refuses an empty server_name or one with a NUL (no name would mean no host name check)", function()
    local srv, l = server { certificate = f("server.pem"), key = f("server.key") }
    for _, bad in ipairs { "", "localhost\0.evil", 42 } do
      assert.has_error(function() tls.context({ server_name = bad }, "client") end)
      -- refused at the call: no connection is made
      local ok, err = pcall(echo, srv, l, "localhost", { cafile = f("ca.pem"), server_name = bad })
      assert.is_false(ok)
      assert.matches("tls.server_name: a host name expected", tostring(err))
    end
    srv:close()
  end)

  it("answers nil, err for missing or unusable files", function()
    local srv, err = ws.listen { port = 0, tls = { certificate = f("server.pem") } }
    assert.is_nil(srv)
    assert.equal("tls: a server needs tls.certificate and tls.key", err)
    srv, err = ws.listen { port = 0, tls = { certificate = f("nope.pem"), key = f("server.key") } }
    assert.is_nil(srv)
    assert.matches("^tls: certificate: ", err)
    srv, err = ws.listen { port = 0, tls = { certificate = f("server.pem"), key = f("client.key") } }
    assert.is_nil(srv)
    assert.matches("^tls: key", err)
    srv, err = ws.listen { port = 0, tls = { certificate = f("server.pem"), key = f("server.key"), ciphers = "NOPE" } }
    assert.is_nil(srv)
    assert.matches("^tls: ciphers", err)
    local ctx
    ctx, err = tls.context({ cafile = f("nope.pem") }, "client")
    assert.is_nil(ctx)
    -- the file and why (not OpenSSL's "system lib")
    assert.equal("tls: cafile: " .. f("nope.pem") .. ": No such file or directory", err)
  end)

  it("checks the tls options before connecting, and leaves no descriptor open", function()
    -- nothing listens there: a check after connecting would say "refused"
    local free = "wss://127.0.0.1:" .. H.free_port() .. "/ws"
    local ok, err = pcall(ws.connect, free, { tls = { verfy = true } })
    assert.is_false(ok)
    assert.matches("unknown tls option for a client: verfy", err)
    local conn, cerr = ws.connect(free, { tls = { cafile = f("nope.pem") } })
    assert.is_nil(conn)
    assert.matches("^tls: cafile", cerr)
    -- a listener that never accepts: TCP connects (the backlog), and a
    -- socket left open shows in our descriptors (no collector closes it)
    local lsn = assert(socket.bind("127.0.0.1", 0))
    local url = "wss://127.0.0.1:" .. select(2, lsn:getsockname()) .. "/ws"
    local function attempts()
      pcall(ws.connect, url, { tls = { verfy = true }, timeout = 1 })
      ws.connect(url, { tls = { cafile = f("nope.pem") }, timeout = 1 })
    end
    -- (once first: OpenSSL may keep a descriptor of its own open from its
    -- first use on, e.g. /dev/urandom, when no earlier case used it)
    attempts()
    collectgarbage("stop")
    local before = H.own_fd_count()
    for _ = 1, 5 do attempts() end
    local after = H.own_fd_count()
    collectgarbage("restart")
    lsn:close()
    assert.equal(before, after)
  end)

  it("verifies the host name and IP address, or the name in server_name", function()
    local srv, l = server { certificate = f("server.pem"), key = f("server.key") }
    assert.equal("ping me", (echo(srv, l, "localhost", { cafile = f("ca.pem") })))
    assert.equal("ping me", (echo(srv, l, "127.0.0.1", { cafile = f("ca.pem") })))
    assert.equal("ping me", (echo(srv, l, "127.0.0.1", { cafile = f("ca.pem"), server_name = "localhost" })))
    local data, err = echo(srv, l, "localhost", { cafile = f("ca.pem"), server_name = "other.example" })
    assert.is_nil(data)
    assert.equal("tls: certificate does not match host other.example", err)
    data, err = echo(srv, l, "localhost", { cafile = f("client.pem") })
    assert.is_nil(data)
    assert.matches("^tls handshake failed: certificate verify failed: ", err)
    assert.equal("ping me", (echo(srv, l, "localhost", { verify = false })))
    srv:close()
  end)

  it("requires a client certificate signed by cafile with verify = true", function()
    local srv, l = server { certificate = f("server.pem"), key = f("server.key"), cafile = f("ca.pem"), verify = true }
    local mine = { cafile = f("ca.pem"), certificate = f("client.pem"), key = f("client.key") }
    assert.equal("ping me", (echo(srv, l, "localhost", mine)))
    -- without one: refused in the TLS handshake (TLS 1.3: the client may
    -- see it only when it reads the answer to its upgrade request)
    local data, err = echo(srv, l, "localhost", { cafile = f("ca.pem") })
    assert.is_nil(data)
    assert.is_string(err)
    -- "peer": checked when sent, not required
    local srv2, l2 = server { certificate = f("server.pem"), key = f("server.key"), cafile = f("ca.pem"),
                              verify = "peer" }
    assert.equal("ping me", (echo(srv2, l2, "localhost", { cafile = f("ca.pem") })))
    assert.equal("ping me", (echo(srv2, l2, "localhost", mine)))
    srv:close()
    srv2:close()
  end)

  it("shows the peer's certificate to the handler (verify = \"peer\" and true) and to the client", function()
    -- the handler answers what it sees
    local function cert_server(verify)
      local l = loop.new()
      local srv = assert(ws.listen { port = 0, loop = l, logger = false, tls = { certificate = f("server.pem"),
        key = f("server.key"), cafile = f("ca.pem"), verify = verify } })
      srv:route("/ws", function(conn)
        local c = conn:peer_certificate()
        conn:send(c and table.concat({ c.subject, c.issuer, c.sha256, tostring(c.verified),
          tostring(c.not_before <= os.time() and os.time() < c.not_after), #c.names }, "|") or "none")
      end)
      return srv, l
    end
    local function ask(srv, l, t, check)
      return H.run_task(l, 10, function()
        local conn, err = ws.connect("wss://localhost:" .. srv.port .. "/ws", { timeout = 3, tls = t })
        if not conn then return nil, err end
        if check then check(conn:peer_certificate()) end
        local data, rerr = conn:receive(3)
        conn:close()
        assert.is_nil(conn:peer_certificate())   -- (closed)
        return data, rerr
      end)
    end
    local fp = H.run("openssl x509 -noout -fingerprint -sha256 -in " .. H.shell_quote(f("client.pem")))
    fp = fp:match("=([%x:]+)"):gsub(":", ""):lower()
    local mine = { cafile = f("ca.pem"), certificate = f("client.pem"), key = f("client.key") }
    local want = "CN=lua-ws test client|CN=lua-ws test CA|" .. fp .. "|true|true|0"
    local srv, l = cert_server("peer")
    assert.equal("none", (ask(srv, l, { cafile = f("ca.pem") })))
    assert.equal(want, (ask(srv, l, mine, function(c)
      -- the client sees the server's
      assert.equal("CN=localhost", c.subject)
      assert.equal("CN=lua-ws test CA", c.issuer)
      assert.is_true(c.verified)
      assert.same({ "DNS:localhost", "IP:127.0.0.1" }, c.names)
      assert.matches("^%x+$", c.sha256)
      assert.equal(64, #c.sha256)
    end)))
    srv:close()
    srv, l = cert_server(true)
    assert.equal(want, (ask(srv, l, mine)))
    -- an unchecked server certificate is shown as not verified
    assert.equal(want, (ask(srv, l, { verify = false, certificate = f("client.pem"), key = f("client.key") },
      function(c) assert.is_false(c.verified) end)))
    srv:close()
    -- a plain connection has none
    l = loop.new()
    srv = assert(ws.listen { port = 0, loop = l, logger = false })
    srv:route("/ws", function(conn) conn:send(tostring(conn:peer_certificate())) end)
    assert.equal("nil", (H.run_task(l, 10, function()
      local conn = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/ws", { timeout = 3 }))
      assert.is_nil(conn:peer_certificate())
      local data = conn:receive(3)
      conn:close()
      return data
    end)))
    srv:close()
  end)

  it("TLS 1.3: still answers a frame that came with the client's close_notify (a half-close)", function()
    local core, io_ = require "ws.core", require "ws.io"
    local srv, l = server { certificate = f("server.pem"), key = f("server.key") }
    local got = H.run_task(l, 10, function()
      local deadline = socket.gettime() + 5
      local sock = assert(socket.connect("127.0.0.1", srv.port))
      local fd = assert(core.wrap_fd(sock:getfd()))
      sock:setfd(-1)
      assert(fd:starttls(assert(tls.context({ cafile = f("ca.pem"), protocol = "tlsv1_3" }, "client")), "localhost"))
      assert(tls.handshake(fd, deadline, l))
      assert(io_.write(fd, "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 1, deadline, l))
      local head, rest = io_.read_head(fd, deadline, 4096, nil, l)
      assert.matches("^HTTP/1.1 101", head)
      -- a masked frame (key 0), then close_notify and FIN, with no yield
      -- between: the server reads them together
      fd:send("\129\132\0\0\0\0last")
      fd:shutdown("send")
      local out = rest or ""
      while true do
        local data = io_.read(fd, deadline, l)
        if not data then break end
        out = out .. data
      end
      fd:close()
      return out
    end)
    assert.equal("\129\4last", got:sub(1, 6))
    srv:close()
  end)

  it("a server that verifies clients resumes their sessions (TLS 1.2 and 1.3)", function()
    local srv, l = server { certificate = f("server.pem"), key = f("server.key"), cafile = f("ca.pem"), verify = true }
    local sess = dir .. "/session"
    -- openssl s_client in its own process, the server stepped meanwhile
    local function s_client(version, flag)
      -- (stdin open a moment: TLS 1.3's ticket comes after the handshake)
      local proc = H.spawn(string.format("sleep 0.3 | openssl s_client -connect 127.0.0.1:%d -%s -CAfile %s -cert %s" ..
        " -key %s %s %s 2>&1; echo '[done]'", srv.port, version, f("ca.pem"), f("client.pem"), f("client.key"), flag, sess),
        "s_client")
      H.run_task(l, 10, function()
        local t0 = socket.gettime()
        while not proc.output():find("[done]", 1, true) and socket.gettime() - t0 < 8 do l:sleep(0.02) end
      end)
      proc.stop()
      return proc.output()
    end
    for _, version in ipairs { "tls1_2", "tls1_3" } do
      os.remove(sess)
      local first = s_client(version, "-sess_out")
      assert.truthy(first:find("Verify return code: 0 (ok)", 1, true), first)
      local again = s_client(version, "-sess_in")
      assert.truthy(again:find("Reused, TLSv1.", 1, true), version .. ": " .. again)
      assert.falsy(again:find("alert", 1, true), version .. ": " .. again)
    end
    srv:close()
  end)

  it("refuses a server that verifies clients without cafile or capath (none could pass)", function()
    local ctx, err = tls.context({ certificate = f("server.pem"), key = f("server.key"), verify = true }, "server")
    assert.is_nil(ctx)
    assert.matches("needs tls.cafile or tls.capath", err)
    local srv, lerr = ws.listen { port = 0, tls = { certificate = f("server.pem"), key = f("server.key"), verify = "peer" },
      logger = false }
    assert.is_nil(srv)
    assert.matches("needs tls.cafile or tls.capath", lerr)
  end)

  it("names OpenSSL's reason for a file it cannot use (not just \"failed\")", function()
    local bad = dir .. "/bad.pem"
    local fh = assert(io.open(bad, "w"))
    fh:write("not a certificate\n")
    fh:close()
    local ctx, err = tls.context({ certificate = bad, key = f("server.key") }, "server")
    assert.is_nil(ctx)
    assert.matches("^tls: certificate: " .. bad:gsub("%p", "%%%0") .. ": ", err)
    assert.falsy(err:find(": failed$"), err)
  end)

  it("takes LuaSec's protocol key: tlsv1_3 raises the floor", function()
    local srv, l = server { certificate = f("server.pem"), key = f("server.key"), protocol = "tlsv1_3",
                            options = { "all" } }
    assert.equal("ping me", (echo(srv, l, "localhost", { cafile = f("ca.pem") })))
    srv:close()
  end)
end)
