--- One WebSocket connection, server or client side: receive / send / ping /
-- close, the close handshake, automatic pongs, limits and keepalive.
--
-- Concurrency: one coroutine may receive while others send; sends are
-- queued whole, so frames of two sends never interleave.
local socket = require "socket"
local core = require "ws.core"
local loop = require "ws.loop"
local io_ = require "ws.io"

local gettime = socket.gettime
local frame, close_payload, utf8_valid, send_frame =
  core.frame, core.close_payload, core.utf8_valid, core.send_frame
local co_running = coroutine.running

local M = {}

M.defaults = {
  max_message = 1024 * 1024,       -- bytes; bigger messages are closed with 1009
  max_queue = 16 * 1024 * 1024,    -- bytes queued without a waiting sender (pongs, broadcast)
  send_timeout = 30,         -- seconds one send may wait for the peer to read
  close_timeout = 3,         -- seconds to wait for the peer's close frame
  idle_timeout = nil,        -- seconds of silence from the peer before closing (nil: never)
  ping_interval = nil,       -- seconds between keepalive pings (nil: none)
  ping_timeout = 20,         -- seconds a keepalive ping may wait for its pong
}

--- Every connection option, including those whose default is nil.
M.options = { "max_message", "max_queue", "send_timeout", "close_timeout",
              "idle_timeout", "ping_interval", "ping_timeout" }

-- Error tokens returned with nil for a close the peer caused.
local ERR = { [1002] = "protocol error", [1007] = "invalid utf-8", [1009] = "message too big" }

local Conn = {}
Conn.__index = Conn
Conn.__name = "ws.conn"

local function opt(opts, k)
  local v = opts[k]
  if v == nil then return M.defaults[k] end
  return v
end

--- Wrap an upgraded, non-blocking socket.
-- opts: role ("server"|"client"), buffered (bytes read past the handshake),
-- request, response, peer, protocol, on_pong, and the limits in M.defaults.
function M.new(sock, opts)
  local role = opts.role or "server"
  local z = opts.deflate and core.deflate(opts.deflate)
  local self = setmetatable({
    sock = sock,
    role = role,
    state = "open",
    request = opts.request,
    response = opts.response,
    peer = opts.peer,
    protocol = opts.protocol,
    on_pong = opts.on_pong,
    max_queue = opt(opts, "max_queue"),
    send_timeout = opt(opts, "send_timeout"),
    close_timeout = opt(opts, "close_timeout"),
    idle_timeout = opt(opts, "idle_timeout"),
    max_message = opt(opts, "max_message"),
    -- permessage-deflate, when negotiated: RSV1 marks a compressed message;
    -- the reader inflates those and send_frame compresses (one C call each)
    deflate = z,
    threshold = opts.deflate and opts.deflate.threshold or 0,
    reader = core.reader { role = role, max_message = opt(opts, "max_message"),
                           rsv_allowed = z and 4 or 0, deflate = z },
    masked = role == "client",
    -- send queue: strings q[qh..], first one sent up to qoff - 1
    q = {}, qh = 1, qt = 0, qoff = 1, qbytes = 0,
    written = 0,               -- queue items fully written so far
    waiters = {},              -- senders waiting for their item: { seq, co }
    last_seen = gettime(),
    burst = 0,                 -- messages received without waiting (see receive)
  }, Conn)
  sock:settimeout(0)
  -- plain TCP: read straight from the descriptor, and (server frames are
  -- unmasked) write header and payload with one gathered send
  local fd = io_.raw_fd(sock)
  self.rfd = fd
  self.wfd = role == "server" and fd or nil
  if opts.buffered and opts.buffered ~= "" then self.reader:feed(opts.buffered) end
  local interval = opt(opts, "ping_interval")
  if interval then
    local l = loop.current()
    if l then l:spawn(M.keepalive, self, l, interval, opt(opts, "ping_timeout")) end
  end
  return self
end

function Conn:__tostring()
  return string.format("ws.conn (%s %s): %s", self.role, self.state, self.peer or "?")
end

---- closing -------------------------------------------------------------------

