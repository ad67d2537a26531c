--- One WebSocket connection, server or client side: receive / send / ping /
-- close on a protocol object (ws.protocol: the close handshake, limits,
-- automatic pongs and timers, with no I/O) and a thin driver that moves its
-- bytes over a transport and waits through the connection's scheduler.
--
-- Transports: a plain TCP descriptor (the fast path: reader:next(fd) reads
-- and decodes in one C call, send_frame writes header and payload with one
-- gathered send), or a LuaSocket/LuaSec-style object (receive / send /
-- dirty) whose bytes are fed to the protocol.
--
-- Concurrency: one coroutine may receive while others send; sends are
-- queued whole, so frames of two sends never interleave. Queued frames go
-- out together (one gathered write), and sends made while more input is
-- buffered are corked into such a write (see CORK).
-- @module ws.connection
local socket = require "socket"
local core = require "ws.core"
local loop = require "ws.loop"
local io_ = require "ws.io"
local protocol = require "ws.protocol"
local logging = require "ws.log"

local gettime = socket.gettime
local send_frame, send_queue, frame, framebuf, new_table =
  core.send_frame, core.send_queue, core.frame, core.framebuf, core.new_table
local co_running = coroutine.running
local min = math.min

local M = {}

-- the limits' defaults and docs: the "connection" group of ws.options
M.defaults = require("ws.options").defaults("connection")

--- Every connection option, including those whose default is nil.
M.options = { "max_message", "max_queue", "send_timeout", "close_timeout",
              "idle_timeout", "ping_interval", "ping_timeout", "logger" }

-- A connection is a protocol object (its fields and methods) plus a transport.
local Conn = setmetatable({}, { __index = protocol.Protocol })
Conn.__index = Conn
Conn.__name = "ws.conn"
-- (state a connection holds only once used: until then it reads these)
Conn.waiters = false      -- senders waiting for their queue item: { seq, co }
Conn.fb = false           -- the corked frames' buffer (made at the first cork)
Conn.background = false   -- = receiver while a task reads for nobody (keepalive, closing)
Conn.serving = false      -- conn:serve's callback while the loop calls it (see Conn:readable)
Conn.raised = false       -- the error that callback raised, for the serving task to raise again

-- Corking (Conn:send): while the reader holds unread input, a send only
-- queues its frame (up to self.cork bytes: min(CORK, max_queue)); the
-- queue then goes out in one gathered write (write_some) when a send finds
-- no more input buffered, before the receiver waits for input, or at the
-- latest when the scheduler next runs its tasks (the uncork task, spawned
-- once per corked burst). With one message in flight nothing is buffered,
-- so every send still writes at once. Corked frames are encoded into the
-- connection's frame buffer (self.fb), not one Lua string each, and enter
-- the queue as one item (seal) before anything else does, so the order
-- on the wire is the order of the calls.
local CORK = 64 * 1024

local keepalive, keepalive_step, from_inbox, read_ready, uncork, handover

-- The corked frames, as one queue item (their bytes are counted in qbytes
-- already).
local function seal(self)
  local s = self.fb:take()
  if s then
    local t = self.qt + 1
    self.q[t], self.qt = s, t
  end
end

--- Queue encoded bytes after any corked frames; returns the item's
-- sequence number (Protocol:push, with seal).
function Conn:push(bytes)
  if self.corked then seal(self) end
  local t = self.qt + 1
  self.q[t], self.qt = bytes, t
  self.qbytes = self.qbytes + #bytes
  return t
end

--- Drop the queued items not started yet, corked frames too (see
-- Protocol:drop_unstarted).
function Conn:drop_unstarted(busy)
  if self.corked then seal(self) end
  return protocol.Protocol.drop_unstarted(self, busy)
end

-- The settings of connections made with opts, resolved with their
-- defaults, into t: what protocol.new takes, and send_timeout,
-- close_timeout, sched and log.
local function settings(t, opts)
  local d = M.defaults
  -- (the limits that may be false: false is kept, only nil takes the default)
  local idle, interval = opts.idle_timeout, opts.ping_interval
  if idle == nil then idle = d.idle_timeout end
  if interval == nil then interval = d.ping_interval end
  t.role = opts.role or "server"
  t.max_message, t.max_queue = opts.max_message or d.max_message, opts.max_queue or d.max_queue
  t.idle_timeout, t.ping_interval, t.ping_timeout = idle, interval, opts.ping_timeout or d.ping_timeout
  t.send_timeout = opts.send_timeout or d.send_timeout
  t.close_timeout = opts.close_timeout or d.close_timeout
  t.sched = opts.sched or loop.current()
  t.log = opts.log or logging.get(opts.logger)
  return t
end

