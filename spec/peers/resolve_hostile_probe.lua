-- For spec/resolve_hostile_spec.lua, run in a private network and mount
-- namespace whose /etc/hosts names multi.test (127.0.0.2 then 127.0.0.3)
-- and v6only.test (::1 only), and whose /etc/resolv.conf names 127.0.0.1,
-- where a "DNS server" takes every query and never answers:
--   resolve_hostile_probe.lua multi|v6only|fork|flood [N]|queued
-- multi: 127.0.0.2 never answers a SYN (a listener whose queue is full),
--   a ws server listens on 127.0.0.3: ws.connect("ws://multi.test:PORT/")
--   with a 2 s timeout must move on to the second address.
-- v6only: a ws server on [::1]; ws.connect("ws://v6only.test:PORT/").
-- fork: lookups of slow.test in flight, the process forks (core.fork, as
--   ws.workers does: it waits until no lookup is inside getaddrinfo, at
--   most 5 s, fork_took); the child reads its copy of one (it must end at
--   once: its thread stayed in the parent), looks localhost up in a task
--   and exits (lua_close, with the other inherited one), the parent reaps it.
-- flood: N (default 500) tasks ws.connect("ws://slow.test:9/") at once,
--   1 s timeout.
-- queued: as many lookups of slow.test as there are lookup threads (1 s
--   timeout), then one of localhost: it waits for a thread to be free.
-- A ticker task runs every 10 ms meanwhile, and counts our threads (the
-- kernel's count, /proc). Prints key=value lines: err, elapsed, maxgap,
-- threads (the most seen), live (core.resolvers() after), settled (seconds
-- until no lookup was left; -1: not within 6 s), and per mode more.
local socket = require "socket"
local core = require "ws.core"
local loop = require "ws.loop"
local ws = require "ws"
local resolve = require "ws.resolve"

local gettime = socket.gettime
local what, n = arg[1], tonumber(arg[2]) or 500

local function out(k, v) io.write(k, "=", tostring(v), "\n"); io.stdout:flush() end

-- our descriptors: their count, and "fd -> what" for each. (Listed by
-- os.execute into a file: a popen's pipe end is ours or not depending on
-- when the listing runs, which made the count differ by one at random.)
local listing = os.tmpname()
local function fds()
  assert(os.execute("cd /proc/" .. core.getpid() .. "/fd && for f in *; do echo \"$f -> $(readlink $f)\"; done > " .. listing))
  local set, count = {}, 0
  for line in io.lines(listing) do set[line] = true; count = count + 1 end
  return count, set
end

local fake = assert(socket.udp())
assert(fake:setsockname("127.0.0.1", 53))

local l = loop.new()
local finished = false
local maxgap, stop, last = 0, false, gettime()
local status_file = "/proc/" .. core.getpid() .. "/status"
local max_threads = 0
local function count_threads()
  local f = io.open(status_file)
  local count = tonumber(f:read("*a"):match("\nThreads:%s*(%d+)"))
  f:close()
  if count > max_threads then max_threads = count end
  return count
end
l:spawn(function()
  while not stop do
    l:sleep(0.01)
    local t = gettime()
    if t - last > maxgap then maxgap = t - last end
    last = t
    count_threads()
  end
end)

local function echo(conn)
  while true do
    local m = conn:receive()
    if not m or not conn:send(m) then break end
  end
end

local srv, holes, fds_before, fds_set = nil, {}, nil, nil
if what == "multi" or what == "v6only" then
  srv = assert(ws.listen { host = what == "multi" and "127.0.0.3" or "::1", port = 0, loop = l, logger = false })
  srv:route("/ws", echo)
  if what == "multi" then
    -- backlog 0: one connection waits in the queue, a second one fills it;
    -- the kernel then drops every SYN to this port (no RST): a blackhole
    holes[1] = assert(socket.bind("127.0.0.2", srv.port, 0))
    for i = 2, 3 do
      holes[i] = socket.tcp()
      holes[i]:settimeout(0)
      holes[i]:connect("127.0.0.2", srv.port)
    end
    socket.sleep(0.1)
  end
  l:spawn(function()
    local t0 = gettime()
    local conn, err = ws.connect("ws://" .. what .. ".test:" .. srv.port .. "/ws", { timeout = 2 })
    out("elapsed", gettime() - t0)
    if conn then
      conn:send("hi")
      out("echo", conn:receive(2))
      conn:close()
    end
    out("err", err)
    finished = true
  end)
elseif what == "fork" then
  local result
  l:spawn(function()
    local _, err = ws.connect("ws://slow.test:9/", { timeout = 3 })
    result = err
  end)
  local inherited = assert(core.resolver("slow.test"))
  -- (the connect task starts its lookup; then both threads are inside
  -- getaddrinfo: a step may return at once, so the wait is a sleep)
  l:step(0)
  socket.sleep(0.3)
  out("live_before", core.resolvers())
  local t_fork = gettime()
  local pid = assert(core.fork())
  if pid ~= 0 then
    out("fork_took", gettime() - t_fork)
    maxgap, last = 0, gettime()   -- (the loop's gaps from here on)
  end
  if pid == 0 then
    -- the child: the copy of a lookup in flight (its thread stayed in the
    -- parent) ends at once; then a loop of its own, a lookup, and exit
    -- with lua_close
    local _, ierr = inherited:result()
    inherited:close()
    out("child_err", ierr)
    out("child_live", core.resolvers())
    local cl = loop.new()
    local got
    cl:spawn(function() got = { resolve.resolve("localhost", gettime() + 2) } end)
    local deadline = gettime() + 3
    while not got and gettime() < deadline do cl:step(0.05) end
    out("child_lookup", got and got[1] and got[1][1].addr or tostring(got and got[2]))
    os.exit(got and got[1] and 0 or 3, true)
  end
  inherited:close()
  l:spawn(function()
    local t0 = gettime()
    local status
    while gettime() < t0 + 5 do
      local p, how, st = core.reap()
      if p == pid then status = how .. " " .. tostring(st); break end
      l:sleep(0.02)
    end
    out("child", status or "hung")
    if not status then core.kill(pid, "KILL") end
    while result == nil and gettime() < t0 + 5 do l:sleep(0.02) end
    out("err", result)
    finished = true
  end)
elseif what == "queued" then
  for _ = 1, core.resolver_threads_max do
    l:spawn(function() resolve.resolve("slow.test", gettime() + 1) end)
  end
  l:spawn(function()
    l:sleep(0.1)
    local t0 = gettime()
    local addrs, err = resolve.resolve("localhost", t0 + 6)
    out("elapsed", gettime() - t0)
    out("err", err)
    out("addr", addrs and addrs[1].addr)
    finished = true
  end)
elseif what == "flood" then
  fds_before, fds_set = fds()
  out("fds_before", fds_before)
  local errs, pending, t0 = {}, n, gettime()
  for _ = 1, n do
    l:spawn(function()
      local conn, err = ws.connect("ws://slow.test:9/", { timeout = 1 })
      if conn then conn:close(); err = "connected?" end
      errs[err] = (errs[err] or 0) + 1
      pending = pending - 1
      if pending == 0 then
        out("elapsed", gettime() - t0)
        out("live", core.resolvers())
        finished = true
      end
    end)
  end
  local deadline = gettime() + 15
  while not finished and gettime() < deadline do l:step(0.05) end
  local kinds = {}
  for e, c in pairs(errs) do kinds[#kinds + 1] = e .. " x" .. c end
  table.sort(kinds)
  out("errs", table.concat(kinds, "; "))
end

local deadline = gettime() + 15
while not finished and gettime() < deadline do l:step(0.05) end
local t1, settled = gettime(), -1
while gettime() < t1 + 6 do
  if core.resolvers() == 0 then settled = gettime() - t1; break end
  l:step(0.05)
end
stop = true
l:step(0.05)
out("finished", finished)
out("threads", max_threads)
-- (a lookup thread ends once no request is queued: a moment after settled)
local t2, threads_after = gettime(), count_threads()
while threads_after > 1 and gettime() < t2 + 3 do socket.sleep(0.02); threads_after = count_threads() end
out("threads_after", threads_after)
out("maxgap", maxgap)
out("settled", settled)
if what == "flood" then
  -- (a lookup thread closes glibc's resolver socket as it exits, just
  -- after it let go of its request: a moment later)
  local f, set = fds()
  local until_ = gettime() + 10
  while f ~= fds_before and gettime() < until_ do
    socket.sleep(0.05)
    f, set = fds()
  end
  out("fds_after", f)
  if f ~= fds_before then
    local diff = {}
    for k in pairs(set) do if not fds_set[k] then diff[#diff + 1] = "+" .. k end end
    for k in pairs(fds_set) do if not set[k] then diff[#diff + 1] = "-" .. k end end
    table.sort(diff)
    out("fds_diff", table.concat(diff, ", "))
  end
  os.remove(listing)
end
if srv then
  srv:close()
  for _ = 1, 50 do if next(srv.conns) == nil then break end l:step(0.02) end
end
for _, h in ipairs(holes) do h:close() end
fake:close()
