--- One encoded frame to many connections (server:broadcast, hub:publish).
--
-- A connection with an empty send queue, no writer and a descriptor
-- ws.core can write (plain TCP or our TLS) gets the frame queued and is
-- written by a flush task of its scheduler (which runs once the calling
-- task waits or yields), together with everything broadcast to it
-- meanwhile: one C call writes each such connection's frames with one send
-- (TLS: writes until no progress), so a burst of broadcasts costs one
-- system call and one wake-up of the peer per connection, not one per
-- frame. The other connections, and what a full socket did not take, go
-- through the connection's own queue writer (conn:write_queued), so frames
-- stay whole and in order and max_queue (1008) holds as for any send.
-- max_queue holds as frames are queued too: a caller that broadcasts many
-- frames without yielding does not grow a stalled member's queue past it.
-- @module ws.fanout
local core = require "ws.core"

local fanout, concat = core.fanout, table.concat

local M = {}

-- Per scheduler: the frames broadcast since its last flush, and the
-- connections waiting for it with the index of their first frame.
local batches = setmetatable({}, { __mode = "k" })

-- Task: write every waiting connection's frames, one C call per group of
-- connections that wait for the same frames (all of them, usually).
local function flush(b)
  local frames, nf, conns, firsts, nc = b.frames, b.nf, b.conns, b.firsts, b.nc
  b.frames, b.nf, b.conns, b.firsts, b.nc = {}, 0, {}, {}, 0
  local groups, slow, ns = {}, {}, 0
  for k = 1, nc do
    local conn, f = conns[k], firsts[k]
    conn.fanout_batch = nil
    if conn.state == "open" then
      -- its queue must be exactly frames f..nf, not started: else (another
      -- send wrote it or added to it meanwhile) its own writer does it
      local fd = not conn.masked and conn.rfd   -- (a client's frames must be masked each)
      local same = fd and not conn.writer and conn.qoff == 1 and conn.qt - conn.qh == nf - f
      for i = 0, same and nf - f or -1 do
        if conn.q[conn.qh + i] ~= frames[f + i] then same = false break end
      end
      if same then
        local g = groups[f]
        if not g then
          g = { fds = {}, conns = {}, n = 0 }
          groups[f] = g
        end
        local n = g.n + 1
        g.fds[n], g.conns[n], g.n = fd, conn, n
      else
        ns = ns + 1
        slow[ns] = conn
      end
    end
  end
  for f, g in pairs(groups) do
    local bytes = f == nf and frames[f] or concat(frames, "", f, nf)
    local missed, list = fanout(bytes, g.fds, g.n)
    local short = {}
    for k = 1, 2 * missed, 2 do short[list[k]] = list[k + 1] end
    for k = 1, g.n do
      local conn, sent = g.conns[k], short[k]
      conn:wrote_bytes(sent or #bytes)
      if sent then
        -- a TLS record cut short must be retried with the same bytes: the
        -- batch's items stay as they are until written (see qheld)
        if conn.qheld < conn.qt then conn.qheld = conn.qt end
        ns = ns + 1
        slow[ns] = conn
      end
    end
  end
  for k = 1, ns do slow[k]:write_queued() end
end

--- Send the encoded frame bytes to every open connection of the set
-- (conn -> true) but except, without waiting. Returns how many have it
-- queued (or written).
---@param set table
---@param bytes string an encoded frame (core.frame)
---@param except? table a connection to leave out
---@return integer count
function M.send(set, bytes, except)
  local n, slow, ns = 0, nil, 0
  local added = {}   -- batch -> the index of this frame in it
  for conn in pairs(set) do
    if conn ~= except and conn.state == "open" then
      conn:push(bytes)
      local b, sched = conn.fanout_batch, conn.sched
      -- (its queue was empty: this frame is its only item)
      local fresh = not b and sched and not conn.masked and conn.rfd and not conn.writer and conn.qh == conn.qt
      if fresh then
        b = batches[sched]
        if not b then
          b = { frames = {}, nf = 0, conns = {}, firsts = {}, nc = 0 }
          batches[sched] = b
        end
        if b.nc == 0 then sched:spawn(flush, b) end
      end
      -- (a batch is written only when the caller yields: a loop of
      -- broadcasts would grow it without bound, so past max_queue the
      -- connection takes the slow path, which writes what the socket takes
      -- now and drops it with 1008 if the rest is still too much)
      if b and (fresh or conn.qbytes <= conn.max_queue) then
        local i = added[b]
        if not i then
          i = b.nf + 1
          b.nf, b.frames[i], added[b] = i, bytes, i
        end
        if fresh then
          local c = b.nc + 1
          b.conns[c], b.firsts[c], b.nc = conn, i, c
          conn.fanout_batch = b
        end
        n = n + 1
      else
        slow = slow or {}
        ns = ns + 1
        slow[ns] = conn
      end
    end
  end
  for k = 1, ns do
    if slow[k]:write_queued() then n = n + 1 end
  end
  return n
end

return M
