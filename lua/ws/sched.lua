--- Which scheduler a ws.accept / ws.connect waits through, and sockets
-- handed over by another event loop.
--
-- A scheduler is an object with ws.loop's task methods: wait(sock, mode,
-- deadline), sleep(s), spawn(fn, ...), suspend(deadline), wake(co, ...),
-- yield() and forget(sock) (see ws.loop). ws.loop is one; ws.cqueues and
-- ws.copas provide one over their host loop.
local loop = require "ws.loop"

local M = {}

-- true when the running coroutine is one a cqueues controller runs
local function in_cqueues()
  local cq = package.loaded.cqueues
  return cq ~= nil and type(cq.running) == "function" and select(2, cq.running()) == true
end

-- true inside a coroutine when copas is loaded (copas resumes bare
-- coroutines: there is no way to ask it whether this one is its own)
local function in_copas()
  local co, main = coroutine.running()
  return package.loaded.copas ~= nil and co ~= nil and not main
end

--- The scheduler for a call: opts.sched if given, else the running ws.loop
-- task's loop, else the host loop running this coroutine (a cqueues
-- controller; copas, when it is loaded), else nil (a plain script: calls
-- block, bounded by their deadlines).
---@param opts? table
---@return table|nil
function M.current(opts)
  local s = opts and opts.sched
  if s then return s end
  s = loop.current()
  if s then return s end
  if in_cqueues() then return require("ws.cqueues").here() end
  if in_copas() then return require("ws.copas").sched end
  return nil
end

--- A socket lua-ws can drive, from what another loop handed over:
-- LuaSocket, LuaSec and ws.fd sockets as they are; a copas-wrapped socket's
-- inner socket; a cqueues socket or a luv TCP handle taken over (their
-- descriptor duplicated, their own handle closed; nothing may have been
-- read from them). Returns the socket, or nil, err.
---@param sock any
---@return any|nil, string|nil
function M.socket(sock)
  if type(sock) ~= "table" and type(sock) ~= "userdata" then
    error("bad argument #1 (socket expected, got " .. type(sock) .. ")", 3)
  end
  if sock.getfd or sock.getpeercertificate then return sock end
  if type(sock) == "table" and sock.socket then return sock.socket end   -- copas.wrap
  local fd
  if sock.pollfd and sock.xread then                     -- cqueues socket
    fd = sock:pollfd()
  elseif sock.fileno then                                -- luv TCP handle
    fd = sock:fileno()
  end
  if type(fd) ~= "number" then error("bad argument #1 (unsupported socket " .. tostring(sock) .. ")", 3) end
  local s, err = require("ws.core").adopt(fd)
  sock:close()
  return s, err
end

return M
