-- The first hour, as a newcomer lives it: options checked at the call,
-- receive's exact results, a refused handshake as data, refusals in the log,
-- TLS and plain ports told apart, the version, keepalive on by default.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local options = require "ws.options"
local H = require "spec.helpers"

local gettime = socket.gettime

-- An in-process server on a free port in a fresh loop, its log lines in log.
local function loop_server(opts, routes)
  local l, log = loop.new(), {}
  opts.port, opts.loop = 0, l
  opts.logger = function(level, message, fields) log[#log + 1] = { level = level, message = message, fields = fields } end
  local srv = assert(ws.listen(opts))
  for path, handler in pairs(routes or {}) do srv:route(path, handler) end
  return srv, l, "ws://127.0.0.1:" .. srv.port, log
end

local function errmsg(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("options are checked at the call", function()
  it("names an unknown option, with the closest known one", function()
    assert.matches("ws.listen: unknown option 'max_mesage' %(did you mean 'max_message'%?%)$",
      errmsg(ws.listen, { max_mesage = 10 }))
    assert.matches("ws.connect: unknown option 'protocol' %(did you mean 'protocols'%?%)$",
      errmsg(ws.connect, "ws://127.0.0.1:1/", { protocol = "chat" }))
    assert.matches("ws.accept: unknown option 'zzzzzz'$", errmsg(ws.accept, {}, { zzzzzz = 1 }))
    assert.matches("unknown option 'compression.levle' %(did you mean 'compression.level'%?%)",
      errmsg(ws.listen, { compression = { levle = 1 } }))
  end)

  it("checks types and ranges, naming the option and the value", function()
    assert.matches("option 'port' must be an integer in 0..65535, got 70000$", errmsg(ws.listen, { port = 70000 }))
    assert.matches("option 'max_message' must be an integer >= 1, got \"1MB\"$",
      errmsg(ws.listen, { max_message = "1MB" }))
    assert.matches("option 'compression.level' must be an integer in 1..9, got 42$",
      errmsg(ws.listen, { compression = { level = 42 } }))
    -- whole as a float, but past what an integer holds
    assert.matches("option 'max_message' must be an integer >= 1, got 1e%+0?20$", errmsg(ws.listen, { max_message = 1e20 }))
    assert.matches("option 'max_queue' must be an integer", errmsg(ws.connect, "ws://x/", { max_queue = 2 ^ 63 }))
    assert.matches("option 'origins' must be a list of strings, got \"https://a.com\"$",
      errmsg(ws.listen, { origins = "https://a.com" }))
    assert.matches("ws.connect: option 'timeout' must be a number >= 0, got \"5\"$",
      errmsg(ws.connect, "ws://127.0.0.1:1/", { timeout = "5" }))
    assert.matches("option 'headers' must be a table, got 1", errmsg(ws.connect, "ws://x/", { headers = 1 }))
    assert.matches("options must be a table, got string", errmsg(ws.listen, "8080"))
    -- an int in listen(2): past it, the backlog wrapped in C (2^32 + 5 listened with 5)
    assert.matches("option 'backlog' must be an integer in 1..2147483647, got 4294967301$",
      errmsg(ws.listen, { backlog = 4294967301 }))
    assert.matches("backlog out of range", errmsg(require("ws.core").listen, "127.0.0.1", 0, 4294967301, false))
    -- finite: an endless grace never ends a stop (false turns a timeout off)
    assert.matches("option 'grace' must be a number >= 0, got inf", errmsg(ws.listen, { grace = math.huge }))
    assert.matches("option 'idle_timeout' must be", errmsg(ws.listen, { idle_timeout = 1 / 0 }))
    -- (and the port: 2^32 + 80 listened on 80)
    assert.matches("port out of range", errmsg(require("ws.core").listen, "127.0.0.1", 4294967296 + 80, 16, false))
  end)

  it("raises at the caller's line", function()
    local err = errmsg(ws.listen, { port = -1 })
    assert.matches("^ws.listen", err)   -- (pcall calls listen directly: no position to add)
    local ok, err2 = pcall(function() ws.listen { port = -1 } end)
    assert.is_false(ok)
    assert.matches("api_spec.lua:%d+: ws.listen: option 'port'", err2)
    -- the options checked beyond their types, too
    for _, t in ipairs { { forwarded_header = "via" }, { proxy_protocol = true }, { trusted_proxies = { "x" } },
                         { trusted_proxies = { "10.0.0.0/33" } }, { trusted_proxies = "10.0.0.1" },
                         { health_path = "healthz" }, { health_path = { "/ok", "ready" } } } do
      t.logger = false
      local _, e = pcall(function() ws.listen(t) end)
      assert.matches("^[^\n]*api_spec.lua:%d+: ", e)
    end
  end)

  it("takes a port given as a string of digits, and false to turn keepalive and idle timeouts off", function()
    local srv = assert(ws.listen { port = "0", ping_interval = false, idle_timeout = false, logger = false })
    assert.is_number(srv.port)
    srv:close()
  end)

  it("is the single source of defaults, and lets a module register its own options", function()
    assert.equal(1024 * 1024, ws.options.defaults("ws.listen").max_message)
    assert.equal(20, ws.options.defaults("ws.listen").ping_interval)
    assert.is_nil(ws.options.defaults("ws.connect").ping_interval)
    options.register("spec_extra", { { name = "spec_flag", type = "boolean", default = true, doc = "a test option" } })
    options.entry("spec.entry", { "connection", "spec_extra" })
    assert.is_true(options.check("spec.entry", {}).spec_flag)
    assert.matches("did you mean 'spec_flag'", errmsg(options.check, "spec.entry", { spec_flga = false }))
    local names = {}
    for _, s in ipairs(options.list("ws.listen")) do names[s.name] = s.doc end
    assert.is_string(names.port)
    assert.is_string(names.max_message)
  end)
end)

describe("typed docs", function()
  it("types/options.lua (LuaLS option classes) matches the ws.options schemas", function()
    local out, code = H.run(string.format("cd %s && %s scripts/docs.lua --check 2>&1", H.ROOT, H.LUA))
    assert.equal(0, code, out)
  end)
end)

describe("the first hour", function()
  it("ws._VERSION is 0.1.0, with a number to compare", function()
    assert.equal("0.1.0", ws._VERSION)
    assert.equal(100, ws._VERSION_NUM)
  end)

  it("the 0.1.0 rockspec builds what the scm one builds (they differ in version and tag only)", function()
    local function read(name)
      local f = assert(io.open(H.ROOT .. "/" .. name))
      local s = f:read("*a")
      f:close()
      return (s:gsub('version = "[^"]*"\n', ""):gsub('   tag = "[^"]*",\n', ""))
    end
    assert.equal(read("lua-ws-scm-1.rockspec"), read("lua-ws-0.1.0-1.rockspec"))
  end)

  it("receive returns exactly data, kind (and nil, \"timeout\"); a close adds code and reason", function()
    local srv, l, base = loop_server({}, { ["/ws"] = function(conn)
      conn:send("hello")
      conn:receive()
    end })
    H.run_task(l, 10, function()
      local conn = assert(ws.connect(base .. "/ws", { timeout = 5 }))
      assert.equal(2, select("#", conn:receive(5)))
      local r = { n = select("#", conn:receive(0.05)), conn:receive(0.05) }
      assert.same({ n = 2, nil, "timeout" }, r)
      conn:send("bye")
      local n, data, err, code = select("#", conn:receive(5)), conn:receive(5)
      assert.equal(4, n)
      assert.is_nil(data)
      assert.equal("closed", err)
      assert.equal(1000, code)
    end)
    srv:close()
  end)

  it("a refused handshake gives nil, err, response (status, headers, body); the refusal is logged", function()
    local srv, l, base, log = loop_server({
      on_request = function(req)
        if req.params.token ~= "s3cret" then return 401, "who are you?\n", { ["WWW-Authenticate"] = "Bearer" } end
      end,
    }, { ["/ws"] = function(conn) conn:send(conn.request.params.token) end })
    H.run_task(l, 10, function()
      local conn, err, res = ws.connect(base .. "/ws?token=nope", { timeout = 5 })
      assert.is_nil(conn)
      assert.equal("handshake: server answered 401 Unauthorized", err)
      assert.equal(401, res.status)
      assert.equal("Unauthorized", res.reason)
      assert.equal("Bearer", res.headers["www-authenticate"])
      assert.equal("who are you?\n", res.body)
      conn = assert(ws.connect(base .. "/ws?token=s3%63ret", { timeout = 5 }))
      assert.equal("s3cret", (conn:receive(5)))
      conn:close()
      conn, err, res = ws.connect(base .. "/elsewhere", { timeout = 5, origin = "https://evil.example" })
      assert.is_nil(conn)
      assert.equal("handshake: server answered 404 Not Found", err)
      assert.equal(404, res.status)
      conn, err, res = ws.connect(base .. "/ws?token=s3cret", { timeout = 5, origin = "https://evil.example" })
      assert.is_nil(conn)
      assert.equal("handshake: server answered 403 Forbidden", err)
      assert.equal(403, res.status)
      assert.matches("origins", res.body)
    end)
    srv:close()
    local lines = {}
    for _, e in ipairs(log) do lines[#lines + 1] = e.level .. " " .. e.message .. " " .. tostring(e.fields.path) end
    assert.same({ "info refused 401: by on_request /ws", "info refused 404: not found /elsewhere",
                  "info refused 403: origin not allowed (see the origins and check_origin options) /ws" }, lines)
    assert.equal("https://evil.example", log[3].fields.origin)
  end)

  -- What a raw client gets (in a task of l) until stop comes or the server closes.
  local function read_answer(l, raw, stop)
    local got = ""
    raw:settimeout(0)
    while not got:find(stop, 1, true) do
      l:sleep(0.01)
      local d, e, p = raw:receive(4096)
      got = got .. (d or p or "")
      if e == "closed" then break end
    end
    return got
  end

  it("a TLS ClientHello on a plain port is refused at once, in words; wss:// to it says so", function()
    local srv, l, base, log = loop_server({}, { ["/ws"] = function() end })
    H.run_task(l, 10, function()
      local t = gettime()
      local conn, err = ws.connect(base:gsub("^ws:", "wss:") .. "/ws", { timeout = 5 })
      assert.is_nil(conn)
      assert.matches("the server did not answer TLS: is it ws://%?", err)
      assert.is_true(gettime() - t < 2, "took " .. (gettime() - t) .. " s")
    end)
    srv:close()
    assert.matches("^refused 400: TLS handshake on a plain port", log[1].message)
    -- the words a human sees with openssl s_client or curl
    local raw = socket.tcp()
    raw:settimeout(5)
    local srv2, l2 = loop_server({}, {})
    assert(raw:connect("127.0.0.1", srv2.port))
    raw:send("\22\3\1\0\5hello")
    local got
    H.run_task(l2, 5, function() got = read_answer(l2, raw, "wss://") end)
    assert.matches("^HTTP/1.1 400 Bad Request", got)
    assert.matches("not wss://", got)
    raw:close()
    srv2:close()
  end)

  it("a ClientHello whose first segment holds one byte is refused at once too", function()
    local srv, l = loop_server({}, {})
    local raw = socket.tcp()
    raw:settimeout(5)
    assert(raw:connect("127.0.0.1", srv.port))
    raw:setoption("tcp-nodelay", true)
    local got, t0
    H.run_task(l, 5, function()
      t0 = gettime()
      raw:send("\22")
      l:sleep(0.05)   -- (its own segment: the server reads the byte alone)
      raw:send("\3\1\0\5hello")
      got = read_answer(l, raw, "\r\n\r\n")
    end)
    assert.matches("^HTTP/1.1 400 Bad Request", got)
    assert.is_true(gettime() - t0 < 2, "took " .. (gettime() - t0) .. " s")
    raw:close()
    srv:close()
  end)

  it("ws:// to a TLS port is answered 400 in plain words, as a raw HTTP request is", function()
    local dir = H.throwaway_ca()
    local srv, l, base, log = loop_server({ tls = { certificate = dir .. "/server.pem", key = dir .. "/server.key" } },
      { ["/ws"] = function() end })
    H.run_task(l, 10, function()
      local conn, err, res = ws.connect(base .. "/ws", { timeout = 5 })
      assert.is_nil(conn)
      assert.equal("handshake: server answered 400 Bad Request", err)
      assert.matches("speaks wss:// and https://", res.body)
    end)
    assert.matches("^refused 400: plain HTTP on a TLS port", log[1].message)
    -- what curl or a browser sees: the answer, then the end (not a bare EOF)
    local raw = socket.tcp()
    raw:settimeout(5)
    assert(raw:connect("127.0.0.1", srv.port))
    raw:send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    local got
    H.run_task(l, 5, function() got = read_answer(l, raw, "\0") end)
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", got)
    assert.matches("\r\nConnection: close\r\n", got)
    assert.matches("not ws:// or http://\n$", got)
    raw:close()
    srv:close()
    H.sh("rm -rf " .. dir)
  end)

  it("listen on a busy port names the address", function()
    local srv = assert(ws.listen { port = 0, logger = false })
    local s2, err = ws.listen { port = srv.port, logger = false }
    assert.is_nil(s2)
    assert.equal("listen 127.0.0.1:" .. srv.port .. ": address already in use", err)
    srv:close()
  end)

  -- a push server: the handler receives (and so reads the pongs) while a
  -- task sends ticks; the client only listens
  local function push_server(opts)
    return loop_server(opts, { ["/ws"] = function(conn)
      local l = loop.current()
      l:spawn(function()
        for i = 1, 8 do
          l:sleep(0.15)
          if not conn:send("tick " .. i) then return end
        end
      end)
      conn:receive()
    end })
  end

  local function listen_only(base)
    local conn = assert(ws.connect(base .. "/ws", { timeout = 5 }))
    local seen = 0
    for _ = 1, 8 do
      if not conn:receive(2) then break end
      seen = seen + 1
    end
    conn:close()
    return seen
  end

  it("keeps a listen-only client: keepalive pings answered count against the idle timeout", function()
    local srv, l, base = push_server({ ping_interval = 0.2, idle_timeout = 0.5 })
    assert.equal(8, H.run_task(l, 10, listen_only, base))
    srv:close()
    -- the same without keepalive: the idle timeout closes the listener
    srv, l, base = push_server({ ping_interval = false, idle_timeout = 0.5 })
    assert.is_true(H.run_task(l, 10, listen_only, base) < 8)
    srv:close()
  end)
end)
