--- Name resolution and TCP connect that never block a loop.
-- Inside a task (ws.loop, or any scheduler: cqueues, copas, opts.sched),
-- getaddrinfo runs on a thread of its own (ws.core's resolver) while the
-- task waits on its eventfd like on a socket: a slow or dead DNS server
-- (5 s per try) holds that task alone, not every connection of the loop.
-- A numeric address is taken as it is, with no lookup and no thread; a
-- plain script (no loop) blocks, still within its deadline (the thread's
-- eventfd waited for in select); with no deadline it resolves in place.
--
--   local addrs, err = require("ws.resolve").resolve("example.com", socket.gettime() + 5)
--   -- { { family = "inet", addr = "93.184.215.14" }, ... } or nil, "resolve example.com: ..."
-- @module ws.resolve
local socket = require "socket"
local core = require "ws.core"
local loop = require "ws.loop"
local io_ = require "ws.io"

local gettime = socket.gettime

local M = {}

-- The scheduler to wait through: sched, else the running ws.loop (nil: block).
local function sched_of(sched)
  if sched == nil then return loop.current() end
  return sched or nil
end

local function done(l, r)
  if l then l:forget(r) end   -- (before close: the poller must drop its descriptor)
  r:close()
end

--- The addresses of host, in getaddrinfo's order (IPv4 and IPv6, one per
-- address; at most 16). Waits through sched (nil: the running ws.loop;
-- false: none) until deadline (absolute, as socket.gettime; nil: none); a
-- lookup the caller stops waiting for finishes on its thread and is then
-- dropped. Outside any scheduler it blocks, up to deadline.
---@param host string a name or a numeric IPv4 / IPv6 address
---@param deadline? number
---@param sched? table|false
---@return table|nil addrs `{ { family = "inet"|"inet6", addr = "numeric" }, ... }`
---@return string? err `"resolve HOST: why"` (getaddrinfo's reason, or `timeout`)
function M.resolve(host, deadline, sched)
  local addrs = core.resolve_numeric(host)
  if addrs then return addrs end
  local l = sched_of(sched)
  if not l and not deadline then return core.resolve_now(host) end
  local r, err = core.resolver(host)
  if not r then return nil, err end
  while true do
    local res, rerr = r:result()
    if res ~= false then
      done(l, r)
      return res, rerr
    end
    -- (the eventfd is readable once the answer is in: no busy loop)
    local ok, werr = io_.wait(r, "r", deadline, l or false)
    if not ok then
      done(l, r)
      return nil, "resolve " .. host .. ": " .. tostring(werr)
    end
  end
end

-- One address: a connected socket, or nil, err. A socket that cannot be
-- made (a kernel without IPv6: "address family not supported") is one
-- address failed, not the whole connect: an IPv4 one may follow.
local function try(a, port, due, l)
  local sock, err = (a.family == "inet6" and socket.tcp6 or socket.tcp4)()
  if not sock then return nil, err end
  sock:settimeout(0)
  local ok
  ok, err = sock:connect(a.addr, port)
  if not ok and err == "timeout" then
    ok, err = io_.wait(sock, "w", due, l or false)
    if ok then
      ok, err = sock:connect(a.addr, port)
      if err == "already connected" then ok = true end
    end
  end
  if ok then return sock end
  if l then l:forget(sock) end
  sock:close()
  return nil, err
end

--- A non-blocking LuaSocket TCP socket connected to host:port, or nil, err.
-- host is resolved as by resolve, then each address is tried in order until
-- one connects: every address but the last gets an equal share of the time
-- left, so one that never answers leaves time for the others. Waits as
-- resolve does (a plain script blocks, bounded by deadline).
---@param host string
---@param port integer
---@param deadline? number absolute
---@param sched? table|false
---@return table|nil sock
---@return string? err `"resolve HOST: ..."`, or the last address's connect error (`"timeout"`, `"connection refused"`, ...)
---@return string? stage `"resolve"` or `"connect"`: where it failed
function M.connect(host, port, deadline, sched)
  local addrs, err = M.resolve(host, deadline, sched)
  if not addrs then return nil, err, "resolve" end
  local l = sched_of(sched)
  for i, a in ipairs(addrs) do
    local left, due = #addrs - i + 1, deadline
    if deadline and left > 1 then due = gettime() + (deadline - gettime()) / left end
    local sock
    sock, err = try(a, port, due, l)
    if sock then return sock end
    if deadline and gettime() >= deadline then break end
  end
  return nil, err, "connect"
end

return M
