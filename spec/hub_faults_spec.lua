-- ws.redis and ws.hub under faults the other specs do not inject: a server
-- that streams replies without pause or sends a reply that never ends.
local socket = require "socket"
local loop = require "ws.loop"
local redis = require "ws.redis"
local H = require "spec.helpers"

local gettime = socket.gettime

-- Step l for secs; returns the longest step (the loop held by one task).
local function longest_step(l, secs)
  local t0, worst = gettime(), 0
  while gettime() - t0 < secs do
    local a = gettime()
    l:step(0.05)
    worst = math.max(worst, gettime() - a)
  end
  return worst
end

describe("ws.redis against a server that misbehaves", function()
  local function fake(mode, secs)
    return H.start_lua("spec/peers/fake_redis.lua", mode .. " " .. secs, "fake-redis")
  end

  it("a reply stream without pause does not hold the loop: it goes round while the replies are read", function()
    local srv = fake("pushes", 3)
    finally(srv.stop)
    local l = loop.new()
    local pushes, c = 0, nil
    l:spawn(function()
      c = assert(redis.connect("redis://127.0.0.1:" .. srv.port, { loop = l, subscriber = true,
        on_push = function() pushes = pushes + 1 end }))
      assert(c:push_command("SUBSCRIBE", "ws:x"))
    end)
    local worst = longest_step(l, 1.5)
    assert.is_true(pushes > 1000, pushes .. " pushes")
    assert.is_true(worst < 0.3, string.format("one step took %.2f s", worst))
    c:close()
  end)

  it("a reply that never ends is refused past max_reply: the connection goes, memory stays bounded", function()
    local srv = fake("array", 5)
    finally(srv.stop)
    local l = loop.new()
    local closed, res
    l:spawn(function()
      local c = assert(redis.connect("redis://127.0.0.1:" .. srv.port, { loop = l, timeout = 10,
        max_reply = 1024 * 1024, on_close = function(why) closed = why end }))
      res = { c:call("GET", "k") }
    end)
    collectgarbage()
    local mem0, peak = collectgarbage("count"), 0
    local t0 = gettime()
    while not closed and gettime() - t0 < 4 do
      l:step(0.05)
      peak = math.max(peak, collectgarbage("count"))
    end
    assert.equal("protocol error: reply too large", closed)
    assert.is_true(H.step_until(l, 1, function() return res ~= nil end))
    assert.same({ nil, "protocol error: reply too large" }, res)
    assert.is_true(peak - mem0 < 64 * 1024, string.format("%.0f MiB more", (peak - mem0) / 1024))
  end)
end)

