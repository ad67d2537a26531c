-- ws.hub across real processes: examples/chat.lua on three ports sharing one
-- Redis, clients from spec/peers/chat_clients.lua, and Redis killed,
-- paused, or dropping our subscriber under them.
local socket = require "socket"
local json = require "dkjson"
local H = require "spec.helpers"

local gettime = socket.gettime

local count = H.count

-- n chat processes on the Redis at url; args added to each.
local function chats(n, url, args, name)
  local t = {}
  for i = 1, n do
    t[i] = H.start_lua("examples/chat.lua", "--redis " .. url .. " " .. (args or ""), (name or "chat") .. i)
    assert.truthy(H.wait_output(t[i], "hub: redis resubscribed", 10), t[i].output())
  end
  return t
end

local function stop_all(procs)
  for _, p in ipairs(procs) do p.stop() end
end

local function urls(procs, room)
  local t = {}
  for i, p in ipairs(procs) do t[i] = "ws://127.0.0.1:" .. p.port .. "/ws" .. (room and "?room=" .. room or "") end
  return table.concat(t, ",")
end

-- Start chat_clients.lua in the background; returns a function that waits
-- for it and returns its JSON summary and output.
local function clients_bg(url_list, args, secs)
  local proc = H.spawn(string.format("timeout %d %s %s/spec/peers/chat_clients.lua --url %s %s --timeout %d",
    secs + 15, H.LUA, H.ROOT, url_list, args, secs), "hub-clients")
  return function()
    local deadline = gettime() + secs + 20
    while proc.alive() and gettime() < deadline do socket.sleep(0.1) end
    local out = proc.output()
    local line = out:match("({[^\n]*})")
    local res = line and json.decode(line)
    assert(res, "no summary from chat_clients.lua:\n" .. out)
    return res, out
  end
end

