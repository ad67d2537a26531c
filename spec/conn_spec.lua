-- connection.lua's driver: keepalive when nobody receives (the background
-- read and its inbox), the 1008 close for a full send queue, and __gc.
local socket = require "socket"
local json = require "dkjson"
local ws = require "ws"
local core = require "ws.core"
local loop = require "ws.loop"
local connection = require "ws.connection"
local H = require "spec.helpers"

local gettime = socket.gettime

-- A server on loop l; log lines go to the table returned.
local function serve(l, opts, handler)
  local lines = {}
  opts.host, opts.port, opts.loop = "127.0.0.1", H.free_port(), l
  opts.logger = function(level, msg, f)
    lines[#lines + 1] = level .. " " .. msg .. (f and f.code and " " .. f.code or "")
  end
  local server = assert(ws.listen(opts))
  server:route("/ws", handler)
  return server, opts.port, lines
end

describe("a full send queue (max_queue)", function()
  it("sends the peer a close frame 1008 after the frames already started, then closes", function()
    local l = loop.new()
    local gave_up
    local server, port, log = serve(l, { max_queue = 64 * 1024 }, function(conn)
      for i = 1, 2000 do
        -- 16 KiB frames of one letter each: the reader checks each is whole
        local ok, err = conn:send_encoded(core.frame(string.char(65 + i % 26):rep(16384), "binary", true, false, 0))
        if not ok then gave_up = err return end
        l:sleep(0.001)
      end
    end)
    local flag = os.tmpname()
    os.remove(flag)
    local peer = H.spawn(string.format("exec %s %s/spec/peers/slow_reader.py %d %s", H.PYTHON, H.ROOT, port, flag), "slow-reader")
    finally(function() peer.stop() os.remove(flag) end)
    assert.truthy(H.step_until(l, 60, function() return gave_up end), peer.output())
    assert.equal("send queue full", gave_up)
    io.open(flag, "w"):close()     -- the peer reads everything now
    assert.truthy(H.step_until(l, 10, function() return peer.output():match("{.*}") end), peer.output())
    local res = json.decode(peer.output():match("{.*}"))
    assert.same({ 1008, "send queue full" }, res.close)
    assert.equal(0, res.rest)                    -- nothing after the close frame, nothing cut
    assert.equal(res.frames - 1, res.intact)     -- every frame before it whole
    assert.is_true(res.intact >= 1)
    assert.truthy(H.step_until(l, 3, function()
      for _, line in ipairs(log) do if line:match("send queue full") then return true end end
    end), table.concat(log, "\n"))
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
end)

describe("Conn.__gc", function()
  -- (Lua 5.1 and LuaJIT never call __gc on a table)
  local table_gc = false
  setmetatable({}, { __gc = function() table_gc = true end })
  collectgarbage() collectgarbage()
  local it_gc = table_gc and it or pending
  it_gc("makes the scheduler forget the descriptor of a collected, never closed connection", function()
    local forgot, closed = {}, 0
    local sched = { forget = function(_, sock) forgot[#forgot + 1] = sock end }
    local sock = setmetatable({}, { __index = {
      settimeout = function() end, close = function() closed = closed + 1 end } })
    connection.new(sock, { sched = sched, ping_interval = false })
    collectgarbage() collectgarbage()
    assert.equal(1, closed)
    assert.same({ sock }, forgot)
    -- the same for a connection of a class (ws.server's)
    local opts = { sched = sched, ping_interval = false }
    opts.class = connection.class(opts)
    connection.new(sock, opts)
    collectgarbage() collectgarbage()
    assert.equal(2, closed)
    assert.same({ sock, sock }, forgot)
  end)
end)

describe("connection.class", function()
  local function fake_sock()
    return setmetatable({}, { __index = { settimeout = function() end, close = function() end } })
  end

  it("holds the settings of a server's connections: each connection's own table holds only its state", function()
    local l = loop.new()
    local conns, fields, done = {}, {}, 0
    local function count(conn)
      local n = 0
      for _ in pairs(conn) do n = n + 1 end
      return n
    end
    local server, port = serve(l, { max_queue = 123456, close_timeout = 7, ping_interval = 30 }, function(conn)
      conns[#conns + 1] = conn
      fields[conn] = { idle = count(conn) }
      assert(conn:receive())
      assert.is_nil(conn:receive())   -- (the client closed)
      fields[conn].closed = count(conn)
      done = done + 1
    end)
    local go = false
    for _ = 1, 2 do
      l:spawn(function()
        local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5 }))
        while not go do l:sleep(0.01) end
        c:send("x")
        c:close()
      end)
    end
    assert.truthy(H.step_until(l, 10, function() return #conns == 2 end))
    local a, b = conns[1], conns[2]
    assert.equal(getmetatable(a), getmetatable(b))
    for k, v in pairs { max_queue = 123456, close_timeout = 7, ping_interval = 30, sched = l, role = "server",
                        masked = false, max_message = connection.defaults.max_message } do
      assert.equal(v, a[k], k)
      assert.is_nil(rawget(a, k), k)
    end
    assert.equal("function", type(a.log))
    go = true
    assert.truthy(H.step_until(l, 10, function() return done == 2 end))
    -- its own fields fit the 32 table slots it was made with (not 64), from
    -- the upgrade through the close handshake (which adds 7): the table is
    -- never rehashed
    for _, conn in ipairs(conns) do
      assert.is_true(fields[conn].idle <= 24, fields[conn].idle .. " fields")
      assert.is_true(fields[conn].closed <= 31, fields[conn].closed .. " fields")
    end
    -- a setting changed on one connection is its own
    a.max_queue = 1000
    assert.equal(1000, a.max_queue)
    assert.equal(123456, b.max_queue)
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)

  it("is not used for a connection in another scheduler: it gets its own settings", function()
    local s1, s2 = { forget = function() end }, { forget = function() end }
    local cls = connection.class { sched = s1, ping_interval = false, max_queue = 5000 }
    local conn = connection.new(fake_sock(), { sched = s2, ping_interval = false, max_queue = 5000, class = cls })
    assert.are_not.equal(cls, getmetatable(conn))
    assert.equal(s2, rawget(conn, "sched"))
    assert.equal(5000, rawget(conn, "max_queue"))
    local same = connection.new(fake_sock(), { sched = s1, ping_interval = false, max_queue = 5000, class = cls })
    assert.equal(cls, getmetatable(same))
    assert.is_nil(rawget(same, "sched"))
    assert.equal(s1, same.sched)
    assert.equal("ws.conn (server open): ?", tostring(same))
  end)
end)

describe("the first keepalive ping", function()
  it("is a loop timer: fn(arg) runs as a task once due, not before, and never once cancelled", function()
    local l = loop.new()
    local ran, at = {}, {}
    local t0 = gettime()
    l:at(t0 + 0.15, function(arg) ran[#ran + 1], at[#at + 1] = arg, gettime() - t0 end, "due")
    local gone = l:at(t0 + 0.05, function(arg) ran[#ran + 1] = arg end, "cancelled")
    l:cancel(gone)
    l:cancel(gone)                                 -- (twice: no effect)
    assert.equal(1, l.ntasks)                      -- a pending timer keeps run() going
    l:run()                                        -- returns once the timer's task is done
    assert.same({ "due" }, ran)
    assert.is_true(at[1] >= 0.14 and at[1] < 2, tostring(at[1]))
    assert.equal(0, l.ntasks)
    -- a time that is not a number is the caller's mistake, not a timer that never fires
    assert.has_error(function() l:at(nil, print) end, "bad argument #1 to 'at' (number expected, got nil)")
    assert.equal(0, l.ntasks)
  end)

  it("a background timer keeps no run() going, and fires while other work runs", function()
    local l = loop.new()
    local fired = false
    local t0 = gettime()
    local bg = l:at(t0 + 0.05, function() fired = true end, nil, true)
    assert.equal(0, l.ntasks)
    l:run()                                        -- nothing else: returns at once
    assert.is_false(fired)
    assert.is_true(gettime() - t0 < 0.05)
    l:spawn(function() l:sleep(0.1) end)           -- other work: it fires meanwhile
    l:run()
    assert.is_true(fired)
    assert.equal(0, l.ntasks)
    l:cancel(bg)                                   -- (fired already: no effect)
    assert.equal(0, l.ntasks)
    local later = l:at(gettime() + 10, print, nil, true)
    l:cancel(later)
    assert.equal(0, l.ntasks)
  end)

  it("costs a connection no keepalive task until it is due", function()
    local l = loop.new()
    local pongs = 0
    local server, port = serve(l, { ping_interval = 1, ping_timeout = 5,
                                    on_pong = function() pongs = pongs + 1 end }, function(conn)
      local data = conn:receive()
      conn:send(data)
      conn:receive()
    end)
    local function coroutines()   -- tasks with a coroutine (on 5.1 a pcall's helper shares its task's entry)
      local n, seen = 0, {}
      for _, e in pairs(l.entries) do
        if not seen[e] then n, seen[e] = n + 1, true end
      end
      return n
    end
    local counts = {}
    H.run_task(l, 10, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5, ping_interval = false }))
      assert(c:send("x"))
      assert.equal("x", c:receive())
      counts[1] = coroutines()           -- the accept loop, the handler, this task
      -- the server's first ping comes after 1 s (our receive answers it;
      -- margins for a loaded machine on both sides)
      assert.same({ nil, "timeout" }, { c:receive(2) })
      counts[2] = coroutines()           -- and now the keepalive task
      assert(c:close())
    end)
    assert.same({ 3, 4 }, counts)
    assert.is_true(pongs >= 1)
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
end)

describe("on_close hooks", function()
  it("may wait (on Lua 5.1 too: run through ws.loop.pcall)", function()
    local l = loop.new()
    local waited = false
    local server, port = serve(l, {}, function(conn)
      conn:on_close(function() l:sleep(0.01); waited = true end)
      conn:receive()
    end)
    H.run_task(l, 10, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5 }))
      assert(c:close())
    end)
    assert.truthy(H.step_until(l, 5, function() return waited end))
    server:close()
  end)
end)

describe("a closed connection", function()
  it("is not held by its keepalive task until the next ping was due", function()
    local l = loop.new()
    local held = setmetatable({}, { __mode = "k" })   -- both ends of every connection
    local closed = 0
    local server, port = serve(l, { ping_interval = 30 }, function(conn)
      held[conn] = true
      conn:on_close(function() closed = closed + 1 end)
      conn:receive()
    end)
    H.step_until(l, 0.2, function() return false end)
    local base = l.ntasks                               -- the accept loop
    H.run_task(l, 20, function()
      for _ = 1, 20 do
        local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5, ping_interval = 30 }))
        held[c] = true
        assert(c:close())
      end
    end)
    assert.truthy(H.step_until(l, 5, function() return closed == 20 end), closed .. " closed")
    -- every task of theirs (handlers, keepalives) ends within a round or two
    assert.truthy(H.step_until(l, 1, function() return l.ntasks == base end), l.ntasks .. " tasks, " .. base .. " before")
    collectgarbage() collectgarbage()
    assert.is_nil(next(held))
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
end)

describe("close()", function()
  it("returns in every task that calls it while another receives, once the peer answered", function()
    local l = loop.new()
    local server, port = serve(l, {}, H.echo)
    local took, results, received = {}, {}, nil
    H.run_task(l, 10, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5, close_timeout = 2 }))
      l:spawn(function() received = { c:receive() } end)
      l:sleep(0.05)
      for k = 1, 2 do
        l:spawn(function()
          local t0 = gettime()
          results[k] = { c:close(1000, "c" .. k) }
          took[k] = gettime() - t0
        end)
      end
      while not (took[1] and took[2] and received) do l:sleep(0.02) end
    end)
    assert.same({ nil, "closed", 1000, "" }, received)
    for k = 1, 2 do
      assert.same({ true, 1000, "" }, results[k])
      assert.is_true(took[k] < 1, "close " .. k .. " took " .. took[k] .. " s")
    end
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
end)

