-- A server nested in a foreign loop through the cqueues polling convention
-- (pollfd / events / timeout / step), here a plain LuaSocket select loop;
-- and the server object's __tostring / __close.
local socket = require "socket"
local ws = require "ws"
local H = require "spec.helpers"

local gettime = socket.gettime

local echo = require("spec.servers.common").echo

describe("a nested server", function()
  it("tells a host loop its descriptor, events and when work is due", function()
    local server = assert(ws.listen { port = 0 })
    assert.is_number(server:pollfd())
    assert.equal("r", server:events())
    server:step(0)                                  -- the accept task now waits on the listener
    assert.is_nil(server:timeout())                 -- nothing due: wait on the descriptor only
    server.loop:spawn(function() server.loop:sleep(0.2) end)
    assert.equal(0, server:timeout())               -- a task is ready
    server:step(0)
    local t = server:timeout()
    assert.is_true(t > 0.1 and t <= 0.2, "timeout " .. tostring(t))
    server:close()
  end)

  it("runs inside a LuaSocket select loop, and idles there without waking", function()
    local server = assert(ws.listen { port = 0 })
    server:route("/ws", echo)
    local proxy = { getfd = function() return server:pollfd() end }
    local function run_for(secs, until_)
      local rounds, stop = 0, gettime() + secs
      while gettime() < stop and not (until_ and until_()) do
        local t = server:timeout()
        local left = stop - gettime()
        socket.select({ proxy }, nil, (t and t < left) and t or left)
        server:step(0)
        rounds = rounds + 1
      end
      return rounds
    end
    run_for(0.05)
    -- idle: the host sleeps in select until its own deadline
    local c0 = os.clock()
    local rounds = run_for(0.5)
    assert.is_true(rounds <= 3, rounds .. " rounds while idle")
    assert.is_true(os.clock() - c0 < 0.05, "CPU while idle")
    -- a real client process, served through the select loop
    local client = H.spawn(string.format("%s %s/examples/echo_client.lua ws://127.0.0.1:%d/ws one two",
      H.LUA, H.ROOT, server.port), "nested-client")
    run_for(10, function() return not client.alive() end)
    assert.equal("one\ntwo\n", client.output())
    server:close()
  end)
end)

describe("the server object", function()
  it("shows its state, address and connections", function()
    local server = assert(ws.listen { port = 0 })
    assert.matches("^ws%.server %(listening%): 127%.0%.0%.1:%d+, 0 connections$", tostring(server))
    server:close()
    assert.matches("^ws%.server %(closed%)", tostring(server))
  end)

  it("closes with <close> at the end of a scope, its connections with 1001 (Lua 5.4)", function()
    if _VERSION ~= "Lua 5.4" then pending("<close> is Lua 5.4") return end
    local chunk = assert(load([[
      local ws, echo = ...
      local server <close> = assert(ws.listen { port = 0 })
      server:route("/ws", echo)
      local l, result = server.loop, nil
      l:spawn(function()
        local conn = assert(ws.connect("ws://127.0.0.1:" .. server.port .. "/ws"))
        result = conn
        local _, _, code = conn:receive()
        result = code
      end)
      local t = require("socket").gettime() + 5
      while type(result) ~= "table" and require("socket").gettime() < t do l:step(0.05) end
      return server, function() return result end
    ]]))
    local server, result = chunk(ws, echo)
    -- leaving the chunk closed the server and ran its loop until the conn closed
    assert.is_false(server.open)
    assert.is_nil(next(server.conns))
    assert.is_nil(socket.connect("127.0.0.1", server.port))
    server.loop:step(0.1)
    assert.equal(1001, result())
  end)
end)
