-- The logger option: failures the server used to swallow (TLS and HTTP
-- handshake failures, refused upgrades, handler and page errors, failed
-- loop tasks) reach logger(level, message, fields); logger = false is silent.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

-- An in-process server whose log lines land in the returned list.
local function logged_server(opts)
  local lines = {}
  opts.port, opts.loop = 0, loop.new()
  opts.logger = function(level, message, fields)
    lines[#lines + 1] = { level = level, message = message, fields = fields or {} }
  end
  local srv = assert(ws.listen(opts))
  return srv, lines
end

local function find(lines, pattern)
  for _, l in ipairs(lines) do
    if l.message:find(pattern) then return l end
  end
end

-- Send raw bytes to the server and wait (stepping its loop) for a line.
local function provoke(srv, lines, bytes, pattern)
  local c = assert(socket.connect("127.0.0.1", srv.port))
  c:send(bytes)
  H.step_until(srv.loop, 5, function() return find(lines, pattern) ~= nil end)
  c:close()
  return find(lines, pattern)
end

describe("logger option", function()
  it("gets TLS handshake failures with the peer and the error", function()
    local ca = H.throwaway_ca()
    local srv, lines = logged_server { tls = { certificate = ca .. "/server.pem", key = ca .. "/server.key" } }
    -- (a broken ClientHello: plain HTTP is answered 400 instead, in api_spec)
    local l = provoke(srv, lines, "\22\3\1\0\5hello", "^tls handshake failed")
    assert.is_truthy(l, "no TLS failure logged")
    assert.equal("info", l.level)
    assert.matches("^127%.0%.0%.1:%d+$", l.fields.peer)
    assert.is_string(l.fields.error)
    srv:close()
  end)

  it("gets bad requests and refused upgrades with peer, path and code", function()
    local srv, lines = logged_server { }
    srv:route("/ws", function() end)
    local l = provoke(srv, lines, "BREW /pot HTCPCP/1.0\r\n\r\n", "^refused 400")
    assert.is_truthy(l, "no bad request logged")
    assert.equal("info", l.level)
    assert.equal(400, l.fields.code)
    assert.matches("^127%.0%.0%.1:%d+$", l.fields.peer)
    for i = #lines, 1, -1 do lines[i] = nil end   -- (the next one must be the upgrade)
    l = provoke(srv, lines, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "^refused 400")
    assert.is_truthy(l, "no refused upgrade logged")
    assert.equal("/ws", l.fields.path)
    assert.equal(400, l.fields.code)
    srv:close()
  end)

  it("gets handler and page errors at level error", function()
    local srv, lines = logged_server { }
    srv:route("/ws", function() error("boom in handler") end)
    srv:page("/p", function() error("boom in page") end)
    local l = provoke(srv, lines, "GET /p HTTP/1.1\r\nHost: x\r\n\r\n", "^page error")
    assert.is_truthy(l)
    assert.equal("error", l.level)
    assert.equal("/p", l.fields.path)
    H.run_task(srv.loop, 5, function()
      local conn = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/ws"))
      local _, _, code = conn:receive(5)
      assert.equal(1011, code)
    end)
    l = find(lines, "^handler error")
    assert.is_truthy(l)
    assert.equal("error", l.level)
    assert.matches("boom in handler", l.message)
    assert.equal("/ws", l.fields.path)
    srv:close()
  end)

  it("gets a failed ws.loop task", function()
    local got
    local l = loop.new { logger = function(level, message, fields) got = { level, message, fields.error } end }
    l:spawn(function() error("task boom") end)
    l:step(0)
    assert.equal("error", got[1])
    assert.equal("ws.loop: task failed", got[2])
    assert.matches("task boom", got[3])
  end)

  it("is silent with logger = false, and writes to stderr by default", function()
    local script = [[
      local ws = require "ws"
      local srv = assert(ws.listen { port = 0, logger = %s })
      srv:route("/ws", function() error("boom") end)
      local l = srv.loop
      l:spawn(function()
        local c = assert(ws.connect("ws://127.0.0.1:" .. srv.port .. "/ws"))
        c:receive(5)
        srv:close()
      end)
      local t = require("socket").gettime() + 5
      while srv.open and require("socket").gettime() < t do l:step(0.05) end
      io.stdout:write("done\n")
    ]]
    local function run(logger)
      return H.run(string.format("timeout 20 %s -e %s 2>&1", H.LUA, H.shell_quote(script:format(logger))))
    end
    local quiet, loud = run("false"), run("nil")
    assert.equal("done\n", quiet)
    assert.matches("handler error: .*boom", loud)
  end)

  it("must be a function or false", function()
    assert.has_error(function() ws.listen { port = 0, logger = "stderr" } end)
    assert.has_error(function() loop.new { logger = 42 } end)
  end)
end)
