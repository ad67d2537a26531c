-- Hostile peers against running servers (real processes, real sockets).
--
-- Every test runs a well-behaved client in its own process
-- (spec/servers/good_client.lua) while the attack goes on, and checks that
-- its echoes keep coming back intact and fast (each round trip and each new
-- handshake < 1 s, no gap > 1 s), that the server's RSS stays bounded, and
-- that its open descriptors return to the baseline afterwards.
--
-- Servers: examples/echo.lua (the defaults, max_message 16 MiB) and
-- spec/servers/hostile_server.lua (handshake_timeout 2, send_timeout 2,
-- max_message 1 MiB, max_queue 1 MiB).
--
-- Attacks: slowloris (500 half heads), oversized and endless request heads,
-- frame lengths of 2^63-1 and 1 GiB, a peer that never reads, 2,000
-- connections dropped halfway through something, a flood of 100k pings, a
-- connection flood past the descriptor limit, random bytes. Each takes a
-- few seconds; HOSTILE_VERBOSE=1 prints what was measured.
local socket = require "socket"
local H = require "spec.helpers"
local B = require "spec.bits"

local gettime = socket.gettime

-- HOSTILE_VERBOSE=1 prints what each test measured.
local function note(fmt, ...)
  if os.getenv("HOSTILE_VERBOSE") then io.stderr:write(string.format(fmt, ...), "\n") end
end

---- servers -----------------------------------------------------------------------

-- Start a server script on a free port (make test-asan gives every process
-- a small ASan quarantine, so RSS stays meaningful). prefix: shell commands
-- to run first (ulimit ...).
local function start_server(script, name, prefix)
  return H.start_lua(script, "", name, prefix)
end

---- the guard: good client, RSS, descriptors -----------------------------------

-- The good client speaks raw RFC 6455 (spec/helpers.lua), not through ws.*.
local function start_good(port, reconnect)
  return H.spawn(string.format("exec %s %s/spec/servers/good_client.lua --port %d --interval 0.05 --reconnect %g",
    H.LUA, H.ROOT, port, reconnect or 1), "good-client")
end

