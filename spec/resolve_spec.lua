-- Name resolution never blocks the loop (ws.resolve): ws.redis.connect
-- (ws.hub's reconnects) and ws.connect inside a task look a name up on a
-- thread of their own. A slow DNS server is a real one that never answers,
-- seen by a probe process through a private network and mount namespace
-- (unshare, its /etc/resolv.conf bind-mounted); names in /etc/hosts and
-- numeric addresses connect to a real redis-server and a real ws server.
local socket = require "socket"
local core = require "ws.core"
local ws = require "ws"
local loop = require "ws.loop"
local redis = require "ws.redis"
local resolve = require "ws.resolve"
local H = require "spec.helpers"

local gettime = socket.gettime

-- The longest a 10 ms ticker may wait while a lookup runs: a blocked loop
-- waits for the whole lookup (2 s here), a loaded machine a few tens of ms.
local MAX_GAP = 0.25

-- A ticker task in l: returns a function giving the longest gap so far,
-- and one that stops it.
local function ticker(l)
  -- (last is set here, not in the task: a loop held before the ticker's
  -- first turn counts too, whichever task runs first)
  local maxgap, stop, last = 0, false, gettime()
  l:spawn(function()
    while not stop do
      l:sleep(0.01)
      local t = gettime()
      if t - last > maxgap then maxgap = t - last end
      last = t
    end
  end)
  return function() return maxgap end, function() stop = true end
end

-- A scheduler the numeric fast path must never wait through.
local no_wait = setmetatable({}, { __index = function(_, k)
  return function() error("the numeric fast path used the scheduler (" .. k .. ")", 2) end
end })

describe("ws.resolve in a loop: /etc/hosts and numeric addresses", function()
  it("numeric IPv4 and IPv6 are taken as they are, without a lookup or a wait", function()
    local before = core.resolvers()
    assert.same({ { family = "inet", addr = "127.0.0.1" } }, resolve.resolve("127.0.0.1", gettime() + 1, no_wait))
    assert.same({ { family = "inet6", addr = "::1" } }, resolve.resolve("::1", gettime() + 1, no_wait))
    assert.equal(before, core.resolvers())
  end)

  it("localhost resolves in a task, on the lookup thread, and nothing is left after", function()
    local l = loop.new()
    local got = H.run_task(l, 5, function() return { resolve.resolve("localhost", gettime() + 3) } end)
    assert.is_table(got[1], tostring(got[2]))
    local found = false
    for _, a in ipairs(got[1]) do found = found or (a.family == "inet" and a.addr == "127.0.0.1") end
    assert.is_true(found)
    assert.is_true(H.step_until(l, 5, function() return core.resolvers() == 0 end))
  end)

  it("ws.redis.connect to localhost, 127.0.0.1 and [::1] (a real redis-server)", function()
    local srv = H.start_redis({ args = "--bind 127.0.0.1 ::1" })
    finally(function() srv.stop() end)
    local l = loop.new()
    local gap, stop = ticker(l)
    local got = H.run_task(l, 15, function()
      local res = {}
      for _, host in ipairs({ "localhost", "127.0.0.1", "[::1]" }) do
        local r, err = redis.connect("redis://" .. host .. ":" .. srv.port .. "/0", { loop = l, timeout = 3 })
        if r then
          res[host] = r:call("PING")
          r:close()
        else
          res[host] = err
        end
      end
      return res
    end)
    stop()
    assert.same({ localhost = "PONG", ["127.0.0.1"] = "PONG", ["[::1]"] = "PONG" }, got)
    assert.is_true(gap() < MAX_GAP, "ticker gap " .. gap())
  end)

  it("ws.connect to localhost, 127.0.0.1 and [::1]; the Host header keeps the name", function()
    local l = loop.new()
    local hosts = {}
    local function route(conn)
      hosts[#hosts + 1] = conn.request.headers.host
      H.echo(conn)
    end
    local srv4 = assert(ws.listen({ host = "127.0.0.1", port = 0, loop = l }))
    local srv6 = assert(ws.listen({ host = "::1", port = 0, loop = l }))
    finally(function()
      srv4:close()
      srv6:close()
      H.step_until(l, 5, function() return srv4.loop.stopped and srv6.loop.stopped end)
    end)
    srv4:route("/ws", route)
    srv6:route("/ws", route)
    local got = H.run_task(l, 15, function()
      local res = {}
      for _, url in ipairs({ "ws://localhost:" .. srv4.port .. "/ws", "ws://127.0.0.1:" .. srv4.port .. "/ws",
                             "ws://[::1]:" .. srv6.port .. "/ws" }) do
        local conn, err = ws.connect(url, { timeout = 3 })
        if conn then
          conn:send("hi")
          res[#res + 1] = conn:receive(3)
          conn:close()
        else
          res[#res + 1] = err
        end
      end
      return res
    end)
    assert.same({ "hi", "hi", "hi" }, got)
    table.sort(hosts)
    assert.same({ "127.0.0.1:" .. srv4.port, "[::1]:" .. srv6.port, "localhost:" .. srv4.port }, hosts)
  end)

  it("a process that exits with lookups in flight exits cleanly (ws.core stays loaded for their threads)", function()
    -- (lua_close unloads ws/core.so; a thread returning into it crashed the
    -- exit: 4 runs in 6 under make test-asan, whose exit takes longer)
    local cmd = string.format("timeout 20 %s -e %s 2>&1", H.LUA,
      H.shell_quote('local core = require "ws.core" for _ = 1, 50 do core.resolver("localhost") end'))
    for i = 1, 5 do
      local out, code = H.run(cmd)
      assert.equal(0, code, "run " .. i .. ": " .. out)
    end
  end)

  it("a plain script (no loop) resolves too: ws.connect to localhost", function()
    local echo = H.start_lua("examples/echo.lua", nil, "echo-resolve")
    finally(function() echo.stop() end)
    local conn, err = ws.connect("ws://localhost:" .. echo.port .. "/ws", { timeout = 3 })
    assert.is_table(conn, tostring(err))
    assert.is_true(conn:send("plain"))
    assert.equal("plain", (conn:receive(3)))
    conn:close()
  end)
end)

-- Run spec/peers/resolve_probe.lua in a private network and mount
-- namespace (see its header); returns its key=value lines as a table.
local rc_file
local function probe(dns, what, host, timeout)
  local cmd = string.format("timeout 30 unshare -rmn sh -c %s 2>&1", H.shell_quote(table.concat({
    "ip link set lo up", "mount --bind " .. rc_file .. " /etc/resolv.conf",
    string.format("exec %s %s/spec/peers/resolve_probe.lua %s %s %s %s", H.LUA, H.ROOT, dns, what, host, timeout),
  }, " && ")))
  local out = H.run(cmd)
  local t = { output = out }
  for k, v in out:gmatch("([%w_]+)=([^\n]*)") do t[k] = tonumber(v) or v end
  return t
end

describe("ws.resolve against a DNS server that never answers", function()
  local usable
  setup(function()
    rc_file = os.tmpname()
    local f = assert(io.open(rc_file, "w"))
    f:write("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
    f:close()
    usable = H.sh("timeout 10 unshare -rmn sh -c " .. H.shell_quote("ip link set lo up && mount --bind " ..
      rc_file .. " /etc/resolv.conf") .. " >/dev/null 2>&1")
  end)
  teardown(function() os.remove(rc_file) end)

  -- the probe's verdict on a slow name: a clear error within the timeout,
  -- the ticker never held, and the abandoned lookup gone once it ends
  local function check_slow(r, timeout)
    assert.equal("true", r.finished, r.output)
    assert.equal("resolve slow.test: timeout", r.err, r.output)
    assert.is_true(r.elapsed >= timeout - 0.05 and r.elapsed < timeout + 0.5, r.output)
    assert.is_true(r.maxgap < MAX_GAP, r.output)
    assert.is_true(r.ticks > 50, r.output)
    assert.equal(1, r.live, r.output)            -- (its thread was still looking up)
    assert.is_true(r.settled >= 0, r.output)     -- (then freed itself)
  end

  it("ws.redis.connect: the loop keeps running, and the connect fails with its timeout", function()
    if not usable then return pending("unshare -rmn (user, mount and network namespaces) is not usable here") end
    check_slow(probe("silent", "redis", "slow.test", 1), 1)
  end)

  it("ws.connect in a task: the loop keeps running, and the connect fails with its timeout", function()
    if not usable then return pending("unshare -rmn (user, mount and network namespaces) is not usable here") end
    check_slow(probe("silent", "ws", "slow.test", 1), 1)
  end)

  it("ws.connect in a plain script (no loop): the lookup too ends at its timeout", function()
    if not usable then return pending("unshare -rmn (user, mount and network namespaces) is not usable here") end
    -- (it blocked in getaddrinfo for the DNS server's 2 s, past the 0.5 s)
    local r = probe("silent", "plain", "slow.test", 0.5)
    assert.equal("true", r.finished, r.output)
    assert.equal("resolve slow.test: timeout", r.err, r.output)
    assert.is_true(r.elapsed >= 0.45 and r.elapsed < 1, r.output)
    assert.equal(1, r.live, r.output)            -- (its thread was still looking up)
    assert.is_true(r.settled >= 0, r.output)
  end)

  it("ws.hub: its Redis reconnects, each a lookup given up at timeout, never hold the loop", function()
    if not usable then return pending("unshare -rmn (user, mount and network namespaces) is not usable here") end
    local r = probe("silent", "hub", "slow.test", 1)
    assert.equal("true", r.finished, r.output)
    assert.equal("resolve slow.test: timeout", r.err, r.output)
    assert.is_true(r.maxgap < MAX_GAP, r.output)
    assert.is_true(r.ticks > 100, r.output)
    assert.is_true(r.live >= 1, r.output)        -- (lookups given up, still running)
    assert.is_true(r.settled >= 0, r.output)
  end)

  it("a lookup that fails says why: nil, 'resolve HOST: <getaddrinfo's reason>', at once", function()
    if not usable then return pending("unshare -rmn (user, mount and network namespaces) is not usable here") end
    for _, what in ipairs({ "redis", "ws", "plain" }) do
      local r = probe("none", what, "nowhere.test", 3)
      assert.equal("resolve nowhere.test: Temporary failure in name resolution", r.err, r.output)
      assert.is_true(r.elapsed < 1, r.output)
      assert.equal(0, r.live, r.output)
    end
  end)
end)
