--- Graceful stop: server:drain{ grace = S } and the signals that start it
-- (SIGTERM, SIGINT, SIGHUP read through the loop from a signalfd).
local socket = require "socket"
local core = require "ws.core"
local loop = require "ws.loop"

local gettime = socket.gettime

local M = {}

-- loop -> its servers (weak both ways: a server or loop dropped is forgotten)
local on_loop = setmetatable({}, { __mode = "k" })

--- Note a server on its loop: a signal that stops the loop drains them all.
function M.track(server)
  local set = on_loop[server.loop]
  if not set then
    set = setmetatable({}, { __mode = "k" })
    on_loop[server.loop] = set
  end
  set[server] = true
end

--- Answer the health paths with 503 and stop accepting (after linger
-- seconds of still serving, so a load balancer's health check takes the
-- server out of its rotation first), then close every connection with
-- 1001 "going away", the closes spread evenly over grace seconds (so
-- thousands of clients do not reconnect in the same instant); a handshake
-- still running gets its answer (503, or its 101 then 1001).
-- A close goes out after the messages already queued, so nothing send
-- accepted is lost. Waits for the close handshakes, each up to
-- close_timeout (inside a loop task it yields; outside, it steps the
-- loop), then returns the count of connections closed.
---@param self table the server
---@param opts? { grace?: number, linger?: number } seconds (defaults: the server's options, else 0)
---@return integer
function M.drain(self, opts)
  local o, l = self.opts, self.loop
  local grace = (opts and opts.grace) or o.grace or 0
  local linger = (opts and opts.linger) or o.linger or 0
  -- (finite: an endless one would never end the stop)
  if type(grace) ~= "number" or not (grace >= 0 and grace < math.huge) then
    error("drain: grace must be a number >= 0", 2)
  end
  if type(linger) ~= "number" or not (linger >= 0 and linger < math.huge) then
    error("drain: linger must be a number >= 0", 2)
  end
  local inside = loop.current() == l
  self.draining = true
  if linger > 0 and self.open then
    o.log("info", string.format("draining: health paths answer 503; still serving for %gs", linger))
    if inside then l:sleep(linger) else
      local stop = gettime() + linger
      while gettime() < stop do l:step(math.min(0.05, stop - gettime())) end
    end
  end
  if self.open then
    self.open = false
    l:forget(self.sock)
    self.sock:close()
  end
  local list = {}
  for conn in pairs(self.conns) do list[#list + 1] = conn end
  local n, pending, waiter = #list, #list, nil
  o.log("info", string.format("draining %d connections over %gs", n, grace))
  local t0, cpu0 = gettime(), os.clock()
  for i, conn in ipairs(list) do
    l:spawn(function()
      local delay = t0 + grace * (i - 1) / n - gettime()
      if delay > 0 then l:sleep(delay) end
      if conn.state ~= "closed" then conn:close(1001, "going away") end
      pending = pending - 1
      if pending == 0 and waiter then l:wake(waiter) end
    end)
  end
  local deadline = t0 + grace + (o.close_timeout or 3) + 1
  if pending > 0 and inside then
    waiter = coroutine.running()
    l:suspend(deadline)
  end
  while pending > 0 and gettime() < deadline do l:step(0.05) end
  -- handshakes the listener accepted before it closed: each gets its answer
  -- (503, or its 101 then 1001) within its handshake_timeout
  -- (a page or on_request that called us is one of them: not waited for)
  local own = inside and self.handshaking[loop.root(coroutine.running())] and 1 or 0
  while self.handshakes > own and gettime() < deadline do
    if inside then l:sleep(0.05) else l:step(0.05) end
  end
  o.log("info", "drained", { closed = n - pending, seconds = string.format("%.2f", gettime() - t0),
    cpu = string.format("%.2f", os.clock() - cpu0) })
  return n - pending
end

-- What SIGTERM and SIGINT do unless the application says otherwise: drain
-- (every server on the loop, at once: stopping the loop stops them all),
-- then stop the loop (run() returns); a second SIGINT while draining
-- stops at once (Ctrl-C twice). SIGHUP reloads TLS certificates.
-- M.default(server, name)
function M.default(self, name)
  if name == "HUP" then
    -- as nginx and HAProxy: a renewed certificate without a restart, for
    -- every wss:// server on the loop
    local tls = {}
    for s in pairs(on_loop[self.loop] or {}) do
      if s.tls and s.open then tls[#tls + 1] = s end
    end
    if #tls == 0 then
      self.opts.log("info", "SIGHUP: no handler (server:on_signal(\"HUP\", fn) sets one)")
    end
    for _, s in ipairs(tls) do
      local ok, err = s:reload_tls()
      if ok then s.opts.log("info", "SIGHUP: TLS certificate reloaded", { address = s.address })
      else s.opts.log("error", "SIGHUP: TLS certificate not reloaded, the old one stays: " .. tostring(err),
        { address = s.address }) end
    end
    return
  end
  if self.draining then
    -- (once: under ws.workers a worker may read two, the terminal's and
    -- the supervisor's, before the loop ends)
    if name == "INT" and not self.stopping_now then
      self.stopping_now = true
      self.opts.log("warn", "SIGINT again: stopping now")
      self.loop:stop()
    end
    return
  end
  self.opts.log("info", "SIG" .. name .. ": draining (SIGINT again stops at once)")
  local l, me = self.loop, coroutine.running()
  local list = { self }
  for s in pairs(on_loop[l] or {}) do
    if s ~= self and s.open and not s.draining then list[#list + 1] = s end
  end
  local left, began = #list, gettime()
  -- (now, not when the drains' tasks run: a TERM read with this INT, as
  -- ws.workers sends, must find them draining already)
  for _, s in ipairs(list) do s.draining = true end
  for _, s in ipairs(list) do
    l:spawn(function()
      -- (one that raises, a logger's fault say, must not leave the stop waiting)
      local ok, err = loop.pcall(M.drain, s)
      if not ok then s.opts.log("error", "drain failed: " .. tostring(err)) end
      left = left - 1
      if left == 0 then l:wake(me) end
    end)
  end
  l:suspend()
  -- ordered publishes a hub still holds (Redis down, or busy) end with the
  -- process: a chance to go out while Redis takes them (within the stop's
  -- bound, linger + grace + close_timeout + 1), then said lost
  for _, s in ipairs(list) do
    local o = s.opts
    local hub, stop = s.hub, began + (o.linger or 0) + (o.grace or 0) + (o.close_timeout or 3) + 1
    while hub and hub.up and hub:status().outbox > 0 and gettime() < stop do l:sleep(0.05) end
    local held = hub and hub:status().outbox or 0
    if held > 0 then s.opts.log("warn", "stopping with publishes Redis never took: dropped", { dropped = held }) end
  end
  l:stop()
end

M.SIGNALS = { "TERM", "INT", "HUP" }

--- Take SIGTERM, SIGINT and SIGHUP for this server's loop: each one runs
-- server.signal_handlers[name](server, name) (or the default) in a loop
-- task. Returns a function that gives them back.
function M.watch(self)
  local sigs, err = core.signals(M.SIGNALS)
  if not sigs then
    self.opts.log("warn", "signals: " .. tostring(err))
    return function() end
  end
  local l, stopped = self.loop, false
  l:spawn(function()
    while not stopped do
      local name = sigs:next()
      if name then
        local fn = self.signal_handlers and self.signal_handlers[name] or M.default
        l:spawn(fn, self, name)
      elseif not l:wait(sigs, "r") then   -- "closed": given back
        break
      end
    end
  end)
  return function()
    stopped = true
    l:forget(sigs)
    sigs:close()
  end
end

return M
