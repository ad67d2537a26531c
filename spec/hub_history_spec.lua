-- hub:history against long Streams in a real Redis: read in pages (XRANGE
-- ... COUNT), all of it in order without duplicates, opts.limit and its
-- default, the gaps it reports, and a loop that keeps running meanwhile.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local redis = require "ws.redis"
local H = require "spec.helpers"

local gettime = socket.gettime

-- Fill a topic's Stream and meta hash as the publish script does, in one
-- EVAL: offsets 1..n from node "aa", message k's data "m<seq>" padded to
-- pad bytes; offset dup (if given) is a copy sent again (the sequence of
-- the one before it), so offsets after it carry sequence offset - 1.
local FILL = [[
local n, dup, pad = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for k = 1, n do
  local seq = k
  if dup > 0 and k >= dup then seq = k - 1 end
  local d = 'm' .. seq
  if pad > #d then d = d .. string.rep('x', pad - #d) end
  redis.call('XADD', KEYS[1], '0-' .. k, 'h', 'aa ' .. seq .. ' t', 'd', d)
end
redis.call('HSET', KEYS[2], 'e', ARGV[4], 's', n)
return n
]]

describe("hub:history over a long Stream #slow", function()
  local rds
  setup(function() rds = H.start_redis() end)
  teardown(function() if rds then rds.stop() end end)

  -- Run fn(hub, r) in a task of a fresh loop, with an ordered hub and a
  -- plain Redis client on it; both closed after, and the loop run dry.
  local function with_hub(secs, fn)
    local l = loop.new()
    local hub = ws.hub { loop = l, redis = rds.url, ordered = true, logger = false }
    local r
    finally(function()
      if r then r:close() end
      hub:close()
      H.step_until(l, 5, function() return l.ntasks == 0 end)
    end)
    assert(H.step_until(l, 10, function() return hub.up end), "hub did not connect")
    H.run_task(l, secs, function()
      r = assert(redis.connect(rds.url, { loop = l }))
      fn(hub, r, l)
    end)
  end

  local function fill(r, topic, n, dup, pad)
    assert.equal(n, r:call("EVAL", FILL, 2, "ws:{" .. topic .. "}:s", "ws:{" .. topic .. "}:m",
      n, dup or 0, pad or 0, "ep" .. topic))
  end

  -- the XRANGE calls Redis ran since the last reset
  local function xranges(r)
    local info = assert(r:call("INFO", "commandstats"))
    return tonumber(info:match("cmdstat_xrange:calls=(%d+)")) or 0
  end

  -- offsets 1..n but dup, each with its sequence's data, in order
  local function check_run(list, from, to, dup)
    local k = 0
    for off = from, to do
      if off ~= dup then
        k = k + 1
        local e = list[k]
        assert(e, "entry " .. off .. " missing")
        local seq = (dup and off > dup) and off - 1 or off
        assert.same({ off, "m" .. seq, "text" }, { e.offset, e.data, e.kind })
      end
    end
    assert.equal(k, #list)
  end

  it("reads 3,000 entries in pages, all in order, a copy sent again once; since", function()
    with_hub(60, function(hub, r)
      fill(r, "long", 3000, 513)   -- (the copy: the first entry of the second page)
      assert(r:call("CONFIG", "RESETSTAT"))
      local list, epoch, more = hub:history("long")
      local pages = xranges(r)
      assert.is_true(pages >= 6, pages .. " XRANGE calls for 3,000 entries")
      assert.equal("eplong", epoch)
      check_run(list, 1, 3000, 513)
      assert.is_false(more)
      list, epoch, more = hub:history("long", { since = 1000, epoch = "eplong" })
      assert.equal("eplong", epoch)
      assert.is_false(more)
      check_run(list, 1001, 3000, 513)
      list, epoch, more = hub:history("long", { since = 3000 })
      assert.same({ {}, "eplong", false }, { list, epoch, more })
    end)
  end)

  it("limit: at most that many, more = true while entries follow; continued from the last offset", function()
    with_hub(60, function(hub, r)
      fill(r, "lim", 3000, 513)
      local list, epoch, more = hub:history("lim", { limit = 100 })
      assert.equal("eplim", epoch)
      assert.is_true(more)
      check_run(list, 1, 100)
      -- to the end, 700 at a time (the copy at 513 is not counted)
      local all, since, calls = {}, 0, 0
      repeat
        calls = calls + 1
        list, epoch, more = hub:history("lim", { since = since, epoch = "eplim", limit = 700 })
        assert.equal("eplim", epoch)
        assert.is_true(#list <= 700)
        for _, e in ipairs(list) do all[#all + 1] = e end
        if list[1] then since = list[#list].offset end
      until not more or calls == 10
      assert.equal(5, calls)
      check_run(all, 1, 3000, 513)
      -- exactly to the end: no more
      list, epoch, more = hub:history("lim", { since = 2990, limit = 10 })
      assert.same({ "eplim", false }, { epoch, more })
      check_run(list, 2991, 3000, 513)
      for _, bad in ipairs { 0, -1, 1.5, "10" } do
        assert.has_error(function() hub:history("lim", { limit = bad }) end,
          "bad argument #2 to 'history' (limit: a positive integer)")
      end
    end)
  end)

  it("the default limit (ws.hub.HISTORY_LIMIT, 10,000) bounds a call; the rest follows", function()
    assert.equal(10000, require("ws.hub").HISTORY_LIMIT)
    with_hub(60, function(hub, r)
      fill(r, "deflim", 10050)
      local list, _, more = hub:history("deflim")
      assert.is_true(more)
      check_run(list, 1, 10000)
      list, _, more = hub:history("deflim", { since = 10000 })
      assert.is_false(more)
      check_run(list, 10001, 10050)
    end)
  end)

  it("still reports a gap: a Stream trimmed past since + 1, an epoch that is not current, history lost", function()
    with_hub(60, function(hub, r)
      fill(r, "gap", 3000)
      assert(r:call("XTRIM", "ws:{gap}:s", "MAXLEN", 1000))   -- offsets 2001..3000 left
      assert.same({ nil, "gap", "epgap" }, { hub:history("gap", { since = 5 }) })
      assert.same({ nil, "gap", "epgap" }, { hub:history("gap", { since = 1999 }) })
      local list, epoch, more = hub:history("gap", { since = 2000 })
      assert.same({ "epgap", false }, { epoch, more })
      check_run(list, 2001, 3000)
      -- from the start: whatever the Stream holds, no gap
      list = hub:history("gap")
      check_run(list, 2001, 3000)
      assert.same({ nil, "gap", "epgap" }, { hub:history("gap", { since = 2500, epoch = "other" }) })
      -- everything after since trimmed: the last offset says so
      assert(r:call("XTRIM", "ws:{gap}:s", "MAXLEN", 0))
      assert.same({ nil, "gap", "epgap" }, { hub:history("gap", { since = 2500 }) })
      assert.same({ {}, "epgap", false }, { hub:history("gap", { since = 3000 }) })
      assert(r:call("DEL", "ws:{gap}:s", "ws:{gap}:m"))
      assert.same({ nil, "gap" }, { hub:history("gap", { since = 5 }) })
      assert.same({ {} }, { hub:history("gap") })
    end)
  end)

  it("a long read (10,000 entries of 2 KiB) lets the loop run between pages", function()
    with_hub(60, function(hub, r, l)
      fill(r, "big", 12000, 0, 2048)
      local ticking, last, worst, ticks = true, gettime(), 0, 0
      l:spawn(function()
        local stop = gettime() + 30
        while ticking and gettime() < stop do
          l:sleep(0.002)
          local now = gettime()
          worst = math.max(worst, now - last)
          last, ticks = now, ticks + 1
        end
      end)
      l:sleep(0.01)
      local t0 = gettime()
      last = t0
      local list, _, more = hub:history("big")
      local took = gettime() - t0
      ticking = false
      assert.is_true(ticks > 5, ticks .. " ticks in " .. took .. " s")
      assert.is_true(worst < 0.25, string.format("the loop stalled %.3f s (the read took %.3f s)", worst, took))
      assert.equal(10000, #list)
      assert.equal(10000, list[10000].offset)
      assert.equal(2048, #list[10000].data)
      assert.is_true(more)
    end)
  end)
end)
