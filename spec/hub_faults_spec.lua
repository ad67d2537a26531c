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
end)