describe("close(code, reason, timeout) to a peer that does not read", function()
  it("returns within its timeout, though the close frame waits behind a message and send_timeout is longer", function()
    local l = loop.new()
    local took, result, sent
    local server, port = serve(l, { send_timeout = 20, max_queue = 64 * 1024 * 1024 }, function(conn)
      -- (4 MiB the peer never reads: the close frame is queued behind it)
      l:spawn(function() sent = { conn:send(("x"):rep(4 * 1024 * 1024), "binary") } end)
      l:sleep(0.2)
      local t0 = gettime()
      result = { conn:close(1000, "bye", 0.5) }
      took = gettime() - t0
    end)
    local peer = H.raw(port, false, { rcvbuf = 4096 })
    finally(function() peer.sock:close(); H.stop_server(server, l) end)
    assert(peer:send(H.request(port)))
    assert.is_true(H.step_until(l, 5, function() return took ~= nil and sent ~= nil end),
      "close or send still waiting after 5 s (took " .. tostring(took) .. ")")
    -- (it took send_timeout, 20 s, before: the close frame's write was
    -- bounded by it alone)
    assert.is_true(took >= 0.45 and took < 1.2, "close took " .. took .. " s")
    assert.same({ nil, "closed", 1006, "send timeout" }, result)
    assert.same({ nil, "closed" }, sent)
    assert.matches("^HTTP/1.1 101", peer:read_head())
  end)
end)

