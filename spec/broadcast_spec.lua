-- Server:broadcast and examples/chat.lua: 200 clients, exactly-once and
-- in-order delivery, and a client that never reads being dropped without
-- slowing the others.
local socket = require "socket"
local json = require "dkjson"
local ws = require "ws"
local loop = require "ws.loop"
local core = require "ws.core"
local H = require "spec.helpers"

local gettime = socket.gettime

local wait_output = H.wait_output

local count = H.count

-- Run spec/peers/chat_clients.lua; returns its JSON summary.
local function chat_clients(port, args, secs)
  local cmd = string.format("timeout %d %s %s/spec/peers/chat_clients.lua --url ws://127.0.0.1:%d/ws %s 2>&1",
    secs + 10, H.LUA, H.ROOT, port, args .. " --timeout " .. secs)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local line = out:match("({[^\n]*})")
  local res = line and json.decode(line)
  assert(res, "no summary from chat_clients.lua:\n" .. out)
  return res, out
end

describe("Server:broadcast", function()
  it("returns how many connections it queued the message to, skipping except and closed ones", function()
    local l = loop.new()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l })
    local on_server = {}
    server:route("/ws", function(conn)
      on_server[#on_server + 1] = conn
      repeat until not conn:receive()
    end)
    H.run_task(l, 20, function()
      local clients = {}
      for i = 1, 4 do clients[i] = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5 })) end
      while #on_server < 4 do l:sleep(0.01) end

      -- text that is not UTF-8 goes to nobody (each would close with 1007)
      assert.same({ nil, "invalid utf-8" }, { server:broadcast("bad \255") })
      assert.equal(4, server:broadcast("hello"))
      for i = 1, 4 do assert.same({ "hello", "text" }, { clients[i]:receive(5) }) end

      -- except: the server side of clients[1]
      local first
      for _, c in ipairs(on_server) do
        if c.peer:match(":(%d+)$") == tostring(select(2, clients[1].sock:getsockname())) then first = c end
      end
      assert.truthy(first)
      assert.equal(3, server:broadcast("\0\1\2", "binary", first))
      for i = 2, 4 do assert.same({ "\0\1\2", "binary" }, { clients[i]:receive(5) }) end
      assert.same({ nil, "timeout" }, { clients[1]:receive(0.2) })

      -- a closed connection no longer counts
      assert.is_true(clients[4]:close())
      local deadline = gettime() + 5
      while on_server[4].state ~= "closed" and gettime() < deadline do l:sleep(0.01) end
      local closed = 0
      for _, c in ipairs(on_server) do if c.state == "closed" then closed = closed + 1 end end
      assert.equal(1, closed)
      assert.equal(3, server:broadcast("again"))
      assert.equal(3, server:broadcast("nobody", "text", nil))
      for i = 1, 3 do
        assert.equal("again", clients[i]:receive(5))
        assert.equal("nobody", clients[i]:receive(5))
      end
      for i = 1, 3 do clients[i]:close() end
    end)
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
  it("sends a message bigger than max_queue to idle peers: only what must wait counts", function()
    local l = loop.new()
    local port = H.free_port()
    local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, max_queue = 1024 })
    local n = 0
    server:route("/ws", function(conn)
      n = n + 1
      repeat until not conn:receive()
    end)
    H.run_task(l, 20, function()
      local clients = {}
      for i = 1, 3 do clients[i] = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 5 })) end
      while n < 3 do l:sleep(0.01) end
      -- 8 KiB fits in an idle socket's send buffer: written at once, never queued
      local big = ("b"):rep(8192)
      assert.equal(3, server:broadcast(big, "binary"))
      for i = 1, 3 do assert.same({ big, "binary" }, { clients[i]:receive(5) }) end
      for i = 1, 3 do clients[i]:close() end
    end)
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
end)