describe("ws.hub over Redis, faults #slow", function()
  local ws = require "ws"

  -- a hub on l, connected and subscribed
  local function redis_hub(l, url, opts)
    opts = opts or {}
    opts.loop, opts.redis, opts.logger = l, url, opts.logger or false
    local hub = ws.hub(opts)
    assert(H.step_until(l, 10, function() return hub.up end), "hub did not connect")
    return hub
  end

  for _, ordered in ipairs { false, true } do
    it("publishes of max_publish each, in a row: what publish took reaches the others, Redis keeps their" ..
       " subscriber" .. (ordered and " (ordered)" or ""), function()
      -- (Redis's limit on a subscriber's buffer, scaled down: 4 MB, twice max_publish;
      -- 8 publishes in a row, 16 MiB)
      local rds = H.start_redis { args = "--client-output-buffer-limit 'pubsub 4mb 4mb 60'" }
      finally(rds.stop)
      local l = loop.new()
      local states = {}
      local h1 = redis_hub(l, rds.url, { ordered = ordered, max_publish = 2 * 1024 * 1024 })
      local h2 = redis_hub(l, rds.url, { ordered = ordered,
        on_state = function(state) states[#states + 1] = state end })
      local got = {}
      h2:on("big", function(data) got[#got + 1] = data:sub(1, 1) end)
      assert.is_true(H.step_until(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:big"):match("\n1") ~= nil end))
      local sent = {}
      for i = 1, 8 do
        local c = string.char(64 + i)
        local _, ok = h1:publish("big", c:rep(2 * 1024 * 1024), "binary")
        if ok then sent[#sent + 1] = c end
      end
      -- a small one is taken meanwhile (the probes of our own channel are)
      if #sent < 8 then assert.is_true(select(2, h1:publish("small", "x"))) end
      H.step_until(l, 5, function() return #got >= #sent end)
      H.step_until(l, 0.3, function() return false end)
      assert.same(sent, got)
      assert.equal(8 - #sent, h1:status().dropped)   -- ("redis busy": counted)
      -- answered: the next one is taken
      assert.is_true(H.step_until(l, 5, function() return h1.pub:pending() == 0 end))
      assert.is_true(select(2, h1:publish("big", ("Z"):rep(2 * 1024 * 1024), "binary")))
      assert.is_true(H.step_until(l, 5, function() return got[#sent + 1] == "Z" end))
      assert.same({ "up", "resubscribed" }, states)   -- never dropped by Redis
      h1:close(); h2:close()
    end)
  end

  it("ordered: SIGTERM while Redis is down says how many held publishes the stop drops", function()
    local rds = H.start_redis()
    local chat
    finally(function() rds.stop(); if chat then chat.stop() end end)
    chat = H.start_lua("examples/chat.lua", "--ordered --redis " .. rds.url, "chat-held")
    assert.truthy(H.wait_output(chat, "hub: redis resubscribed", 10), chat.output())
    rds.stop()
    assert.truthy(H.wait_output(chat, "hub: redis down", 10), chat.output())
    local c = assert(ws.connect("ws://127.0.0.1:" .. chat.port .. "/ws?room=r", { timeout = 5 }))
    for i = 1, 3 do assert(c:send("held " .. i)) end   -- (relayed: held in the outbox)
    assert.truthy(H.wait_output(chat, "join ", 5))
    socket.sleep(0.3)
    os.execute("kill -TERM " .. chat.pid)
    assert.same({ nil, "closed", 1001, "going away" }, { c:receive(5) })
    local deadline = gettime() + 6
    while chat.alive() and gettime() < deadline do socket.sleep(0.05) end
    assert.is_false(chat.alive())
    assert.matches("publishes Redis never took.-dropped=3", chat.output())
  end)

  it("a topic the ACL refuses is left out and logged; every other topic stays, reconnects too", function()
    local rds = H.start_redis()
    finally(rds.stop)
    assert.matches("OK", rds.cli("ACL SETUSER u on '>pw' '~*' resetchannels '&ws:!*' '&ws:ok*' '+@all'"))
    local url = "redis://u:pw@127.0.0.1:" .. rds.port .. "/0"
    local l = loop.new()
    local lines, states = {}, {}
    local h1 = redis_hub(l, url, { logger = function(_, msg) lines[#lines + 1] = msg end,
      on_state = function(state) states[#states + 1] = state end })
    local h2 = redis_hub(l, url)
    local got = {}
    h1:on("ok1", function(data) got[#got + 1] = data end)
    h1:on("secret", function() end)
    h1:on("ok2", function(data) got[#got + 1] = data end)
    local function round(tag)
      local n = #got
      assert.is_true(H.step_until(l, 5, function()
        h2:publish("ok1", tag .. "1"); h2:publish("ok2", tag .. "2")
        return #got >= n + 2
      end))
    end
    round("a")
    assert.is_true(h1.up)
    local refused = 0
    for _, m in ipairs(lines) do if m:match("refused a subscription: NOPERM") then refused = refused + 1 end end
    assert.equal(1, refused)
    -- a new subscriber connection subscribes them all in one command: refused whole
    assert.matches("2", rds.cli("CLIENT KILL TYPE pubsub"))
    assert.is_true(H.step_until(l, 10, function() return #states >= 5 and h1.up end))
    round("b")
    assert.same({ "up", "resubscribed", "down", "up", "resubscribed" }, states)
    h1:close(); h2:close()
  end)

  it("ordered: what a node missed is replayed page by page: more than one reply may hold", function()
    local resp = require "ws.resp"
    local saved = resp.MAX_REPLY
    local rds = H.start_redis()
    finally(function() resp.MAX_REPLY = saved; rds.stop() end)
    resp.MAX_REPLY = 1024 * 1024   -- (scaled down: the publish connections' replies)
    local l, l2 = loop.new(), loop.new()
    local h1 = redis_hub(l, rds.url, { ordered = true, max_publish = 64 * 1024 })
    local h2 = redis_hub(l2, rds.url, { ordered = true, max_publish = 64 * 1024 })
    local got, want = {}, {}
    local function both(secs, pred) return H.step_until(l2, secs, function() l:step(0); return pred() end) end
    h2:on("t", function(data) got[#got + 1] = data:sub(1, 3) end)
    assert.is_true(both(5, function() return rds.cli("PUBSUB NUMSUB ws:t"):match("\n1") ~= nil end))
    h1:publish("t", "001")
    assert.is_true(both(5, function() return #got == 1 end))
    -- h2 away (its loop not run) while 40 x 64 KiB, 2.5 MiB, go into the Stream
    h2.sub:close("test")
    for i = 1, 41 do want[i] = string.format("%03d", i) end
    for i = 2, 41 do h1:publish("t", want[i] .. ("x"):rep(64 * 1024 - 3), "binary") end
    assert.is_true(H.step_until(l, 10, function() return h1:status().outbox == 0 and h1.pub:pending() == 0 end))
    assert.is_true(both(10, function() return #got == 41 end))
    assert.same(want, got)
    assert.is_true(h2.pub.open)
    h1:close(); h2:close()
  end)

  it("a listener that waits (it may) is not taken for a silent Redis: nothing is lost meanwhile", function()
    local rds = H.start_redis()
    finally(rds.stop)
    local l = loop.new()
    local lines = {}
    local h1 = redis_hub(l, rds.url)
    local h2 = redis_hub(l, rds.url, { probe_interval = 0.1, probe_timeout = 0.8,
      logger = function(_, msg) lines[#lines + 1] = msg end })
    local got = {}
    h2:on("slow", function() l:sleep(2) end)
    h2:on("other", function(data) got[#got + 1] = data end)
    assert.is_true(H.step_until(l, 5, function() return rds.cli("PUBSUB NUMSUB ws:other"):match("\n1") ~= nil end))
    h1:publish("other", "0")
    assert.is_true(H.step_until(l, 5, function() return #got == 1 end))
    h1:publish("slow", "wait")
    local want, t0 = { "0" }, gettime()
    while gettime() - t0 < 2.5 do
      want[#want + 1] = tostring(#want)
      h1:publish("other", want[#want])
      H.step_until(l, 0.05, function() return false end)
    end
    assert.is_true(H.step_until(l, 5, function() return #got == #want end), #got .. " of " .. #want)
    assert.same(want, got)
    for _, m in ipairs(lines) do assert.is_nil(m:match("silent"), m) end
    h1:close(); h2:close()
  end)
end)