-- Close the TCP connection once; wake everyone waiting on it.
local function shutdown(self)
  if self.sock_closed then return end
  self.sock_closed = true
  self.state = "closed"
  self.rfd, self.wfd = nil, nil
  local l = loop.current()
  if l then l:forget(self.sock) end
  self.sock:close()
  self.reader:close()
  -- zlib holds ~300 KiB per connection that Lua's GC cannot see: free it now
  if self.deflate then self.deflate:close() end
  self.q, self.qh, self.qt, self.qbytes = {}, 1, 0, 0
  local waiters = self.waiters
  self.waiters = {}
  for i = 1, #waiters do
    if l then l:wake(waiters[i][2], nil, "closed") end
  end
  if self.close_waiter and l then l:wake(self.close_waiter) end
  -- on_close hooks (rooms, pub/sub): once, whoever closed, in order added
  local hooks = self.close_hooks
  if hooks then
    self.close_hooks = nil
    if not self.close_code then self.close_code, self.close_reason = 1006, "" end
    for i = 1, #hooks do
      local ok, err = pcall(hooks[i], self, self.close_code, self.close_reason)
      if not ok then io.stderr:write("ws: on_close hook failed: ", tostring(err), "\n") end
    end
  end
end

--- Call fn(conn, code, reason) once when the connection is torn down,
-- whoever closed it (the peer, a limit, the server or this side). Hooks run
-- in the order added; one added after the close runs at once. Returns conn.
function Conn:on_close(fn)
  if type(fn) ~= "function" then error("bad argument #1 to 'on_close' (function expected)", 2) end
  if self.sock_closed then
    fn(self, self.close_code or 1006, self.close_reason or "")
    return self
  end
  local hooks = self.close_hooks or {}
  hooks[#hooks + 1] = fn
  self.close_hooks = hooks
  return self
end

--- Drop the connection at once, without a close handshake (as ws.terminate()).
function Conn:abort(code, reason)
  if not self.close_code then self.close_code, self.close_reason = code or 1006, reason or "" end
  shutdown(self)
end

---- sending -------------------------------------------------------------------

-- Write queued items until empty. Called by the one coroutine that holds
-- the "flushing" role; others wait for their item in self.waiters.
local function flush(self, deadline)
  local sock, q = self.sock, self.q
  while self.qh <= self.qt do
    local s = q[self.qh]
    local ok, err, last = io_.write(sock, s, self.qoff, deadline)
    if not ok then
      if last and last >= self.qoff then self.qoff = last + 1 end
      return nil, err
    end
    q[self.qh] = nil
    self.qh = self.qh + 1
    self.qoff = 1
    self.qbytes = self.qbytes - #s
    self.written = self.written + 1
    local w = self.waiters
    while w[1] and w[1][1] <= self.written do
      local co = table.remove(w, 1)[2]
      local l = loop.current()
      if l then l:wake(co, true) end
    end
  end
  return true
end

local function enqueue(self, s)
  local t = self.qt + 1
  self.q[t], self.qt = s, t
  self.qbytes = self.qbytes + #s
end

-- Take the flushing role, write the queue out, give the role back; a
-- failure drops the connection.
local function flush_as_owner(self, deadline)
  self.flushing = true
  local ok, err = flush(self, deadline)
  self.flushing = false
  if not ok then self:abort(1006, err == "timeout" and "send timeout" or err) end
  return ok, err
end

-- With nothing queued and nobody flushing, write s at once; queue what the
-- socket does not take. Returns true when all of s was written, false when
-- some of it waits in the queue, nil when the connection broke.
local function write_or_queue(self, s)
  if self.qh > self.qt and not self.flushing then
    local last, err, sent = self.sock:send(s)
    if last then return true end
    if err ~= "timeout" and err ~= "wantwrite" and err ~= "wantread" then
      self:abort(1006, err)
      return nil
    end
    enqueue(self, s)
    if sent and sent > 0 then self.qoff = sent + 1 end
    return false
  end
  enqueue(self, s)
  return false
end

-- Send one encoded frame, waiting (up to send_timeout) until it is written.
local function send_raw(self, s)
  if self.sock_closed then return nil, "closed" end
  local done = write_or_queue(self, s)
  if done then return true end
  if done == nil then return nil, "closed" end
  local seq = self.qt
  local deadline = self.send_timeout and gettime() + self.send_timeout
  if self.flushing then
    -- someone else is writing; wait until our item is out
    local l = loop.current()
    if not l then error("send from outside the loop while a send is in progress", 3) end
    local w = self.waiters
    w[#w + 1] = { seq, co_running() }
    local ok, err = l:suspend(deadline)
    if ok then return true end
    if err == "timeout" then self:abort(1006, "send timeout") end
    return nil, err == "timeout" and "timeout" or "closed"
  end
  local ok, err = flush_as_owner(self, deadline)
  if ok then return true end
  return nil, err == "timeout" and "timeout" or "closed"
end

-- Queue a frame without waiting (pongs, broadcast, keepalive); a background
-- task flushes it. A peer that lets its queue pass max_queue is dropped
-- (only bytes the socket would not take count, so an idle peer never is).
local function send_nowait(self, s)
  if self.sock_closed then return nil, "closed" end
  local done = write_or_queue(self, s)
  if done then return true end
  if done == nil then return nil, "closed" end
  if self.qbytes - (self.qoff - 1) > self.max_queue then
    self:abort(1008, "send queue full")
    return nil, "send queue full"
  end
  if not self.flushing then
    local deadline = self.send_timeout and gettime() + self.send_timeout
    local l = loop.current()
    if l then
      self.flushing = true   -- claimed now: later sends queue behind the task
      l:spawn(flush_as_owner, self, deadline)
    elseif not flush_as_owner(self, deadline) then
      return nil, "closed"
    end
  end
  return true
end

--- Send a message. kind is "text" (default; must be UTF-8) or "binary".
-- Returns true, or nil, err ("closed", "timeout", "invalid utf-8").
function Conn:send(data, kind)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2) end
  kind = kind or "text"
  if kind ~= "text" and kind ~= "binary" then error("bad argument #2 to 'send' (\"text\" or \"binary\" expected)", 2) end
  if self.state ~= "open" then return nil, "closed" end
  local z = self.deflate and #data >= self.threshold and self.deflate
  local fd = self.wfd
  if fd and self.qh > self.qt and not self.flushing then
    -- send_frame checks the UTF-8 of text itself (and compresses with z)
    local rest, err = send_frame(fd, data, kind, z or 0)
    if rest == true then return true end
    if not rest then
      if err == "invalid utf-8" then return nil, err end
      self:abort(1006, err)
      return nil, "closed"
    end
    return send_raw(self, rest)
  end
  if kind == "text" and not utf8_valid(data) then return nil, "invalid utf-8" end
  return send_raw(self, frame(data, kind, true, self.masked, z or 0))
end

--- Send an already encoded frame to this connection without waiting
-- (server:broadcast encodes once for all connections).
function Conn:send_encoded(bytes)
  if self.state ~= "open" then return nil, "closed" end
  return send_nowait(self, bytes)
end

local function control(self, kind, data)
  data = data or ""
  if type(data) ~= "string" then error("bad argument #1 to '" .. kind .. "' (string expected)", 3) end
  if #data > 125 then error("bad argument #1 to '" .. kind .. "' (at most 125 bytes)", 3) end
  if self.state ~= "open" then return nil, "closed" end
  return send_raw(self, frame(data, kind, true, self.masked))
end

--- Send a ping (at most 125 bytes). The pong goes to opts.on_pong.
function Conn:ping(data) return control(self, "ping", data) end

--- Send an unsolicited pong (at most 125 bytes).
function Conn:pong(data) return control(self, "pong", data) end

---- receiving -----------------------------------------------------------------

-- This coroutine, as recorded in self.receiver (the one reading the
-- connection); true stands for Lua 5.1's main thread, which has no name.
local function me() return co_running() or true end

-- Discard input until the peer closes TCP, for at most a second.
local function drain(self)
  local deadline = gettime() + math.min(self.close_timeout or 1, 1)
  repeat until not io_.read(self.sock, deadline)
end

-- Answer the peer's close and finish the connection.
local function peer_closed(self, code, reason)
  if not self.close_code then self.close_code, self.close_reason = code, reason end
  if self.state == "open" then
    self.state = "closing"
    -- echo the code, as RFC 6455 section 5.5.1 asks; 1005 means "none given"
    local payload = code ~= 1005 and close_payload(code) or ""
    send_raw(self, frame(payload, "close", true, self.masked))
  end
  if self.role == "client" and not self.sock_closed then
    -- let the server close TCP first so it holds TIME_WAIT (section 7.1.1)
    drain(self)
  end
  shutdown(self)
  return nil, "closed", code, reason
end

-- We fail the connection: send a close with code, then drop TCP.
local function fail(self, code, reason)
  if self.state == "open" then
    self.state = "closing"
    self.close_code, self.close_reason = code, reason
    local payload = close_payload(code, reason) or close_payload(code)
    -- bounded: a peer that does not read must not hold us
    local t = self.send_timeout
    self.send_timeout = math.min(t or 1, 1)
    send_raw(self, frame(payload, "close", true, self.masked))
    self.send_timeout = t
  end
  if not self.sock_closed and (not self.receiver or self.receiver == me()) then
    -- (only the receiving coroutine may read; another one just drops TCP)
    -- Closing a socket with unread bytes (e.g. the rest of a too-big
    -- message) makes the kernel send a RST, which can destroy our close
    -- frame before the peer reads it (it then sees 1006, not our code).
    -- Half-close (plain TCP) and discard what arrives until EOF, briefly.
    if self.sock.shutdown then self.sock:shutdown("send") end
    drain(self)
  end
  shutdown(self)
  return nil, ERR[code] or "closed", code, reason
end

-- Wait for input until deadline or the idle limit. Returns true, or the
-- results receive() should return.
local function wait_input(self, deadline, mode)
  local until_ = deadline
  local idle = self.idle_timeout and self.last_seen + self.idle_timeout
  if idle and (not until_ or idle < until_) then until_ = idle end
  self.burst = 0
  local ok, err = io_.wait(self.sock, mode or "r", until_)
  if ok then
    self.last_seen = gettime()
    return true
  end
  if err == "timeout" then
    if idle and until_ == idle then return fail(self, 1001, "idle timeout") end
    return nil, "timeout"
  end
  return nil, "closed", self.close_code, self.close_reason
end

-- The transport ended: a close frame never came.
local function lost(self)
  if not self.close_code then self.close_code, self.close_reason = 1006, "" end
  shutdown(self)
  return nil, "closed", self.close_code, self.close_reason
end

local function receive(self, deadline)
  local reader, sock = self.reader, self.sock
  while true do
    -- answering a ping (send queue full), on_pong, or another task may
    -- have dropped the connection meanwhile: its reader is closed then
    if self.sock_closed then return nil, "closed", self.close_code, self.close_reason end
    -- with a descriptor, next() reads from it once its input is used up
    -- (a compressed message comes out inflated and checked)
    local kind, data, code, reason = reader:next(self.rfd)
    if kind == "text" or kind == "binary" then
      -- a peer whose input never runs dry must not starve the other tasks:
      -- yield after 64 messages or about 1 MiB, whichever comes first
      local burst = self.burst + 1 + #data / 16384
      if burst >= 64 then
        burst = 0
        local l = loop.current()
        if l then l:yield() end
      end
      self.burst = burst
      return data, kind
    elseif kind == "ping" then
      if self.state == "open" then send_nowait(self, frame(data, "pong", true, self.masked)) end
    elseif kind == "pong" then
      self.awaiting_pong = nil
      if self.on_pong then self.on_pong(self, data) end
    elseif kind == "close" then
      return peer_closed(self, code, reason)
    elseif code then
      return fail(self, code, data)        -- data: reason, code: close code
    elseif self.rfd then
      if data ~= "timeout" then return lost(self) end
      local ok, err, c, r = wait_input(self, deadline)
      if not ok then return ok, err, c, r end
    else
      -- TLS: LuaSec decrypts what is there
      local chunk, err, partial = sock:receive(io_.CHUNK)
      chunk = chunk or partial
      if chunk and chunk ~= "" then
        reader:feed(chunk)
      elseif err ~= "timeout" and err ~= "wantread" and err ~= "wantwrite" then
        return lost(self)
      elseif not (sock.dirty and sock:dirty()) then
        local ok, werr, c, r = wait_input(self, deadline, err == "wantwrite" and "w" or "r")
        if not ok then return ok, werr, c, r end
      end
    end
  end
end

--- Receive one message.
-- Returns data, "text"|"binary"; or nil, "closed", code, reason once the
-- connection is closed (1006 if TCP dropped without a close frame); or
-- nil, "timeout" (the connection stays open); or nil, err, code, reason
-- when the peer broke the protocol (err: "protocol error", "invalid utf-8",
-- "message too big") and the connection was failed with that code.
function Conn:receive(timeout)
  if self.receiver then error("another coroutine is already receiving on this connection", 2) end
  if self.state == "closed" then return nil, "closed", self.close_code, self.close_reason end
  self.receiver = me()
  local a, b, c, d = receive(self, timeout and gettime() + timeout)
  self.receiver = nil
  return a, b, c, d
end

--- Iterator over incoming messages: for data, kind in conn:messages() do ... end
-- Ends when the connection closes or fails (see conn.close_code).
-- Not in a ws.loop task on PUC Lua 5.1, which cannot yield out of a for
-- iterator: use a while loop over conn:receive() there.
function Conn:messages(timeout)
  if loop.LUA51 and loop.current() then
    error("conn:messages() cannot wait inside a for loop on Lua 5.1: " ..
          "use `while true do local data, kind = conn:receive() if not data then break end ... end`", 2)
  end
  return function()
    local data, kind = self:receive(timeout)
    if data then return data, kind end
    return nil
  end
end

--- Close with code (default 1000) and reason, wait up to timeout
-- (default close_timeout) for the peer's close, then close TCP.
-- Returns true, peer_code, peer_reason; or nil, err.
function Conn:close(code, reason, timeout)
  if self.state == "closed" then return true, self.close_code, self.close_reason end
  if self.state == "open" then
    local payload, err = close_payload(code or 1000, reason)
    if not payload then error("bad argument to 'close' (" .. err .. ")", 2) end
    self.state = "closing"
    if not send_raw(self, frame(payload, "close", true, self.masked)) then
      shutdown(self)
      return nil, "closed"
    end
  end
  local deadline = gettime() + (timeout or self.close_timeout or 3)
  if self.receiver then
    -- the receiving coroutine will see the peer's close; wait for it
    local l = loop.current()
    if l and not self.sock_closed then
      self.close_waiter = co_running()
      l:suspend(deadline)
      self.close_waiter = nil
    end
  else
    self.receiver = me()
    while not self.sock_closed do
      local data, err = receive(self, deadline)
      if not data and err == "timeout" then break end
    end
    self.receiver = nil
  end
  shutdown(self)
  if not self.close_code then
    self.close_code, self.close_reason = 1006, ""
    return nil, "timeout"
  end
  return true, self.close_code, self.close_reason
end

Conn.__close = function(self) if self.state ~= "closed" then self:close() end end
Conn.__gc = function(self) if not self.sock_closed then self.sock_closed = true; self.sock:close() end end

---- keepalive -----------------------------------------------------------------

--- Task: ping every interval; drop a peer whose pong is late.
function M.keepalive(self, l, interval, timeout)
  while self.state == "open" do
    l:sleep(interval)
    if self.state ~= "open" then break end
    if self.awaiting_pong and gettime() - self.awaiting_pong >= timeout then
      fail(self, 1011, "keepalive ping timeout")
      break
    end
    if not self.awaiting_pong then
      self.awaiting_pong = gettime()
      send_nowait(self, frame("", "ping", true, self.masked))
    end
  end
end

return M
