--- lua-ws inside cqueues.
--
-- `sched` waits through the running cqueues controller: ws.accept(sock) and
-- ws.connect(url) called from a cqueues coroutine use it by themselves (see
-- ws.sched), so every wait of the handshake and of the connection yields to
-- cqueues, with every limit (timeouts, keepalive, queues) in force.
-- `attach(cq, server)` runs a whole ws.listen server (or a ws.loop) nested
-- in a controller instead: cqueues waits on its epoll descriptor.
--
--   local cq = cqueues.new()
--   cq:wrap(function() ... local conn = ws.accept(cqueues_socket) ... end)
-- @module ws.cqueues
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local socket = require "socket"
local loop = require "ws.loop"
local logging = require "ws.log"

local gettime, co_running = socket.gettime, coroutine.running
local poll = cqueues.poll

local M = {}

local weak = { __mode = "k" }
local conds = setmetatable({}, weak)    -- task -> its condition (wake, forget)
local woken = setmetatable({}, weak)    -- task -> { a, b } handed over by wake / forget
local asleep = setmetatable({}, weak)   -- task -> true while in suspend()
local pollers = setmetatable({}, weak)  -- socket -> { r = pollable, w = pollable, rco = task, wco = task }
local WAITER = { r = "rco", w = "wco" }
-- the controller our connections wait in (the last seen): spawn() from
-- outside any controller (the main thread between cq:step calls) uses it
local controller
local per_controller = setmetatable({}, { __mode = "k" })   -- controller -> its scheduler (M.here)

local function cond_of(co)
  local c = conds[co]
  if not c then
    c = condition.new()
    conds[co] = c
  end
  return c
end

local function left(deadline)
  if not deadline then return nil end
  local t = deadline - gettime()
  return t > 0 and t or 0
end

-- Hand a, b to a waiting task and signal it.
local function hand(co, a, b)
  woken[co] = { a, b }
  cond_of(co):signal()
end

---@class ws.cqueues.sched the scheduler interface of ws.loop, over cqueues
local S = {}
M.sched = S

--- Wait (in a cqueues coroutine) until sock is ready for "r" or "w", or
-- the deadline. Returns true, or nil, "timeout" / "closed".
function S:wait(sock, mode, deadline)
  local co = co_running()
  local p = pollers[sock]
  if not p then
    local fd = sock:getfd()
    p = { r = { pollfd = fd, events = "r" }, w = { pollfd = fd, events = "w" } }
    pollers[sock] = p
    controller = cqueues.running() or controller
  end
  local key = WAITER[mode]
  if p[key] then error("two tasks wait to " .. (mode == "r" and "read" or "write") .. " on one socket", 2) end
  local obj, c = p[mode], cond_of(co)
  p[key] = co
  local ready = poll(obj, c, left(deadline))
  p[key] = nil
  local r = woken[co]
  if r then
    woken[co] = nil
    return r[1], r[2]
  end
  if ready == obj then return true end
  return nil, "timeout"
end

--- Sleep for secs seconds.
function S:sleep(secs) cqueues.sleep(secs) end

--- Let the other coroutines run, then continue.
function S:yield() cqueues.sleep(0) end

--- The scheduler for a connection made in a coroutine of a cqueues
-- controller (ws.sched.current asks here): that controller is remembered.
---@return table
function M.here()
  local cq = cqueues.running()
  if not cq then return S end
  controller = cq
  -- one scheduler per controller, which its connections keep: what they
  -- spawn from outside any controller runs there, not in the last one seen
  local s = per_controller[cq]
  if not s then
    s = setmetatable({ cq = cq }, { __index = S })
    per_controller[cq] = s
  end
  return s
end

--- Whether the running coroutine is one a cqueues controller runs: one
-- that may wait (a send from elsewhere leaves the rest to a task).
---@return boolean
function S:in_task()
  -- (on Lua 5.1 a task runs inside loop.pcall's own coroutine: cqueues
  -- resumes the one under it)
  return select(2, cqueues.running()) == true or loop.nested(co_running())
end

--- Run fn(...) as a new coroutine of the running controller (outside one:
-- of the controller our connections wait in); an error is logged (as
-- ws.loop does), not raised out of the controller's loop.
function S:spawn(fn, ...)
  local cq = cqueues.running() or rawget(self, "cq") or controller
  if not cq then error("ws.cqueues: spawn outside a cqueues controller", 2) end
  controller = cq
  return cq:wrap(function(...)
    local ok, err = loop.pcall(fn, ...)
    if not ok then logging.stderr("error", "ws.cqueues: task failed", { error = tostring(err) }) end
  end, ...)
end

--- Suspend until wake(co, ...) (its values) or the deadline (nil, "timeout").
function S:suspend(deadline)
  local co = co_running()
  local c = cond_of(co)
  asleep[co] = true
  while not woken[co] do
    local t = left(deadline)
    if t == 0 or (not c:wait(t) and deadline) then break end
  end
  asleep[co] = nil
  local r = woken[co]
  woken[co] = nil
  if r then return r[1], r[2] end
  return nil, "timeout"
end

--- Wake a task in suspend() with a, b; false if it is not suspended.
function S:wake(co, a, b)
  if not asleep[co] or woken[co] then return false end
  hand(co, a, b)
  return true
end

--- Wake the tasks waiting on sock with nil, "closed" (call before closing it).
function S:forget(sock)
  local p = pollers[sock]
  if not p then return end
  pollers[sock] = nil
  if p.rco then hand(p.rco, nil, "closed") end
  if p.wco then hand(p.wco, nil, "closed") end
  -- cqueues keeps state per descriptor: drop it before the number is reused
  cqueues.cancel(p.r.pollfd)
end

--- Run a ws.listen server (or a ws.loop) nested in controller cq: one
-- coroutine waits on its epoll descriptor and timeout and steps it; it
-- ends when the server's loop has no task left, and a new one starts when
-- work is queued on the loop again from outside its tasks. Returns cq
-- (cq:wrap's result), for chaining.
---@param cq table a cqueues controller
---@param target table a server from ws.listen, or a ws.loop
---@return table cq
function M.attach(cq, target)
  local l = target.loop or target
  local kick, driving = condition.new(), true
  local function drive()
    while l:step(0) do
      -- (with a task ready, t is 0: poll still, which lets the
      -- controller's other coroutines run; else a task that keeps
      -- yielding, a peer whose input never runs dry, starves them)
      poll(l, kick, l:timeout())
    end
    driving = false
  end
  -- code outside the loop's tasks (another cqueues coroutine broadcasting,
  -- sending to a slow peer) queued work: step now, not at the next event;
  -- if the loop had run out of tasks, drive it again
  l.notify = function()
    if driving then return kick:signal() end
    driving = true
    cq:wrap(drive)
  end
  return cq:wrap(drive)
end

return M
