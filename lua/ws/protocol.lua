--- The WebSocket protocol state of one connection, with no I/O: reader
-- events (or bytes) in; messages, control events and bytes to send out;
-- the close handshake as explicit state; limits; keepalive and idle timers
-- as "when is the next one due" and "it fired at now". It never reads,
-- writes, waits or looks at a clock, so every close sequence can be tested
-- with bytes alone (spec/protocol_spec.lua), and every driver (the ws.loop
-- fast path, LuaSocket/LuaSec, other loops) shares it.
--
-- State: `state` is "open", "closing" (a close frame was sent or received,
-- TCP still up) or "closed" (the transport is gone: connection_lost).
-- `close_sent_code`, `close_sent_reason` and `close_rcvd_code`,
-- `close_rcvd_reason` are set once that close frame went out / came in
-- (code 1005: none given); `close_rcvd_then_sent`
-- says the peer closed first; `eof_sent` says we failed the connection and
-- asked for a half-close. `close_code` / `close_reason` are the outcome the
-- application sees: the peer's close, our failure code, or 1006 when TCP
-- ended without a close frame.
--
-- Outgoing bytes wait in a queue (q[qh..qt], the head written up to
-- qoff - 1); `written` counts items fully written, so an item's sequence
-- number (returned by push) tells when it is out. Items up to `qheld` were
-- handed to a write that must be retried with the same bytes (TLS): they
-- are neither dropped nor replaced.
-- @module ws.protocol
local core = require "ws.core"

local frame, close_payload, utf8_valid, new_table, new_reader =
  core.frame, core.close_payload, core.utf8_valid, core.new_table, core.new_reader
local concat, min = table.concat, math.min

local M = {}

--- Error tokens returned with nil for a connection failed for the peer's fault.
M.ERR = { [1002] = "protocol error", [1007] = "invalid utf-8", [1009] = "message too big" }
local ERR = M.ERR

local Protocol = {}
Protocol.__index = Protocol
M.Protocol = Protocol
-- (defaults every object reads until it sets its own)
Protocol.close_rcvd_then_sent, Protocol.eof_sent, Protocol.threshold, Protocol.qheld = false, false, 0, 0

---@class ws.protocol_opts
---@field role? "server"|"client" default "server"; a client masks what it sends
---@field max_message? integer bytes of one message (0 or nil: no limit)
---@field max_queue? integer bytes the queue may hold beyond what was written (nil: no limit)
---@field deflate? table permessage-deflate as negotiated (ws.deflate), or nil
---@field idle_timeout? number seconds of silence from the peer before failing with 1001
---@field ping_interval? number seconds between keepalive pings (nil: none)
---@field ping_timeout? number seconds a keepalive ping may wait for its pong (default 20)
---@field now? number the clock at the start (timers count from it; default 0)
---@field shared? boolean mt holds role, masked and the limits above already (a class
--- shared by every object made with these options): they are not copied into each

--- The state of a fresh, open connection. mt: the metatable of the
-- object (default: the protocol's own; connection.lua passes its class,
-- which inherits these methods). obj: the table to fill (default: a new
-- one); a driver passes one sized for its own fields too (core.new_table),
-- so the object is sized once.
---@param opts ws.protocol_opts
---@param mt? table
---@param obj? table
---@return table
function M.new(opts, mt, obj)
  opts = opts or {}
  local role = opts.role or "server"
  if role ~= "server" and role ~= "client" then error("role must be \"server\" or \"client\"", 2) end
  local now, deflate, interval = opts.now or 0, opts.deflate, opts.ping_interval
  -- permessage-deflate, when negotiated: RSV1 marks a compressed message;
  -- the reader inflates those (UTF-8 and max_message checked in C)
  local z = deflate and core.deflate(deflate)
  local self = obj or new_table(0, 32)
  -- (nil until set: close_sent_code/_reason, close_rcvd_code/_reason,
  -- close_code/_reason, deflate when not negotiated, pong_at (queue index
  -- of our latest pong), ping_sent (when the unanswered keepalive ping went out);
  -- from the class until set: close_rcvd_then_sent, eof_sent, threshold, qheld)
  if not opts.shared then
    self.role, self.masked = role, role == "client"
    self.max_message, self.max_queue = opts.max_message, opts.max_queue
    self.idle_timeout, self.ping_interval, self.ping_timeout = opts.idle_timeout, interval, opts.ping_timeout or 20
  end
  self.state = "open"
  self.reader = new_reader(role, opts.max_message or 0, z and 4 or 0, z)   -- (core.reader's options, as arguments: no table)
  if z then self.deflate, self.threshold, self.takeover = z, deflate.threshold or 0, not deflate.out_reset end
  self.q, self.qh, self.qt, self.qoff, self.qbytes, self.written = {}, 1, 0, 1, 0, 0
  self.last_seen, self.next_ping = now, interval and now + interval
  return setmetatable(self, mt or Protocol)
end

function Protocol:__tostring()
  return string.format("ws.protocol (%s %s)", self.role, self.state)
end

---- the send queue ------------------------------------------------------------

--- Queue encoded bytes; returns the item's sequence number (it is written
-- once self.written >= seq).
function Protocol:push(bytes)
  local t = self.qt + 1
  self.q[t], self.qt = bytes, t
  self.qbytes = self.qbytes + #bytes
  return t
