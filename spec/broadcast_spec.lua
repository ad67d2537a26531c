-- Server:broadcast and examples/chat.lua: 200 clients, exactly-once and
-- in-order delivery, and a client that never reads being dropped without
-- slowing the others.
local socket = require "socket"
local json = require "dkjson"
local ws = require "ws"
local loop = require "ws.loop"
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