describe("keepalive when the handler never receives", function()
  local KEEP = { ping_interval = 0.2, ping_timeout = 0.3 }

  it("keeps a client that answers pings connected, and it gets every message", function()
    local l = loop.new()
    local sent, server_code = 0, nil
    local server, port = serve(l, KEEP, function(conn)
      conn:on_close(function(_, code) server_code = code end)
      for i = 1, 50 do                      -- 2.5 s at one message per 50 ms
        if not conn:send("tick " .. i) then return end
        sent = i
        l:sleep(0.05)
      end
      conn:close()
    end)
    local got = H.run_task(l, 20, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5 }))
      local got = {}
      while true do
        local data = c:receive(5)
        if not data then break end
        got[#got + 1] = data
      end
      return got
    end)
    assert.equal(50, sent)
    assert.equal(1000, server_code)
    assert.equal(50, #got)
    for i = 1, 50 do assert.equal("tick " .. i, got[i]) end
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)

  it("still closes a peer that never answers with 1011", function()
    local l = loop.new()
    local server_code, t_closed
    local server, port = serve(l, KEEP, function(conn)
      conn:on_close(function(_, code) server_code, t_closed = code, gettime() end)
      while conn.state == "open" do l:sleep(0.05) end
    end)
    local raw = H.raw(port, false)
    finally(function() raw:close() end)
    local t0 = gettime()
    raw:send(H.request(port))
    assert.truthy(H.step_until(l, 5, function() return server_code end))
    assert.equal(1011, server_code)
    -- one ping, then 0.3 s for its pong (bounds wide for a loaded machine)
    assert.is_true(t_closed - t0 > 0.4 and t_closed - t0 < 3, tostring(t_closed - t0))
    assert.matches("^HTTP/1.1 101", raw:read_head())
    assert.same({ 1011, "keepalive ping timeout" }, { raw:read_close() })
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)

  it("keeps what arrived before the handler receives, and receive returns it first, in order", function()
    local l = loop.new()
    local got, had_inbox = {}, nil
    local server, port = serve(l, KEEP, function(conn)
      l:sleep(1)                             -- several pings meanwhile
      had_inbox = conn.inbox and true
      for _ = 1, 5 do got[#got + 1] = conn:receive(1) end
      got[#got + 1] = select(2, conn:receive(0.1))   -- then nothing: a timeout
      got[#got + 1] = conn:receive(2)        -- and a message sent later
      conn:close()
    end)
    H.run_task(l, 20, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5 }))
      for i = 1, 5 do assert(c:send("early " .. i)) end
      -- answer pings meanwhile, until the handler has read the five
      local deadline = gettime() + 10
      while #got < 6 and c.state ~= "closed" and gettime() < deadline do c:receive(0.05) end
      assert(c:send("late"))
      repeat until not c:receive(5)
    end)
    assert.is_true(had_inbox)
    assert.same({ "early 1", "early 2", "early 3", "early 4", "early 5", "timeout", "late" }, got)
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
end)
