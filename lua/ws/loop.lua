--- A coroutine scheduler over socket readiness and timers.
-- One coroutine per task; a task waits for a socket to become readable or
-- writable (with an optional deadline), sleeps, or suspends until woken.
-- An idle loop blocks in the poller: no busy loop.
--
-- Hot path: a wait allocates nothing (each task reuses one wait entry), and
-- a deadline that moves later (an idle timeout renewed on every message)
-- keeps its place in the timer heap and is re-armed only when it fires.
-- @module ws.loop
local socket = require "socket"
local logging = require "ws.log"

local gettime = socket.gettime
local co_create, co_resume, co_running, co_yield, co_status =
  coroutine.create, coroutine.resume, coroutine.running, coroutine.yield, coroutine.status
local floor = math.floor
-- Lua 5.1 and LuaJIT: no table.pack / table.unpack
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
-- PUC Lua 5.1 (not LuaJIT) cannot yield across pcall/xpcall nor out of a
-- for iterator; coroutine.running() gives nil in its main thread
local lua51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")

local M = {}
M.LUA51 = lua51

local Loop = {}
Loop.__index = Loop

-- The loop whose task is running now (tasks of one loop never run inside another's).
local active

-- pollers: add(sock, mode) -> already_ready, del(sock, mode),
-- wait(timeout) -> r, nr, w, nw [, rclean] (rclean[i]: r[i]'s edge came
-- without hang-up or error; epoll only, see Loop:wait)

--- Poller on socket.select: portable, limited to FD_SETSIZE (1024) sockets.
function M.select_poller()
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
    return false
  end
  function P.del(_, sock, mode)
    if mode == "r" then del(P.r, P.ri, sock) else del(P.w, P.wi, sock) end
  end
  function P.wait(_, timeout)
    if #P.r == 0 and #P.w == 0 then
      if timeout and timeout > 0 then socket.sleep(timeout) end
      return P.r, 0, P.w, 0
    end
    local r, w = socket.select(P.r, P.w, timeout)
    r, w = r or {}, w or {}
    return r, #r, w, #w
  end
  return P
end

--- Poller on Linux epoll, edge-triggered: a socket is registered once for
-- reading and writing; an edge that arrives while nobody waits is kept as
-- "pending" and satisfies the next wait. Callers wait only after a read or
-- write came up short, which is what makes edges sufficient. Every read
-- edge of a socket registered for both says "writable" too (one per
-- message), so write edges are sorted in C: reported only to a waiter,
-- else kept pending there (wmap), with no Lua per event.
function M.epoll_poller()
  local ok, core = pcall(require, "ws.core")
  local ep = ok and core.epoll and core.epoll()
  if not ep then return nil end
  local P = {}
  local socks = {}                                   -- fd -> socket
  local fds = setmetatable({}, { __mode = "k" })     -- socket -> fd
  local pend = {}                                    -- [fd] = true: a read edge nobody took
  local wsocks = {}                                  -- fd -> socket waiting to write, or true: a write edge nobody took
  local r, w, rclean = {}, {}, {}
  function P.add(_, sock, mode)
    local fd = fds[sock]
    if not fd then
      fd = sock:getfd()
      fds[sock] = fd
    end
    if socks[fd] ~= sock then
      -- a new socket, or a new one on a reused descriptor
      ep:watch(fd)
      socks[fd] = sock
      pend[fd], wsocks[fd] = nil, nil
    end
    if mode == "w" then
      if wsocks[fd] == true then
        wsocks[fd] = nil
        return true
      end
      wsocks[fd] = sock   -- (the C call reports its next write edge, once)
      return false
    end
    if pend[fd] then
      pend[fd] = nil
      return true
    end
    return false
  end
  function P.del() end
  P.edge = true   -- del() does nothing: ws.loop need not call it
  function P.pending(_, sock, mode)
    local fd = fds[sock]
    if fd and socks[fd] == sock then
      if mode == "r" then pend[fd] = true else wsocks[fd] = true end
    end
  end
  -- The socket is about to be closed, which takes it out of epoll: no
  -- EPOLL_CTL_DEL needed (add() takes a reused descriptor over anyway).
  function P.forget(_, sock)
    local fd = fds[sock]
    if fd and socks[fd] == sock then
      socks[fd], pend[fd], wsocks[fd] = nil, nil, nil
    end
  end
  function P.wait(_, timeout, spin)
    -- (the C call puts socks[fd] in r, and wsocks[fd] in w, itself)
    local nr, nw = ep:wait(timeout, r, w, rclean, socks, spin, wsocks)
    if not nr then return r, 0, w, 0 end
    return r, nr, w, nw, rclean
  end
  function P.fd() return ep:fd() end
  return P
end

-- timer heap: entries ordered by .key; .hi is the index in the heap

local function heap_swap(h, i, j)
  h[i], h[j] = h[j], h[i]
  h[i].hi, h[j].hi = i, j
end

local function heap_up(h, i)
  while i > 1 do
    local p = floor(i / 2)
    if h[p].key <= h[i].key then break end
    heap_swap(h, i, p)
    i = p
  end
end

local function heap_down(h, i)
  local n = #h
  while true do
    local l, s = 2 * i, i
    if l <= n and h[l].key < h[s].key then s = l end
    if l + 1 <= n and h[l + 1].key < h[s].key then s = l + 1 end
    if s == i then return end
    heap_swap(h, i, s)
    i = s
  end
end

local function heap_push(h, e, key)
  local i = #h + 1
  e.key, e.hi, h[i] = key, i, e
  -- (heap_up(h, i), inlined: a connection's first wait comes here, and
  -- each frame deeper is stack its coroutine keeps while it waits)
  while i > 1 do
    local p = floor(i / 2)
    local q = h[p]
    if q.key <= key then break end
    h[i], h[p], q.hi, e.hi = q, e, i, p
    i = p
  end
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

-- the loop

--- A new loop.
-- opts.poller: "epoll" (default where available), "select" or a poller
-- object; opts.logger: function(level, message, fields), false (silent) or
-- nil (stderr), which gets "task failed" lines; opts.spin: seconds (default
-- none) for which a round that ran tasks or handled a read edge polls for the next events before
-- sleeping (epoll only; see ws.listen's spin).
---@param opts? table poller, logger, spin
---@return table loop
function M.new(opts)
  opts = opts or {}
  local poller = opts.poller
  if poller == nil or poller == "epoll" then poller = M.epoll_poller() end
  if poller == nil or poller == "select" then poller = M.select_poller() end
  return setmetatable({
    poller = poller,
    -- [sock] = the entry of the task waiting to read / to write on it (two
    -- maps, not a table per socket: an idle connection holds none of its own)
    rwaits = setmetatable({}, { __mode = "k" }),
    wwaits = setmetatable({}, { __mode = "k" }),
    heap = {},
    entries = setmetatable({}, { __mode = "k" }),  -- [co] = its wait entry
    level = not poller.edge,                       -- a wait that ends must del() its socket
    -- ready queue as parallel arrays: coroutine and up to two resume values
    qco = {}, qa = {}, qb = {}, qn = 0,
    sco = {}, sa = {}, sb = {},                    -- spare arrays, swapped in
    ntasks = 0,
    stopped = false,
    spin = opts.spin or nil,                       -- (false: none)
    busy = false,                                  -- the last round ran tasks or had read edges
    log = logging.get(opts.logger, "ws.loop"),
  }, Loop)
end

--- The loop running the current coroutine as one of its tasks, or nil.
function M.current()
  local co = co_running()
  if active and active.entries[co] then return active end
  return nil
end

--- Whether the running coroutine is one of this loop's tasks: one that
-- may wait through it.
---@return boolean
function Loop:in_task()
  return active == self and self.entries[co_running()] ~= nil
end

local function schedule(self, co, a, b)
  local n = self.qn + 1
  self.qn = n
  self.qco[n], self.qa[n], self.qb[n] = co, a, b
end

-- The wait entry of a task: { co, kind = nil|"io"|"sleep"|"suspend", sock,
-- mode, due (real deadline), key/hi (its place in the heap, if any) }.
local function entry(self)
  local co = co_running()
  local e = self.entries[co]
  if not e then error("not called from a task of this loop", 3) end
  return e
end

-- Give e a deadline; an earlier heap slot is kept and re-armed on firing.
local function arm(self, e, due)
  e.due = due
  if not due then return end
  if e.hi then
    if e.key <= due then return end
    heap_remove(self.heap, e)
  end
  heap_push(self.heap, e, due)
end

-- End e's wait (whatever ended it) and resume its task with a, b.
local function finish(self, e, a, b)
  if e.kind == "io" then
    local waits = e.mode == "r" and self.rwaits or self.wwaits
    if waits[e.sock] == e then
      waits[e.sock] = nil
      if self.level then self.poller:del(e.sock, e.mode) end
    end
    e.sock = nil
  end
  e.kind, e.due = nil, nil
  schedule(self, e.co, a, b)
end

--- Run fn(...) as a new task. Errors in a task are reported on stderr.
function Loop:spawn(fn, ...)
  local co
  local n = select("#", ...)
  if n <= 2 then
    -- up to two arguments ride on the first resume: no closure per task
    co = co_create(fn)
    schedule(self, co, ...)
  else
    local args = pack(...)
    co = co_create(function() return fn(unpack(args, 1, args.n)) end)
    schedule(self, co)
  end
  -- (sized once for every field a wait gives it: see entry)
  self.entries[co] = { co = co, kind = nil, sock = nil, mode = nil, due = nil, key = nil, hi = nil }
  self.ntasks = self.ntasks + 1
  if active ~= self and self.notify then self.notify() end
  return co
end

-- Resume the helper coroutine of M.xpcall and pass its yields up to the
-- task; returns what xpcall returns.
local function drive(l, co, msgh, r)
  while true do
    if not r[1] then
      if l then l.entries[co] = nil end
      if msgh == debug.traceback then return false, debug.traceback(co, r[2]) end
      return false, msgh(r[2])
    end
    if co_status(co) == "dead" then
      if l then l.entries[co] = nil end
      return true, unpack(r, 2, r.n)
    end
    r = pack(co_resume(co, co_yield(unpack(r, 2, r.n))))
  end
end

-- (Lua 5.1) the coroutines M.xpcall runs f in -> the coroutine that called
-- it: they pass their yields up, so they wait as it does
local nested = setmetatable({}, { __mode = "k" })

--- Whether co is one M.xpcall (or M.pcall) runs its function in on Lua 5.1
-- (waits as its caller does: a host loop's adapter cannot tell it from a
-- plain coroutine); false on 5.2+, where they run in the caller's.
---@param co thread
---@return boolean
function M.nested(co) return nested[co] ~= nil end

--- The coroutine co stands for: itself, or on Lua 5.1 the one that called
-- the M.pcall that runs it (and so on up).
---@param co thread
---@return thread
function M.root(co)
  while nested[co] do co = nested[co] end
  return co
end

--- xpcall(f, msgh, ...) through which f may wait (yield), as in Lua 5.2+,
-- on Lua 5.1 too: there f runs in a coroutine of its own that passes its
-- yields up and, inside a task, stands for the task (same wait entry).
-- msgh gets the error, not the stack (debug.traceback gets f's stack).
function M.xpcall(f, msgh, ...)
  local outer = co_running()
  if not outer then
    -- the main thread cannot yield anyway
    local args = pack(...)
    return xpcall(function() return f(unpack(args, 1, args.n)) end, msgh)
  end
  local l = active and active.entries[outer] and active or nil
  local co = co_create(f)
  nested[co] = outer
  if l then l.entries[co] = l.entries[outer] end
  return drive(l, co, msgh, pack(co_resume(co, ...)))
end

--- pcall(f, ...) through which f may wait (yield), on Lua 5.1 too.
local function pass(e) return e end

function M.pcall(f, ...)
  return M.xpcall(f, pass, ...)
end

-- Lua 5.2+ and LuaJIT: the built-ins themselves (a wrapper's frame would
-- stay under every handler's stack, which a waiting connection keeps)
if not lua51 then M.xpcall, M.pcall = xpcall, pcall end

-- at()'s timers that do not keep run() going (background)
local background = setmetatable({}, { __mode = "k" })

-- A timer of at() is done (fired or cancelled): it no longer counts.
local function timer_done(self, e)
  if background[e] then background[e] = nil else self.ntasks = self.ntasks - 1 end
end

--- Run fn(arg) as a new task at time due (socket.gettime() seconds) unless
-- cancel(timer) comes first: a deadline that costs no task (no coroutine)
-- until it fires, for work that is often never due (a connection's first
-- keepalive ping). A pending timer keeps run() going, as a task would,
-- unless bg is true (housekeeping: it fires only while other work runs).
---@param due number
---@param fn function
---@param arg any
---@param bg? boolean
---@return table timer
function Loop:at(due, fn, arg, bg)
  if type(due) ~= "number" then error("bad argument #1 to 'at' (number expected, got " .. type(due) .. ")", 2) end
  -- (every field it will hold, so the table is sized once: four slots,
  -- which a connection's keepalive timer holds while it is idle; the
  -- heap key is its due time, and fn says it is a pending timer)
  -- (heap_push(self.heap, e, due), inlined: a connection's timer is set
  -- at the deepest point of its handshake, and a frame less there keeps
  -- its coroutine's stack at 80 slots, not 160)
  local h = self.heap
  local i = #h + 1
  local e = { fn = fn, arg = arg, key = due, hi = i }
  h[i] = e
  while i > 1 do
    local p = floor(i / 2)
    local q = h[p]
    if q.key <= due then break end
    h[i], h[p], q.hi, e.hi = q, e, i, p
    i = p
  end
  if bg then background[e] = true else self.ntasks = self.ntasks + 1 end
  if active ~= self and self.notify then self.notify() end
  return e
end

--- Cancel a timer of at() (no effect once it fired or was cancelled).
---@param timer table
function Loop:cancel(timer)
  if not timer.fn then return end
  timer.fn, timer.arg = nil, nil
  heap_remove(self.heap, timer)
  timer_done(self, timer)
end

--- Wait (inside a task) until sock is ready for mode "r" or "w", or deadline.
-- Returns true, or nil, "timeout" / "closed". A wait for "r" woken by an
-- epoll edge that came without hang-up or error returns true, true: a short
-- plain read after it proves the socket drained (reader:next's trust_short);
-- any other wake (a pending edge, the select poller) returns true alone.
function Loop:wait(sock, mode, deadline)
  local e = self.entries[co_running()]
  if not e then error("not called from a task of this loop", 2) end
  if self.poller:add(sock, mode) then
    -- readiness already seen (edge-triggered poller): go round once
    schedule(self, e.co, true)
    return co_yield()
  end
  local waits = mode == "r" and self.rwaits or self.wwaits
  if waits[sock] then error("two tasks wait to " .. (mode == "r" and "read" or "write") .. " on one socket", 2) end
  waits[sock] = e
  e.kind, e.sock, e.mode = "io", sock, mode
  -- (arm(self, e, deadline), inlined: the frame under every waiting connection)
  e.due = deadline
  if deadline and not (e.hi and e.key <= deadline) then
    if e.hi then heap_remove(self.heap, e) end
    heap_push(self.heap, e, deadline)
  end
  return co_yield()
end

--- Have the loop itself call obj:readable(clean), in no task, on every
-- read edge of sock (clean as for wait), until unwatch(sock) or
-- forget(sock), which calls obj:forgotten() instead. Neither may raise or
-- wait. Returns true when an edge came before (a read is due first:
-- unwatch, read, watch again). (ws.connection's serve: no task switch
-- per message, and no table per watch.)
---@param sock table
---@param obj table
---@return boolean
function Loop:watch(sock, obj)
  if self.rwaits[sock] then error("two tasks wait to read on one socket", 2) end
  self.rwaits[sock] = obj
  return self.poller:add(sock, "r")
end

--- End a watch of sock by obj (no effect without one).
function Loop:unwatch(sock, obj)
  if self.rwaits[sock] == obj then
    self.rwaits[sock] = nil
    if self.level then self.poller:del(sock, "r") end
  end
end

--- Sleep (inside a task) for secs seconds.
function Loop:sleep(secs)
  local e = entry(self)
  e.kind = "sleep"
  arm(self, e, gettime() + secs)
  return co_yield()
end

--- Let the other ready tasks run first, then continue (inside a task).
function Loop:yield()
  schedule(self, entry(self).co, true)
  return co_yield()
end

--- Suspend the current task until wake(co, ...) or the deadline (then nil, "timeout").
function Loop:suspend(deadline)
  local e = entry(self)
  e.kind = "suspend"
  arm(self, e, deadline)
  return co_yield()
end

--- Wake a task suspended by suspend(); a, b are its results.
function Loop:wake(co, a, b)
  local e = self.entries[co]
  if not e or e.kind ~= "suspend" then return false end
  finish(self, e, a, b)
  if active ~= self and self.notify then self.notify() end
  return true
end

--- Wake every task waiting on sock with nil, "closed". Call it right
-- before closing the socket.
function Loop:forget(sock)
  if self.poller.forget then self.poller:forget(sock) end
  local r, w = self.rwaits[sock], self.wwaits[sock]
  if r and r.readable then
    self:unwatch(sock, r)
    r:forgotten()
  elseif r then
    finish(self, r, nil, "closed")
  end
  if w then finish(self, w, nil, "closed") end
end

-- A task's coroutine is dead: forget it.
local function ended(self, co)
  local e = self.entries[co]
  if e then heap_remove(self.heap, e) end
  self.entries[co] = nil
  self.ntasks = self.ntasks - 1
end

-- Wake the tasks waiting on the ready sockets (with clean[k], see
-- Loop:wait); remember edges nobody waited for.
local function deliver(self, list, n, mode, clean)
  local poller, waits, level = self.poller, mode == "r" and self.rwaits or self.wwaits, self.level
  for k = 1, n do
    local sock = list[k]
    if sock then
      local e = waits[sock]
      local readable = e and e.readable
      if readable then
        readable(e, clean and clean[k])   -- a watch: called here, no task
      elseif e then
        -- finish(self, e, true, clean[k]), inlined: one per event
        waits[sock] = nil
        if level then poller:del(sock, mode) end
        e.kind, e.sock, e.due = nil, nil, nil
        local q = self.qn + 1
        self.qn = q
        self.qco[q], self.qa[q], self.qb[q] = e.co, true, clean and clean[k]
      elseif poller.pending then
        poller:pending(sock, mode)
      end
    end
  end
end

--- One round: wait at most timeout seconds (nil: until something happens;
-- 0 when tasks are ready) for readiness or a deadline, resume what is due,
-- then run the ready tasks. Returns false when no task is left.
---@param timeout? number seconds
---@return boolean
function Loop:step(timeout)
  if self.ntasks == 0 and self.qn == 0 then return false end
  local wait = timeout
  if self.qn > 0 or self.stopping then
    -- (stopping: a task called stop() this round; run() must return now,
    -- not after the next event, which may never come)
    self.stopping = nil
    wait = 0
  else
    local top = self.heap[1]
    if top then
      local d = top.key - gettime()
      if d < 0 then d = 0 end
      if not wait or d < wait then wait = d end
    end
  end
  -- after a round that ran tasks or read edges, poll a while before sleeping (see spin)
  local r, nr, w, nw, rclean = self.poller:wait(wait, self.busy and self.spin or nil)
  deliver(self, r, nr, "r", rclean)
  deliver(self, w, nw, "w")

  local heap, now = self.heap, gettime()
  while heap[1] and heap[1].key <= now do
    local e = heap[1]
    heap_remove(heap, e)
    local due, fn = e.due, e.fn
    if fn then                           -- a timer of at()
      local arg = e.arg
      e.fn, e.arg = nil, nil
      timer_done(self, e)
      self:spawn(fn, arg)
    elseif due then
      if due > now then
        heap_push(heap, e, due)          -- the deadline moved later: re-arm
      elseif e.kind == "sleep" then
        finish(self, e, true)
      else
        finish(self, e, nil, "timeout")
      end
    end
  end

  local n = self.qn
  if n > 0 then
    -- tasks woken while these run go to the spare arrays, run next round
    local cos, as, bs = self.qco, self.qa, self.qb
    self.qco, self.qa, self.qb, self.qn = self.sco, self.sa, self.sb, 0
    local prev = active
    active = self
    for i = 1, n do
      local co, a, b = cos[i], as[i], bs[i]
      cos[i], as[i], bs[i] = nil, nil, nil
      -- resume(self, co, a, b), inlined: one per task woken
      if co_status(co) == "suspended" then
        local ok, err = co_resume(co, a, b)
        if not ok then
          active = prev   -- (as outside a task, should the logger raise)
          self.log("error", "ws.loop: task failed", { error = tostring(err) })
          active = self
        end
        if co_status(co) == "dead" then ended(self, co) end
      end
    end
    active = prev
    self.sco, self.sa, self.sb = cos, as, bs
  end
  -- (a round whose events a watch handled in no task did work too: conn:serve)
  self.busy = n > 0 or nr > 0
  return self.ntasks > 0 or self.qn > 0
end

-- nesting in another event loop (the cqueues polling convention): the
-- host waits until pollfd() is readable or timeout() seconds have passed,
-- then calls step(0). cqueues.poll(loop) does exactly that. A host that
-- sets loop.notify (a function) is told when code outside the loop's tasks
-- spawns or wakes one, so it can step soon (ws.cqueues, ws.luv do).

--- The descriptor another loop watches for readability (epoll only), or nil.
---@return integer|nil
function Loop:pollfd()
  return self.poller.fd and self.poller:fd() or nil
end

--- The events to watch pollfd() for: always "r".
---@return string
function Loop:events() return "r" end

--- Seconds until the next deadline (0 when tasks are ready to run), or nil
-- when nothing is due: the host then waits on pollfd() alone, costing no CPU.
---@return number|nil
function Loop:timeout()
  if self.qn > 0 then return 0 end
  local top = self.heap[1]
  if not top then return nil end
  local d = top.key - gettime()
  return d > 0 and d or 0
end

--- Run until stop() is called or no task is left.
function Loop:run()
  self.stopped = false
  while not self.stopped do
    if not self:step() then break end
  end
end

function Loop:stop()
  self.stopped, self.stopping = true, true
end

return M
