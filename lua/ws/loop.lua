--- A coroutine scheduler over socket readiness and timers.
-- One coroutine per task; a task waits for a socket to become readable or
-- writable (with an optional deadline), sleeps, or suspends until woken.
-- An idle loop blocks in the poller: no busy loop.
local socket = require "socket"

local gettime = socket.gettime
local co_create, co_resume, co_running, co_yield, co_status =
  coroutine.create, coroutine.resume, coroutine.running, coroutine.yield, coroutine.status

local M = {}

local Loop = {}
Loop.__index = Loop

-- The loop whose task is running now (tasks of one loop never run inside another's).
local active

--- Poller on socket.select: portable, limited to FD_SETSIZE (1024) sockets.
local function select_poller()
  local P = { r = {}, w = {}, ri = {}, wi = {} }
  local function add(list, index, sock)
    if index[sock] then return end
    local n = #list + 1
    list[n], index[sock] = sock, n
  end
  local function del(list, index, sock)
    local i = index[sock]
    if not i then return end
    local n = #list
    local last = list[n]
    list[i], index[last] = last, i
    list[n], index[sock] = nil, nil
  end
  function P.add(_, sock, mode)
    if mode == "r" then add(P.r, P.ri, sock) else add(P.w, P.wi, sock) end
  end
  function P.del(_, sock, mode)
    if mode == "r" then del(P.r, P.ri, sock) else del(P.w, P.wi, sock) end
  end
  function P.wait(_, timeout)
    if #P.r == 0 and #P.w == 0 then
      if timeout and timeout > 0 then socket.sleep(timeout) end
      return {}, {}
    end
    local r, w = socket.select(P.r, P.w, timeout)
    return r or {}, w or {}
  end
  return P
end

--- Poller on Linux epoll, edge-triggered: a socket is registered once for
-- reading and writing; an edge that arrives while nobody waits is kept as
-- "pending" and satisfies the next wait. Callers only wait after a read or
-- write would block, which is what makes edges sufficient.
local function epoll_poller()
  local ok, core = pcall(require, "ws.core")
  local ep = ok and core.epoll and core.epoll()
  if not ep then return nil end
  local P = {}
  local socks = {}                                   -- fd -> socket
  local fds = setmetatable({}, { __mode = "k" })     -- socket -> fd
  local pend = { r = {}, w = {} }                     -- [mode][fd] = true
  local rl, wl = {}, {}
  function P.add(_, sock, mode)
    local fd = fds[sock]
    if not fd then
      fd = sock:getfd()
      fds[sock] = fd
    end
    if socks[fd] ~= sock then
      -- new socket, or a new one on a reused descriptor
      ep:watch(fd)
      socks[fd] = sock
      pend.r[fd], pend.w[fd] = nil, nil
    end
    local p = pend[mode]
    if p[fd] then
      p[fd] = nil
      return true
    end
    return false
  end
  function P.del() end
  function P.pending(_, sock, mode)
    local fd = fds[sock]
    if fd and socks[fd] == sock then pend[mode][fd] = true end
  end
  function P.forget(_, sock)
    local fd = fds[sock]
    if fd and socks[fd] == sock then
      ep:unwatch(fd)
      socks[fd], pend.r[fd], pend.w[fd] = nil, nil, nil
    end
  end
  function P.wait(_, timeout)
    local nr, nw = ep:wait(timeout, rl, wl)
    local r, w = {}, {}
    for i = 1, nr or 0 do r[#r + 1] = socks[rl[i]] end
    for i = 1, nw or 0 do w[#w + 1] = socks[wl[i]] end
    return r, w
  end
  return P
end
M.epoll_poller = epoll_poller
M.select_poller = select_poller

-- Min-heap of waits ordered by deadline; each entry knows its index so a
-- wait that ends early is removed in O(log n) instead of left to rot.
local function heap_swap(h, i, j)
  h[i], h[j] = h[j], h[i]
  h[i].hi, h[j].hi = i, j
end

local function heap_up(h, i)
  while i > 1 do
    local p = i // 2
    if h[p].deadline <= h[i].deadline then break end
    heap_swap(h, i, p)
    i = p
  end
end

local function heap_down(h, i)
  local n = #h
  while true do
    local l, s = 2 * i, i
    if l <= n and h[l].deadline < h[s].deadline then s = l end
    if l + 1 <= n and h[l + 1].deadline < h[s].deadline then s = l + 1 end
    if s == i then return end
    heap_swap(h, i, s)
    i = s
  end
end

local function heap_push(h, e)
  local n = #h + 1
  h[n], e.hi = e, n
  heap_up(h, n)
end

local function heap_remove(h, e)
  local i, n = e.hi, #h
  if not i then return end
  e.hi = nil
  if i ~= n then
    h[i] = h[n]
    h[i].hi = i
    h[n] = nil
    heap_down(h, i)
    heap_up(h, i)
  else
    h[n] = nil
  end
end

--- A new loop. opts.poller: "epoll" (default where available), "select",
-- or a poller object (add/del/wait).
function M.new(opts)
  opts = opts or {}
  local poller = opts.poller
  if poller == nil or poller == "epoll" then poller = epoll_poller() end
  if poller == nil or poller == "select" then poller = select_poller() end
  return setmetatable({
    poller = poller,
    waits = {},        -- [sock] = { r = entry, w = entry }
    heap = {},
    ready = {},        -- queue of { co, ... } to resume
    tasks = setmetatable({}, { __mode = "k" }),
    ntasks = 0,
    stopped = false,
  }, Loop)
end

--- The loop running the current coroutine as one of its tasks, or nil.
function M.current()
  local co = co_running()
  if active and active.tasks[co] then return active end
  return nil
end

local function schedule(self, co, ...)
  local q = self.ready
  q[#q + 1] = table.pack(co, ...)
end

local function finish_wait(self, e)
  if e.sock then
    local w = self.waits[e.sock]
    if w and w[e.mode] == e then
      w[e.mode] = nil
      self.poller:del(e.sock, e.mode)
      if not w.r and not w.w then self.waits[e.sock] = nil end
    end
  end
  heap_remove(self.heap, e)
end

--- Run fn(...) as a new task. Errors in a task are reported on stderr.
function Loop:spawn(fn, ...)
  local co = co_create(fn)
  self.tasks[co] = true
  self.ntasks = self.ntasks + 1
  schedule(self, co, ...)
  return co
end

--- Wait (inside a task) until sock is ready for mode "r" or "w", or deadline.
-- Returns true, or nil, "timeout" / "closed".
function Loop:wait(sock, mode, deadline)
  local co = co_running()
  if self.poller:add(sock, mode) then
    -- readiness already seen (edge-triggered poller): go round once
    schedule(self, co, true)
    return co_yield()
  end
  local e = { co = co, sock = sock, mode = mode, deadline = deadline }
  local w = self.waits[sock]
  if not w then
    w = {}
    self.waits[sock] = w
  end
  if w[mode] then error("two tasks wait to " .. (mode == "r" and "read" or "write") .. " on one socket", 2) end
  w[mode] = e
  if deadline then heap_push(self.heap, e) end
  return co_yield()
end

--- Sleep (inside a task) for secs seconds.
function Loop:sleep(secs)
  heap_push(self.heap, { co = co_running(), deadline = gettime() + secs, sleep = true })
  return co_yield()
end

--- Suspend the current task until wake(co, ...) or the deadline (then nil, "timeout").
function Loop:suspend(deadline)
  local e = { co = co_running(), deadline = deadline }
  if deadline then heap_push(self.heap, e) end
  self.suspended = self.suspended or setmetatable({}, { __mode = "k" })
  self.suspended[e.co] = e
  return co_yield()
end

--- Wake a task suspended by suspend(); extra values are its results.
function Loop:wake(co, ...)
  local e = self.suspended and self.suspended[co]
  if not e then return false end
  self.suspended[co] = nil
  heap_remove(self.heap, e)
  schedule(self, co, ...)
  return true
end

--- Wake every task waiting on sock with nil, "closed" (call before closing it).
function Loop:forget(sock)
  if self.poller.forget then self.poller:forget(sock) end
  local w = self.waits[sock]
  if not w then return end
  for _, mode in ipairs { "r", "w" } do
    local e = w[mode]
    if e then
      finish_wait(self, e)
      schedule(self, e.co, nil, "closed")
    end
  end
end

local function resume(self, item)
  local co = item[1]
  if co_status(co) ~= "suspended" then return end
  local prev = active
  active = self
  local ok, err = co_resume(co, table.unpack(item, 2, item.n))
  active = prev
  if not ok then
    io.stderr:write("ws.loop: task failed: ", tostring(err), "\n")
  end
  if co_status(co) == "dead" then
    self.tasks[co] = nil
    self.ntasks = self.ntasks - 1
  end
end

-- Wake the tasks waiting on the ready sockets; remember edges nobody waited for.
local function deliver(self, list, mode)
  local poller, waits = self.poller, self.waits
  for k = 1, #list do
    local sock = list[k]
    local ws = waits[sock]
    local e = ws and ws[mode]
    if e then
      finish_wait(self, e)
      schedule(self, e.co, true)
    elseif poller.pending then
      poller:pending(sock, mode)
    end
  end
end

--- One round: run ready tasks, wait at most timeout seconds (nil: until
-- something happens) for readiness or a deadline, and resume what is due.
function Loop:step(timeout)
  -- tasks woken while these run go to a fresh queue, run next round
  local q = self.ready
  self.ready = {}
  for i = 1, #q do resume(self, q[i]) end
  q = self.ready

  local now = gettime()
  local wait = timeout
  if #q > 0 then
    wait = 0
  else
    local top = self.heap[1]
    if top then
      local d = top.deadline - now
      if d < 0 then d = 0 end
      if not wait or d < wait then wait = d end
    end
  end
  if self.ntasks == 0 and #q == 0 then return false end

  local r, w = self.poller:wait(wait)
  deliver(self, r, "r")
  deliver(self, w, "w")
  now = gettime()
  local heap = self.heap
  while heap[1] and heap[1].deadline <= now do
    local e = heap[1]
    finish_wait(self, e)
    if self.suspended then self.suspended[e.co] = nil end
    if e.sleep then
      schedule(self, e.co, true)
    else
      schedule(self, e.co, nil, "timeout")
    end
  end
  return true
end

--- Run until stop() is called or no task is left.
function Loop:run()
  self.stopped = false
  while not self.stopped do
    if not self:step() then break end
  end
end

function Loop:stop()
  self.stopped = true
end

return M
