--- lua-ws inside copas (1.x as Debian ships it, and the copas 2-4 API).
--
-- `sched` waits through copas: ws.accept on the socket an addserver handler
-- gets, and ws.connect from a copas task, use it by themselves (see
-- ws.sched), so the handshake and every connection call yield to copas with
-- every limit (timeouts, keepalive, queues) in force.
--
-- How a task waits: it parks a proxy in copas' read or write set. LuaSocket's
-- select asks the proxy for its descriptor at every call: the socket while
-- the task waits for it; once the task has a result (woken, timed out, its
-- socket forgotten) a placeholder UDP socket's, which is always writable and
-- which the proxy reports dirty (readable) -- so copas resumes it at once.
--
-- Deadlines: copas 2-4 get a timer thread (copas.pause/sleep + wakeup) that
-- makes copas' select return when the next one is due. Copas 1.x has no
-- timers at all: run it through M.loop() (or M.step) instead of copas.loop().
-- @module ws.copas
local copas = require "copas"
local socket = require "socket"
local loop = require "ws.loop"
local logging = require "ws.log"

local gettime, co_running = socket.gettime, coroutine.running
local unpack = table.unpack or unpack
local pause = copas.pause or copas.sleep   -- copas 4 / copas 2-3; nil in 1.x

local M = {}

local placeholder   -- UDP socket: always writable, never readable (nobody sends to it)
local function placeholder_fd()
  if not placeholder then
    placeholder = assert(socket.udp())
    assert(placeholder:setsockname("127.0.0.1", 0))   -- (LuaSocket opens it only now)
  end
  return placeholder:getfd()
end

---- the proxy a waiting task parks in copas' sets

local Wait = {}
Wait.__index = Wait

function Wait:getfd()
  if not self.done and self.due and gettime() >= self.due then
    self.done, self.a, self.b = true, nil, "timeout"
  end
  if self.done or not self.fd then return placeholder_fd() end
  return self.fd
end

function Wait:dirty() return self.done end

-- copas 1.x "autocloses" whatever last resumed a task that ends: the task's
-- sockets are the connection's to close, not the proxy's
function Wait:close() end

-- copas.receive / copas.send call these: the first call says "timeout" so
-- copas parks the task; when copas resumes it, its descriptor was ready.
function Wait:receive()
  if self.parked and (self.done or self.fd) then return "" end
  self.parked = true
  return nil, "timeout"
end

function Wait:send()
  if self.parked and (self.done or self.fd) then return 1 end
  self.parked = true
  return nil, "timeout", 0
end

local weak = { __mode = "k" }
local waits = setmetatable({}, weak)    -- task -> its Wait (reused)
local parked = {}                       -- Wait -> true while in a copas set
local by_sock = setmetatable({}, weak)  -- socket -> { r = Wait, w = Wait }

-- Seconds until the earliest deadline of a parked task, or nil.
local function next_due()
  local due
  for w in pairs(parked) do
    if w.due and not w.done and (not due or w.due < due) then due = w.due end
  end
  if not due then return nil end
  local t = due - gettime()
  return t > 0 and t or 0
end

-- copas 2-4: a thread that sleeps until the next deadline, so that copas'
-- select returns then (and re-reads the proxies' descriptors)
local timer_co, timer_due
local function timer_task()
  while true do
    local t = next_due()
    if not t then break end
    timer_due = gettime() + t
    pause(t)
  end
  timer_co, timer_due = nil, nil
end

local function need_timer(due)
  if not pause then return end
  if not timer_co then
    timer_due = due
    timer_co = copas.addthread(timer_task)
  elseif due < timer_due then
    copas.wakeup(timer_co)
  end
end

-- The running task's Wait.
local function my_wait()
  local co = co_running()
  local w = waits[co]
  if not w then
    w = setmetatable({}, Wait)
    waits[co] = w
  end
  return w
end

-- Park the running task (its Wait w) until fd (nil: none) is ready for
-- mode, a result is handed to it, or due. Returns w.
local function park(w, fd, mode, due, kind)
  w.fd, w.due, w.kind, w.done, w.a, w.b, w.parked = fd, due, kind, false, nil, nil, false
  parked[w] = true
  if due then need_timer(due) end
  if mode == "w" then copas.send(w, "") else copas.receive(w) end
  parked[w] = nil
  return w
end

-- End w's wait with a, b: copas resumes its task at its next select.
local function hand(w, a, b)
  if w.done then return false end
  w.done, w.a, w.b = true, a, b
  return true
end

---@class ws.copas.sched the scheduler interface of ws.loop, over copas
local S = {}
M.sched = S

--- Wait (in a copas task) until sock is ready for "r" or "w", or the
-- deadline. Returns true, or nil, "timeout" / "closed".
function S:wait(sock, mode, deadline)
  local ws = by_sock[sock]
  if not ws then
    ws = {}
    by_sock[sock] = ws
  end
  if ws[mode] then error("two tasks wait to " .. (mode == "r" and "read" or "write") .. " on one socket", 2) end
  local w = my_wait()
  ws[mode] = w
  park(w, sock:getfd(), mode, deadline, "io")
  ws[mode] = nil
  if w.done then return w.a, w.b end
  return true
end

--- Sleep for secs seconds.
function S:sleep(secs) park(my_wait(), nil, "r", gettime() + secs, "sleep") end

--- Let the other tasks run, then continue.
function S:yield() park(my_wait(), nil, "r", gettime(), "sleep") end

--- Suspend until wake(co, ...) (its values) or the deadline (nil, "timeout").
function S:suspend(deadline)
  local w = park(my_wait(), nil, "r", deadline, "suspend")
  return w.a, w.b
end

--- Wake a task in suspend() with a, b; false if it is not suspended.
function S:wake(co, a, b)
  local w = waits[co]
  if not w or not parked[w] or w.kind ~= "suspend" then return false end
  return hand(w, a, b)
end

--- Wake the tasks waiting on sock with nil, "closed" (call before closing it).
function S:forget(sock)
  local ws = by_sock[sock]
  if not ws then return end
  by_sock[sock] = nil
  if ws.r then hand(ws.r, nil, "closed") end
  if ws.w then hand(ws.w, nil, "closed") end
end

--- Whether the running coroutine may wait through copas: any but the main
-- thread (copas resumes bare coroutines; there is no asking it which are
-- its own). A send from the main thread leaves the rest to a task.
---@return boolean
function S:in_task()
  local co, main = co_running()
  return co ~= nil and not main
end

--- Run fn(...) as a new copas task (from the main thread too); an error is
-- logged, as ws.loop does.
function S:spawn(fn, ...)
  local n, args = select("#", ...), { ... }
  return copas.addthread(function()
    local ok, err = loop.pcall(fn, unpack(args, 1, n))
    if not ok then logging.stderr("error", "ws.copas: task failed", { error = tostring(err) }) end
  end)
end

-- driving copas 1.x (works with every copas)

--- copas.step(timeout), returning when the next lua-ws deadline is due.
---@param timeout? number
function M.step(timeout)
  local t = next_due()
  if t and (not timeout or t < timeout) then timeout = t end
  return copas.step(timeout)
end

--- Run copas until it has nothing left to do (copas 2-4; 1.x: forever),
-- keeping lua-ws deadlines: use it in place of copas.loop() with copas 1.x.
function M.loop()
  while not (copas.finished and copas.finished()) do M.step() end
end

return M
