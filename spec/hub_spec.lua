-- ws.hub: one spec for both backends (this process only, and Redis), then
-- what only Redis does: two nodes, echo, ordered mode and history.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local redis = require "ws.redis"
local H = require "spec.helpers"

local gettime = socket.gettime

-- A server on loop l with a hub made by make_hub(l); /ws?room=NAME
-- subscribes the connection to NAME. Returns server, hub, conns (by arrival).
local function serve(l, hub)
  local server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l, hub = hub })
  local conns = {}
  server:route("/ws", function(conn)
    conns[#conns + 1] = conn
    local room = (conn.request.query or ""):match("room=([%w_]+)")
    if room then hub:subscribe(conn, room) end
    repeat until not conn:receive()
  end)
  return server, conns
end

local function connect(server, room)
  return assert(ws.connect("ws://" .. server.address .. "/ws" .. (room and "?room=" .. room or ""), { timeout = 5 }))
end

local function wait_for(l, secs, pred)
  local deadline = gettime() + secs
  while not pred() and gettime() < deadline do l:sleep(0.01) end
  return pred()
end

-- The spec both backends pass. new_hub(l) -> hub (connected if Redis).
local function common(new_hub)
  it("subscribes, publishes to a topic's connections only, leaves one out with except, counts", function()
    local l = loop.new()
    local hub = new_hub(l)
    local server, conns = serve(l, hub)
    H.run_task(l, 20, function()
      local a1, a2, b = connect(server, "a"), connect(server, "a"), connect(server, "b")
      assert.is_true(wait_for(l, 5, function() return #conns == 3 end))
      assert.equal(2, hub:count("a"))
      assert.equal(1, hub:count("b"))
      assert.equal(0, hub:count("nobody"))
      assert.equal(2, (hub:publish("a", "to a")))
      assert.same({ "to a", "text" }, { a1:receive(5) })
      assert.same({ "to a", "text" }, { a2:receive(5) })
      assert.same({ nil, "timeout" }, { b:receive(0.2) })
      -- except: the server side of a1 (the first to arrive)
      assert.equal(1, (hub:publish("a", "\0\1", "binary", { except = conns[1] })))
      assert.same({ "\0\1", "binary" }, { a2:receive(5) })
      assert.same({ nil, "timeout" }, { a1:receive(0.2) })
      -- subscribing twice counts once; unsubscribe
      assert.is_true(hub:subscribe(conns[3], "a"))
      assert.is_true(hub:subscribe(conns[3], "a"))
      assert.equal(3, hub:count("a"))
      hub:unsubscribe(conns[1], "a")
      assert.equal(2, hub:count("a"))
      assert.equal(2, (hub:publish("a", "again")))
      assert.equal("again", a2:receive(5))
      assert.equal("again", b:receive(5))
      assert.same({ nil, "timeout" }, { a1:receive(0.2) })
      a1:close(); a2:close(); b:close()
    end)
    hub:close()
    server:close()
  end)

  it("unsubscribes a connection from every topic when it closes, whoever closed", function()
    local l = loop.new()
    local hub = new_hub(l)
    local server, conns = serve(l, hub)
    H.run_task(l, 20, function()
      local c1, c2 = connect(server, "x"), connect(server, "x")
      assert.is_true(wait_for(l, 5, function() return #conns == 2 end))
      hub:subscribe(conns[1], "y")
      assert.equal(2, hub:count("x"))
      assert.equal(1, hub:count("y"))
      c1:close()                      -- the peer closes
      assert.is_true(wait_for(l, 5, function() return hub:count("x") == 1 end))
      assert.equal(0, hub:count("y"))
      conns[2]:close(1001)            -- the server closes
      assert.is_true(wait_for(l, 5, function() return hub:count("x") == 0 end))
      assert.is_nil(hub.topics.x)
      assert.is_nil(hub.topics.y)
      -- a closed connection cannot subscribe
      assert.same({ nil, "closed" }, { hub:subscribe(conns[1], "z") })
      assert.equal(0, hub:count("z"))
      c2:close()
    end)
    hub:close()
    server:close()
  end)

  it("broadcasts to every connection, calls listeners, keeps status", function()
    local l = loop.new()
    local hub = new_hub(l)
    local server, conns = serve(l, hub)
    local heard = {}
    local fn = hub:on("news", function(data, kind, info) heard[#heard + 1] = { data, kind, info.topic } end)
    H.run_task(l, 20, function()
      local c1, c2 = connect(server, "news"), connect(server)
      assert.is_true(wait_for(l, 5, function() return #conns == 2 end))
      assert.equal(2, (hub:broadcast("all")))
      assert.equal("all", c1:receive(5))
      assert.equal("all", c2:receive(5))
      assert.equal(1, (hub:publish("news", "n1")))
      assert.equal("n1", c1:receive(5))
      assert.is_true(wait_for(l, 5, function() return #heard == 1 end))
      assert.same({ "n1", "text", "news" }, heard[1])
      hub:off("news", fn)
      hub:publish("news", "n2")
      assert.equal("n2", c1:receive(5))
      l:sleep(0.1)
      assert.equal(1, #heard)
      local s = hub:status()
      assert.equal(3, s.published)
      assert.equal(4, s.delivered)
      assert.equal(0, s.dropped)
      assert.is_string(s.node)
      assert.equal(16, #s.node)
      c1:close(); c2:close()
    end)
    hub:close()
    server:close()
  end)

  it("refuses bad arguments as programmer errors", function()
    local hub = new_hub(loop.new())
    assert.has_error(function() hub:publish("t", {}) end)
    assert.has_error(function() hub:publish("t", "x", "utf16") end)
    assert.has_error(function() hub:publish(1, "x") end)
    assert.has_error(function() hub:publish("!all", "x") end)   -- reserved for the hub's own channels
    assert.has_error(function() hub:on("t", "nope") end)
    -- text that is not UTF-8 would make every client close with 1007: refused, not counted
    assert.same({ nil, "invalid utf-8" }, { hub:publish("t", "\255") })
    assert.same({ nil, "invalid utf-8" }, { hub:broadcast("a\192") })
    assert.equal(0, hub:status().published)
    assert.equal(0, (hub:publish("t", "\255", "binary")))
    hub:close()
  end)
end

describe("ws.hub, this process only", function()
  common(function(l) return ws.hub { loop = l } end)

  it("says it is local and has nothing to reach beyond", function()
    local hub = ws.hub {}
    assert.equal("local", hub:status().state)
    assert.same({ nil, "history needs ordered = true" }, { hub:history("t") })
  end)
end)

describe("ws.hub over Redis #slow", function()
  local rds
  setup(function() rds = H.start_redis() end)
  teardown(function() if rds then rds.stop() end end)

  -- a hub on l, connected and subscribed
  local function redis_hub(l, opts)
    opts = opts or {}
    opts.loop, opts.redis, opts.logger = l, opts.redis or rds.url, false
    local hub = ws.hub(opts)
    assert(H.step_until(l, 10, function() return hub.up end), "hub did not connect")
    return hub
  end

  common(redis_hub)

  it("reaches other nodes once, in order, ignores its own echo, one channel per topic", function()
    local l = loop.new()
    local h1, h2 = redis_hub(l), redis_hub(l)
    local s1, conns1 = serve(l, h1)
    local s2, conns2 = serve(l, h2)
    H.run_task(l, 30, function()
      local a = connect(s1, "room")
      local b1, b2 = connect(s2, "room"), connect(s2, "room")
      assert.is_true(wait_for(l, 5, function() return #conns1 == 1 and #conns2 == 2 end))
      -- the subscription reached Redis once per node, not per connection
      assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:room"):match("\n2") ~= nil end))
      for i = 1, 500 do
        local n, ok = h1:publish("room", "m" .. i)
        assert.equal(1, n)
        assert.is_true(ok)
      end
      for i = 1, 500 do
        assert.equal("m" .. i, a:receive(5))
        assert.equal("m" .. i, b1:receive(5))
        assert.equal("m" .. i, b2:receive(5))
      end
      assert.same({ nil, "timeout" }, { a:receive(0.3) })   -- no echo
      assert.same({ nil, "timeout" }, { b1:receive(0.01) })
      assert.equal(500, h2:status().received)
      assert.equal(0, h1:status().received)
      assert.equal(1000, h2:status().delivered)
      -- broadcast reaches the other node's connections too
      h2:broadcast("everyone")
      assert.equal("everyone", a:receive(5))
      assert.equal("everyone", b1:receive(5))
      -- the last local subscriber gone: the channel is unsubscribed
      a:close()
      assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:room"):match("\n1") ~= nil end))
      b1:close(); b2:close()
    end)
    h1:close(); h2:close(); s1:close(); s2:close()
  end)

  it("keeps a publisher's order across topics when one read brings several", function()
    local l = loop.new()
    local h1, h2 = redis_hub(l), redis_hub(l)
    local s2, conns2 = serve(l, h2)
    local heard = {}
    h2:on("x", function(data) heard[#heard + 1] = data end)
    H.run_task(l, 30, function()
      local c = connect(s2, "x")
      assert.is_true(wait_for(l, 5, function() return #conns2 == 1 end))
      assert.is_true(h2:subscribe(conns2[1], "y"))
      assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:y"):match("\n1") ~= nil end))
      -- one loop round: one write to Redis, arriving in few reads, runs of
      -- one topic (x x) between the others (y)
      local want = {}
      for i = 1, 300 do
        local topic = (i % 3 == 0) and "y" or "x"
        h1:publish(topic, topic .. i)
        want[i] = topic .. i
      end
      local got = {}
      for i = 1, 300 do got[i] = c:receive(5) end
      assert.same(want, got)
      assert.equal(200, #heard)
      assert.equal(300, h2:status().received)
      assert.equal(300, h2:status().delivered)   -- (connections; listeners are not counted)
      c:close()
    end)
    h1:close(); h2:close(); s2:close()
  end)

  it("reads a burst from Redis a read a loop round: the loop goes on, frames go out meanwhile", function()
    local l = loop.new()
    local hub = redis_hub(l)
    local server = assert(ws.listen { host = "127.0.0.1", port = H.free_port(), loop = l, hub = hub })
    local conn
    server:route("/ws", function(c)
      conn = c
      hub:subscribe(c, "burst")
      repeat until not c:receive()
    end)
    -- 1,536 messages of 16 KiB (24 MiB) from another process, pipelined,
    -- to a client in its own process (as browsers are) that takes them as
    -- fast as they come and checks every frame
    local n, size = 1536, 16384
    local peer = H.PYTHON .. " " .. H.ROOT .. "/spec/peers/burst.py "
    local client = H.spawn(peer .. "client " .. server.port .. " " .. n .. " " .. size, "burst-client")
    -- loop rounds, counted by a task that yields, and the frames written to
    -- the client: at the first and the last message of the burst
    local rounds, seen, first, last, written = 0, 0, nil, nil, nil
    hub:on("burst", function()
      seen = seen + 1
      if seen == 1 then first = rounds elseif seen == n then last, written = rounds, conn.written end
    end)
    l:spawn(function() while seen < n do rounds = rounds + 1; l:yield() end end)
    H.run_task(l, 60, function()
      assert.is_true(wait_for(l, 10, function() return hub:count("burst") == 1 end))
      assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:burst"):match("\n1") ~= nil end))
      local publisher = H.spawn(peer .. "publish " .. rds.port .. " " .. n .. " " .. size, "burst-publisher")
      -- the loop blocked meanwhile (H.wait_output sleeps): Redis holds the
      -- burst for us (under its 32 MB limit), so every read returns at once
      assert.truthy(H.wait_output(publisher, "published", 20))
      wait_for(l, 30, function() return client.output():find("\n[abc][lal][ldo]") ~= nil end)
      publisher.stop()
      assert.equal(n, hub:status().received)
      -- the reader let the loop go round between its reads (at most 1 MiB
      -- each: 24 at least), though every read found data waiting, and the
      -- client's frames went out meanwhile (none did before: it was all
      -- queued, and a client that kept up was dropped with 1008)
      assert.is_true(last - first >= 20, "loop rounds during the burst: " .. (last - first))
      assert.is_true(written > 0, "frames written while the burst was read: " .. written)
      -- every frame whole and in order; all of them, unless the client fell
      -- max_queue (16 MiB) behind on a loaded machine: then 1008
      local out = client.output()
      assert.truthy(out == "connected\nall\n" or out:match("^connected\nclosed 1008 after %d+\n$"), out)
    end)
    client.stop()
    hub:close(); server:close()
  end)

  it("ordered: a publish in the Stream twice (sent again after its reply was lost) reaches nobody twice", function()
    local l = loop.new()
    local h1, h2 = redis_hub(l, { ordered = true }), redis_hub(l, { ordered = true })
    local s2 = serve(l, h2)
    H.run_task(l, 30, function()
      local c = connect(s2, "dup")
      assert.is_true(wait_for(l, 5, function() return h2:count("dup") == 1 end))
      h1:publish("dup", "a")
      h1:publish("dup", "b")
      assert.equal("a", c:receive(5))
      assert.equal("b", c:receive(5))
      -- the copy, as the script appends it: the next offset, b's header
      local r = assert(redis.connect(rds.url, { loop = l }))
      local entries = assert(r:call("XRANGE", "ws:{dup}:s", "-", "+"))
      local hdr = entries[2][2][2]
      local epoch = assert(r:call("HGET", "ws:{dup}:m", "e"))
      assert(r:call("XADD", "ws:{dup}:s", "0-3", "h", hdr, "d", "b"))
      assert(r:call("HSET", "ws:{dup}:m", "s", "3"))
      assert(r:call("PUBLISH", "ws:dup", "o " .. epoch .. " 3 " .. hdr .. "\nb"))
      r:close()
      h1:publish("dup", "c")
      assert.equal("c", c:receive(5))
      assert.same({ nil, "timeout" }, { c:receive(0.2) })
      assert.equal(3, h2:status().received)
      local hist = assert(h2:history("dup"))
      assert.same({ { 1, "a" }, { 2, "b" }, { 4, "c" } },
        { { hist[1].offset, hist[1].data }, { hist[2].offset, hist[2].data }, hist[3] and { hist[3].offset, hist[3].data } })
      assert.equal(3, #hist)
      c:close()
    end)
    h1:close(); h2:close(); s2:close()
  end)

  it("ordered: one total order for everybody, history with offsets and epoch", function()
    local l = loop.new()
    local h1, h2 = redis_hub(l, { ordered = true }), redis_hub(l, { ordered = true })
    local s1, conns1 = serve(l, h1)
    local s2, conns2 = serve(l, h2)
    H.run_task(l, 30, function()
      local a, b = connect(s1, "ord"), connect(s2, "ord")
      assert.is_true(wait_for(l, 5, function() return #conns1 == 1 and #conns2 == 1 end))
      for i = 1, 200 do
        h1:publish("ord", "one" .. i)
        h2:publish("ord", "two" .. i)
        if i % 50 == 0 then l:sleep(0) end
      end
      local seen_a, seen_b = {}, {}
      for i = 1, 400 do
        seen_a[i] = a:receive(5)
        seen_b[i] = b:receive(5)
      end
      assert.same(seen_a, seen_b)
      local last1, last2 = 0, 0
      for i = 1, 400 do
        local who, n = seen_a[i]:match("^(%a+)(%d+)$")
        n = tonumber(n)
        if who == "one" then assert.equal(last1 + 1, n); last1 = n else assert.equal(last2 + 1, n); last2 = n end
      end
      local hist, epoch = h2:history("ord", { since = 390 })
      assert.equal(10, #hist)
      assert.equal(391, hist[1].offset)
      assert.equal(seen_a[391], hist[1].data)
      assert.equal("text", hist[1].kind)
      assert.is_string(epoch)
      assert.same({ nil, "gap", epoch }, { h2:history("ord", { since = 5, epoch = "not" .. epoch }) })
      -- Redis lost the topic's history (restarted empty, say): a gap, not an empty list
      rds.cli("DEL ws:{ord}:s ws:{ord}:m")
      assert.same({ nil, "gap" }, { h2:history("ord", { since = 5, epoch = epoch }) })
      assert.same({ nil, "gap" }, { h2:history("ord", { since = 5 }) })
      assert.same({ {} }, { h2:history("ord", { since = 0 }) })
      a:close(); b:close()
    end)
    h1:close(); h2:close(); s1:close(); s2:close()
  end)

  it("ordered: a node that missed messages replays them from the Stream; on_gap when it cannot", function()
    local l = loop.new()
    local gaps = {}
    local h1 = redis_hub(l, { ordered = true, history = 5, prefix = "g:" })
    local h2 = redis_hub(l, { ordered = true, history = 5, prefix = "g:",
      on_gap = function(topic, info) gaps[#gaps + 1] = { topic, info } end })
    local got = {}
    h2:on("t", function(data) got[#got + 1] = data end)
    H.run_task(l, 30, function()
      assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB g:t"):match("\n1") ~= nil end))
      h1:publish("t", "1")
      assert.is_true(wait_for(l, 5, function() return #got == 1 end))
      -- h2's subscriber connection is killed: 3 messages are published while it reconnects
      rds.cli("CLIENT KILL TYPE pubsub")
      h1:publish("t", "2"); h1:publish("t", "3"); h1:publish("t", "4")
      assert.is_true(wait_for(l, 10, function() return #got == 4 end))
      assert.same({ "1", "2", "3", "4" }, got)
      assert.equal(0, #gaps)
      -- 8 more while h2 is away, the Stream keeps 5: a gap it is told about
      h2.sub:close("test")
      for i = 5, 12 do h1:publish("t", tostring(i)) end
      assert.is_true(wait_for(l, 10, function() return got[#got] == "12" end))
      assert.equal(1, #gaps)
      assert.equal("t", gaps[1][1])
      assert.equal(4, gaps[1][2].since)
      assert.equal(8, gaps[1][2].first)
      assert.same({ "1", "2", "3", "4", "8", "9", "10", "11", "12" }, got)
      -- received counts what came by replay too, once
      assert.equal(9, h2:status().received)
    end)
    h1:close(); h2:close()
  end)

  it("Redis down: local delivery goes on, publish says so and counts it; back up: resubscribed", function()
    local r3 = H.start_redis()
    finally(function() r3.stop() end)
    local l = loop.new()
    local states = {}
    local hub = redis_hub(l, { redis = r3.url, on_state = function(state) states[#states + 1] = state end,
      backoff_max = 0.5 })
    local server = serve(l, hub)
    H.run_task(l, 30, function()
      local c = connect(server, "r")
      assert.is_true(wait_for(l, 5, function() return hub:count("r") == 1 end))
      assert.same({ 1, true }, { hub:publish("r", "before") })
      assert.equal("before", c:receive(5))
      assert.is_true(wait_for(l, 5, function() return hub.pub:pending() == 0 end))   -- Redis answered
      -- handed to Redis, but it dies before the PUBLISH is answered: a drop
      assert.same({ 1, true }, { hub:publish("r", "unanswered") })
      r3.kill9()
      assert.equal("unanswered", c:receive(5))
      assert.is_true(wait_for(l, 5, function() return hub:status().state == "down" end))
      assert.same({ 1, nil, "redis down" }, { hub:publish("r", "during") })
      assert.equal("during", c:receive(5))
      assert.equal(2, hub:status().dropped)
      assert.is_true(hub:status().unconfirmed <= 1)   -- (written before the loss was seen, or not)
      r3 = H.start_redis { port = r3.port }
      assert.is_true(wait_for(l, 10, function() return hub:status().state == "up" and hub.up end))
      assert.same({ "up", "resubscribed", "down", "up", "resubscribed" }, states)
      assert.matches("ws:r", r3.cli("PUBSUB CHANNELS '*'"))
      assert.same({ 1, true }, { hub:publish("r", "after") })
      assert.equal("after", c:receive(5))
      c:close()
    end)
    hub:close()
    server:close()
  end)

  it("ordered, Redis down: local subscribers get our publishes at once, in order; the others after", function()
    local r4 = H.start_redis()
    finally(function() r4.stop() end)
    local l = loop.new()
    local h1 = redis_hub(l, { redis = r4.url, ordered = true, backoff_max = 0.5 })
    local h2 = redis_hub(l, { redis = r4.url, ordered = true, backoff_max = 0.5 })
    -- h3 keeps the one total order for everything: nothing locally until Redis is back
    local h3 = redis_hub(l, { redis = r4.url, ordered = true, backoff_max = 0.5, local_when_down = false })
    local s1, conns1 = serve(l, h1)
    local s2, conns2 = serve(l, h2)
    local s3, conns3 = serve(l, h3)
    H.run_task(l, 30, function()
      local a, b, c = connect(s1, "o"), connect(s2, "o"), connect(s3, "o")
      assert.is_true(wait_for(l, 5, function() return #conns1 == 1 and #conns2 == 1 and #conns3 == 1 end))
      assert.is_true(wait_for(l, 5, function() return r4.cli("PUBSUB NUMSUB ws:o"):match("\n3") ~= nil end))
      assert.same({ 0, true }, { h1:publish("o", "x1") })   -- through Redis while it is up
      assert.equal("x1", a:receive(5))
      assert.equal("x1", b:receive(5))
      assert.equal("x1", c:receive(5))
      -- y1 is still queued when Redis dies: it must reach a before y2
      assert.same({ 0, true }, { h1:publish("o", "y1") })
      r4.kill9()
      assert.is_true(wait_for(l, 5, function() return h1:status().state == "down" end))
      assert.same({ 1, true }, { h1:publish("o", "y2") })   -- held for Redis, and a gets it now
      assert.equal("y1", a:receive(1))
      assert.equal("y2", a:receive(1))
      assert.is_true(wait_for(l, 5, function() return h3:status().state == "down" end))
      assert.same({ 0, true }, { h3:publish("o", "w") })    -- held, c waits for Redis
      assert.equal("down", h1:status().state)
      assert.same({ nil, "timeout" }, { b:receive(0.2) })   -- the other process waits for Redis
      assert.same({ nil, "timeout" }, { c:receive(0.01) })
      r4 = H.start_redis { port = r4.port }
      -- b and c: y1, y2 and w in Redis's one order (the same for both), y1 before y2
      local got_b, got_c = {}, {}
      for i = 1, 3 do got_b[i] = b:receive(10) end
      for i = 1, 3 do got_c[i] = c:receive(5) end
      assert.same(got_b, got_c)
      local seen = table.concat(got_b, " ")
      assert.is_truthy(seen:find("y1.*y2"), seen)
      assert.is_truthy(seen:find("w"), seen)
      assert.equal("w", a:receive(5))                       -- a: only what it did not have
      assert.is_true(wait_for(l, 5, function() return h1.up end))
      assert.same({ 0, true }, { h1:publish("o", "z") })    -- back through Redis
      assert.equal("z", a:receive(5))                       -- and no copy of y1, y2 before it
      assert.equal("z", b:receive(5))
      assert.equal("z", c:receive(5))
      assert.equal(0, h1:status().dropped)
      a:close(); b:close(); c:close()
    end)
    h1:close(); h2:close(); h3:close(); s1:close(); s2:close(); s3:close()
  end)

  it("ordered: what Redis answered but had not written to a subscriber when it died is sent again", function()
    local r5 = H.start_redis()
    finally(function() r5.stop() end)
    -- two loops: the receiver's is not stepped while the publisher publishes,
    -- so most of what Redis answers waits in Redis's buffer for it
    local la, lb = loop.new(), loop.new()
    local gaps, got = {}, {}
    local a = redis_hub(la, { redis = r5.url, ordered = true, backoff_max = 0.2 })
    local b = redis_hub(lb, { redis = r5.url, ordered = true, backoff_max = 0.2,
      on_gap = function(topic, info) gaps[#gaps + 1] = { topic, info } end })
    b:on("r", function(data) got[#got + 1] = data end)
    assert(H.step_until(lb, 5, function() return r5.cli("PUBSUB NUMSUB ws:r"):match("\n1") ~= nil end))
    a:publish("r", "first")
    assert(H.step_until(lb, 5, function() la:step(0) return #got == 1 end))
    -- 100 x 64 KiB (past the sockets' buffers, under Redis's 8 MB pubsub limit)
    local big = {}
    for i = 1, 100 do
      big[i] = ("%03d"):format(i) .. ("x"):rep(65533)
      assert.same({ 0, true }, { a:publish("r", big[i]) })
    end
    assert(H.step_until(la, 10, function() return a.pub:pending() == 0 end), "Redis did not answer")
    assert.equal(101, a.answered.t - a.answered.h + 1)
    r5.kill9()
    r5 = H.start_redis { port = r5.port }
    local function both() lb:step(0) return #got == 101 end
    H.step_until(la, 20, both)
    assert.equal(101, #got)
    assert.equal("first", got[1])
    for i = 1, 100 do assert.is_true(got[i + 1] == big[i], "message " .. i) end
    assert.equal(1, #gaps)                                -- (Redis lost the history)
    assert.is_true(a:status().resent > 0)
    assert.is_true(a:status().resent <= 101)
    assert.equal(0, a:status().dropped)
    -- back to normal: one more goes through once
    a:publish("r", "after")
    assert(H.step_until(la, 5, function() lb:step(0) return #got == 102 end))
    assert.equal("after", got[102])
    -- a new publish connection to the same Redis: the answered ones are in
    -- its Stream still, so the script drops their copies
    local resent, xlen = a:status().resent, tonumber(r5.cli("XLEN ws:{r}:s"))
    local old = a.pub
    local id = H.run_task(la, 5, function() return old:call("CLIENT", "ID") end)
    assert.matches("^1", r5.cli("CLIENT KILL ID " .. id))
    assert(H.step_until(la, 10, function() lb:step(0) return a.pub ~= old and a.up end), "no new connection")
    a:publish("r", "again")
    assert(H.step_until(la, 5, function() lb:step(0) return #got == 103 end))
    H.step_until(la, 0.3, function() lb:step(0) return false end)
    assert.equal(103, #got)
    assert.equal("again", got[103])
    assert.equal(xlen + 1, tonumber(r5.cli("XLEN ws:{r}:s")))
    assert.equal(resent, a:status().resent)
    a:close(); b:close()
  end)

  it("ordered: answered publishes are sent again after Redis restarts empty, though the subscriber connects late", function()
    local r6 = H.start_redis()
    finally(function() r6.stop() end)
    local l = loop.new()
    local a = redis_hub(l, { redis = r6.url, ordered = true, backoff_max = 0.2 })
    for i = 1, 20 do a:publish("late", "m" .. i) end
    assert(H.step_until(l, 10, function() return a.pub:pending() == 0 and a.answered.t == 20 end), "not answered")
    local old = a.pub
    r6.kill9()
    -- back empty, with room for one client: the publish connection gets in,
    -- the subscriber is refused until there is room
    r6 = H.start_redis { port = r6.port, args = "--maxclients 1" }
    assert(H.step_until(l, 10, function() return a.pub ~= old and a.pub.open end), "no new publish connection")
    H.step_until(l, 0.5, function() return false end)   -- (the subscriber refused, again and again)
    assert.is_false(a.up)
    H.run_task(l, 5, function() assert(a.pub:call("CONFIG", "SET", "maxclients", "100")) end)
    assert(H.step_until(l, 10, function() return a.up and a:status().resent == 20 end),
      "resent " .. a:status().resent)
    assert.equal(20, tonumber(r6.cli("XLEN ws:{late}:s")))
    a:close()
  end)

  it("replaces a subscriber connection that is open but silent", function()
    local l = loop.new()
    local lines = {}
    local hub = ws.hub { loop = l, redis = rds.url, probe_interval = 0.1, probe_timeout = 0.8,
      logger = function(_, msg) lines[#lines + 1] = msg end }
    assert(H.step_until(l, 10, function() return hub.up end))
    local old = hub.sub
    local heard = {}
    hub:on("p", function(data) heard[#heard + 1] = data end)
    -- Redis stops answering for 2 s; the TCP connections stay open
    local sleeper = H.spawn("exec redis-cli -p " .. rds.port .. " DEBUG SLEEP 2", "debug-sleep")
    finally(sleeper.stop)
    assert.is_true(H.step_until(l, 10, function()
      for _, m in ipairs(lines) do if m:match("silent") then return true end end
    end))
    assert.is_true(H.step_until(l, 10, function() return hub.up and hub.sub ~= old and hub.sub.open end))
    local other = ws.hub { loop = l, redis = rds.url, logger = false }
    assert(H.step_until(l, 10, function() return other.up end))
    other:publish("p", "still here")
    assert.is_true(H.step_until(l, 5, function() return heard[1] == "still here" end))
    hub:close(); other:close()
  end)

  it("keeps a healthy subscriber connection when this process's own loop stalled", function()
    local l = loop.new()
    local lines = {}
    local hub = ws.hub { loop = l, redis = rds.url, probe_interval = 0.1, probe_timeout = 0.5,
      logger = function(_, msg) lines[#lines + 1] = msg end }
    assert(H.step_until(l, 10, function() return hub.up end))
    local old = hub.sub
    H.step_until(l, 0.3, function() return false end)
    local t0 = gettime()
    while gettime() - t0 < 1.5 do end   -- a task busy for 1.5 s (three probe_timeouts)
    H.step_until(l, 1, function() return false end)
    assert.equal(old, hub.sub)
    for _, m in ipairs(lines) do assert.is_nil(m:match("silent"), m) end
    hub:close()
  end)

  it("ordered: survives SCRIPT FLUSH in order, and uses EVAL where SCRIPT is refused", function()
    local noscript = H.start_redis { args = "--rename-command SCRIPT ''" }
    finally(noscript.stop)
    for _, url in ipairs({ rds.url, noscript.url }) do
      local l = loop.new()
      local h1 = redis_hub(l, { redis = url, ordered = true, prefix = "f:" })
      local h2 = redis_hub(l, { redis = url, ordered = true, prefix = "f:" })
      local got = {}
      h2:on("t", function(data) got[#got + 1] = tonumber(data) end)
      H.run_task(l, 30, function()
        l:sleep(0.2)
        for i = 1, 50 do h1:publish("t", tostring(i)) end
        if url == rds.url then rds.cli("SCRIPT FLUSH") end
        for i = 51, 100 do h1:publish("t", tostring(i)); if i % 10 == 0 then l:sleep(0.01) end end
        assert.is_true(wait_for(l, 10, function() return #got == 100 end), #got .. " of 100")
        for i = 1, 100 do assert.equal(i, got[i]) end
        assert.equal(0, h1:status().dropped)
      end)
      h1:close(); h2:close()
    end
  end)

  it("ordered: a publish Redis refuses (OOM) goes again before those behind it, in order; counted", function()
    local r = H.start_redis()
    finally(r.stop)
    local l = loop.new()
    local h1 = redis_hub(l, { redis = r.url, ordered = true, backoff_min = 0.05 })
    local h2 = redis_hub(l, { redis = r.url, ordered = true })
    local got = {}
    h2:on("t", function(data) got[#got + 1] = tonumber(data) end)
    H.run_task(l, 30, function()
      for i = 1, 10 do h1:publish("t", tostring(i)) end
      assert.is_true(wait_for(l, 5, function() return #got == 10 end))
      r.cli("CONFIG SET maxmemory 1")
      h1:publish("t", "11")                      -- refused: OOM
      assert.is_true(wait_for(l, 5, function() return h1:status().refused > 0 end))
      for i = 12, 15 do h1:publish("t", tostring(i)) end   -- (behind it)
      l:sleep(0.3)
      r.cli("CONFIG SET maxmemory 0")
      for i = 16, 20 do h1:publish("t", tostring(i)) end
      assert.is_true(wait_for(l, 10, function() return #got == 20 end), #got .. " of 20")
      for i = 1, 20 do assert.equal(i, got[i]) end
      assert.equal(0, h1:status().dropped)
    end)
    h1:close(); h2:close()
  end)

  it("unordered: a PUBLISH Redis refuses is dropped and counted as refused, not unconfirmed", function()
    local r = H.start_redis { args = "--rename-command PUBLISH ''" }
    finally(r.stop)
    local l = loop.new()
    local h = redis_hub(l, { redis = r.url })
    H.run_task(l, 10, function()
      for i = 1, 3 do h:publish("t", "m" .. i) end
      assert.is_true(wait_for(l, 5, function() return h:status().refused == 3 end))
      local st = h:status()
      assert.same({ 3, 0 }, { st.dropped, st.unconfirmed })
    end)
    h:close()
  end)

  it("says what Redis said when it refuses the subscriptions (NOAUTH)", function()
    local r = H.start_redis { args = "--requirepass s3cret" }
    finally(r.stop)
    local l = loop.new()
    local why
    local h = ws.hub { loop = l, redis = r.url, logger = false,
      on_state = function(state, info) if state == "down" then why = info.error end end }
    assert.is_true(H.step_until(l, 10, function() return why ~= nil end))
    assert.matches("NOAUTH", why)
    h:close()
  end)

  it("drops text from Redis that is not UTF-8 (anyone may PUBLISH there), counted", function()
    local l = loop.new()
    local h = redis_hub(l)
    local s, conns = serve(l, h)
    H.run_task(l, 20, function()
      local c = connect(s, "u8")
      assert.is_true(wait_for(l, 5, function() return #conns == 1 end))
      assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:u8"):match("\n1") ~= nil end))
      local raw = assert(redis.connect(rds.url, { loop = l }))
      assert(raw:call("PUBLISH", "ws:u8", "u ab12 1 t\n\255\254 bad"))
      assert(raw:call("PUBLISH", "ws:u8", "u ab12 2 t\nfine"))
      assert.equal("fine", c:receive(5))
      assert.equal(1, h:status().invalid)
      c:close()
    end)
    h:close(); s:close()
  end)

  it("ordered: publishes the connection is too busy to take wait in order and go out as it drains", function()
    local l = loop.new()
    local h1 = redis_hub(l, { ordered = true, prefix = "busy:" })
    local h2 = redis_hub(l, { ordered = true, prefix = "busy:" })
    local got = {}
    h2:on("t", function(data) got[#got + 1] = tonumber(data) end)
    H.run_task(l, 30, function()
      assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB busy:t"):match("\n1") ~= nil end))
      h1.pub.max_pending = 3          -- (as a slow Redis would: 100,000 commands waiting)
      -- (600: the outbox's head passes the point where what was sent is let go)
      for i = 1, 600 do assert.same({ 0, true }, { h1:publish("t", tostring(i)) }) end
      assert.is_true(h1:status().outbox > 0)   -- held, counted
      -- no reconnect: they go out as Redis answers, in publish order
      assert.is_true(wait_for(l, 20, function() return #got == 600 end), #got .. " of 600")
      for i = 1, 600 do assert.equal(i, got[i]) end
      assert.equal(0, h1:status().outbox)
      -- held past max_outbox: refused, counted
      h1.max_outbox = 5
      local res = {}
      for i = 1, 10 do res[i] = { h1:publish("t", "x" .. i) } end
      assert.same({ 0, nil, "redis busy" }, res[10])
      assert.is_true(h1:status().dropped > 0)
    end)
    h1:close(); h2:close()
  end)

  it("ordered: publishes that waited while Redis was down go before any made once it is back", function()
    local r = H.start_redis()
    finally(function() r.stop() end)
    local l = loop.new()
    local h1, downs = nil, 0
    h1 = redis_hub(l, { redis = r.url, ordered = true, backoff_max = 0.3, on_state = function(state)
      if state == "down" then downs = downs + 1 end
      if state == "up" and downs > 0 then
        h1:publish("t", "from on_state")
        l:sleep(0.2)                -- (meanwhile another task publishes)
      end
    end })
    local h2 = redis_hub(l, { redis = r.url, ordered = true, backoff_max = 0.3 })
    local got = {}
    h2:on("t", function(data) got[#got + 1] = data end)
    H.run_task(l, 30, function()
      assert.is_true(wait_for(l, 5, function() return r.cli("PUBSUB NUMSUB ws:t"):match("\n1") ~= nil end))
      h1:publish("t", "m1")
      assert.is_true(wait_for(l, 5, function() return #got == 1 end))
      h1:publish("t", "queued")       -- (still queued when Redis dies: it goes again on reconnect)
      r.kill9()
      assert.is_true(wait_for(l, 5, function() return h1:status().state == "down" end))
      l:spawn(function()
        wait_for(l, 10, function() return h1:status().state == "up" end)
        h1:publish("t", "live")
      end)
      r = H.start_redis { port = r.port }
      assert.is_true(wait_for(l, 10, function() return #got == 4 end), #got .. " of 4")
      l:sleep(0.2)
      assert.same({ "m1", "queued", "from on_state", "live" }, got)
    end)
    h1:close(); h2:close()
  end)

  it("ordered: publishes answered more than 2 s before Redis died are not sent again", function()
    local r = H.start_redis()
    finally(function() r.stop() end)
    local l = loop.new()
    local h = redis_hub(l, { redis = r.url, ordered = true, backoff_max = 0.3 })
    H.run_task(l, 30, function()
      for i = 1, 5 do h:publish("t", "old " .. i) end
      assert.is_true(wait_for(l, 5, function() return h.pub:pending() == 0 end))
      l:sleep(2.5)                    -- (nothing answered since)
      r.kill9()
      r = H.start_redis { port = r.port }
      assert.is_true(wait_for(l, 10, function() return h.up end))
      l:sleep(0.3)
      assert.equal(0, h:status().resent)
      assert.equal("0", (r.cli("XLEN ws:{t}:s"):match("%d+")))
    end)
    h:close()
  end)

  it("refuses a publish larger than max_publish (Redis would drop every subscriber of it)", function()
    assert.equal(16 * 1024 * 1024, require("ws.hub").defaults.max_publish)
    assert.has_error(function() ws.hub { max_publish = 0 } end)
    for _, ordered in ipairs { false, true } do
      local l = loop.new()
      local h1 = redis_hub(l, { ordered = ordered, max_publish = 1000 })
      local h2 = redis_hub(l, { ordered = ordered })
      local got = {}
      h2:on("big", function(data) got[#got + 1] = #data end)
      H.run_task(l, 20, function()
        assert.is_true(wait_for(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:big"):match("\n1") ~= nil end))
        assert.same({ nil, "too large" }, { h1:publish("big", ("x"):rep(1001), "binary") })
        assert.same({ nil, "too large" }, { h1:broadcast(("x"):rep(1001)) })
        assert.same({ 0, true }, { h1:publish("big", ("x"):rep(1000)) })
        assert.is_true(wait_for(l, 5, function() return #got == 1 end))
        l:sleep(0.1)
        assert.same({ 1000 }, got)
        local st = h1:status()
        assert.same({ 1, 0 }, { st.published, st.dropped })
      end)
      h1:close(); h2:close()
    end
  end)

  it("after close: state closed, publish says so and holds nothing", function()
    local l = loop.new()
    local h = redis_hub(l)
    local ho = redis_hub(l, { ordered = true })
    local s, conns = serve(l, ho)
    H.run_task(l, 20, function()
      local c = connect(s, "t")
      assert.is_true(wait_for(l, 5, function() return #conns == 1 end))
      h:close(); ho:close()
      l:sleep(0.2)
      assert.equal("closed", h:status().state)
      assert.equal("closed", ho:status().state)
      assert.same({ 0, nil, "closed" }, { h:publish("t", "late") })
      assert.same({ 0, nil, "closed" }, { h:broadcast("late") })
      -- ordered: its local subscribers still get it (local_when_down), Redis never
      assert.same({ 1, nil, "closed" }, { ho:publish("t", "late") })
      assert.equal("late", c:receive(5))
      assert.equal(0, ho:status().outbox)
      c:close()
    end)
    s:close()
  end)

  it("ordered: except on a topic nobody here takes leaves nothing behind", function()
    local l = loop.new()
    local h = redis_hub(l, { ordered = true })
    local s, conns = serve(l, h)
    H.run_task(l, 20, function()
      local c = connect(s, "here")
      assert.is_true(wait_for(l, 5, function() return #conns == 1 end))
      for i = 1, 50 do h:publish("elsewhere", "m" .. i, "text", { except = conns[1] }) end
      assert.is_nil(next(h.excepts))
      c:close()
    end)
    h:close(); s:close()
  end)

  it("parses URLs; AUTH and SELECT; nil, err for errors; pipelines", function()
    assert.same({ host = "h", port = 7, db = 3, password = "pw" }, redis.parse_url("redis://:pw@h:7/3"))
    assert.same({ host = "127.0.0.1", port = 6379, db = 0 }, redis.parse_url("redis://"))
    assert.same({ host = "::1", port = 6380, db = 0, user = "u", password = "p" },
      redis.parse_url("redis://u:p@[::1]:6380"))
    assert.same({ path = "/tmp/r.sock", db = 2 }, redis.parse_url("unix:///tmp/r.sock?db=2"))
    -- a password may hold "@" (the last one ends it), and %XX is decoded
    assert.same({ host = "h", port = 1, db = 0, password = "p@ss" }, redis.parse_url("redis://:p@ss@h:1"))
    assert.same({ host = "h", port = 6379, db = 0, user = "u:x", password = "p@ss/" },
      redis.parse_url("redis://u%3Ax:p%40ss%2F@h"))
    assert.is_nil(redis.parse_url("http://x"))
    local dir = H.tmpdir()
    local r2 = H.start_redis { args = "--requirepass s3cret --unixsocket " .. dir .. "/r.sock" }
    finally(r2.stop)
    local l = loop.new()
    H.run_task(l, 20, function()
      local c = assert(redis.connect("redis://:s3cret@127.0.0.1:" .. r2.port .. "/2", { loop = l }))
      assert.equal("OK", c:call("SET", "k", "v"))
      local u = assert(redis.connect("unix://:s3cret@" .. dir .. "/r.sock?db=2", { loop = l }))
      assert.equal("v", u:call("GET", "k"))
      assert.equal(redis.null, u:call("GET", "nope"))
      local v, err = c:call("INCR", "k")
      assert.is_nil(v)
      assert.matches("not an integer", err)
      assert.same({ nil, "WRONGPASS invalid username-password pair or user is disabled." },
        { redis.connect("redis://:bad@127.0.0.1:" .. r2.port, { loop = l }) })
      local _, cerr = redis.connect("redis://127.0.0.1:" .. H.free_port(), { loop = l })
      assert.matches("refused", cerr)
      -- 2,000 commands from 4 tasks at once: each gets its own reply
      local done = 0
      for t = 1, 4 do
        l:spawn(function()
          for i = 1, 500 do assert.equal(t * 1000 + i, c:call("INCRBY", "n" .. t, 1) + t * 1000) end
          done = done + 1
        end)
      end
      assert.is_true(wait_for(l, 10, function() return done == 4 end))
      -- a command timeout: nil, "timeout"; the pipeline stays in step
      local slow = assert(redis.connect("redis://:s3cret@127.0.0.1:" .. r2.port, { loop = l, timeout = 0.3 }))
      l:spawn(function() c:call("DEBUG", "SLEEP", "1") end)
      l:sleep(0.05)
      assert.same({ nil, "timeout" }, { slow:call("PING") })
      slow.timeout = 5
      assert.equal("PONG", slow:call("PING"))
      -- bounded: commands awaiting a reply, and bytes not yet written
      local tiny = assert(redis.connect("redis://:s3cret@127.0.0.1:" .. r2.port, { loop = l, max_pending = 1 }))
      assert.is_true(tiny:send(nil, "PING"))
      assert.same({ nil, "busy" }, { tiny:send(nil, "PING") })
      tiny.max_pending, tiny.max_buffer = 10, 20
      l:sleep(0.1)
      assert.is_true(tiny:send(nil, "PING"))                     -- 14 bytes
      assert.same({ nil, "busy" }, { tiny:send(nil, "PING") })   -- 28 would wait
      tiny:close()
      c:close(); u:close(); slow:close()
      assert.same({ nil, "closed" }, { c:call("PING") })
    end)
  end)
end)
