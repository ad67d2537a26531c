--- One encoded frame to many connections (server:broadcast, hub:publish).
--
-- Connections whose send queue is empty (no writer, a descriptor ws.core can
-- write: plain TCP or our TLS) get the frame in one C call, one send each;
-- the others, and any that did not take all of it, have the (rest of the)
-- frame queued as conn:send_encoded would, so frames stay whole and in order
-- and max_queue (1008) holds as before.
-- @module ws.fanout
local core = require "ws.core"

local fanout = core.fanout

local M = {}

--- Send the encoded frame bytes to every open connection of the set
-- (conn -> true) but except, without waiting. Returns how many took it
-- (or have it queued).
---@param set table
---@param bytes string an encoded frame (core.frame)
---@param except? table a connection to leave out
---@return integer count
function M.send(set, bytes, except)
  -- nothing here has side effects until every frame is written or queued:
  -- a close hook run by a later step (teardown) may broadcast again and
  -- must find this frame ahead of its own in every queue
  local fds, fast, slow, m, s = {}, {}, {}, 0, 0
  for conn in pairs(set) do
    if conn ~= except and conn.state == "open" then
      local fd = conn.wfd
      if fd and not conn.writer and conn.qh > conn.qt then
        m = m + 1
        fds[m], fast[m] = fd, conn
      else
        s = s + 1
        slow[s] = conn
        conn:push(bytes)
      end
    end
  end
  local missed, list = 0, nil
  if m > 0 then missed, list = fanout(bytes, fds, m) end
  for k = 1, 2 * missed, 2 do
    local conn, sent = fast[list[k]], list[k + 1]
    conn:push(bytes)
    if sent > 0 then conn:wrote(sent) end
    s = s + 1
    slow[s] = conn
  end
  local n = m - missed
  for k = 1, s do
    if slow[k]:write_queued() then n = n + 1 end
  end
  return n
end

return M
