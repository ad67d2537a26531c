-- For spec/resolve_spec.lua, run in a private network and mount namespace
-- whose /etc/resolv.conf names 127.0.0.1 (`options timeout:1 attempts:2`):
--   resolve_probe.lua silent|none redis|ws|hub|plain HOST TIMEOUT
-- silent: a "DNS server" on 127.0.0.1:53 that takes every query and never
-- answers (a lookup takes 2 s); none: nothing there (refused at once).
-- In one ws.loop, a ticker task runs every 10 ms while another task calls
-- ws.redis.connect / ws.connect to HOST with TIMEOUT (hub: a ws.hub on
-- Redis at HOST reconnects for 3 s, err is its first "down" error; plain:
-- ws.connect outside any loop, before the loop runs); then the loop runs
-- on until no lookup is left (at most 5 s). Prints key=value lines: err,
-- elapsed, maxgap (the longest the ticker waited), ticks, live
-- (core.resolvers() right after the call), settled (seconds until none
-- was left; -1: not within 5 s).
local socket = require "socket"
local core = require "ws.core"
local loop = require "ws.loop"
local ws = require "ws"
local redis = require "ws.redis"

local gettime = socket.gettime
local dns, what, host, timeout = arg[1], arg[2], arg[3], tonumber(arg[4])

local fake
if dns == "silent" then
  fake = assert(socket.udp())
  assert(fake:setsockname("127.0.0.1", 53))
end

local function out(k, v) io.write(k, "=", tostring(v), "\n") end

local l = loop.new()
local err, elapsed, live
local finished = false

if what == "hub" then
  -- a hub whose Redis host never resolves: it reconnects (every attempt a
  -- lookup given up at timeout) for 3 s while the ticker runs
  local t0 = gettime()
  local h = ws.hub({ redis = "redis://" .. host .. ":9/0", loop = l, timeout = timeout,
    logger = function() end,
    on_state = function(state, info) if state == "down" and not err then err = info.error end end })
  l:spawn(function()
    l:sleep(3)
    elapsed, live = gettime() - t0, core.resolvers()
    h:close()
    finished = true
  end)
elseif what == "plain" then
  local t0 = gettime()
  local conn
  conn, err = ws.connect("ws://" .. host .. ":9/", { timeout = timeout })
  elapsed, live = gettime() - t0, core.resolvers()
  if conn then conn:close() end
  finished = true
else
  l:spawn(function()
    local t0 = gettime()
    local c
    if what == "redis" then
      c, err = redis.connect("redis://" .. host .. ":9/0", { loop = l, timeout = timeout })
    else
      c, err = ws.connect("ws://" .. host .. ":9/", { timeout = timeout })
    end
    elapsed, live = gettime() - t0, core.resolvers()
    if c then c:close() end
    finished = true
  end)
end

-- (last is set here, not in the task: a loop held before the ticker's
-- first turn counts too, whichever task runs first)
local maxgap, ticks, stop, last = 0, 0, false, gettime()
l:spawn(function()
  while not stop do
    l:sleep(0.01)
    local t = gettime()
    if t - last > maxgap then maxgap = t - last end
    last, ticks = t, ticks + 1
  end
end)

local deadline = gettime() + timeout + 5
while not finished and gettime() < deadline do l:step(0.05) end
local t1, settled = gettime(), -1
while gettime() < t1 + 5 do
  if core.resolvers() == 0 then settled = gettime() - t1; break end
  l:step(0.05)
end
stop = true
l:step(0.05)

out("finished", finished)
out("err", err)
out("elapsed", elapsed)
out("maxgap", maxgap)
out("ticks", ticks)
out("live", live)
out("settled", settled)
if fake then fake:close() end
