-- Interop with independent implementations, as real processes over loopback:
--   A. our server (examples/echo.lua) with python-websockets 10.4 and Node `ws` clients;
--   B. our client (ws.connect, blocking script use) against Node `ws` and
--      python-websockets servers, over ws:// and wss:// (a throwaway CA).
-- The peers live in spec/peers/ and report JSON lines; every peer run and
-- every wait is bounded in time.
local socket = require "socket"
local json = require "dkjson"
local ws = require "ws"
local H = require "spec.helpers"
local O = require "spec.oracle"

local gettime = socket.gettime
local MiB = 1024 * 1024
local SIZES = { 0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB }
local PEERS = H.ROOT .. "/spec/peers"
local NODE = os.getenv("NODE") or "node"

---- local helpers -----------------------------------------------------------------

local shell_quote = H.shell_quote

-- Run a command with a hard time limit; returns stdout, exit code.
local function run(cmd, secs)
  return H.run(string.format("timeout %d %s 2>>'%s/peers.log'", secs or 60, cmd, H.LOGDIR))
end

local json_lines = H.json_lines

local function select_lines(lines, fields)
  local t = {}
  for _, l in ipairs(lines) do
    local match = true
    for k, v in pairs(fields) do if l[k] ~= v then match = false end end
    if match then t[#t + 1] = l end
  end
  return t
end

-- The one line matching fields (fails when there is not exactly one).
local function one(lines, fields, out)
  local t = select_lines(lines, fields)
  assert(#t == 1, string.format("expected one line with %s, got %d\n%s", json.encode(fields), #t, out or ""))
  return t[1]
end

local function wait_output(proc, pattern, secs) return H.wait_output(proc, pattern, secs or 5) end

-- nil when a == b, else a short description (never print 16 MiB strings).
local function diff(a, b)
  if a == b then return nil end
  if type(b) ~= "string" then return "got " .. tostring(b) end
  local n, i = math.min(#a, #b), 1
  while i <= n and a:sub(i, i + 4095) == b:sub(i, i + 4095) do i = i + 4096 end
  while i <= n and a:byte(i) == b:byte(i) do i = i + 1 end
  return string.format("lengths %d vs %d, first difference at byte %d", #a, #b, i)
end

local urandom_f = assert(io.open("/dev/urandom", "rb"))
local function urandom(n) return n > 0 and urandom_f:read(n) or "" end

-- 1-, 2-, 3- and 4-byte UTF-8 characters; each random byte picks one.
local POOL = { "a", "z", "0", "9", " ", "~", "é", "ß", "ж", "λ", "€", "中", "文", "ㅎ", "😀", "🎉", "𝄞" }
local PICK = {}
for b = 0, 255 do PICK[string.char(b)] = POOL[b % #POOL + 1] end

-- Random valid UTF-8 with multi-byte characters, exactly n bytes.
local function utf8_text(n)
  local s = urandom(math.floor(n / 2) + 1):gsub(".", PICK)
  local i = math.min(n, #s)
  while i > 0 and i < #s and s:byte(i + 1) >= 0x80 and s:byte(i + 1) < 0xC0 do i = i - 1 end   -- whole chars only
  s = s:sub(1, i) .. string.rep("a", n - i)
  assert(#s == n and O.utf8_valid(s))
  return s
end

-- Payloads for our client, made once and shared by every server.
local payloads = {}
local function payload(kind, n)
  local key = kind .. n
  payloads[key] = payloads[key] or (kind == "text" and utf8_text(n) or urandom(n))
  return payloads[key]
end

-- Start a peer server (node or python) on a free port; waits until it listens.
local function start_peer(name, extra)
  local run_it = name == "node" and NODE .. " " .. PEERS .. "/node_server.js"
    or H.PYTHON .. " " .. PEERS .. "/py_server.py"
  return H.start_server(function(port)
    return string.format("exec %s --port %d %s", run_it, port, extra or "")
  end, name .. "-server", 15)
end

-- The fragmented messages the peer servers send in mode "fragment".
local function frag_bin()
  local t = {}
  for k = 0, 2 do
    local b = {}
    for i = 0, 69999 do b[i + 1] = string.char((i * 7 + k) % 256) end
    t[#t + 1] = table.concat(b)
  end
  return table.concat(t)
end
local FRAG = {
  node = { text = "héllo € wörld 😀", binary = frag_bin() },
  python = { text = "héllo wörld €😀", binary = frag_bin() },
}

---- A. our server with independent clients --------------------------------------

-- Assertions shared by the python and node client runs.
-- Run a peer's client (command(port)) once against examples/echo.lua and
-- check what every peer shares; returns the state (server, lines, out,
-- code) the peer's own tests read.
local function client_suite(peer, command)
  local st = {}
  setup(function()
    st.server = H.start_lua("examples/echo.lua", "", "echo-" .. peer)
    st.out, st.code = run(command(st.server.port), 100)
    st.lines = json_lines(st.out)
  end)
  teardown(function() st.server.stop() end)

  it("runs to the end without an error", function()
    assert.same({}, select_lines(st.lines, { test = "error" }))
    assert.equal(0, st.code, st.out)
  end)

  for _, kind in ipairs { "text", "binary" } do
    it(peer .. ": " .. kind .. " messages of 0 B .. 16 MiB come back exact, as " .. kind, function()
      for _, n in ipairs(SIZES) do
        local r = one(st.lines, { test = "echo", kind = kind, size = n }, st.out)
        assert.equal(kind, r.got_kind, "size " .. n)
        assert.equal(n, r.got_size, "size " .. n)
        assert.equal(r.sent_sha, r.got_sha, "size " .. n)
      end
    end)
  end

  it(peer .. ": fragmented text and binary messages come back whole", function()
    for _, kind in ipairs { "text", "binary" } do
      local r = one(st.lines, { test = "fragmented", kind = kind }, st.out)
      assert.equal(kind, r.got_kind)
      assert.equal(r.sent_sha, r.got_sha)
    end
  end)
  return st
end

describe("our echo server with a python-websockets client", function()
  local st = client_suite("python", function(port)
    return string.format("%s %s/py_client.py ws://127.0.0.1:%d/ws", H.PYTHON, PEERS, port)
  end)

  it("python: a ping gets its pong", function()
    assert.is_true(one(st.lines, { test = "ping" }, st.out).ok)
  end)

  it("python: close with 1000 and 4000 and a reason: the server echoes the code", function()
    local r = one(st.lines, { test = "close", sent_code = 1000 }, st.out)
    assert.equal(1000, r.code)
    r = one(st.lines, { test = "close", sent_code = 4000 }, st.out)
    assert.equal(4000, r.code)
    -- the server saw the reason we sent
    assert.truthy(wait_output(st.server, "%(4000 bye from python ✓%)"), st.server.output())
  end)
end)

describe("our echo server with a Node ws client", function()
  local st = client_suite("node", function(port)
    return string.format("%s %s/node_client.js ws://127.0.0.1:%d/ws %d", NODE, PEERS, port, 16 * MiB)
  end)

  it("node: a ping gets a pong with the same payload", function()
    local r = one(st.lines, { test = "ping" }, st.out)
    assert.equal("node-ping ✓", r.pong)
  end)

  it("node: close with 4001 and a reason: the server echoes 4001", function()
    local r = one(st.lines, { test = "close" }, st.out)
    assert.equal(4001, r.code)
    assert.truthy(wait_output(st.server, "%(4001 bye from node%)"), st.server.output())
  end)

  it("node: a message one byte over the 16 MiB limit is closed with 1009", function()
    local r = one(st.lines, { test = "too_big" }, st.out)
    assert.equal(16 * MiB + 1, r.size)
    assert.equal(1009, r.code)
  end)

  -- The server closed those connections first, so their TIME_WAITs hold the
  -- port: a restart must still bind it (SO_REUSEADDR on the listener).
  it("restarts on the same port at once after those connections", function()
    local port = st.server.port
    st.server.stop()
    local proc = H.spawn(string.format("exec %s %s/examples/echo.lua --port %d", H.LUA, H.ROOT, port), "echo-restart")
    st.server = proc
    local ok = pcall(H.wait_port, port, 5)
    assert.is_true(ok, proc.output())
    local conn = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5 }))
    assert(conn:send("again"))
    assert.equal("again", (conn:receive(5)))
    assert.is_true(conn:close())
  end)
end)

---- B. our client against independent servers ------------------------------------

local function connect(url, opts)
  opts = opts or {}
  opts.max_message = opts.max_message or 32 * MiB
  opts.timeout = opts.timeout or 10
  local conn, err = ws.connect(url, opts)
  assert(conn, "connect " .. url .. ": " .. tostring(err))
  return conn
end

local function echo_all(url, sizes, opts)
  local conn = connect(url, opts)
  for _, kind in ipairs { "text", "binary" } do
    for _, n in ipairs(sizes) do
      local data = payload(kind, n)
      assert(conn:send(data, kind))
      local got, gk = conn:receive(30)
      assert.equal(kind, gk, string.format("%s %d: %s", kind, n, tostring(got)))
      assert.is_nil(diff(data, got), kind .. " " .. n)
    end
  end
  local ok, code = conn:close()
  assert.is_true(ok)
  assert.equal(1000, code)
end

local function server_suite(name)
  describe("our client against a " .. name .. " server", function()
    local server, base

    setup(function()
      server = start_peer(name)
      base = "ws://127.0.0.1:" .. server.port
    end)
    teardown(function() server.stop() end)

    for _, kind in ipairs { "text", "binary" } do
      it(kind .. " messages of 0 B .. 16 MiB are echoed exactly, as " .. kind, function()
        local conn = connect(base .. "/echo")
        for _, n in ipairs(SIZES) do
          local data = payload(kind, n)
          assert(conn:send(data, kind))
          local got, gk = conn:receive(30)
          assert.equal(kind, gk, string.format("size %d: %s", n, tostring(got)))
          assert.is_nil(diff(data, got), "size " .. n)
        end
        assert.is_true(conn:close())
      end)
    end

    it("receives a fragmented text and a fragmented binary message whole", function()
      local conn = connect(base .. "/fragment")
      local got, kind = conn:receive(10)
      assert.equal("text", kind)
      assert.equal(FRAG[name].text, got)
      got, kind = conn:receive(10)
      assert.equal("binary", kind)
      assert.is_nil(diff(FRAG[name].binary, got))
      assert.is_true(conn:close())
    end)

    it("answers the server's ping with a pong", function()
      local conn = connect(base .. "/ping")
      local got, kind = conn:receive(10)
      assert.equal("text", kind)
      assert.equal("pong:ping-from-" .. name, got)   -- the server got our pong
      assert.truthy(wait_output(server, '"event": ?"pong", ?"data": ?"ping%-from%-' .. name .. '"'))
      assert.is_true(conn:close())
    end)

    it("reports the server's close 4002 and reason: nil, closed, 4002, reason", function()
      local reason = "server bye ✓"
      local conn = connect(base .. "/close?code=4002&reason=server%20bye%20%E2%9C%93")
      local t0 = gettime()
      local data, err, code, why = conn:receive(10)
      assert.is_nil(data)
      assert.equal("closed", err)
      assert.equal(4002, code)
      assert.equal(reason, why)
      assert.equal("closed", conn.state)
      assert.is_true(gettime() - t0 < 5)
      -- the server got our echo of its code
      assert.truthy(wait_output(server, '"mode": ?"close", ?"code": ?4002'), server.output())
      -- and receive keeps saying so
      data, err, code = conn:receive(1)
      assert.same({ nil, "closed", 4002 }, { data, err, code })
    end)

    it("closes with 4003 and a reason: the server sees both", function()
      local reason = "client bye ✓ " .. name
      local conn = connect(base .. "/echo")
      assert(conn:send("hi"))
      assert.equal("hi", (conn:receive(5)))
      local ok, code = conn:close(4003, reason)
      assert.is_true(ok)
      assert.equal(4003, code)                         -- the server echoed it
      assert.equal("closed", conn.state)
      local pat = '"code": ?4003, ?"reason": ?"client bye \\u2713 ' .. name .. '"'
      local pat_raw = '"code": ?4003, ?"reason": ?"client bye ✓ ' .. name .. '"'
      local deadline = gettime() + 5
      local seen
      repeat
        local o = server.output()
        seen = o:find(pat) or o:find(pat_raw)
        if not seen then socket.sleep(0.02) end
      until seen or gettime() > deadline
      assert.truthy(seen, server.output())
    end)
  end)
end

server_suite("node")
server_suite("python")

---- B. wss:// with a throwaway CA -------------------------------------------------

describe("our client over wss:// (throwaway CA)", function()
  local dir, ca, servers = nil, nil, {}

  setup(function()
    dir = H.throwaway_ca()
    ca = dir .. "/ca.pem"
    local tls = string.format("--cert %s/server.pem --key %s/server.key", dir, dir)
    servers.node = start_peer("node", tls)
    servers.python = start_peer("python", tls)
  end)

  teardown(function()
    for _, s in pairs(servers) do s.stop() end
    if dir then os.execute("rm -rf " .. shell_quote(dir)) end
  end)

  local TLS_SIZES = { 0, 1, 125, 126, 65535, 65536, MiB }

  for _, name in ipairs { "node", "python" } do
    it(name .. ": wss://localhost with our CA echoes text and binary up to 1 MiB", function()
      echo_all("wss://localhost:" .. servers[name].port .. "/echo", TLS_SIZES, { tls = { cafile = ca } })
    end)

    it(name .. ": wss://127.0.0.1 verifies through the IP subjectAltName", function()
      echo_all("wss://127.0.0.1:" .. servers[name].port .. "/echo", { 0, 125, 65536 }, { tls = { cafile = ca } })
    end)

    it(name .. ": without our CA (system store) the connection fails with nil, err", function()
      local t0 = gettime()
      local conn, err = ws.connect("wss://localhost:" .. servers[name].port .. "/echo", { timeout = 5 })
      assert.is_nil(conn)
      assert.is_string(err)
      assert.matches("certificate", err:lower(), 1, true)
      assert.is_true(gettime() - t0 < 5, "took " .. (gettime() - t0))
    end)

    it(name .. ": a certificate for another name fails with nil, err", function()
      local conn, err = ws.connect("wss://localhost:" .. servers[name].port .. "/echo",
        { timeout = 5, tls = { cafile = ca, server_name = "example.com" } })
      assert.is_nil(conn)
      assert.matches("does not match", err, 1, true)
    end)

    it(name .. ": over a socket we connected (opts.sock), TLS still checks the URL's host name", function()
      local function pre()
        local sock = socket.tcp()
        sock:settimeout(3)
        assert(sock:connect("127.0.0.1", servers[name].port))
        return sock
      end
      echo_all("wss://localhost:" .. servers[name].port .. "/echo", { 0, 65536 }, { tls = { cafile = ca }, sock = pre() })
      local conn, err = ws.connect("wss://wrong.example:" .. servers[name].port .. "/echo",
        { timeout = 5, tls = { cafile = ca }, sock = pre() })
      assert.is_nil(conn)
      assert.matches("does not match", err, 1, true)
    end)

    it(name .. ": over a LuaSec socket whose TLS handshake is done (opts.sock), used as it is", function()
      local ssl = require "ssl"
      local tcp = socket.tcp()
      tcp:settimeout(3)
      assert(tcp:connect("127.0.0.1", servers[name].port))
      local s = assert(ssl.wrap(tcp, { mode = "client", protocol = "any", verify = "peer", cafile = ca }))
      s:sni("localhost")
      assert(s:dohandshake())
      echo_all("wss://localhost:" .. servers[name].port .. "/echo", { 0, 65536 }, { sock = s })
    end)

    it(name .. ": tls = { verify = false } connects without the CA", function()
      echo_all("wss://localhost:" .. servers[name].port .. "/echo", { 0, 126, 65536 }, { tls = { verify = false } })
    end)

    it(name .. ": the server's close code and reason arrive over TLS", function()
      local conn = connect("wss://localhost:" .. servers[name].port .. "/close?code=4002&reason=tls%20bye",
        { tls = { cafile = ca } })
      local data, err, code, why = conn:receive(10)
      assert.same({ nil, "closed", 4002, "tls bye" }, { data, err, code, why })
    end)
  end
end)

---- A (bonus). our wss server with independent clients ---------------------------

describe("examples/wss_echo.lua with python and node clients", function()
  local dir, server

  setup(function()
    dir = H.throwaway_ca()
    server = H.start_lua("examples/wss_echo.lua",
      string.format("--cert %s/server.pem --key %s/server.key", dir, dir), "wss-echo")
  end)

  teardown(function()
    if server then server.stop() end
    if dir then os.execute("rm -rf " .. shell_quote(dir)) end
  end)

  it("python (SSL_CERT_FILE = our CA): every echo, fragment, ping and close checks out", function()
    local out, code = run(string.format("env SSL_CERT_FILE=%s/ca.pem %s %s/py_client.py wss://localhost:%d/ws",
      dir, H.PYTHON, PEERS, server.port), 100)
    local lines = json_lines(out)
    assert.same({}, select_lines(lines, { test = "error" }))
    assert.equal(0, code, out)
    for _, kind in ipairs { "text", "binary" } do
      for _, n in ipairs(SIZES) do
        local r = one(lines, { test = "echo", kind = kind, size = n }, out)
        assert.same({ kind, n, r.sent_sha }, { r.got_kind, r.got_size, r.got_sha })
      end
      local r = one(lines, { test = "fragmented", kind = kind }, out)
      assert.same({ kind, r.sent_sha }, { r.got_kind, r.got_sha })
    end
    assert.is_true(one(lines, { test = "ping" }, out).ok)
    assert.equal(4000, one(lines, { test = "close", sent_code = 4000 }, out).code)
  end)

  it("node (NODE_EXTRA_CA_CERTS = our CA): every echo, fragment, ping, close and 1009 checks out", function()
    local out, code = run(string.format("env NODE_EXTRA_CA_CERTS=%s/ca.pem %s %s/node_client.js wss://localhost:%d/ws %d",
      dir, NODE, PEERS, server.port, 16 * MiB), 100)
    local lines = json_lines(out)
    assert.same({}, select_lines(lines, { test = "error" }))
    assert.equal(0, code, out)
    for _, kind in ipairs { "text", "binary" } do
      for _, n in ipairs(SIZES) do
        local r = one(lines, { test = "echo", kind = kind, size = n }, out)
        assert.same({ kind, n, r.sent_sha }, { r.got_kind, r.got_size, r.got_sha })
      end
      local r = one(lines, { test = "fragmented", kind = kind }, out)
      assert.same({ kind, r.sent_sha }, { r.got_kind, r.got_sha })
    end
    assert.equal("node-ping ✓", one(lines, { test = "ping" }, out).pong)
    assert.equal(4001, one(lines, { test = "close" }, out).code)
    assert.equal(1009, one(lines, { test = "too_big" }, out).code)
  end)
end)