end

--- The item to write next and the index of its first unwritten byte, or nil.
function Protocol:head()
  if self.qh > self.qt then return nil end
  return self.q[self.qh], self.qoff
end

--- Record a write of the head item up to index last (its whole length:
-- the item is done).
function Protocol:wrote(last)
  local h = self.qh
  local s = self.q[h]
  if last < #s then
    self.qoff = last + 1
    return
  end
  self.q[h], self.qh, self.qoff = nil, h + 1, 1
  self.qbytes = self.qbytes - #s
  self.written = self.written + 1
end

--- Record n bytes written from the head on, across items (empty items
-- on the way count as written). One loop without calls: once per write.
---@param n integer
function Protocol:wrote_bytes(n)
  local q, h, t, i = self.q, self.qh, self.qt, self.qoff
  local h0, freed = h, 0
  while h <= t do
    local len = #q[h]
    local left = len - i + 1
    if n < left then break end
    n, freed, i = n - left, freed + len, 1
    q[h], h = nil, h + 1
  end
  if h <= t then self.qoff = i + n else self.qoff = 1 end
  self.qh, self.qbytes, self.written = h, self.qbytes - freed, self.written + (h - h0)
end

--- Drop the queued items not started yet (a partly written head stays, so
-- the frames on the wire stay whole, and so do the items up to qheld;
-- busy: the driver is writing the head, keep it). Returns the sequence
-- number of the last item kept: items after it will never be written (and
-- their numbers go to the next items queued). With compression and context
-- takeover, a dropped message's bytes stay in our compressor's window,
-- which the peer's decompressor never sees: send_message then returns nil,
-- "closed" (a close, or fail, may still follow).
---@param busy? boolean
---@return integer
function Protocol:drop_unstarted(busy)
  local q, h = self.q, self.qh
  local keep = (busy or self.qoff > 1) and h <= self.qt and h or h - 1
  if self.qheld > keep then keep = min(self.qheld, self.qt) end
  if self.takeover and self.qt > keep then self.window_lost = true end
  for i = keep + 1, self.qt do
    self.qbytes = self.qbytes - #q[i]
    q[i] = nil
  end
  self.qt = keep
  if self.pong_at and self.pong_at > keep then self.pong_at = nil end
  return keep
end

--- Bytes queued and not yet written.
function Protocol:queued()
  return self.qbytes - (self.qoff - 1)
end

--- True when the queue holds more than max_queue bytes (the peer stopped
-- reading; the driver drops it).
function Protocol:queue_full()
  return self.max_queue ~= nil and self:queued() > self.max_queue
end

--- Everything queued, as one string, marked written (for tests and
-- blocking drivers); "" when nothing waits.
function Protocol:data_to_send()
  local h, t = self.qh, self.qt
  if h > t then return "" end
  local out = concat(self.q, "", h, t):sub(self.qoff)
  for i = h, t do self.q[i] = nil end
  self.written = self.written + (t - h + 1)
  self.qh, self.qoff, self.qbytes = t + 1, 1, 0
  return out
end

---- sending -------------------------------------------------------------------

--- A message's payload and RSV bits as they go on the wire: compressed
-- (RSV1, 4) when deflate is on and it reaches the threshold.
-- Returns data, rsv; or nil, "invalid utf-8" for text that is not UTF-8.
function Protocol:compress(data, kind)
  if self.deflate and #data >= self.threshold then
    if kind == "text" and not utf8_valid(data) then return nil, "invalid utf-8" end
    return self.deflate:compress(data), 4
  end
  return data, 0
end

--- One whole data frame (masked on the client side). rsv 0: data is the
-- message itself, and text must be UTF-8; otherwise data is compressed.
-- Returns bytes, or nil, "invalid utf-8".
function Protocol:encode(data, kind, rsv)
  if rsv == 0 and kind == "text" and not utf8_valid(data) then return nil, "invalid utf-8" end
  return frame(data, kind, true, self.masked, rsv)
end

