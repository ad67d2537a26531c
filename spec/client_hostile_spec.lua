-- Our client against a hostile server (spec/servers/evil_server.lua): every
-- fault of the peer is nil, err (never an error raised), bounded in time,
-- with the close code RFC 6455 asks for, and the socket closed.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime

describe("client against a hostile server", function()
  local evil
  setup(function() evil = H.start_lua("spec/servers/evil_server.lua", nil, "evil-server") end)
  teardown(function() evil.stop() end)

  local function url(name) return "ws://127.0.0.1:" .. evil.port .. "/" .. name end

  -- what the server printed for name: the client's close code ("none"), and
  -- whether the client closed TCP ("eof")
  local function seen(name)
    local p = name:gsub("%p", "%%%0")
    local code = H.wait_output(evil, p .. " close (%w+)", 6)
    return code, H.wait_output(evil, p .. " (eof)", 6)
  end

  -- ws.connect must give nil, err (a string) within max_secs, never raise
  local function refused(name, opts, max_secs)
    local t = gettime()
    local ok, conn, err = pcall(ws.connect, url(name), opts or { timeout = 3 })
    local dt = gettime() - t
    assert.is_true(ok, "ws.connect raised: " .. tostring(conn))
    assert.is_nil(conn)
    assert.is_string(err)
    assert.is_true(dt < (max_secs or 2), string.format("refusal took %.2f s: %s", dt, err))
    return err
  end

  it("a refusal whose Content-Length is no whole number is read as one without a length", function()
    assert.equal("handshake: server answered 403 Forbidden", refused("cl-frac", { timeout = 1 }))
    assert.same({ "none", "eof" }, { seen("cl-frac") })
  end)

  it("a chunked refusal whose chunk size overflows 64 bits ends, bounded", function()
    -- (in a process of its own: Lua 5.3+ looped there for good)
    local out = H.run(string.format("timeout 10 %s -e %s 2>&1", H.LUA, H.shell_quote(
      "print((select(2, require('ws').connect(" .. string.format("%q", url("chunk-huge")) .. ", { timeout = 1 }))))")))
    assert.equal("handshake: server answered 403 Forbidden\n", out)
    assert.same({ "none", "eof" }, { seen("chunk-huge") })
  end)

  -- timed(f, ...) -> seconds f took, and its results (it must not raise)
  local function timed(f, ...)
    local t = gettime()
    local r = { pcall(f, ...) }
    assert.is_true(r[1], tostring(r[2]))
    return gettime() - t, r[2], r[3], r[4], r[5]
  end

  it("receive(timeout) returns at its deadline while control frames or empty fragments keep coming", function()
    local conns = {}
    finally(function() for _, c in ipairs(conns) do c:abort() end end)
    for _, name in ipairs { "ping-torrent", "frag-torrent" } do
      local conn = assert(ws.connect(url(name), { timeout = 3 }))
      conns[#conns + 1] = conn
      local dt, data, err = timed(conn.receive, conn, 0.3)
      assert.same({ nil, "timeout" }, { data, err }, name)
      assert.is_true(dt < 1.5, string.format("%s: receive(0.3) took %.2f s", name, dt))
      conn:abort()
      assert.equal("closed", conn.state)
      assert.equal("eof", select(2, seen(name)), name)
    end
  end)

  -- a connected socket that ws.core cannot read itself: read through its
  -- own receive, as a LuaSec socket (getpeercertificate says so)
  local function wrapped()
    local tcp = assert(socket.connect("127.0.0.1", evil.port))
    local wrapper = { getpeercertificate = function() end }
    for _, m in ipairs { "getfd", "dirty", "settimeout", "receive", "send", "close", "shutdown" } do
      wrapper[m] = function(_, ...) return tcp[m](tcp, ...) end
    end
    return wrapper
  end

  it("... also on a socket ws.core cannot read itself (opts.sock: a wrapper, as LuaSec's)", function()
    local wrapper = wrapped()
    local conn = assert(ws.connect(url("frag-torrent"), { timeout = 3, sock = wrapper }))
    finally(function() conn:abort() end)
    assert.is_nil(conn.rfd)
    local dt, data, err = timed(conn.receive, conn, 0.3)
    assert.same({ nil, "timeout" }, { data, err })
    assert.is_true(dt < 1.5, string.format("receive(0.3) took %.2f s", dt))
    conn:abort()
    assert.equal("eof", select(2, seen("frag-torrent")))
  end)

  it("close(code, reason, timeout) gives up at its timeout while messages keep coming", function()
    local conn = assert(ws.connect(url("msg-torrent"), { timeout = 3 }))
    finally(function() conn:abort() end)
    assert.equal("m", (conn:receive(1)))
    local dt, ok, err = timed(conn.close, conn, 1000, "bye", 0.3)
    assert.same({ nil, "timeout" }, { ok, err })
    assert.is_true(dt < 1.5, string.format("close(..., 0.3) took %.2f s", dt))
    assert.equal("closed", conn.state)
    assert.same({ "1000", "eof" }, { seen("msg-torrent") })
  end)

  it("a ping flood read by keepalive (nobody receives) does not hold the loop", function()
    local l = loop.new()
    local gap, last, stop = 0, nil, false
    l:spawn(function()
      last = gettime()
      for _ = 1, 500 do
        if stop then return end
        l:sleep(0.02)
        gap, last = math.max(gap, gettime() - last), gettime()
      end
    end)
    local conn
    finally(function() if conn then conn:abort() end end)
    H.run_task(l, 10, function()
      conn = assert(ws.connect(url("ping-torrent"), { timeout = 3, ping_interval = 0.05 }))
      l:sleep(2)
      stop = true
    end)
    assert.equal("open", conn.state)
    assert.is_true(gap < 0.5, string.format("the loop stood still for %.2f s", gap))
    conn:abort()
    assert.equal("eof", select(2, seen("ping-torrent")))
  end)

  it("endless empty fragments on a socket ws.core cannot read itself do not hold the loop", function()
    local l = loop.new()
    local gap, last, stop = 0, nil, false
    l:spawn(function()
      last = gettime()
      for _ = 1, 500 do
        if stop then return end
        l:sleep(0.02)
        gap, last = math.max(gap, gettime() - last), gettime()
      end
    end)
    local conn
    finally(function() if conn then conn:abort() end end)
    local dt, data, err = H.run_task(l, 10, function()
      conn = assert(ws.connect(url("frag-torrent"), { timeout = 3, sock = wrapped() }))
      local t = gettime()
      local d, e = conn:receive(1)
      l:sleep(0.1)   -- (the ticker's turn: a gap it has not seen yet)
      stop = true
      return gettime() - t, d, e
    end)
    assert.same({ nil, "timeout" }, { data, err })
    assert.is_true(dt < 2, string.format("receive(1) took %.2f s", dt))
    assert.is_true(gap < 0.5, string.format("the loop stood still for %.2f s", gap))
    conn:abort()
    assert.equal("eof", select(2, seen("frag-torrent")))
  end)
end)