-- The hub counters a chat process serves on /status.
local function status(proc)
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:connect("127.0.0.1", proc.port))
  s:send("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
  local res = s:receive("*a")
  s:close()
  local t = {}
  for k, v in res:gmatch("\n(%a+) ([^\n]+)") do t[k] = tonumber(v) or v end
  return t
end

describe("ws.hub across processes #slow", function()
  local rds
  before_each(function() rds = H.start_redis() end)
  after_each(function() if rds then rds.stop() end end)

  for _, ordered in ipairs({ false, true }) do
    it("3 processes x 30 clients, 3 publishers x 2,000 messages: complete, in order, once" ..
       (ordered and ", one total order" or ""), function()
      local procs = chats(3, rds.url, ordered and "--ordered" or "", ordered and "ord" or "chat")
      finally(function() stop_all(procs) end)
      local res, out = clients_bg(urls(procs), "--clients 30 --senders 3 --messages 2000 --size 64", 90)()
      assert.same({}, res.errors, out)
      assert.equal(30, res.connected)
      assert.equal(3 * 2000 * 29, res.expected)
      assert.equal(res.expected, res.received)
      assert.equal(30, res.complete)
      assert.equal(0, res.order_errors)   -- duplicates or out of order
      assert.equal(0, res.skipped)
      assert.equal(0, res.own)
      if ordered then assert.equal(0, res.order_mismatch) end
      for _, p in ipairs(procs) do
        assert.is_true(p.alive())
        assert.equal(0, status(p).dropped)
      end
    end)
  end

  for _, ordered in ipairs({ false, true }) do
    it("Redis SIGKILLed mid-stream and back 2 s later" .. (ordered and " (ordered: nothing missing)" or ""), function()
      local procs = chats(3, rds.url, ordered and "--ordered" or "", ordered and "kord" or "kill")
      finally(function() stop_all(procs) end)
      -- 3 senders x 600 messages, one per 10 ms: about 7 s of traffic
      local wait = clients_bg(urls(procs), "--clients 12 --senders 3 --messages 600 --size 64 --gap 0.01 --idle 8", 60)
      socket.sleep(2)
      rds.kill9()
      socket.sleep(2)
      local t_restart = gettime()
      rds = H.start_redis { port = rds.port }
      for _, p in ipairs(procs) do
        assert.truthy(H.wait_output(p, "resubscribed.-resubscribed", 10), p.output())
      end
      local back = gettime() - t_restart
      assert.is_true(back < 6, "resubscribed after " .. back .. " s")
      local res, out = wait()
      assert.equal(12, res.connected)
      assert.equal(0, res.closed, out)        -- no client was closed
      assert.equal(0, res.order_errors, out)  -- no duplicates, nothing out of order
      assert.equal(0, res.local_missing, out) -- same-process delivery never stopped
      assert.is_true(res.remote_gap < 2 + 6, "no remote message for " .. res.remote_gap .. " s")
      local dropped, missed = 0, 0
      for _, p in ipairs(procs) do
        assert.is_true(p.alive())
        local s = status(p)
        dropped, missed = dropped + s.dropped, missed + s.missed
        assert.equal("up", s.state)
      end
      if ordered then
        assert.equal(0, res.missing, out)
        assert.equal(0, dropped)
        assert.equal(res.expected, res.received)
      else
        -- every drop is missing; more is missing where another process was
        -- still resubscribing, or a reply was lost in flight; each process
        -- counts what its 4 clients missed
        assert.is_true(dropped > 0, "the kill should have lost something")
        local msg = string.format("dropped %d, missed %d, missing %d\n%s", dropped, missed, res.missing, out)
        assert.is_true(res.missing >= dropped, msg)
        assert.equal(res.skipped, 4 * missed, msg)
      end
    end)
  end

  it("DEBUG SLEEP 3: same-process delivery keeps p99 under 50 ms", function()
    local procs = chats(1, rds.url)
    finally(function() stop_all(procs) end)
    -- 2 clients on one process, one message per 10 ms for 5 s
    local wait = clients_bg(urls(procs), "--clients 2 --senders 1 --messages 500 --size 64 --gap 0.01", 30)
    socket.sleep(1)
    local t0 = gettime()
    assert.matches("OK", rds.cli("DEBUG SLEEP 3"))
    assert.is_true(gettime() - t0 > 2.5)
    local res, out = wait()
    assert.same({}, res.errors, out)
    assert.equal(500, res.received)
    assert.is_true(res.p99 < 0.05, "p99 " .. res.p99 .. " s")
    assert.is_true(procs[1].alive())
  end)

  it("CLIENT KILL TYPE pubsub: each process resubscribes and delivery resumes", function()
    local procs = chats(2, rds.url)
    finally(function() stop_all(procs) end)
    local ids = rds.cli("CLIENT LIST TYPE pubsub")
    assert.equal(2, count(ids, "id=%d+"))
    assert.matches("2", rds.cli("CLIENT KILL TYPE pubsub"))
    for _, p in ipairs(procs) do
      assert.truthy(H.wait_output(p, "resubscribed.-resubscribed", 10), p.output())
    end
    assert.equal(2, count(rds.cli("CLIENT LIST TYPE pubsub"), "id=%d+"))
    local res, out = clients_bg(urls(procs), "--clients 4 --senders 2 --messages 200 --size 64", 30)()
    assert.same({}, res.errors, out)
    assert.equal(res.expected, res.received)
    assert.equal(4, res.complete)
  end)

  it("500 clients joining and leaving one room: one SUBSCRIBE and one UNSUBSCRIBE per process", function()
    local monitor = H.spawn("exec redis-cli -p " .. rds.port .. " MONITOR", "redis-monitor")
    local procs = {}
    -- (busted keeps one finally per test: the last one given)
    finally(function() monitor.stop(); stop_all(procs) end)
    socket.sleep(0.2)
    procs = chats(2, rds.url)
    local res, out = clients_bg(urls(procs, "busy"), "--clients 500 --senders 0 --messages 0", 60)()
    assert.same({}, res.errors, out)
    assert.equal(500, res.connected)
    for _, p in ipairs(procs) do
      assert.truthy(H.wait_output(p, "%(0 online%)", 10))
    end
    socket.sleep(0.5)
    local log = monitor.output()
    assert.equal(2, count(log, '"SUBSCRIBE" "ws:busy"'), log:sub(1, 3000))
    assert.equal(2, count(log, '"UNSUBSCRIBE" "ws:busy"'))
    assert.equal(0, count(log, "PSUBSCRIBE"))
  end)

  it("a client that never reads is closed with 1008; Redis keeps our subscriber; the others get everything", function()
    local procs = chats(2, rds.url, "--verbose", "slow")
    local slow = socket.tcp4()
    -- (busted keeps one finally per test: the last one given)
    finally(function() slow:close(); stop_all(procs) end)
    local before = rds.cli("CLIENT LIST TYPE pubsub")
    local ids_before = {}
    for id in before:gmatch("id=(%d+)") do ids_before[#ids_before + 1] = id end
    assert.equal(2, #ids_before)
    -- the slow client on process 2: a tiny receive buffer, and it never reads
    assert(slow:setoption("recv-buffer-size", 4096))
    slow:settimeout(5)
    assert(slow:connect("127.0.0.1", procs[2].port))
    assert(slow:send(H.request(procs[2].port, "/ws")))
    assert.matches("^HTTP/1.1 101", slow:receive("*l"))
    local _, slow_port = slow:getsockname()
    assert.truthy(H.wait_output(procs[2], "join 127%.0%.0%.1:" .. slow_port))
    -- 4 clients (2 per process), one sender on process 1: 100 x 60,000 bytes
    local res, out = clients_bg(urls(procs), "--clients 4 --senders 1 --messages 100 --size 60000", 30)()
    assert.same({}, res.errors, out)
    assert.equal(300, res.expected)
    assert.equal(res.expected, res.received)
    assert.equal(4, res.complete)
    assert.truthy(H.wait_output(procs[2], "leave 127%.0%.0%.1:" .. slow_port .. " %(1008 send queue full%)", 5),
      procs[2].output():sub(-3000))
    local after = rds.cli("CLIENT LIST TYPE pubsub")
    local ids_after = {}
    for id in after:gmatch("id=(%d+)") do ids_after[#ids_after + 1] = id end
    assert.same(ids_before, ids_after)
  end)
end)