--- Queue a message (kind "text" or "binary"; anything else is a
-- programmer's mistake, raised). Returns its sequence number, or nil,
-- "closed" / "invalid utf-8".
function Protocol:send_message(data, kind)
  if type(data) ~= "string" then error("bad argument #1 to 'send_message' (string expected)", 2) end
  if kind ~= "text" and kind ~= "binary" then
    error("bad argument #2 to 'send_message' (\"text\" or \"binary\" expected)", 2)
  end
  if self.state ~= "open" or self.window_lost then return nil, "closed" end
  local rsv
  data, rsv = self:compress(data, kind)
  if not data then return nil, rsv end
  local bytes, err = self:encode(data, kind, rsv)
  if not bytes then return nil, err end
  return self:push(bytes)
end

--- Queue a ping or pong (a payload of at most 125 bytes, RFC 6455 section
-- 5.5; a close goes through send_close). Returns its sequence number, or
-- nil, "closed"; anything else is a programmer's mistake, raised.
function Protocol:send_control(kind, data)
  if kind ~= "ping" and kind ~= "pong" then
    error("bad argument #1 to 'send_control' (\"ping\" or \"pong\" expected; close: send_close)", 2)
  end
  if data ~= nil and (type(data) ~= "string" or #data > 125) then
    error("bad argument #2 to 'send_control' (string of at most 125 bytes expected)", 2)
  end
  if self.state ~= "open" then return nil, "closed" end
  return self:push(frame(data or "", kind, true, self.masked))
end

-- Answer a ping. A pong still queued behind the head (not started) takes
-- the newer payload instead of a second pong joining it: RFC 6455 5.5.3
-- lets us answer only the latest ping, so a peer that floods pings and
-- reads nothing holds at most two pongs here, not one per ping.
function Protocol:pong(data)
  local bytes, i, q = frame(data, "pong", true, self.masked), self.pong_at, self.q
  if i and i > self.qh and i > self.qheld and i <= self.qt then
    self.qbytes = self.qbytes + #bytes - #q[i]
    q[i] = bytes
  else
    self.pong_at = self:push(bytes)
  end
end

-- Queue our close frame: the protocol is closing from now on.
local function queue_close(self, payload, code, reason)
  self.state = "closing"
  self.close_sent_code, self.close_sent_reason = code, reason
  return self:push(frame(payload, "close", true, self.masked))
end

--- Start the close handshake: queue a close frame with code (nil: none,
-- recorded as 1005) and reason. Returns its sequence number; nil, "closed"
-- when a close was already sent; nil, err for a code or reason that may
-- not be sent (1005, 1006, 1015, out of range; a reason over 123 bytes or
-- not UTF-8, or with no code).
function Protocol:send_close(code, reason)
  if self.close_sent_code or self.state == "closed" then return nil, "closed" end
  if code == nil and reason ~= nil and reason ~= "" then return nil, "a close reason needs a code" end
  local payload, err = close_payload(code, reason)
  if not payload then return nil, err end
  return queue_close(self, payload, code or 1005, code and reason or "")
end

--- Fail the connection (RFC 6455 section 7.1.7): queue a close frame with
-- code and reason unless one went out already, and ask the driver for a
-- half-close (eof_sent): it writes the queue, shuts down its sending side
-- and discards input until the peer closes TCP. Returns nil, token, code,
-- reason as receive() does (token: "protocol error", "invalid utf-8",
-- "invalid compressed data", "message too big", else "closed").
function Protocol:fail(code, reason)
  reason = reason or ""
  if self.state == "closed" then return nil, "closed", self.close_code, self.close_reason end
  if not self.close_sent_code then
    -- a reason that cannot be sent (too long, not UTF-8) is dropped, not the code
    queue_close(self, close_payload(code, reason) or close_payload(code), code, reason)
  end
  if not self.close_code then self.close_code, self.close_reason = code, reason end
  self.eof_sent = true
  -- (1007 for a compressed message that does not inflate says so)
  if reason == "invalid compressed data" then return nil, reason, code, reason end
  return nil, ERR[code] or "closed", code, reason
end

---- receiving -----------------------------------------------------------------

--- Bytes from the transport. now (optional) marks input activity for the
-- idle timer.
function Protocol:receive_data(bytes, now)
  if now then self.last_seen = now end
  -- (bytes still held when the transport went are of no use: dropped)
  if self.state == "closed" then return end
  self.reader:feed(bytes)
end

--- Input arrived at now (a driver reading in C calls this once per wait).
function Protocol:activity(now)
  self.last_seen = now
end

--- The next event from the bytes received so far (see Protocol:event);
-- nil when more input is needed.
function Protocol:next_event()
  if self.state == "closed" then return nil, "closed", self.close_code, self.close_reason end
  return self:event(self.reader:next())
end

--- Handle one result of reader:next() (kind, data, code, reason).
-- Returns one of:
--   data, "text"|"binary"       a message
--   false, "ping"|"pong", data  a control frame, handled (a ping's pong is queued)
--   nil, token, code, reason    the peer closed (token "closed"), or we failed
--                               the connection (see fail); the driver then
--                               writes the queue and does what transport() says
--   nil                         no event: the reader needs more input
-- A transport token from reader:next(fd) ("timeout", "closed", ...) is the
-- driver's to handle before calling this.
function Protocol:event(kind, data, code, reason)
  if self.close_rcvd_code or self.state == "closed" then
    -- nothing counts after the peer's close frame
    return nil, "closed", self.close_code, self.close_reason
  end
  if kind == "text" or kind == "binary" then
    return data, kind   -- (a compressed message comes out of the reader inflated)
  elseif kind == "ping" then
    -- answer while open; after our close frame nothing may follow it
    if self.state == "open" then self:pong(data) end
    return false, kind, data
  elseif kind == "pong" then
    self.ping_sent = nil
    return false, kind, data
  elseif kind == "close" then
    self.close_rcvd_code, self.close_rcvd_reason = code, reason
    if not self.close_code then self.close_code, self.close_reason = code, reason end
    if not self.close_sent_code then
      -- echo the code, as RFC 6455 section 5.5.1 asks; 1005 means "none given"
      self.close_rcvd_then_sent = true
      queue_close(self, code ~= 1005 and close_payload(code) or "", code, "")
    end
    return nil, "closed", code, reason
  elseif code then
    return self:fail(code, data)             -- the reader failed: data is the reason
  end
  return nil
end

--- The transport ended (the peer's EOF, an error, or the driver closed it,
-- giving code and reason for the record, as abort does). The outcome is
-- 1006 unless a close code was already known. Returns nil, "closed",
-- code, reason.
function Protocol:connection_lost(code, reason)
  if not self.close_code then self.close_code, self.close_reason = code or 1006, reason or "" end
  self.state = "closed"
  self.reader:close()
  -- zlib holds ~300 KiB per connection that Lua's GC cannot see: free it now
  if self.deflate then self.deflate:close() end
  local q = self.q
  for i = self.qh, self.qt do q[i] = nil end
  self.qh, self.qoff, self.qbytes = self.qt + 1, 1, 0
  return nil, "closed", self.close_code, self.close_reason
end

--- What the driver should do with the transport now, once the queue is
-- written:
--   nil         keep it open (open, or our close awaits the peer's)
--   "close"     close TCP (the server, after the close handshake)
--   "wait"      discard input until the peer closes TCP, briefly, then close
--               (the client after the handshake: the server closes first and
--               holds TIME_WAIT, RFC 6455 section 7.1.1)
--   "shutdown"  half-close, then as "wait" (after fail: closing with unread
--               input would send a RST that can destroy our close frame)
function Protocol:transport()
  if self.state == "closed" then return nil end
  if self.eof_sent then return "shutdown" end
  if self.close_sent_code and self.close_rcvd_code then
    return self.role == "client" and "wait" or "close"
  end
  return nil
end

---- timers --------------------------------------------------------------------

--- When the peer counts as idle (last input + idle_timeout), or nil (none, or
-- its close came).
function Protocol:idle_due()
  local t = self.idle_timeout
  -- (none once the peer's close came: it is not silent, the close
  -- handshake is under way or done)
  return t and not self.close_rcvd_code and self.last_seen + t or nil
end

--- Fail with 1001 if the peer has been silent past idle_timeout at now.
-- Returns false when not idle, else what fail returns.
function Protocol:idle(now)
  local due = self:idle_due()
  if not due or now < due or self.state == "closed" then return false end
  return self:fail(1001, "idle timeout")
end

--- When keepalive next needs attention, or nil (no keepalive, or no
-- longer open): the next ping, or the end of the wait for a pong if that
-- is sooner. (A driver that cannot cut its sleep short when the pong
-- comes still wakes at every interval.)
function Protocol:keepalive_due()
  if not self.ping_interval or self.state ~= "open" then return nil end
  local due = self.next_ping
  local sent = self.ping_sent
  if sent and sent + self.ping_timeout < due then due = sent + self.ping_timeout end
  return due
end

--- The keepalive timer fired at now. Returns true when a ping was queued,
-- false when nothing was to be sent, or what fail returns (1011) when the
-- last ping's pong is late.
function Protocol:keepalive(now)
  local due = self:keepalive_due()
  if not due or now < due then return false end
  local sent = self.ping_sent
  if sent and now >= sent + self.ping_timeout then return self:fail(1011, "keepalive ping timeout") end
  self.next_ping = now + self.ping_interval
  if sent then return false end          -- still waiting for its pong: no second ping
  self.ping_sent = now
  self:push(frame("", "ping", true, self.masked))
  return true
end

return M
