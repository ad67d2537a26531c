-- TLS peers that vanish at every awkward moment (issue 11: a client that
-- sent a close frame and closed its socket at once left the wss:// server
-- spinning at 100% CPU forever, serving nobody).
-- Server side: examples/wss_echo.lua against spec/peers/tls_vanish.py
-- (Python's ssl module), each sequence 50 to 120 times; then a canary
-- wss:// client must still echo within 100 ms, the server must be idle (under
-- 10% of a core over a second) and hold as many descriptors as before.
-- Client side: our client against the same script's misbehaving server.
local socket = require "socket"
local ws = require "ws"
local H = require "spec.helpers"

local gettime = socket.gettime
local PEER = H.ROOT .. "/spec/peers/tls_vanish.py"

-- CPU seconds (user + system) a process has used so far
local TCK = tonumber((H.run("getconf CLK_TCK"))) or 100
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local stat = f:read("*l")
  f:close()
  -- fields after the command name (which is in parentheses): state is 3rd
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  return (tonumber(fields[12]) + tonumber(fields[13])) / TCK   -- utime, stime (14th, 15th)
end

-- The quickest of up to three echoes: a server left spinning or stuck is
-- slow every time; a pause of the machine (loops_spec saw 100 ms with no
-- time waiting for a CPU) hits one echo.
local function canary(port, ca)
  local conn, err = ws.connect("wss://127.0.0.1:" .. port .. "/ws", { timeout = 3, tls = { cafile = ca } })
  assert(conn, "canary could not connect: " .. tostring(err))
  local data, took = nil, math.huge
  for _ = 1, 3 do
    local t0 = gettime()
    assert(conn:send("canary"))
    data = conn:receive(3)
    took = math.min(took, gettime() - t0)
    if data ~= "canary" or took < 0.1 then break end
  end
  conn:close()
  return data, took
end

-- The server serves, idles and holds no leftover descriptor.
local function assert_healthy(server, ca, baseline, what)
  assert.is_true(server.alive(), what .. ": server died\n" .. server.output())
  local data, took = canary(server.port, ca)
  assert.equal("canary", data, what)
  assert.is_true(took < 0.1, string.format("%s: canary echo took %.0f ms", what, took * 1000))
  local c0 = cpu_seconds(server.pid)
  socket.sleep(1)
  local used = cpu_seconds(server.pid) - c0
  assert.is_true(used < 0.1, string.format("%s: server used %.0f%% of a core while idle", what, used * 100))
  assert.equal(baseline, H.fd_settled(server.pid, baseline), what .. ": descriptors")
end

local function hostile(port, ca, sequence, count)
  local out, code = H.run(string.format("timeout 90 %s %s client %d %s %s %d 2>&1",
    H.PYTHON, PEER, port, H.shell_quote(ca), sequence, count))
  local r = H.json_lines(out)[1]
  assert(code == 0 and r, sequence .. ": the client did not finish (exit " .. tostring(code) .. ")\n" .. out)
  return r
end

local SEQUENCES = {
  -- TLS handshake
  "reset_before_hello", "reset_mid_hello", "reset_after_hello",
  -- HTTP upgrade
  "reset_mid_upgrade", "reset_after_upgrade",
  -- mid-frame, and while the server sends a large message
  "reset_mid_frame", "reset_during_large_echo", "close_during_large_echo",
  -- close handshakes in flight, either way (close_at_once: issue 11)
  "close_at_once", "reset_after_close_frame", "reset_after_server_close",
  -- close_notify, with and without TCP close
  "close_notify_keep_tcp", "close_notify_and_close", "close_frame_notify_close", "half_message_notify",
}
-- (the large echoes take ~40 ms each: 50 of them)
-- A server script with --cert and --key against each sequence, count times
-- (counts[sequence] or 120), then the health checks.
local function server_suite(title, script, sequences, counts)
  describe(title, function()
    local dir, ca, server, baseline

    setup(function()
      dir = H.throwaway_ca()
      ca = dir .. "/ca.pem"
      server = H.start_lua(script, string.format("--cert %s/server.pem --key %s/server.key", dir, dir), "tls-vanish")
      canary(server.port, ca)   -- whatever a first connection sets up stays
      baseline = H.fd_settled(server.pid, H.fd_count(server.pid))
    end)

    teardown(function()
      if server then server.stop() end
      if dir then os.execute("rm -rf " .. H.shell_quote(dir)) end
    end)

    for _, sequence in ipairs(sequences) do
      local count = counts[sequence] or 120
      it(sequence .. " x" .. count .. ": still serves, idles, and holds no descriptor", function()
        local r = hostile(server.port, ca, sequence, count)
        assert.equal(0, r.errors, sequence .. ": " .. table.concat(r.first, "; "))
        assert_healthy(server, ca, baseline, sequence)
      end)
    end
  end)