--- A class for the connections made with these options (ws.server makes
-- one per entry point and passes it as opts.class with the same options):
-- it holds their settings, so each connection's own table holds only its
-- state: an idle server connection has 24 fields, 31 after its close
-- handshake, which fit 32 slots (768 bytes less per connection than 64; a
-- connection that gains more, a hub's on_close hook say, grows to 64).
function M.class(opts)
  local cls = settings({}, opts)
  cls.masked = cls.role == "client"
  cls.cork = cls.sched and min(CORK, cls.max_queue or CORK) or 0
  -- every method and default too, so that whatever a connection does not
  -- hold is found in one step (metamethods are read from cls itself)
  for k, v in pairs(protocol.Protocol) do cls[k] = v end
  for k, v in pairs(Conn) do cls[k] = v end
  cls.__index = cls
  return cls
end

--- Wrap an upgraded, non-blocking socket.
-- opts: role ("server"|"client"), buffered (bytes read past the handshake),
-- request, response, peer, protocol, on_pong, sched (the scheduler to wait
-- through; default: the ws.loop running this task, or none: block),
-- log (function(level, message, fields); default from opts.logger),
-- deflate (negotiated permessage-deflate), the limits in M.defaults, and
-- class (M.class of these same options: the settings come from it).
local popts = {}   -- protocol.new's options: filled per call, never kept (no table per connection)

function M.new(sock, opts)
  local p, cls = popts, opts.class
  -- (a class made in another scheduler's task does not hold this one's)
  if cls and cls.sched ~= (opts.sched or loop.current()) then cls = nil end
  if cls then
    -- (the settings are the class's: protocol.new reads only these of them)
    p.role, p.max_message, p.ping_interval = cls.role, cls.max_message, cls.ping_interval
  else
    settings(p, opts)
  end
  p.deflate, p.now, p.shared = opts.deflate, gettime(), cls ~= nil
  -- (sized for the fields it holds: never rehashed while open)
  local self = protocol.new(p, cls or Conn, new_table(0, cls and 32 or 64))
  if not cls then
    self.send_timeout, self.close_timeout = p.send_timeout, p.close_timeout
    self.sched, self.log = p.sched, p.log
  end
  p.deflate, p.sched, p.log = nil, nil, nil   -- (not held until the next call)
  self.sock = sock
  self.request, self.response = opts.request, opts.response
  self.peer, self.protocol, self.on_pong = opts.peer, opts.protocol, opts.on_pong
  -- (false, not nil, for fields read per message: a nil one would be
  -- looked up in the class too)
  self.writer = false        -- the coroutine writing the send queue (true: a task about to)
  self.receiver = false      -- the coroutine receiving (true: Lua 5.1's main thread)
  self.inbox = false         -- messages read while nobody received (see read_ready)
  self.burst = 0             -- messages received without waiting (see receive)
  self.clean = false         -- the last wake for reading was a clean epoll edge (see wait)
  self.dry = false           -- the input is used up, next() would say "timeout" (see receive)
  self.corked = false        -- an uncork task is due (see CORK)
  sock:settimeout(0)
  -- plain TCP or our TLS: read straight from the descriptor, and write a
  -- frame's header and payload (masked, for a client) in one C call
  local fd = io_.raw_fd(sock)
  self.rfd = fd   -- (a server's is where ws.fanout writes shared unmasked frames)
  -- sends cork (queue while input is buffered) with a descriptor to gather
  -- on and a scheduler to flush at the end of the round
  local cork = fd and self.sched and min(CORK, self.max_queue or CORK) or 0
  if not cls or cork ~= cls.cork then self.cork = cork end
  if opts.buffered and opts.buffered ~= "" then self:receive_data(opts.buffered) end
  local sched = self.sched
  -- (with no scheduler, receive's wait for input runs the keepalive: wait_input)
  if self.ping_interval and sched then
    -- a ws.loop timer until the first ping is due: a connection shorter
    -- than ping_interval never costs a keepalive task
    if sched.at then self.ping_timer = sched:at(self:keepalive_due(), keepalive, self)
    else sched:spawn(keepalive, self) end
  end
  return self
end

function Conn:__tostring()
  return string.format("ws.conn (%s %s): %s", self.role, self.state, self.peer or "?")
end

---- transport -----------------------------------------------------------------

-- Wait through the scheduler, or block in socket.select without one.
-- self.clean: the last wake for reading was a clean epoll edge (ws.loop's
-- wait returns true, true), which lets reader:next trust a short read.
local function wait(self, mode, deadline)
  local sched, ok, clean = self.sched
  if sched then ok, clean = sched:wait(self.sock, mode, deadline)
  else ok, clean = io_.wait(self.sock, mode, deadline, false) end
  if mode == "r" then self.clean = ok == true and clean == true end
  return ok, clean
end

-- Close the transport once (the protocol records code and reason, or
-- 1006); wake everyone waiting on the connection; run the on_close hooks.
local function teardown(self, code, reason)
  if self.state == "closed" then return end
  self:connection_lost(code, reason)
  self.rfd = nil
  local sched = self.sched
  if sched then sched:forget(self.sock) end
  self.sock:close()
  local waiters = self.waiters
  if waiters then self.waiters = false end
  if sched then
    for i = 1, waiters and #waiters or 0 do sched:wake(waiters[i][2], nil, "closed") end
    local closers = self.close_waiters
    if closers then
      self.close_waiters = nil
      for i = 1, #closers do sched:wake(closers[i]) end
    end
    if self.pinger then sched:wake(self.pinger) end
    if self.ping_timer then sched:cancel(self.ping_timer) end
  end
  -- on_close hooks (rooms, pub/sub): once, whoever closed, in order added
  local hooks = self.close_hooks
  if hooks then
    self.close_hooks = nil
    for i = 1, #hooks do
      local ok, err = loop.pcall(hooks[i], self, self.close_code, self.close_reason)   -- (it may wait, on 5.1 too)
      if not ok then self.log("error", "on_close hook failed: " .. tostring(err), { peer = self.peer }) end
    end
  end
end

--- Call fn(conn, code, reason) once when the connection is torn down,
-- whoever closed it (the peer, a limit, the server or this side). Hooks run
-- in the order added; one added after the close runs at once. Returns conn.
function Conn:on_close(fn)
  if type(fn) ~= "function" then error("bad argument #1 to 'on_close' (function expected)", 2) end
  if self.state == "closed" then
    fn(self, self.close_code, self.close_reason)
    return self
  end
  local hooks = self.close_hooks or {}
  hooks[#hooks + 1] = fn
  self.close_hooks = hooks
  return self
end

--- Drop the connection at once, without a close handshake (as ws.terminate()).
function Conn:abort(code, reason)
  teardown(self, code or 1006, reason or "")
end

--- The peer's TLS certificate while the connection is open: a table
-- (subject, issuer, names, not_before, not_after, sha256, verified), or
-- nil (plain TCP, LuaSec, none sent, closed). Read from OpenSSL at each
-- call: nothing is kept per connection.
function Conn:peer_certificate()
  local get = self.sock.peer_certificate
  if get then return get(self.sock) end
end

---- the writer ----------------------------------------------------------------

-- The send queue has one writer. Invariant: bytes reach the socket in
-- queue order, either from the coroutine in self.writer (which may wait),
-- or, while there is no writer, from a call that never waits (write_now;
-- send_frame, and only when the queue is empty); so frames never
-- interleave. Other senders wait in self.waiters for their item's seq.

-- What a write that came up short asks us to wait for (others: it failed).
local WANT = { timeout = "w", wantwrite = "w", wantread = "r" }

-- Write rounds in a row without progress after which the writer gives up
-- (as io.write): a transport that claims to be ready and is not must not spin.
local STALLS = io_.STALLS

-- One non-blocking write of the queue from its head. On a descriptor (plain
-- or our TLS) the queued frames go out together: one sendmsg, or TLS
-- records of up to 16 KiB, not one system call (and record) per frame.
-- Returns true (queue empty), or false, err, progressed.
local function write_some(self)
  local fd = self.rfd
  if fd then
    local n, err, held = send_queue(fd, self.q, self.qh, self.qt, self.qoff)
    self:wrote_bytes(n)
    if held and held > self.qheld then self.qheld = held end
    if not err then return true end
    return false, err, n > 0
  end
  local progressed = false
  while true do
    local s, i = self:head()
    if not s then return true end
    local last, err, sent = io_.send(self.sock, s, i)
    if not last then
      if sent and sent >= i then
        self:wrote(sent)
        progressed = true
      end
      return false, err, progressed
    end
    self:wrote(#s)
    progressed = true
  end
end

-- Write the queue until it is empty (or deadline); wake the senders whose
-- items went out. Returns nil, or the error that ends the writing.
local function write_all(self, deadline)
  local stalls = 0
  while true do
    -- (a wait woken by teardown finds the connection closed)
    if self.state == "closed" then return "closed" end
    local done, werr, progressed = write_some(self)
    local w = self.waiters
    while w and w[1] and w[1][1] <= self.written do
      local co = table.remove(w, 1)[2]
      self.sched:wake(co, true)
    end
    if done then return nil end
    stalls = progressed and 0 or stalls + 1
    local want = WANT[werr]
    if not want or stalls > STALLS then return want and "closed" or werr end
    local ok, e = wait(self, want, deadline)
    if not ok then return e end
  end
end

-- Become the writer and write the queue until it is empty (or deadline).
-- A failure drops the connection.
local function write_queue(self, deadline)
  assert(self.writer == false or self.writer == true, "two writers on one send queue")
  self.writer = co_running() or true
  -- (a wait that raises, in a coroutine the scheduler does not run, must
  -- not leave the queue claimed for good)
  local ok, err = loop.pcall(write_all, self, deadline)
  self.writer = false
  if not ok then error(err, 0) end
  if err then
    teardown(self, 1006, err == "timeout" and "send timeout" or err)
    return nil, err
  end
  return true
end

-- Wait until queue item seq is written (or deadline), writing the queue
-- ourselves when nobody else is. Returns true, or nil, "timeout" / "closed".
local function wait_written(self, seq, deadline)
  if self.state == "closed" then return nil, "closed" end
  if self.written >= seq then return true end
  if self.writer then
    local sched = self.sched
    if not sched then error("send from outside the loop while a send is in progress", 3) end
    local w = self.waiters
    if not w then w = {}; self.waiters = w end
    w[#w + 1] = { seq, co_running() }
    local ok, err = sched:suspend(deadline)
    if ok then return true end
    if err == "timeout" then teardown(self, 1006, "send timeout") end
    return nil, err == "timeout" and "timeout" or "closed"
  end
  local ok, err = write_queue(self, deadline)
  if ok then return true end
  return nil, err == "timeout" and "timeout" or "closed"
end

-- With no writer: write what the socket takes now, without waiting.
-- Returns true (queue empty), false (the rest waits), nil (connection broke).
local function write_now(self)
  assert(not self.writer, "write_now with a writer at work")
  local done, err = write_some(self)
  if done then return true end
  if not WANT[err] then
    teardown(self, 1006, err)
    return nil
  end
  return false
end

-- Wait until queue item seq is written: at once if the socket takes it
-- and nobody else is writing, else as the writer or behind it, for at most
-- timeout seconds (nil: no limit). Returns true, or nil, "timeout" / "closed".
local kick

local function flush(self, seq, timeout)
  if not self.writer then
    local empty = write_now(self)
    if empty then return true end
    if empty == nil then return nil, "closed" end
  end
  local sched = self.sched
  if sched and sched.in_task and not sched:in_task() then
    -- a call from outside the scheduler's tasks (a host loop's callback,
    -- another loop's coroutine, the main thread) cannot wait: a task
    -- writes the rest, as for a corked frame
    local ok, err = kick(self)
    if ok then return true end
    return nil, err == "send queue full" and "closed" or err
  end
  return wait_written(self, seq, timeout and gettime() + timeout)
end

-- Queue encoded bytes and wait (up to send_timeout) until they are written.
local function send_bytes(self, s)
  if self.state == "closed" then return nil, "closed" end
  return flush(self, self:push(s), self.send_timeout)
end

local settle

-- This coroutine, as recorded in self.receiver (the one reading the
-- connection); true stands for Lua 5.1's main thread, which has no name.
local function me() return co_running() or true end

-- The peer stopped reading (max_queue): drop what it has not started to
-- receive (a partly written head stays, so framing holds), fail with 1008
-- and let a task write the close frame for at most a second, half-close,
-- drain and close TCP, so the peer learns why without the caller waiting.
local function give_up(self)
  local keep = self:drop_unstarted(self.writer ~= false)
  local w, left = self.waiters or {}, {}
  for i = 1, #w do
    if w[i][1] > keep then self.sched:wake(w[i][2], nil, "closed") else left[#left + 1] = w[i] end
  end
  self.waiters = left
  self:fail(1008, "send queue full")
  if not self.sched then return settle(self) end
  -- the task reads for nobody (it drains) unless someone receives: a
  -- close() or receive() meanwhile waits for it
  if not self.receiver then self.receiver, self.background = "settle", "settle" end
  self.sched:spawn(function()
    if self.receiver == "settle" then self.receiver, self.background = me(), me() end
    settle(self)
    if self.receiver == self.background then self.receiver, self.background = false, false end
  end)
end

-- Have the queue written without waiting: what the socket takes now, the
-- rest by a task (or, with no scheduler, by this call). A peer that lets
-- the queue pass max_queue is dropped (only bytes the socket would not
-- take count, so an idle peer never is). Returns true, or nil, err.
function kick(self)
  if self.state == "closed" then return nil, "closed" end
  if not self.writer then
    local empty = write_now(self)
    if empty == nil then return nil, "closed" end
    if empty then return true end
  end
  if self:queue_full() then
    self.log("warn", "send queue full: closing with 1008", { peer = self.peer })
    give_up(self)
    return nil, "send queue full"
  end
  if self.writer then return true end
  local deadline = self.send_timeout and gettime() + self.send_timeout
  local sched = self.sched
  if sched then
    self.writer = true   -- claimed now: later sends queue behind the task
    sched:spawn(write_queue, self, deadline)
    return true
  end
  if not write_queue(self, deadline) then return nil, "closed" end
  return true
end

-- Write the corked frames now (the rest, if the socket is full, by a task).
local function flush_cork(self)
  if self.state ~= "closed" and not self.writer and self.qh <= self.qt then kick(self) end
end

function uncork(self)
  self.corked = false
  seal(self)
  flush_cork(self)
end

---- closing -------------------------------------------------------------------

-- Discard input until the peer closes TCP, for at most a second (also
-- while it keeps coming: a read that finds some never waits, nor times
-- out, nor lets the others run, so each is followed by a yield).
local function drain(self)
  local deadline = gettime() + min(self.close_timeout or 1, 1)
  local sock, sched = self.sock, self.sched or false
  repeat
    if not io_.read(sock, deadline, sched) then return end
    if sched then sched:yield() end
  until gettime() >= deadline
end

-- The protocol has closed or failed: write its close frame (bounded), do
-- what it asks of the transport, and return the results given.
function settle(self, a, b, c, d)
  if self.state == "closed" then return a, b, c, d end
  local failing = self.eof_sent
  -- a peer that does not read must not hold us past a second when we fail
  local t = self.send_timeout
  if failing then t = min(t or 1, self.close_timeout or 1, 1) end
  if self.qt > self.written and not flush(self, self.qt, t) then return a, b, c, d end
  local step = self:transport()
  -- (only the receiving coroutine may read; another one just drops TCP)
  if step and step ~= "close" and (not self.receiver or self.receiver == me()) then
    -- (reading for nobody, as read_ready: a close() or receive() meanwhile waits)
    local free = not self.receiver
    if free then self.receiver, self.background = me(), me() end
    if step == "shutdown" and self.sock.shutdown then self.sock:shutdown("send") end
    drain(self)
    if free then self.receiver, self.background = false, false end
  end
  if step then teardown(self) end
  return a, b, c, d
end

---- sending -------------------------------------------------------------------

--- Send a message. kind is "text" (default; must be UTF-8) or "binary".
-- Returns true once written (waiting up to send_timeout), or, while the
-- reader holds more input, once queued (corked: see CORK; a write that
-- fails later closes the connection, and the next call says "closed");
-- or nil, err ("closed", "timeout", "invalid utf-8").
---@param data string
---@param kind? "text"|"binary"
---@return true|nil, string|nil
function Conn:send(data, kind)
  if type(data) ~= "string" then error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2) end
  kind = kind or "text"
  if kind ~= "text" and kind ~= "binary" then error("bad argument #2 to 'send' (\"text\" or \"binary\" expected)", 2) end
  if self.state ~= "open" then return nil, "closed" end
  local z = self.deflate
  if z and #data < self.threshold then z = nil end
  -- (self:queued() and self:push(), inlined: once per message; the
  -- cheapest test first: with one message in flight the input is dry)
  if not self.dry and not self.writer and self.reader:pending() > 0 and self.cork > 0 and
     self.qbytes - self.qoff + 1 + #data < self.cork then
    -- corked: more input is already here, so the handler will be back
    -- soon with more to send; this frame goes out with those (see cork)
    -- (into the connection's frame buffer, no Lua string per frame: see seal)
    local fb = self.fb
    if not fb then
      fb = framebuf()
      self.fb = fb
    end
    local n = fb:add(data, kind, true, self.masked, z or 0, true)
    if not n then return nil, "invalid utf-8" end
    self.qbytes = self.qbytes + n
    if not self.corked then
      self.corked = true
      self.sched:spawn(uncork, self)
    end
    return true
  end
  if self.corked then seal(self) end   -- (this frame goes after those)
  local fd = self.rfd
  if fd and self.qh > self.qt and not self.writer then
    -- send_frame checks the UTF-8 of text itself (compresses with z, masks)
    local rest, err = send_frame(fd, data, kind, z or 0, self.masked)
    if rest == true then return true end
    if not rest then
      if err == "invalid utf-8" then return nil, err end
      teardown(self, 1006, err)
      return nil, "closed"
    end
    return send_bytes(self, rest)
  end
  -- queued (a writer at work) or no descriptor (LuaSec): one frame() call
  -- checks the UTF-8, compresses (RSV1) and masks
  local bytes = frame(data, kind, true, self.masked, z or 0, true)
  if not bytes then return nil, "invalid utf-8" end
  return send_bytes(self, bytes)
end

--- Send an already encoded frame to this connection without waiting
-- (server:broadcast encodes once for all connections).
function Conn:send_encoded(bytes)
  if self.state ~= "open" then return nil, "closed" end
  self:push(bytes)
  return kick(self)
end

--- Write what is queued without waiting: what the socket takes now, the
-- rest by a task; past max_queue the connection is dropped (1008). For
-- ws.fanout, which queues frames itself.
---@return true|nil ok
---@return string? err
Conn.write_queued = kick

local function control(self, kind, data)
  data = data or ""
  if type(data) ~= "string" then error("bad argument #1 to '" .. kind .. "' (string expected)", 3) end
  if #data > 125 then error("bad argument #1 to '" .. kind .. "' (at most 125 bytes)", 3) end
  local seq, err = self:send_control(kind, data)
  if not seq then return nil, err end
  return flush(self, seq, self.send_timeout)
end

--- Send a ping (at most 125 bytes). The pong goes to opts.on_pong.
function Conn:ping(data) return control(self, "ping", data) end

--- Send an unsolicited pong (at most 125 bytes).
function Conn:pong(data) return control(self, "pong", data) end

---- receiving -----------------------------------------------------------------

-- Wait for input until deadline or the idle limit (with no scheduler, also
-- until the keepalive is due). Returns true, or the results receive()
-- should return.
local function wait_input(self, deadline, mode)
  local until_ = deadline
  -- (self:idle_due() and self:activity(now), inlined: once per message)
  local t = self.idle_timeout
  local idle = t and not self.close_rcvd_code and self.last_seen + t
  if idle and (not until_ or idle < until_) then until_ = idle end
  self.burst = 0
  -- (wait(self, mode, until_), inlined: one frame less under a waiting
  -- connection, whose coroutine keeps the stack it grew)
  mode = mode or "r"
  local sched, ok, err, ping = self.sched
  if sched then ok, err = sched:wait(self.sock, mode, until_)
  else
    -- no scheduler, so no keepalive task (see M.new): this wait wakes for it
    local due = self.ping_interval and self:keepalive_due()
    if due and (not until_ or due < until_) then until_, ping = due, true end
    ok, err = io_.wait(self.sock, mode, until_, false)
  end
  if mode == "r" then self.clean = ok == true and err == true end
  if ok then
    self.last_seen = gettime()
    return true
  end
  if err == "timeout" then
    if ping then return keepalive_step(self) end   -- (true: go on waiting)
    if idle and until_ == idle then
      local r, e, c, d = self:idle(gettime())
      if r == nil then return settle(self, r, e, c, d) end
      return true                             -- (woken a hair early: go round)
    end
    return nil, "timeout"
  end
  return nil, "closed", self.close_code, self.close_reason
end

-- The transport ended: a close frame never came (1006), or it did and
-- this is the end the client waited for.
local function lost(self)
  -- a peer that half-closed (FIN) may still read: what is queued for it
  -- goes first (as a receive loop's send, done before it reads on; conn:serve
  -- and a corked send read on while answers wait)
  if self.corked then seal(self) end
  if self.qt > self.written and self.state ~= "closed" then flush(self, self.qt, self.send_timeout) end
  teardown(self)
  return nil, "closed", self.close_code, self.close_reason
end

-- A peer whose input never runs dry (messages or a ping flood) must not
-- starve the other tasks: yield after 64 frames or about 1 MiB, whichever
-- comes first. Returns true at such a yield (the end of a burst).
local function pace(self, bytes)
  local burst = self.burst + 1 + bytes / 16384
  if burst >= 64 then
    burst = 0
    if self.sched then self.sched:yield() end
  end
  self.burst = burst
  return burst == 0
end

-- Receive as self.receiver, starting with reader:next's results when
-- Conn:receive has them (data is never nil in those).
local function receive(self, deadline, kind, data, code, reason, dry)
  local reader = self.reader
  while true do
    -- answering a ping (send queue full), on_pong, or another task may
    -- have dropped the connection meanwhile: its reader is closed then
    if self.state == "closed" then return nil, "closed", self.close_code, self.close_reason end
    -- with a descriptor, next() reads from it once its input is used up
    -- (a compressed message comes out inflated and checked; self.clean:
    -- a short read since a clean edge is trusted, no read for EAGAIN)
    if not data then
      if self.dry then
        -- the last message used up a trusted short read: next() would only
        -- say "timeout" (reader:next's dry)
        self.dry = false
        data = "timeout"
      else
        kind, data, code, reason, dry = reader:next(self.rfd, self.clean)
      end
    end
    if kind == "text" or kind == "binary" then
      self.dry = dry == true
      -- (pace(self, #data), inlined: once per message)
      local burst = self.burst + 1 + #data / 16384
      if burst >= 64 then
        burst = 0
        if self.sched then self.sched:yield() end
      end
      self.burst = burst
      return data, kind
    elseif kind or code then                  -- a control frame, or the peer broke the protocol
      local burst_end = pace(self, 0)
      local a, b, c, d = self:event(kind, data, code, reason)
      if a == nil then return settle(self, a, b, c, d) end
      if b == "ping" then
        kick(self)                            -- the pong waits in the queue
      elseif self.on_pong then
        self.on_pong(self, c)
      end
      -- (input that never runs dry never reaches wait_input's deadline:
      -- a ping flood must not hold receive(timeout) past it)
      if burst_end and deadline and gettime() >= deadline then return nil, "timeout" end
    elseif data == "again" then
      -- next() read its share and the message is not whole yet: the
      -- others' turn first (a message in tiny pieces must not hold the loop,
      -- nor endless empty fragments receive(timeout))
      if self.sched then self.sched:yield() end
      if deadline and gettime() >= deadline then return nil, "timeout" end
    elseif self.rfd then
      -- (TLS may need to write to read on: "wantwrite")
      if data ~= "timeout" and data ~= "wantwrite" then return lost(self) end
      -- (a failed write closed the connection: the loop's top says so)
      if self.corked then seal(self) end
      if self.qh <= self.qt then flush_cork(self) end
      if self.state ~= "closed" then
        local ok, err, c, r = wait_input(self, deadline, data == "wantwrite" and "w" or "r")
        if not ok then return ok, err, c, r end
      end
    else
      -- a socket ws.core cannot read (LuaSec, a wrapper): its own receive
      -- (LuaSec decrypts what is there)
      local sock = self.sock
      local chunk, err = io_.receive(sock)
      if chunk then
        self:receive_data(chunk)
        -- (input that keeps coming with no event, as endless empty
        -- fragments, never waits: paced as frames, and the deadline checked)
        pace(self, #chunk)
        if deadline and gettime() >= deadline then return nil, "timeout" end
      elseif err ~= "timeout" and err ~= "wantread" and err ~= "wantwrite" then
        return lost(self)
      elseif not (sock.dirty and sock:dirty()) then
        local ok, werr, c, r = wait_input(self, deadline, err == "wantwrite" and "w" or "r")
        if not ok then return ok, werr, c, r end
      end
    end
    kind, data, code, reason = nil, nil, nil, nil
  end
end

-- The oldest message of the inbox (see read_ready).
function from_inbox(self)
  local ib = self.inbox
  local h = ib.h
  local data, kind = ib[h], ib[h + 1]
  ib[h], ib[h + 1], ib.h, ib.bytes = nil, nil, h + 2, ib.bytes - #data
  if ib.h > ib.t then self.inbox = false end
  return data, kind
end

-- At most this many messages wait in the inbox (and at most max_queue bytes).
local INBOX_MAX = 64

-- Nobody receives (a handler that only sends), yet pongs, pings and the
-- peer's close must be seen: the keepalive task reads what is there now,
-- never waiting, as the receiver. Messages go to an inbox that receive()
-- returns first, in order. A full inbox stops the reading (back-pressure:
-- TCP holds the rest, pongs too, so keepalive then fails with 1011).
-- receive() cannot start while this runs except where it waits (settle,
-- on_pong); it waits for self.receiver to clear there.
function read_ready(self)
  if self.receiver or self.state ~= "open" then return end
  local co = me()
  self.receiver, self.background = co, co
  self.dry = false   -- (what it reads, it reads until "timeout")
  local reader, sock, got = self.reader, self.sock, false
  local max_bytes = self.max_queue or math.huge
  -- (at most 64 control frames, or 16 reads as reader:next makes, a round:
  -- a peer that floods pings, or empty fragments, must not hold the loop;
  -- the rest waits for the next round, as in pace)
  local work = 0
  while self.state == "open" and work < 64 do
    local ib = self.inbox
    if ib and ((ib.t - ib.h + 1) / 2 >= INBOX_MAX or ib.bytes >= max_bytes) then break end
    local kind, data, code, reason = reader:next(self.rfd)
    if kind == "text" or kind == "binary" then
      if not ib then
        ib = { h = 1, t = 0, bytes = 0 }
        self.inbox = ib
      end
      local t = ib.t
      ib[t + 1], ib[t + 2], ib.t, ib.bytes = data, kind, t + 2, ib.bytes + #data
      got = true
    elseif kind or code then
      got, work = true, work + 1
      local a, b, c, d = self:event(kind, data, code, reason)
      if a == nil then
        settle(self, a, b, c, d)
        break
      end
      if b == "ping" then kick(self) elseif self.on_pong then self.on_pong(self, c) end
    elseif self.rfd then
      -- ("again": the rest at the next poll, or by a receiver; the end of
      -- input while answers are being written: a peer that half-closed may
      -- read them, the receiver or the next round finds the end again)
      if data ~= "timeout" and data ~= "wantwrite" and data ~= "again" and not self.writer then teardown(self) end
      break
    else
      local chunk, err = io_.receive(sock)
      if chunk then
        self:receive_data(chunk)
        got, work = true, work + 4
      elseif err ~= "timeout" and err ~= "wantread" and err ~= "wantwrite" then
        if not self.writer then teardown(self) end
        break
      elseif not (sock.dirty and sock:dirty()) then
        break
      end
    end
  end
  if got then self:activity(gettime()) end
  self.receiver, self.background = false, false
end

--- Receive one message.
-- Returns data, "text"|"binary"; or nil, "closed", code, reason once the
-- connection is closed (1006 if TCP dropped without a close frame); or
-- nil, "timeout" (the connection stays open); or nil, err, code, reason
-- when the peer broke the protocol (err: "protocol error", "invalid utf-8",
-- "message too big") and the connection was failed with that code.
function Conn:receive(timeout)
  if self.inbox then return from_inbox(self) end
  if self.receiver then
    if self.receiver ~= self.background then error("another coroutine is already receiving on this connection", 2) end
    -- a task reads for nobody (keepalive or a closing task; it waits only
    -- while it closes the connection or runs on_pong): wait until it lets go
    local deadline = timeout and gettime() + timeout
    while self.receiver do
      if deadline and gettime() >= deadline then return nil, "timeout" end
      self.sched:sleep(0.005)
    end
    if self.inbox then return from_inbox(self) end
  end
  if self.state == "closed" then return nil, "closed", self.close_code, self.close_reason end
  local a, b, c, d
  if not self.dry and self.burst > 0 then
    -- messages come without waiting (the last one did): the next may be
    -- here already, and then there is no more to do unless the burst
    -- yields (once per message; all else goes through receive)
    local kind, data, code, reason, dry = self.reader:next(self.rfd, self.clean)
    if kind == "text" or kind == "binary" then
      local burst = self.burst + 1 + #data / 16384
      if burst < 64 then
        self.dry, self.burst = dry == true, burst
        return data, kind
      end
    end
    self.receiver = co_running() or true   -- (me(), inlined)
    a, b, c, d = receive(self, timeout and gettime() + timeout, kind, data, code, reason, dry)
  else
    self.receiver = co_running() or true
    a, b, c, d = receive(self, timeout and gettime() + timeout)
  end
  self.receiver = false
  if a or c == nil then return a, b end   -- exactly data, kind (or nil, "timeout")
  return a, b, c, d
end

--- Iterator over incoming messages: for data, kind in conn:messages() do ... end
-- Ends when the connection closes or fails (see conn.close_code).
-- Not in a ws.loop task on PUC Lua 5.1, which cannot yield out of a for
-- iterator: use a while loop over conn:receive() there.
function Conn:messages(timeout)
  if loop.LUA51 and self.sched and co_running() then
    error("conn:messages() cannot wait inside a for loop on Lua 5.1: " ..
          "use `while true do local data, kind = conn:receive() if not data then break end ... end`", 2)
  end
  return function()
    local data, kind = self:receive(timeout)
    if data then return data, kind end
    return nil
  end
end

-- conn:serve's watch (ws.loop's watch): the loop calls it, in no task, on
-- each read edge. It hands every whole message to the callback until the
-- socket is drained, and leaves anything else (a control frame, the peer's
-- close, an error, a callback that raised, a long burst) to the serving
-- task: woken with that event, it takes the usual receive path.
function Conn:readable(clean)
  local fn = self.serving
  local reader, fd, n = self.reader, self.rfd, 0
  self.last_seen = gettime()   -- (self:activity(now), inlined)
  while true do
    if self.state ~= "open" or self.serving ~= fn then return handover(self, clean) end
    local kind, data, code, reason, dry = reader:next(fd, clean)
    if kind == "text" or kind == "binary" then
      self.dry = dry == true   -- (for send's cork test, while fn runs)
      local ok, err = pcall(fn, self, data, kind)
      self.dry = false
      -- (a field, not the wake's event: a callback that closed or aborted
      -- the connection first has woken the task with "closed" already)
      if not ok then self.raised = err; return handover(self, clean) end
      -- (answers wait for the socket: read no more here; the task's sends
      -- wait, so a peer that reads slower than it writes is paced by TCP)
      if self.writer then return handover(self, clean) end
      if dry == true then return end
      -- (a peer whose input never runs dry: the task reads it, in turns)
      n = n + 1 + #data / 16384
      if n >= 64 then return handover(self, clean) end
    elseif not kind and not code and data == "timeout" then
      -- drained: corked answers go out now, the next edge calls again
      if self.corked then seal(self) end
      if self.qh <= self.qt then flush_cork(self) end
      return
    else
      return handover(self, clean, { kind, data, code, reason })
    end
  end
end

-- The watch ended: the socket is being closed (teardown).
function Conn:forgotten()
  self.serving = false
  self.sched:wake(self.receiver, nil, "closed")
end

-- End a watch and wake the serving task with ev (nil: read as usual).
function handover(self, clean, ev)
  self.serving = false
  self.clean = clean == true
  local sched = self.sched
  sched:unwatch(self.sock, self)
  sched:wake(self.receiver, ev or true)
end

--- Call fn(conn, data, kind) for every message until the connection
-- closes; returns what receive() returns then (nil, "closed", code, reason,
-- or nil, err, code, reason for a peer that broke the protocol). On a
-- ws.loop the loop itself calls fn as each message comes (no switch to a
-- task per message): the fastest way to serve many small messages. fn must
-- not wait (no receive, no sleep); its sends never wait there (what the
-- socket does not take is queued and written by a task; a peer that lets
-- max_queue fill in one call is dropped with 1008). While answers wait to
-- be written the task reads on and calls fn, where sends wait: a peer that
-- writes faster than it reads is paced by TCP. An error in fn ends serve()
-- with that error (the server logs it and closes with 1011). Call it in the
-- connection's task, as receive().
---@param fn fun(conn: ws.Conn, data: string, kind: "text"|"binary")
---@return nil
---@return string err
---@return integer|nil code
---@return string|nil reason
function Conn:serve(fn)
  if type(fn) ~= "function" then error("bad argument #1 to 'serve' (function expected)", 2) end
  local sched = self.sched
  local watch = sched and sched.watch and sched.in_task and sched:in_task()
  while true do
    local a, b, c, d
    -- (while answers wait for the socket, no watch: the task waits for
    -- input and calls fn, whose sends wait, as a receive loop's)
    if watch and self.rfd and not self.inbox and not self.receiver and not self.writer and
       self.state == "open" then
      local co = co_running()
      self.receiver = co
      local kind, data, code, reason, dry
      if self.dry then
        self.dry, data = false, "timeout"   -- (the last read drained it)
      else
        kind, data, code, reason, dry = self.reader:next(self.rfd, self.clean)
      end
      if not kind and not code and data == "timeout" then
        if self.corked then seal(self) end
        if self.qh <= self.qt then flush_cork(self) end
        -- drained: the loop hands the next messages to fn (readable)
        -- until something needs this task; it wakes us with that
        data = nil
        if self.state == "open" and not sched:watch(self.sock, self) then
          self.serving, self.burst = fn, 0
          local ev, err = sched:suspend(self:idle_due())
          if self.serving then   -- (the idle deadline)
            self.serving = false
            sched:unwatch(self.sock, self)
          end
          local raised = self.raised
          if raised then
            self.raised, self.receiver = false, false
            error(raised, 0)
          end
          if type(ev) == "table" then
            kind, data, code, reason = ev[1], ev[2], ev[3], ev[4]
          elseif ev == nil and err == "timeout" then
            data = "timeout"   -- (receive checks the idle limit, then waits)
          end
        else
          -- an edge came: read again, to EAGAIN (not trusting the last
          -- short read, which came before it)
          sched:unwatch(self.sock, self)
          self.clean = false
        end
      end
      if kind == "text" or kind == "binary" then
        self.dry = dry == true
        pace(self, #data)   -- (read here while input keeps coming: in turns)
        a, b = data, kind
      else
        a, b, c, d = receive(self, nil, kind, data, code, reason, dry)
      end
      self.receiver = false
    else
      a, b, c, d = self:receive()
    end
    if a == nil then return a, b, c, d end
    fn(self, a, b)
  end
end

-- Read (as self.receiver) until the connection is closed or deadline,
-- for nobody: a receive() meanwhile waits for it, then says "closed".
local function read_until_closed(self, deadline)
  local co = me()   -- (inside the pcall: on Lua 5.1 that is another coroutine)
  self.receiver, self.background = co, co
  while self.state ~= "closed" do
    local data, err = receive(self, deadline)
    -- (messages without end must not hold a close past its deadline)
    if not data and err == "timeout" or data and gettime() >= deadline then return end
  end
end

local await_close

-- What close() returns once the connection is closed: the peer's close,
-- or nil, "closed", 1006 (TCP ended without one) or the code we failed with.
local function closed(self)
  if self.close_rcvd_code then return true, self.close_code, self.close_reason end
  return nil, "closed", self.close_code, self.close_reason
end

--- Close with code (default 1000) and reason: write the close frame and
-- wait for the peer's, together at most timeout (default close_timeout;
-- the write also at most send_timeout), then close TCP.
-- Returns true, peer_code, peer_reason; or nil, "closed", code, reason
-- when no close came from the peer (1006: TCP ended, or the frame could not
-- be written in time); or nil, "timeout" (then closed with 1006). Called
-- from outside the tasks of the connection's scheduler (a host loop's
-- callback, the main thread), which cannot wait, it queues the close frame
-- and returns true at once: a task finishes the handshake (see on_close,
-- close_code).
function Conn:close(code, reason, timeout)
  if self.state == "closed" then return closed(self) end
  local sched = self.sched
  local outside = sched and sched.in_task and not sched:in_task()
  local limit = timeout or self.close_timeout or 3
  local deadline = gettime() + limit
  if self.state == "open" then
    local seq, err = self:send_close(code or 1000, reason)
    if not seq then error("bad argument to 'close' (" .. err .. ")", 2) end
    if outside then
      kick(self)
    -- (a peer that does not read holds the close frame behind what is
    -- queued: that wait counts against close's timeout too)
    elseif not flush(self, seq, min(self.send_timeout or limit, limit)) then
      teardown(self)
      return closed(self)
    end
  end
  if outside then
    -- (the write failed, or the queue was full: closed already)
    if self.state == "closed" then return closed(self) end
    -- (a task of its own finishes: not close() again, which would ask the
    -- scheduler once more whether it runs in a task)
    sched:spawn(await_close, self, deadline)
    return true
  end
  return await_close(self, deadline)
end

-- The rest of close(), in a task: wait until deadline for the peer's
-- close, then close TCP; returns what close() does.
function await_close(self, deadline)
  local sched = self.sched
  if self.receiver then
    -- the receiving coroutine will see the peer's close; wait for it
    -- (teardown wakes every close() waiting so)
    if sched and self.state ~= "closed" then
      local closers = self.close_waiters or {}
      closers[#closers + 1] = co_running()
      self.close_waiters = closers
      sched:suspend(deadline)
    end
  else
    -- (a wait that raises must not leave the connection claimed for good)
    local ok, err = loop.pcall(read_until_closed, self, deadline)
    self.receiver, self.background = false, false
    if not ok then error(err, 0) end
  end
  -- (a close code is known once the peer's close came, or TCP ended)
  local over = self.close_code ~= nil
  teardown(self)
  if not over then return nil, "timeout" end
  return closed(self)
end

Conn.__close = function(self) if self.state ~= "closed" then self:close() end end
-- (a collected, never closed connection: the scheduler's state for its
-- descriptor goes too; nothing here may yield or raise)
Conn.__gc = function(self)
  if self.state == "closed" then return end
  local sched = self.sched
  if sched then pcall(sched.forget, sched, self.sock) end
  pcall(self.sock.close, self.sock)
end

---- keepalive -----------------------------------------------------------------

-- Task: wake when the protocol's keepalive timer is due; ping, or fail a
-- peer whose pong is late (1011).
function keepalive(self)
  local sched = self.sched
  self.ping_timer = nil
  local step = 0.01
  while true do
    local due = self:keepalive_due()
    if not due then return end
    -- nobody receives while a ping waits for its pong: read what is there
    -- now and then (every 10 ms, backing off to every 0.5 s)
    local now = gettime()
    if self.ping_sent and not self.receiver then
      due = min(due, now + step)
      step = min(step * 2, 0.5)
    else
      step = 0.01
    end
    -- suspended, not asleep: teardown wakes us, so a closed connection is
    -- not held (reader, buffers) until its next ping was due
    if due > now then
      self.pinger = co_running()
      sched:suspend(due)
      self.pinger = nil
    end
    read_ready(self)
    if not keepalive_step(self) then return end
  end
end

-- The keepalive timer fired: write a ping, or fail a peer whose pong is
-- late (1011). Returns true, or (the connection failed) what settle does.
function keepalive_step(self)
  local r, err, code, reason = self:keepalive(gettime())
  if r then
    kick(self)
  elseif r == nil then
    self.log("info", "keepalive ping timeout", { peer = self.peer, code = code })
    return settle(self, r, err, code, reason)
  end
  return true
end

return M
