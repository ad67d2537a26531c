--- lua-ws inside luv (libuv).
--
-- luv runs callbacks, not coroutines, so lua-ws code runs as tasks of a
-- ws.loop that luv drives: uv polls the loop's epoll descriptor and one uv
-- timer covers its deadlines (an idle loop costs no CPU). Inside such a
-- task ws.accept (also on a luv TCP handle), ws.connect and every
-- connection call wait through luv, with every limit in force.
--
--   local wsluv = require "ws.luv"
--   wsluv.spawn(function() local conn = ws.connect(url) ... end)
--   local server = ws.listen { port = 8080, loop = wsluv.loop() }
--   uv.run()
-- @module ws.luv
local uv = require "luv"
local loop = require "ws.loop"

local M = {}

--- Drive a ws.loop, or a server from ws.listen, from the luv loop until
-- the returned handle is closed. While the loop has no task left its uv
-- handles stop (so uv.run() can return) and come back when work is queued
-- on it from outside (a spawn, a send from a luv callback: loop.notify).
---@param target table a ws.loop or a server
---@return table handle with close()
function M.attach(target)
  local l = target.loop or target
  local fd = l:pollfd()
  if not fd then error("ws.luv: the loop has no descriptor to poll (epoll poller needed)", 2) end
  local poll, timer, soon = uv.new_poll(fd), uv.new_timer(), uv.new_idle()
  local h = {}
  local step, idle
  local function arm(t)
    timer:stop()
    -- a task ready: step on the next turn of the uv loop (an idle handle).
    -- A 0 ms timer armed from its own callback runs again in the same pass
    -- (uv's clock is not read in between): a task that keeps yielding (a
    -- peer whose input never runs dry) would starve every other handle
    if t == 0 then return soon:start(step) end
    soon:stop()
    if t then timer:start(math.ceil(t * 1000), 0, step) end
  end
  step = function()
    if l:step(0) then return arm(l:timeout()) end
    -- no task left: stop (not close) the handles, notify starts them again
    idle = true
    poll:stop()
    timer:stop()
    soon:stop()
  end
  function h.close()
    if h.closed then return end
    h.closed, l.notify = true, nil
    poll:close()
    timer:close()
    soon:close()
  end
  poll:start("r", step)
  -- work queued from a luv callback (a spawn, a send the socket did not
  -- take, a broadcast): step soon
  l.notify = function()
    if idle then
      idle = false
      poll:start("r", step)
    end
    arm(0)
  end
  arm(l:timeout())
  return h
end

local shared, handle

--- The ws.loop luv drives for this process (created at first use; attached
-- again if its handle was closed).
---@return table
function M.loop()
  shared = shared or loop.new()
  if not handle or handle.closed then handle = M.attach(shared) end
  return shared
end

--- Run fn(...) as a task of M.loop(): ws.accept, ws.connect and
-- connections used in it wait through luv.
---@param fn function
---@return thread
function M.spawn(fn, ...)
  return M.loop():spawn(fn, ...)
end

return M