end

server_suite("wss:// server (examples/wss_echo.lua) against TLS clients that vanish",
  "examples/wss_echo.lua", SEQUENCES, { reset_during_large_echo = 50, close_during_large_echo = 50 })

-- (LuaSec 1.2 spins inside a write to a session OpenSSL has failed: ws.io
-- never writes to a LuaSec socket after a read saw the transport end)
server_suite("LuaSec sockets handed to ws.accept, against TLS clients that vanish",
  "spec/peers/luasec_echo.lua", { "close_at_once", "reset_after_close_frame", "close_frame_notify_close" }, {})

describe("our wss:// client against a TLS server that vanishes", function()
  local dir, peer, results, fds = nil, nil, {}, nil
  local COUNT_EACH = 40
  local MODES = { "reset_handshake", "reset_upgrade", "half_101", "reset_mid_frame", "close_at_once",
                  "close_reset", "close_notify_keep_tcp", "close_notify_close", "frame_notify_close",
                  "reset_while_client_sends", "reset_during_close" }

  setup(function()
    dir = H.throwaway_ca()
    peer = H.start_server(function(port)
      return string.format("exec %s %s server %d %s/server.pem %s/server.key", H.PYTHON, PEER, port, dir, dir)
    end, "tls-vanish-server")
    local reset_port = assert(H.wait_output(peer, '"reset_port": (%d+)'), peer.output())
    local out = H.run(string.format("timeout 120 %s %s/spec/peers/tls_vanish_client.lua %d %s %s/ca.pem %d 2>&1",
      H.LUA, H.ROOT, peer.port, reset_port, dir, COUNT_EACH))
    for name, line in out:gmatch("(%S+) (n=[^\n]*)") do results[name] = line end
    local before, after = out:match("fds before=(%d+) after=(%d+)")
    fds = { tonumber(before), tonumber(after), out }
  end)

  teardown(function()
    if peer then peer.stop() end
    if dir then os.execute("rm -rf " .. H.shell_quote(dir)) end
  end)

  for _, mode in ipairs(MODES) do
    it(mode .. " x" .. COUNT_EACH .. ": every connection fails or closes promptly, as it should", function()
      local line = results[mode]
      assert(line, mode .. ": no result (the client hung or crashed)\n" .. tostring(fds[3]))
      local bad, ms = line:match("bad=(%d+) max_ms=(%d+)")
      assert.equal(0, tonumber(bad), mode .. ": " .. line)
      assert.is_true(tonumber(ms) < 2500, mode .. ": " .. line)
    end)
  end

  it("holds no descriptor afterwards", function()
    assert(fds[1], "no descriptor counts\n" .. tostring(fds[3]))
    assert.equal(fds[1], fds[2])
  end)
end)

describe("issue 11 #slow", function()
  it("close frame and close at once, 1,000 times: the server idles, serves a canary, holds no descriptor", function()
    local dir = H.throwaway_ca()
    local ca = dir .. "/ca.pem"
    local server = H.start_lua("examples/wss_echo.lua",
      string.format("--cert %s/server.pem --key %s/server.key", dir, dir), "wss-issue11")
    local ok, err = pcall(function()
      canary(server.port, ca)
      local baseline = H.fd_settled(server.pid, H.fd_count(server.pid))
      local r = hostile(server.port, ca, "close_at_once", 1000)
      assert.equal(0, r.errors, table.concat(r.first, "; "))
      assert_healthy(server, ca, baseline, "close_at_once x1000")
    end)
    server.stop()
    os.execute("rm -rf " .. H.shell_quote(dir))
    assert(ok, err)
  end)
end)
