--- Several worker processes on one port: fork n workers before any loop
-- exists, each running start() (its own loop and reuseport listener);
-- restart a worker that dies (backing off when it keeps dying; giving up
-- when every worker keeps dying at start and none ever ran long); on SIGTERM
-- or SIGINT tell each worker to drain (SIGTERM; a second SIGINT passes on:
-- stop now) and return when all are done. Fork, wait and signals are in C (ws.core).
-- @module ws.workers
local socket = require "socket"
local core = require "ws.core"
local logging = require "ws.log"

local gettime = socket.gettime

local M = {}

local BACKOFF_MIN, BACKOFF_MAX = 0.1, 5   -- seconds before restarting a worker that died
local STABLE = 10                         -- a worker that lived this long resets its back-off
local GIVE_UP, SPAN = 3, 5                -- young deaths in a row of every worker over SPAN seconds, none ever stable: give up

-- a worker's exit status from start()'s results
local function status_of(ok, r)
  if not ok or r == false then return 1 end
  return tonumber(r) or 0
end

--- Run n workers (0: one per CPU this process may run on) and supervise them. In each child,
-- start(i) runs (i = 1..n; it builds a server with reuseport = true and
-- runs it until drained) and the child exits with its result (nil or true:
-- 0, false: 1, or a number). Call it before creating any server or loop:
-- an epoll descriptor shared across fork would mix the workers' events.
-- Returns the parent's exit status: 0 when every worker ended cleanly
-- after SIGTERM/SIGINT, 1 otherwise (as when every worker died young 3
-- times in a row, none having lived 10 s: they fail at start, so it stops).
-- A worker whose parent dies (SIGKILL, a crash) gets SIGTERM and drains.
---@param n integer workers; 0 = one per core
---@param start fun(i: integer): any
---@param opts? { logger?: function|false }
---@return integer
function M.run(n, start, opts)
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then error("workers.run: n must be an integer >= 0", 2) end
  if type(start) ~= "function" then error("workers.run: start must be a function", 2) end
  local log = logging.get(opts and opts.logger, "workers.run")
  if n == 0 then n = core.cpu_count() end
  -- blocked from here on, so a signal between two forks is not lost
  local sigs = assert(core.signals { "TERM", "INT", "HUP", "CHLD" })
  local pids, slots = {}, {}   -- pid -> slot; slot i -> { pid, started, backoff, due, young }
  local live, stopping, failed = 0, false, false
  local stable = false   -- a worker lived STABLE seconds: it can start, so never give up

  -- every worker died young GIVE_UP times in a row, for SPAN seconds (a
  -- dependency down for a second is waited out), and none ever lived
  -- STABLE seconds: they fail at start (a busy port, a bad option), and
  -- restarting them forever would hide it
  local function crash_loop()
    local now = gettime()
    for _, s in ipairs(slots) do
      if s.pid and now - s.started >= STABLE then stable = true end
      if s.young < GIVE_UP or now - s.since < SPAN then return false end
    end
    return not stable
  end

  local function spawn(i)
    local s = slots[i]
    io.stdout:flush()
    io.stderr:flush()
    local pid, err = core.fork(true)   -- SIGTERM (a drain) when we die
    if pid == 0 then
      -- the worker's server:run() reads TERM, INT and HUP from its own
      -- signalfd; until then they stay blocked (pending), not fatal
      sigs:close { "TERM", "INT", "HUP" }
      local ok, r = xpcall(start, debug.traceback, i)
      if not ok then io.stderr:write("worker ", i, ": ", tostring(r), "\n") end
      io.stdout:flush()
      os.exit(status_of(ok, r))
    end
    if not pid then
      log("error", "fork failed: " .. tostring(err), { worker = i })
      s.due = gettime() + s.backoff
      return
    end
    pids[pid], s.pid, s.started, s.due = i, pid, gettime(), nil
    live = live + 1
    log("info", "worker started", { worker = i, pid = pid })
  end

  local function reap()
    while true do
      local pid, how, code = core.reap()
      if not pid then return end
      local i = pids[pid]
      if i then
        pids[pid], live = nil, live - 1
        local s = slots[i]
        s.pid = nil
        if how ~= "exit" or code ~= 0 then failed = true end
        if stopping then
          log("info", "worker done", { worker = i, pid = pid, [how] = code })
        else
          -- died on its own: restart it, later each time it dies young
          if gettime() - s.started >= STABLE then
            s.backoff, s.young, stable = BACKOFF_MIN, 0, true
          else
            if s.young == 0 then s.since = gettime() end
            s.young = s.young + 1
          end
          if crash_loop() then
            log("error", string.format("every worker died young, %d times or more in a row over %gs: giving up",
              GIVE_UP, SPAN),
              { worker = i, pid = pid, [how] = code })
            stopping, failed = true, true
            for _, t in ipairs(slots) do t.due = nil end
            for other in pairs(pids) do core.kill(other, "TERM") end
          else
            log("warn", string.format("worker died; restarting in %gs", s.backoff),
              { worker = i, pid = pid, [how] = code })
            s.due = gettime() + s.backoff
            s.backoff = math.min(s.backoff * 2, BACKOFF_MAX)
          end
        end
      end
    end
  end

  for i = 1, n do
    slots[i] = { backoff = BACKOFF_MIN, young = 0 }
    spawn(i)
  end
  while not (stopping and live == 0) do
    -- sleep until a signal or the next restart that is due
    local wait, next_due = -1, nil
    for _, s in ipairs(slots) do
      if s.due and (not next_due or s.due < next_due) then next_due = s.due end
    end
    if next_due then wait = math.max(0.001, next_due - gettime()) end
    local name = sigs:next(wait)
    if name == "CHLD" then
      reap()
    elseif name == "TERM" or name == "INT" or name == "HUP" then
      local pass = name
      if name ~= "HUP" and not stopping then
        stopping = true
        failed = false   -- from now on, what counts is how the workers end
        log("info", "SIG" .. name .. ": draining " .. live .. " workers")
        for _, s in ipairs(slots) do s.due = nil end
        -- the first stop goes on as TERM (drain): a terminal's Ctrl-C
        -- reached the workers too (the whole process group), and an INT
        -- from us after it would read as "Ctrl-C again: stop now". (The
        -- INT, sent first, is read first: signalfd gives the lowest first.)
        pass = "TERM"
      end
      for pid in pairs(pids) do core.kill(pid, pass) end
    end
    if not stopping then
      local now = gettime()
      for i, s in ipairs(slots) do
        if s.due and s.due <= now then spawn(i) end
      end
    end
  end
  sigs:close()
  log("info", "all workers done")
  return failed and 1 or 0
end

return M