-- ws.fanout: frames written to idle connections in one C call, the rest
-- (and what a full socket did not take) queued.
describe("fan-out to many connections", function()
  -- Message i: its number, then filler to a size that varies from 500 B to
  -- max (12 KiB), so frames end at odd offsets and a full socket takes part of one.
  local function msg(i, max)
    local head = i .. ":"
    return head .. string.char(97 + i % 26):rep(500 + (i * 7919) % (max or 12000) - #head)
  end

  -- What a raw client's socket holds now, appended to its buffer (no wait).
  local function pull(raw)
    raw.sock:settimeout(0)
    local t = { raw.buf }
    repeat
      local data, _, partial = raw.sock:receive(65536)
      data = data or partial
      t[#t + 1] = data
    until #data < 65536
    raw.buf = table.concat(t)
  end

  -- Step the loop (from a task) until every raw client holds want bytes
  -- (want[k] for raws[k], or want for all) after its response head, or secs pass.
  local function pull_all(l, raws, want, secs)
    local deadline = gettime() + secs
    while gettime() < deadline do
      local done = 0
      for k, raw in ipairs(raws) do
        pull(raw)
        local e = raw.buf:find("\r\n\r\n", 1, true)
        if e and #raw.buf - (e + 3) >= (type(want) == "table" and want[k] or want) then done = done + 1 end
      end
      if done == #raws then return true end
      l:sleep(0.005)
    end
    return false
  end

  -- The frames of a raw client's buffer, after its response head: the data
  -- messages in order (nil at the first bad frame), and the frame ending them.
  local function frames_of(raw)
    raw.timeout = 0.5
    assert.matches("^HTTP/1.1 101", raw:read_head())
    local got = {}
    while #raw.buf > 0 do
      local f = raw:read_frame()
      if f.opcode ~= 2 or not f.fin or f.masked then return got, f end
      got[#got + 1] = f.payload
    end
    return got
  end

  local function server_conns(set, n)
    local t = {}
    for c in pairs(set) do t[#t + 1] = c end
    return #t == n and t or nil
  end

  -- A server with a hub on a fresh loop and three raw peers (connected,
  -- handshake sent), each joining topic if given. server_sides(), in a task:
  -- the server connections of raws[1..3], in order; stop() closes it all.
  local function three_peers(topic)
    local l = loop.new()
    local hub = ws.hub()
    local server = assert(ws.listen { host = "127.0.0.1", port = 0, loop = l, hub = hub, logger = false })
    local subscribed = {}
    server:route("/ws", function(conn)
      if topic then hub:subscribe(conn, topic) end
      subscribed[#subscribed + 1] = conn
      repeat until not conn:receive()
    end)
    local raws = {}
    for i = 1, 3 do
      raws[i] = H.raw(server.port, false)
      raws[i]:send(H.request(server.port))
    end
    local function server_sides()
      local deadline = gettime() + 10
      while #subscribed < 3 and gettime() < deadline do l:sleep(0.01) end
      assert.equal(3, #subscribed)
      local of = {}   -- by port
      for k, raw in ipairs(raws) do
        local port = tostring(select(2, raw.sock:getsockname()))
        for _, c in ipairs(subscribed) do if c.peer:match(":(%d+)$") == port then of[k] = c end end
      end
      return of
    end
    local function stop()
      for _, raw in ipairs(raws) do raw:close() end
      server:close()
    end
    return l, hub, server, raws, server_sides, stop
  end

  it("gives every connection every frame whole and in order: idle, full (partial write, then the queue), TLS",
    function()
    local dir = H.throwaway_ca()
    local l = loop.new()
    local hub = ws.hub()
    -- (no keepalive: a test slowed past ping_interval by a loaded machine
    -- would find a ping among the raw peers' frames)
    local plain = assert(ws.listen { host = "127.0.0.1", port = 0, loop = l, hub = hub, logger = false,
                                     ping_interval = false })
    local secure = assert(ws.listen { host = "127.0.0.1", port = 0, loop = l, logger = false,
                                      tls = { certificate = dir .. "/server.pem", key = dir .. "/server.key" } })
    local subscribed = {}
    local function route(conn)
      hub:subscribe(conn, "t")
      subscribed[conn] = true
      repeat until not conn:receive()
    end
    plain:route("/ws", route)
    secure:route("/ws", route)
    -- three peers that do not read yet, with 4 KiB receive buffers: their
    -- sockets fill after a few frames
    local raws = {}
    for i = 1, 3 do
      raws[i] = H.raw(plain.port, false, { rcvbuf = 4096 })
      raws[i]:send(H.request(plain.port))
    end
    finally(function()
      for _, raw in ipairs(raws) do raw:close() end
      plain:close()
      secure:close()
      os.execute("rm -rf " .. H.shell_quote(dir))
    end)
    -- about 6 MiB to each: more than a loopback socket's send buffer grows to (4 MiB)
    local K, BIG = 150, 80000
    local bytes = 0
    for i = 1, K do bytes = bytes + #core.frame(msg(i, BIG), "binary") end
    local partial = 0
    H.run_task(l, 120, function()
      local tls = { cafile = dir .. "/ca.pem" }
      local readers, results = {}, {}
      for _ = 1, 2 do readers[#readers + 1] = assert(ws.connect("ws://127.0.0.1:" .. plain.port .. "/ws", { timeout = 5 })) end
      for _ = 1, 2 do
        readers[#readers + 1] = assert(ws.connect("wss://127.0.0.1:" .. secure.port .. "/ws", { timeout = 5, tls = tls }))
      end
      local stalled = assert(ws.connect("wss://127.0.0.1:" .. secure.port .. "/ws", { timeout = 5, tls = tls }))
      local deadline = gettime() + 10
      local conns
      repeat
        l:sleep(0.01)
        conns = server_conns(subscribed, 8)
      until conns or gettime() > deadline
      assert.truthy(conns, "8 server connections subscribed")
      for r, c in ipairs(readers) do
        l:spawn(function()
          for i = 1, K do
            local data, kind = c:receive(30)
            if data ~= msg(i, BIG) or kind ~= "binary" then
              results[r] = "message " .. i .. ": " .. tostring(data and #data) .. " bytes"
              return
            end
          end
          results[r] = true
        end)
      end
      for i = 1, K do
        assert.equal(8, hub:publish("t", msg(i, BIG), "binary"))
        if i % 10 == 0 then
          -- the batch of 10 goes out; a socket that took part of it keeps the rest queued
          l:sleep(0)
          for _, c in ipairs(conns) do
            if c.qoff > 1 then partial = partial + 1 end
          end
        end
      end
      for i = 1, K do
        local data = stalled:receive(30)
        if data ~= msg(i, BIG) then error("stalled TLS client, message " .. i .. ": " .. tostring(data and #data)) end
      end
      -- (the raw peers read now: larger receive buffers, or 4 KiB a turn
      -- takes minutes on a loaded machine)
      for _, raw in ipairs(raws) do assert(raw.sock:setoption("recv-buffer-size", 1048576)) end
      assert.is_true(pull_all(l, raws, bytes, 60), "the raw clients got every byte")
      deadline = gettime() + 30
      while (not (results[1] and results[2] and results[3] and results[4])) and gettime() < deadline do
        l:sleep(0.01)
      end
      assert.same({ true, true, true, true }, results)
      for _, c in ipairs(readers) do c:close() end
      stalled:close()
    end)
    for _, raw in ipairs(raws) do
      local got, last = frames_of(raw)
      assert.is_nil(last and last.opcode)
      assert.equal(K, #got)
      for i = 1, K do assert.equal(msg(i, BIG), got[i]) end
    end
    -- the full sockets took part of a frame
    assert.is_true(partial >= 1, partial .. " partial writes")
  end)

  it("fails a peer that stops reading with 1008 once its queue passes max_queue; frames stay whole; others keep up",
    function()
    local l = loop.new()
    local server = assert(ws.listen { host = "127.0.0.1", port = 0, loop = l, max_queue = 64 * 1024, logger = false })
    local subscribed = {}
    server:route("/ws", function(conn)
      subscribed[conn] = true
      repeat until not conn:receive()
    end)
    local slow = H.raw(server.port, false, { rcvbuf = 4096 })
    slow:send(H.request(server.port))
    finally(function()
      slow:close()
      server:close()
    end)
    local sent, dropped_at = 0, nil
    H.run_task(l, 60, function()
      local readers = {}
      for i = 1, 2 do readers[i] = assert(ws.connect("ws://127.0.0.1:" .. server.port .. "/ws", { timeout = 5 })) end
      local deadline = gettime() + 10
      while not server_conns(subscribed, 3) and gettime() < deadline do l:sleep(0.01) end
      local results = {}
      for r, c in ipairs(readers) do
        l:spawn(function()
          local i = 0
          while true do
            local data = c:receive(5)
            if not data then break end
            i = i + 1
            if data ~= msg(i) then results[r] = "message " .. i; return end
            if i == sent and dropped_at then break end
          end
          results[r] = i
        end)
      end
      for i = 1, 4000 do
        local n = server:broadcast(msg(i), "binary")
        sent = i
        if n == 2 then dropped_at = i break end
        assert.equal(3, n)
        if i % 5 == 0 then l:sleep(0) end
      end
      assert.truthy(dropped_at, "the slow peer was dropped")
      -- the readers got everything, and a few more after the drop
      for _ = 1, 5 do
        sent = sent + 1
        assert.equal(2, server:broadcast(msg(sent), "binary"))
      end
      -- what the slow peer's socket holds: whole frames, then the close frame
      -- (read from now on: the server gives the close frame only a second,
      -- and the readers may take longer on a loaded machine)
      assert.is_true(pull_all(l, { slow }, 2, 1))
      deadline = gettime() + 10
      repeat
        pull(slow)
        l:sleep(0.01)
      until slow.buf:find("\136\17\3\240send queue full", 1, true) or gettime() > deadline
      deadline = gettime() + 30
      while not (results[1] and results[2]) and gettime() < deadline do l:sleep(0.01) end
      assert.same({ sent, sent }, results)
      for _, c in ipairs(readers) do c:close() end
    end)
    local got, last = frames_of(slow)
    assert.is_true(#got >= 1 and #got < dropped_at, #got .. " frames before the close")
    for i = 1, #got do assert.equal(msg(i), got[i]) end
    assert.same({ opcode = 8, payload = "\3\240send queue full" }, { opcode = last.opcode, payload = last.payload })
  end)

  it("gathers what a task broadcasts before it waits: one write per connection, in order with its own sends and topics",
    function()
    local l, hub, _, raws, server_sides, stop = three_peers()
    finally(stop)
    local size = function(s) return #core.frame(s, "binary") end
    H.run_task(l, 30, function()
      local of = server_sides()
      -- raws[1] in topics a and b, raws[2] in a, raws[3] in a (and gets a direct send between)
      assert(hub:subscribe(of[1], "a"))
      assert(hub:subscribe(of[1], "b"))
      assert(hub:subscribe(of[2], "a"))
      assert(hub:subscribe(of[3], "a"))
      l:sleep(0.05)
      pull_all(l, raws, 0, 1)
      local heads = {}
      for k, raw in ipairs(raws) do heads[k] = #raw.buf end
      assert.equal(3, hub:publish("a", msg(1), "binary"))
      assert.equal(1, hub:publish("b", msg(2), "binary"))
      assert.is_true(of[3]:send(msg(3), "binary"))
      assert.equal(3, hub:publish("a", msg(4), "binary"))
      -- nothing written yet to those that were idle: their frames wait, queued, for this task to yield
      assert.equal(3, of[1].qt - of[1].qh + 1)
      assert.equal(2, of[2].qt - of[2].qh + 1)
      for k = 1, 2 do
        pull(raws[k])
        assert.equal(heads[k], #raws[k].buf)
      end
      l:sleep(0)
      for _, c in ipairs(of) do assert.equal(0, c:queued()) end
      assert.is_true(pull_all(l, raws, {
        size(msg(1)) + size(msg(2)) + size(msg(4)), size(msg(1)) + size(msg(4)),
        size(msg(1)) + size(msg(3)) + size(msg(4)) }, 10))
    end)
    assert.same({ msg(1), msg(2), msg(4) }, (frames_of(raws[1])))
    assert.same({ msg(1), msg(4) }, (frames_of(raws[2])))
    assert.same({ msg(1), msg(3), msg(4) }, (frames_of(raws[3])))
  end)

  it("skips except and connections that are closing or closed", function()
    local l, hub, server, raws, server_sides, stop = three_peers("t")
    finally(stop)
    H.run_task(l, 30, function()
      local of = server_sides()
      -- raws[1]: its server side is closing (its close frame sent, the peer's awaited)
      l:spawn(function() of[1]:close(1000, "bye", 5) end)
      l:sleep(0)
      assert.equal("closing", of[1].state)
      assert.equal(1, hub:publish("t", msg(1), "binary", { except = of[2] }))
      assert.equal(1, server:broadcast(msg(2), "binary", of[3]))
      assert.equal(2, server:broadcast(msg(3), "binary"))
      local size = function(i) return #core.frame(msg(i), "binary") end
      assert.is_true(pull_all(l, { raws[2], raws[3] }, { size(2) + size(3), size(1) + size(3) }, 10))
      pull_all(l, { raws[1] }, 4, 1)
    end)
    local got, last = frames_of(raws[1])
    assert.same({}, got)
    assert.equal(8, last.opcode)
    assert.same({ msg(2), msg(3) }, (frames_of(raws[2])))
    assert.same({ msg(1), msg(3) }, (frames_of(raws[3])))
  end)
end)

describe("examples/chat.lua", function()
  it("serves the chat page", function()
    local chat = H.start_lua("examples/chat.lua", nil, "chat-page")
    finally(chat.stop)
    local s = socket.tcp()
    s:settimeout(5)
    assert(s:connect("127.0.0.1", chat.port))
    s:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    local res = s:receive("*a")
    s:close()
    assert.matches("^HTTP/1.1 200", res)
    assert.matches("<title>lua%-ws chat</title>", res)
    assert.matches("new WebSocket", res)
    assert.truthy(wait_output(chat, "chat server on ws://127%.0%.0%.1:%d+/ws"))
  end)

  it("relays every message of 20 senders to the other 199 of 200 clients, exactly once, in order", function()
    local chat = H.start_lua("examples/chat.lua", "--verbose", "chat-200")
    finally(chat.stop)
    local N, S, M = 200, 20, 20
    local res, out = chat_clients(chat.port, string.format("--clients %d --senders %d --messages %d --size 100", N, S, M), 30)
    assert.same({}, res.errors, out)
    assert.equal(N, res.connected)
    assert.equal(S * M * (N - 1), res.expected)
    assert.equal(res.expected, res.received)
    assert.equal(N, res.complete)
    assert.equal(0, res.order_errors)   -- also counts duplicates and late extras
    assert.equal(0, res.own)            -- nobody gets its own messages back
    assert.equal(0, res.junk)
    assert.is_true(res.elapsed < 20, "took " .. res.elapsed .. " s")
    -- broadcast() counted 199 recipients for each of the S * M messages
    local log = chat.output()
    assert.equal(S * M, count(log, "relay [%d.:]+: text 100 bytes to 199\n"), log:sub(1, 2000))
    assert.equal(N, count(log, "\n[^\n]*join "))
    -- and everyone left with a proper close
    assert.truthy(wait_output(chat, "leave [^\n]*%(0 online%)", 10), chat.output():sub(-2000))
    log = chat.output()
    assert.equal(N, count(log, "leave [%d.:]+ %(1000 %)"))
  end)

  it("drops a client that never reads once its queue passes max_queue; the others keep up", function()
    local chat = H.start_lua("examples/chat.lua", "--verbose", "chat-slow")
    -- the slow client: a tiny receive buffer, and it never reads
    local slow = socket.tcp4()
    finally(function()   -- busted keeps one finally per test
      slow:close()
      chat.stop()
    end)
    assert(slow:setoption("recv-buffer-size", 4096))
    slow:settimeout(5)
    assert(slow:connect("127.0.0.1", chat.port))
    assert(slow:send(H.request(chat.port, "/ws")))
    assert.matches("^HTTP/1.1 101", slow:receive("*l"))
    repeat local line = slow:receive("*l") until line == "" or not line
    local _, slow_port = slow:getsockname()
    assert.truthy(wait_output(chat, "join 127%.0%.0%.1:" .. slow_port))

    -- 5 clients, one sending 100 messages of 60000 bytes (6 MB, far past
    -- the 1 MiB max_queue and what the kernel buffers for the slow one)
    local res, out = chat_clients(chat.port, "--clients 5 --senders 1 --messages 100 --size 60000", 20)
    assert.same({}, res.errors, out)
    assert.equal(400, res.expected)
    assert.equal(res.expected, res.received)
    assert.equal(5, res.complete)
    assert.equal(0, res.order_errors)
    assert.is_true(res.max_latency < 1, "a message took " .. res.max_latency .. " s")
    assert.is_true(res.elapsed < 10, "took " .. res.elapsed .. " s")

    -- (it leaves once its close frame 1008 is out, or after at most a second)
    assert.truthy(wait_output(chat, "leave 127%.0%.0%.1:" .. slow_port .. " %(1008 send queue full%)", 5), chat.output())
    local log = chat.output()
    -- 5 recipients (the slow one included) until it was dropped, 4 after;
    -- the drop came only once more than max_queue bytes (17 messages) were
    -- queued for it
    local counts = {}
    for n in log:gmatch("relay [%d.:]+: text 60000 bytes to (%d+)\n") do counts[#counts + 1] = tonumber(n) end
    assert.equal(100, #counts)
    local with_slow = 0
    for i, n in ipairs(counts) do
      if n == 5 then
        with_slow = with_slow + 1
        assert.equal(i, with_slow, "5 after 4 at message " .. i)
      else
        assert.equal(4, n)
      end
    end
    assert.is_true(with_slow >= 17 and with_slow < 100, with_slow .. " messages reached the slow client's queue")
    -- what the slow client can still read ends early: far less than 6 MB
    slow:settimeout(2)
    local total = 0
    while true do
      local data, err, partial = slow:receive(65536)
      total = total + #(data or partial or "")
      if err then break end
    end
    assert.is_true(total < with_slow * 60010, total .. " bytes")
  end)
end)