-- What the good client saw between t0 and t1.
local function good_report(proc, t0, t1)
  local rep = { ok = 0, conns = 0, fails = {}, max_echo = 0, max_conn = 0, max_gap = 0 }
  local last = t0
  for line in proc.output():gmatch("[^\n]+") do
    local what, t, x = line:match("^(%a+) ([%d.]+) ?(.*)$")
    t = tonumber(t)
    if t and t >= t0 and t <= t1 then
      if what == "ok" then
        rep.ok = rep.ok + 1
        rep.max_echo = math.max(rep.max_echo, tonumber(x))
      elseif what == "conn" then
        rep.conns = rep.conns + 1
        rep.max_conn = math.max(rep.max_conn, tonumber(x))
      else
        rep.fails[#rep.fails + 1] = line
      end
      if what == "ok" or what == "conn" then
        rep.max_gap = math.max(rep.max_gap, t - last)
        last = t
      end
    end
  end
  rep.max_gap = math.max(rep.max_gap, t1 - last)
  return rep
end

local function wait_until(secs, pred)
  local deadline = gettime() + secs
  while not pred() do
    if gettime() > deadline then return false end
    socket.sleep(0.05)
  end
  return true
end

--- Run attack(sample) against server while the good client echoes.
-- sample() records the server's RSS; call it during the attack.
-- opts.rss_kib: allowed RSS growth over the baseline; opts.settle: seconds
-- for descriptors to come back; opts.reconnect: seconds between the good
-- client's new handshakes (default 1). Returns a report of what was seen.
local function guarded(server, opts, attack)
  local pid = server.pid
  -- baseline: the server alone (no connection of ours open)
  local fd0 = H.fd_count(pid)
  wait_until(3, function()
    socket.sleep(0.2)
    local n = H.fd_count(pid)
    if n == fd0 then return true end
    fd0 = n
  end)
  local rss0 = H.rss_kib(pid)
  local peak = rss0
  local function sample()
    local r = H.rss_kib(pid)
    if r and r > peak then peak = r end
    return r
  end

  local log_from = #server.output() + 1
  local good = start_good(server.port, opts.reconnect)
  local ok_started = wait_until(5, function() return good.output():find("\nok ", 1, true) ~= nil
    or good.output():find("^ok ") ~= nil end)
  local t0 = gettime()
  local ok, err = pcall(attack, sample)
  sample()
  -- the good client goes on a little after the attack: recovery counts too
  socket.sleep(0.5)
  local t1 = gettime()
  sample()
  good.stop()
  assert(ok, err)
  assert.is_true(ok_started, "the good client never got an echo:\n" .. good.output())
  assert.is_true(server.alive(), "the server died:\n" .. server.output())
  -- nothing a peer sends may raise an error in the server
  local log = server.output():sub(log_from)
  local bad = log:match("[^\n]*handler error[^\n]*") or log:match("[^\n]*task failed[^\n]*")
  assert.is_nil(bad, "server log: " .. tostring(bad))

  local rep = good_report(good, t0, t1)
  local where = string.format("good client %s (%d echoes, %d handshakes in %.1f s)",
    good.log, rep.ok, rep.conns, t1 - t0)
  assert.are.same({}, rep.fails, where)
  assert.is_true(rep.max_echo < 1, string.format("slowest echo %.3f s; %s", rep.max_echo, where))
  assert.is_true(rep.max_conn < 1, string.format("slowest handshake %.3f s; %s", rep.max_conn, where))
  assert.is_true(rep.max_gap < 1, string.format("longest gap without an echo %.3f s; %s", rep.max_gap, where))
  assert.is_true(rep.ok >= (t1 - t0) * 5, string.format("too few echoes; %s", where))

  local growth = peak - rss0
  assert.is_true(growth <= opts.rss_kib, string.format("server RSS grew by %d KiB (from %d KiB; allowed %d)",
    growth, rss0, opts.rss_kib))

  local t2 = gettime()
  local settled = wait_until(opts.settle or 5, function() return H.fd_count(pid) <= fd0 end)
  assert.is_true(settled, string.format("server descriptors: %d, baseline %d", H.fd_count(pid), fd0))
  note("  attack %.1f s; good client: %d echoes (slowest %.0f ms), %d handshakes (slowest %.0f ms), " ..
    "longest gap %.0f ms; RSS %d -> peak %d KiB (+%d); fds back to %d in %.1f s",
    t1 - t0, rep.ok, rep.max_echo * 1000, rep.conns, rep.max_conn * 1000, rep.max_gap * 1000,
    rss0, peak, peak - rss0, fd0, gettime() - t2)
  return { rss0 = rss0, peak = peak, growth = growth, good = rep, fd0 = fd0 }
end

---- raw peers -------------------------------------------------------------------

local function tcp(port)
  local s = assert(socket.tcp())
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  s:settimeout(0)
  return s
end

-- Send all of data on a non-blocking socket within secs; true, or nil, err.
local function send_all(s, data, secs)
  local deadline = gettime() + (secs or 5)
  local i = 1
  while i <= #data do
    local last, err, sent = s:send(data, i)
    if last then return true end
    if sent and sent >= i then i = sent + 1 end
    if err ~= "timeout" then return nil, err end
    if gettime() > deadline then return nil, "timeout" end
    socket.select(nil, { s }, 0.1)
  end
  return true
end

-- "eof" once the peer closed (FIN or RST), "data" if bytes came, or
-- "open" if nothing happened within secs.
local function peer_state(s, secs)
  local r = socket.select({ s }, nil, secs or 0)
  if not r[1] then return "open" end
  local data, err, partial = s:receive(65536)
  if (data and #data > 0) or (partial and #partial > 0) then return "data", data or partial end
  if err == "timeout" then return "open" end
  return "eof", err
end

-- Read an HTTP response head within secs: the head, or nil, err.
local function read_response(s, secs)
  local buf, deadline = "", gettime() + (secs or 3)
  while not buf:find("\r\n\r\n", 1, true) do
    local left = deadline - gettime()
    if left <= 0 then return nil, "timeout: " .. buf end
    local st, data = peer_state(s, left)
    if st == "eof" then return nil, "closed: " .. buf end
    if st == "data" then buf = buf .. data end
  end
  return buf
end

-- Wait until the server closes the connection (reading and discarding).
local function wait_eof(s, secs)
  local deadline = gettime() + (secs or 3)
  while gettime() < deadline do
    local st = peer_state(s, deadline - gettime())
    if st == "eof" then return true end
  end
  return false
end

-- Frames until a close: its code (1005 if empty), or nil, "eof"/"timeout".
local function read_close(r, secs)
  r.timeout = secs or 3
  local ok, code, why = pcall(r.read_close, r)
  if not ok then return nil, "eof" end
  if code then return code end
  return nil, why == "timeout" and "timeout" or "eof"
end

local function upgraded(port)
  local r, head = H.raw(port, nil, { timeout = 3 })
  assert.matches("^HTTP/1.1 101", head)
  return r
end

-- A seeded generator of our own (Park-Miller, exact in doubles on every
-- Lua), used like math.random: the global one names the helpers' log files,
-- and reseeding it would give every run of this file (and a concurrent one)
-- the same names.
local function seeded(seed)
  local x = seed % 2147483646 + 1
  return function(a, b)
    x = x * 16807 % 2147483647
    if not a then return (x - 1) / 2147483646 end       -- [0, 1)
    if not b then a, b = 1, a end
    return a + x % (b - a + 1)
  end
end

local MASK = B.hex "37 fa 21 3d"

-- A masked binary frame header declaring n payload bytes (64-bit form;
-- n a number, or its 8 bytes).
local function header64(n, opcode)
  return string.char(0x80 + (opcode or 2), 0x80 + 127) .. (type(n) == "string" and n or B.u64(n)) .. MASK
end
local MAX_LEN = H.MAX_LEN

---- the tests ---------------------------------------------------------------------

describe("hostile peers", function()
  local echo, small

  setup(function()
    echo = start_server("examples/echo.lua", "hostile-echo")
    small = start_server("spec/servers/hostile_server.lua", "hostile-small")
  end)
  teardown(function()
    if echo then echo.stop() end
    if small then small.stop() end
  end)

  it("slowloris: 500 half-open handshakes are cut at handshake_timeout", function()
    local socks, opened, cut = {}, {}, {}
    guarded(small, { rss_kib = 16 * 1024 }, function(sample)
      for i = 1, 500 do
        local s = tcp(small.port)
        -- half a request head, then one more byte now and then
        assert(s:send("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: web"))
        socks[i], opened[i] = s, gettime()
        if i % 100 == 0 then sample() end
      end
      local more = "socket\r\nConnection: Upgrade\r\n"
      local round, left = 0, 500
      while left > 0 and gettime() - opened[1] < 6 do
        round = round + 1
        for i, s in ipairs(socks) do
          if not cut[i] then
            local st = peer_state(s, 0)
            assert.are_not.equal("data", st, "the server answered a half head")
            if st == "eof" then
              cut[i] = gettime()
              left = left - 1
            elseif round % 5 == 0 then
              s:send(more:sub(round / 5, round / 5))
            end
          end
        end
        sample()
        socket.sleep(0.1)
      end
    end)
    local early, late, n = math.huge, 0, 0
    for i = 1, 500 do
      if cut[i] then
        n = n + 1
        early = math.min(early, cut[i] - opened[i])
        late = math.max(late, cut[i] - opened[i])
      end
      socks[i]:close()
    end
    note("  slowloris: %d of 500 cut, after %.2f .. %.2f s", n, early, late)
    assert.equal(500, n, "connections the server cut")
    -- handshake_timeout is 2 s: none cut much before, all soon after
    assert.is_true(early > 1.5, string.format("first cut after %.2f s", early))
    assert.is_true(late < 3.5, string.format("last cut after %.2f s", late))
  end)

  it("oversized header blocks and endless header lines get 431 and a close", function()
    guarded(echo, { rss_kib = 8 * 1024 }, function(sample)
      local port = echo.port
      local head = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:" .. port ..
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

      -- one header of 20 KiB (the limit is 16 KiB)
      local s = tcp(port)
      assert(send_all(s, head .. "X-Big: " .. string.rep("a", 20 * 1024) .. "\r\n\r\n"))
      local res, err = read_response(s)
      assert.matches("^HTTP/1.1 431 ", res, err)
      assert.is_true(wait_eof(s), "connection left open after 431")
      s:close()

      -- a 20 KiB request target
      s = tcp(port)
      assert(send_all(s, "GET /" .. string.rep("b", 20 * 1024) .. " HTTP/1.1\r\n"))
      res, err = read_response(s)
      assert.matches("^HTTP/1.1 431 ", res, err)
      assert.is_true(wait_eof(s))
      s:close()

      -- endless header lines: keep sending until the server answers
      s = tcp(port)
      assert(send_all(s, head))
      local sent, st, data = 0, "open", nil
      while st == "open" and sent < 1024 * 1024 do
        local chunk = {}
        for i = 1, 32 do chunk[i] = string.format("X-Line-%d: %d\r\n", sent + i, i) end
        chunk = table.concat(chunk)
        if not send_all(s, chunk, 2) then break end
        sent = sent + #chunk
        st, data = peer_state(s, 0.001)
      end
      assert.is_true(sent < 64 * 1024, "sent " .. sent .. " bytes of headers before an answer")
      res = st == "data" and data or read_response(s)
      assert.matches("^HTTP/1.1 431 ", res)
      assert.is_true(wait_eof(s))
      s:close()
      sample()

      -- many short header lines in a small head: more than the parser keeps
      local lines = {}
      for i = 1, 100 do lines[i] = "X-H" .. i .. ": v\r\n" end
      s = tcp(port)
      assert(send_all(s, head .. table.concat(lines) .. "\r\n"))
      res, err = read_response(s)
      assert.matches("^HTTP/1.1 431 ", res, err)
      assert.is_true(wait_eof(s))
      s:close()
    end)
  end)

  it("frame headers declaring 2^63-1 bytes or 1 GiB are closed with 1009 at once, nothing allocated", function()
    local report = guarded(echo, { rss_kib = 4 * 1024 }, function(sample)
      local cases = {
        { n = MAX_LEN, code = 1009 },                -- the largest legal length
        { n = 1024 * 1024 * 1024, code = 1009 },     -- 1 GiB
        { n = 16 * 1024 * 1024 + 1, code = 1009 },   -- one byte over the echo server's limit
        { n = MAX_LEN, code = 1009, bytewise = true },
        { raw = "\130\255\128\0\0\0\0\0\0\0" .. MASK, code = 1002 },  -- top bit set: not a length
        { n = MAX_LEN, code = 1009, opcode = 1 },                       -- text
      }
      for _, c in ipairs(cases) do
        local r = upgraded(echo.port)
        local bytes = c.raw or header64(c.n, c.opcode)
        local t = gettime()
        if c.bytewise then
          for i = 1, #bytes do
            r:send(bytes:sub(i, i))
            socket.sleep(0.01)
          end
          t = gettime()
        else
          r:send(bytes .. "some payload")
        end
        local code, err = read_close(r, 2)
        local took = gettime() - t
        assert.equal(c.code, code, err)
        assert.is_true(took < 0.5, string.format("close after %.3f s", took))
        assert.is_true(r:closed_by_peer(3), "TCP left open after the close frame")
        r:close()
        sample()
      end

      -- within the limit (16 MiB): memory follows the bytes that arrive
      local r = upgraded(echo.port)
      local before = sample()
      r:send(header64(16 * 1024 * 1024 - 1) .. string.rep("\0", 64 * 1024))
      socket.sleep(0.3)
      local after = sample()
      assert.is_true(after - before < 2 * 1024,
        string.format("RSS grew by %d KiB for 64 KiB of a declared 16 MiB", after - before))
      r:close()
    end)
    assert.is_true(report.growth <= 4 * 1024)
  end)

  it("a client that sends but never reads is dropped after send_timeout", function()
    local dropped, started
    guarded(small, { rss_kib = 16 * 1024 }, function(sample)
      local r = upgraded(small.port)
      local s = r.sock
      s:settimeout(0)
      local msg = H.frame(2, string.rep("m", 256 * 1024))
      started = gettime()
      local i, messages = 1, 0
      while gettime() - started < 12 do
        local last, err, sent = s:send(msg, i)
        if last then
          messages, i = messages + 1, 1
        else
          if sent and sent >= i then i = sent + 1 end
          if err ~= "timeout" then dropped = gettime(); break end
          socket.select(nil, { s }, 0.1)
          sample()
        end
      end
      if not dropped and wait_eof(s, 1) then dropped = gettime() end
      s:close()
      assert.is_truthy(dropped, "still connected after 12 s (" .. messages .. " messages sent)")
    end)
    note("  never reads: dropped after %.1f s", dropped - started)
    assert.is_true(dropped - started < 10, string.format("dropped after %.1f s", dropped - started))
    assert.is_truthy(small.output():find("send timeout", 1, true), "server log:\n" .. small.output())
  end)

  it("2,000 connections dropped mid-handshake, mid-frame and mid-close leave no descriptor behind", function()
    local random = seeded(6455)
    local counts = {}
    guarded(small, { rss_kib = 16 * 1024, settle = 6 }, function(sample)
      local port = small.port
      local request = H.request(port)
      local pool = {}
      local function drop(s)
        if random() < 0.5 then s:setoption("linger", { on = true, timeout = 0 }) end  -- RST
        s:close()
      end
      local kinds = {
        -- a prefix of the request head
        function()
          local s = tcp(port)
          s:send(request:sub(1, random(0, #request - 1)))
          return s
        end,
        -- a prefix of a data frame (header or payload)
        function()
          local r = upgraded(port)
          local f = H.frame(random(1, 2), string.rep("d", random(0, 3000)), { fin = random() < 0.7 })
          r:send(f:sub(1, random(1, #f - 1)))
          return r.sock
        end,
        -- a whole first fragment, then nothing
        function()
          local r = upgraded(port)
          r:send(H.frame(1, "first part", { fin = false }))
          return r.sock
        end,
        -- a close frame (whole or cut), gone before the answer
        function()
          local r = upgraded(port)
          local f = H.frame(8, "\3\232bye")
          r:send(f:sub(1, random(1, #f)))
          return r.sock
        end,
        -- an echo, answered, never read
        function()
          local r = upgraded(port)
          r:send(H.frame(1, "hello"))
          return r.sock
        end,
        -- a protocol error: gone while the server's close 1002 is under way
        function()
          local r = upgraded(port)
          r:send(H.frame(random(3, 7), "bad opcode"))
          return r.sock
        end,
      }
      for i = 1, 2000 do
        local k = random(#kinds)
        counts[k] = (counts[k] or 0) + 1
        pool[#pool + 1] = kinds[k]()
        -- keep up to 60 open; drop them in random order
        if #pool >= 60 then
          for _ = 1, 30 do drop(table.remove(pool, random(#pool))) end
        end
        if i % 200 == 0 then sample() end
      end
      while #pool > 0 do drop(table.remove(pool, random(#pool))) end
    end)
    note("  drops: kinds %s", table.concat(counts, "/"))
    assert.equal(6, #counts)
  end)

  it("a flood of pings (up to 300k) from a client that never reads pongs stays bounded", function()
    local sent_pings, dropped = 0, false
    guarded(small, { rss_kib = 16 * 1024 }, function(sample)
      local r = upgraded(small.port)
      local s = r.sock
      s:settimeout(0)
      local batch = string.rep(H.frame(9, string.rep("p", 125)), 1000)
      local t = gettime()
      for _ = 1, 300 do
        local ok, err = send_all(s, batch, 5)
        if not ok then
          dropped = err ~= "timeout" or wait_eof(s, 3)
          break
        end
        sent_pings = sent_pings + 1000
        sample()
      end
      if not dropped then dropped = wait_eof(s, 3) end
      s:close()
      assert.is_true(gettime() - t < 12)
    end)
    note("  ping flood: %d pings sent, dropped: %s", sent_pings, tostring(dropped))
    -- once its socket is full, a pong not yet started takes the latest ping's
    -- payload (RFC 6455 5.5.3): the queue stays at two pongs, and the
    -- flooder, which reads nothing, is dropped when send_timeout passes
    assert.is_true(dropped, "flooder still connected after " .. sent_pings .. " pings")
    assert.is_truthy(small.output():find("1006 send timeout", 1, true), "server log:\n" .. small.output())
  end)

  it("a connection flood past the descriptor limit: the server backs off, then serves again", function()
    -- a server of its own, with room for 64 descriptors
    local srv = start_server("spec/servers/hostile_server.lua", "hostile-emfile", "ulimit -n 64;")
    local port = srv.port
    finally(function() srv.stop() end)
    -- the good client keeps the connection it has: new ones must wait
    guarded(srv, { rss_kib = 16 * 1024, reconnect = 1000 }, function(sample)
      local socks, flood = {}, gettime()
      for i = 1, 150 do
        local s = socket.tcp()
        s:settimeout(1)
        s:connect("127.0.0.1", port)    -- queued in the backlog once the server is out of descriptors
        socks[i] = s
      end
      assert.is_true(wait_until(3, function() return srv.output():find("Too many open files", 1, true) ~= nil end),
        "the server never ran out of descriptors:\n" .. srv.output())
      socket.sleep(1)
      sample()
      -- logged at most once a second (it was ten times)
      local _, lines = srv.output():gsub("accept: Too many open files", "")
      assert.is_true(lines <= 2 + gettime() - flood, lines .. " lines:\n" .. srv.output())
      for _, s in ipairs(socks) do s:close() end
      -- descriptors come back: a new handshake goes through at once
      local t = gettime()
      local r, head = H.raw(port, nil, { timeout = 3 })
      assert.matches("^HTTP/1.1 101", head)
      assert.is_true(gettime() - t < 1, string.format("handshake after the flood took %.2f s", gettime() - t))
      r:send_frame(1, "after the flood")
      local f = r:read_frame()
      assert.equal("after the flood", f and f.payload)
      r:close()
    end)
  end)

  it("out of descriptors for good: clients waiting in the backlog get a reset at once, not a hang", function()
    -- (soft and hard: the server cannot raise it)
    local srv = H.start_lua("examples/echo.lua", "--quiet", "echo-nofile", "ulimit -n 40;")
    finally(srv.stop)
    local socks, served, reset, hung = {}, 0, 0, 0
    for i = 1, 80 do
      local s = socket.tcp()
      s:settimeout(3)
      assert(s:connect("127.0.0.1", srv.port))
      s:send(H.request(srv.port, "/ws"))
      socks[i] = s
    end
    local t0 = gettime()
    for _, s in ipairs(socks) do
      s:settimeout(math.max(0.01, t0 + 3 - gettime()))
      local line, err = s:receive("*l")
      if line then served = served + 1 elseif err == "timeout" then hung = hung + 1 else reset = reset + 1 end
    end
    for _, s in ipairs(socks) do s:close() end
    assert.is_true(served > 0 and reset > 0, served .. " served, " .. reset .. " reset")
    assert.equal(0, hung)
  end)

  it("random bytes after a valid handshake get 1002/1007/1009 or a TCP close", function()
    -- 8 clients send 1..64 random bytes, 8 send 1 KiB..70 KB, 8 send a valid
    -- text frame header followed by that many random payload bytes
    local random = seeded(1455)
    local seen = {}
    guarded(echo, { rss_kib = 8 * 1024 }, function(sample)
      for c = 1, 24 do
        local r = upgraded(echo.port)
        local n = c <= 8 and random(1, 64) or random(1024, 70000)
        local t = {}
        for i = 1, n do t[i] = string.char(random(0, 255)) end
        local bytes = table.concat(t)
        if c > 16 then
          -- a valid masked text header first: the payload decides (UTF-8)
          bytes = H.frame(1, "", { len = #bytes }) .. bytes
        end
        r.sock:settimeout(0)
        send_all(r.sock, bytes, 3)
        local code, err = read_close(r, 1)
        local outcome = code or err
        if err == "timeout" then
          -- the bytes end inside a frame: the server rightly waits for the
          -- rest; once we half-close, it must close too
          r.sock:shutdown("send")
          code, err = read_close(r, 3)
          outcome = "waiting, then " .. tostring(code or err)
        end
        seen[#seen + 1] = outcome
        assert.is_true(code == 1002 or code == 1007 or code == 1009 or err == "eof",
          string.format("client %d (%d bytes): %s", c, n, tostring(outcome)))
        r:close()
        sample()
      end
    end)
    local tally = {}
    for _, o in ipairs(seen) do tally[o] = (tally[o] or 0) + 1 end
    local parts = {}
    for o, k in pairs(tally) do parts[#parts + 1] = tostring(o) .. " x" .. k end
    table.sort(parts)
    note("  random bytes: %s", table.concat(parts, ", "))
    assert.is_true(small.alive() and echo.alive())
  end)
end)
