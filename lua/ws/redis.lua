--- A Redis (RESP2) client that never blocks a ws.loop: commands from any
-- number of tasks are pipelined on one connection and their writes
-- coalesced (everything queued during one loop round goes out in one
-- write); a reader task hands each reply to the task waiting for it.
--
--   local redis = require "ws.redis"
--   local r = assert(redis.connect("redis://:secret@127.0.0.1:6379/2", { loop = l }))
--   local v, err = r:call("GET", "key")      -- inside a task of l
--
-- Expected failures are nil, err: an error reply ("ERR ..."), "timeout",
-- "closed", "connection refused". A nil reply is redis.null.
-- @module ws.redis
local socket = require "socket"
local resp = require "ws.resp"
local io_ = require "ws.io"
local resolve = require "ws.resolve"

local gettime = socket.gettime

local M = {}

M.null = resp.null
M.is_error = resp.is_error

M.defaults = {
  timeout = 5,            -- seconds for connecting, and for each command's reply
  max_pending = 100000,   -- commands written or queued but not answered; more fail with "busy"
  max_buffer = 64 * 1024 * 1024,   -- bytes of commands not yet written; more fail with "busy"
}

--- Parse "redis://[[user]:password@]host[:port][/db]" or
-- "unix://path[?db=N]" (password there as "unix://:password@/path").
-- Returns { host, port, path, password, user, db } or nil, err.
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "redis url must be a string" end
  local scheme, rest = url:match("^(%a+)://(.*)$")
  if not scheme then return nil, "bad redis url: " .. url end
  local t = { db = 0 }
  -- (the last "@": a password may hold one; %XX in user and password decoded)
  local auth, tail = rest:match("^(.*)@([^@]*)$")
  if auth then
    rest = tail
    local function dec(s) return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
    local user, pass = auth:match("^(.-):(.*)$")
    if user then t.user, t.password = user ~= "" and dec(user) or nil, dec(pass) else t.password = dec(auth) end
  end
  if scheme == "unix" then
    local path, db = rest:match("^([^?]+)%?db=(%d+)$")
    t.path, t.db = path or rest, tonumber(db) or 0
    if t.path == "" then return nil, "bad redis url: " .. url end
  elseif scheme == "redis" then
    local host, port, db
    if rest:sub(1, 1) == "[" then
      host, rest = rest:match("^%[([^%]]+)%](.*)$")
      if not host then return nil, "bad redis url: " .. url end
    else
      host, rest = rest:match("^([^:/]*)(.*)$")
    end
    port, db = rest:match("^:?(%d*)/?(%d*)$")
    if not port then return nil, "bad redis url: " .. url end
    t.host = host ~= "" and host or "127.0.0.1"
    t.port = tonumber(port) or 6379
    t.db = tonumber(db) or 0
  else
    return nil, "bad redis url scheme: " .. scheme
  end
  return t
end

local Client = {}
Client.__index = Client

-- Connect without blocking: TCP or a Unix socket.
local function open(l, t, deadline)
  local sock, err
  if t.path then
    local ok, unix = pcall(require, "socket.unix")
    if not ok then return nil, "unix sockets need LuaSocket's socket.unix" end
    sock, err = unix()
    if not sock then return nil, err end
    -- connect on a Unix socket does not wait: it succeeds or fails now
    local ok2, cerr = sock:connect(t.path)
    if not ok2 then sock:close(); return nil, cerr end
    sock:settimeout(0)
    return sock
  end
  -- (the name is resolved off the loop's thread: a dead DNS server holds
  -- this connect alone, not every connection of the loop)
  local stage
  sock, err, stage = resolve.connect(t.host, t.port, deadline, l)
  if not sock then return nil, stage == "connect" and err == "timeout" and "connect timeout" or err end
  sock:setoption("tcp-nodelay", true)
  return sock
end

--- Connect to url (see parse_url) and send AUTH and SELECT. Must be called
-- from a task of opts.loop; a host name is looked up off the loop's thread
-- (ws.resolve), so a slow DNS server holds this task alone. opts: loop (required), timeout, max_pending, max_buffer,
-- max_reply (bytes of one reply, see ws.resp; larger: the connection is
-- dropped), max_unanswered (bytes of commands queued or sent and not answered yet past
-- which another fails with "busy", unless none waits or it is under 1 KiB;
-- nil: no limit),
-- subscriber (true: a pub/sub connection; pushes go to on_push),
-- on_push(reply), on_messages(channels, payloads, n) (subscriber: the n
-- "message" pushes parsed from one read, in two arrays reused after the
-- call; without it they go to on_push), on_close(err) (once, when the
-- connection is lost or closed).
-- Returns a client or nil, err.
function M.connect(url, opts)
  opts = opts or {}
  local l = opts.loop
  if not l then error("ws.redis.connect: option 'loop' is required", 2) end
  local t, err = M.parse_url(url)
  if not t then return nil, err end
  local timeout = opts.timeout or M.defaults.timeout
  local sock, oerr = open(l, t, gettime() + timeout)
  if not sock then return nil, oerr end
  local self = setmetatable({
    loop = l, sock = sock, parser = resp.parser(opts.max_reply),
    timeout = timeout, max_pending = opts.max_pending or M.defaults.max_pending,
    max_buffer = opts.max_buffer or M.defaults.max_buffer,
    max_unanswered = opts.max_unanswered, unanswered = 0, sizes = {},   -- sizes: fifo index -> bytes
    subscriber = opts.subscriber, on_push = opts.on_push, on_messages = opts.on_messages,
    on_close = opts.on_close,
    out = {}, nout = 0, outbytes = 0,   -- encoded commands not yet written
    fifo = {}, head = 1, tail = 0,   -- one entry per command awaiting a reply
    open = true, writing = false,
    sent = 0,                  -- fifo index of the last command handed to the socket
  }, Client)
  l:spawn(Client.reader, self)
  local ok, aerr = true, nil
  if t.password then
    if t.user then ok, aerr = self:call("AUTH", t.user, t.password)
    else ok, aerr = self:call("AUTH", t.password) end
  end
  if ok and t.db ~= 0 then ok, aerr = self:call("SELECT", t.db) end
  if not ok then
    self:close()
    return nil, aerr
  end
  return self
end

-- Deliver a reply (or a failure) to whoever waits for it: a fifo entry is
-- a task's { co, done } (call), a push command's { pushes, cb }, send's
-- callback, or true (send, no callback).
local function settle(self, e, ok, v)
  local te = type(e)
  if te == "table" and e.pushes then
    if e.cb then
      local pok, err = pcall(e.cb, ok, v)
      if not pok then io.stderr:write("ws.redis: callback failed: ", tostring(err), "\n") end
    elseif not ok and self.open then
      -- (refused, and nobody asked to know: NOAUTH, NOPERM, maxclients)
      self:close(v)
    end
  elseif te == "table" then
    if e.done then return end   -- (its call timed out)
    e.done = true
    self.loop:wake(e.co, ok, v)
  elseif te == "function" then
    local pok, err = pcall(e, ok, v)
    if not pok then io.stderr:write("ws.redis: callback failed: ", tostring(err), "\n") end
  end
end

--- Close the connection; every command awaiting a reply fails with err
-- (default "closed"), or with "not sent" if it was never written (so it
-- did not reach Redis). Calls on_close(err) once.
function Client:close(err)
  if not self.open then return end
  self.open = false
  err = err or "closed"
  self.loop:forget(self.sock)
  self.sock:close()
  local fifo = self.fifo
  for i = self.head, self.tail do
    local e = fifo[i]
    fifo[i] = nil
    if e then settle(self, e, nil, i <= self.sent and err or "not sent") end
  end
  self.head, self.tail, self.sent = 1, 0, 0
  self.sizes, self.unanswered = {}, 0
  self.out, self.nout, self.outbytes = {}, 0, 0
  if self.on_close then self.on_close(err) end
end

-- Push messages on a subscriber connection: message, subscribe, unsubscribe.
local PUSH = { message = true, subscribe = true, unsubscribe = true,
  pmessage = true, psubscribe = true, punsubscribe = true }

-- Take the oldest command waiting off the fifo.
local function pop(self)
  local h = self.head
  local e = self.fifo[h]
  self.fifo[h], self.head = nil, h + 1
  local size = self.sizes[h]
  if size then self.sizes[h], self.unanswered = nil, self.unanswered - size end
  return e
end

-- A reply that is not a message push: a push (on_push; a subscribe or
-- unsubscribe push answers, one channel each, the push command at the head),
-- or the answer to the oldest command waiting (an error for a push command
-- too: Redis refused it whole). Returns false when the stream is out of step.
local function reply(self, v)
  local e = self.fifo[self.head]
  if self.subscriber and type(v) == "table" and v.n and PUSH[v[1]] then
    if type(e) == "table" and e.pushes and (v[1] == "subscribe" or v[1] == "unsubscribe") then
      e.pushes = e.pushes - 1
      if e.pushes == 0 then settle(self, pop(self), true) end
    end
    if self.on_push then self.on_push(v) end
    return true
  end
  if not e then return false end
  pop(self)
  if resp.is_error(v) then settle(self, e, nil, v.message) else settle(self, e, true, v) end
  return true
end

-- Hand the message pushes parsed from one read to on_messages at once.
local function flush_messages(self, chans, datas, n)
  if n == 0 then return end
  self.on_messages(chans, datas, n)
  for i = 1, n do chans[i], datas[i] = nil, nil end
end

local BURST = 64 * 1024   -- bytes read in a row past which the reader lets the loop go round

function Client:reader()
  local parser, sock = self.parser, self.sock
  -- subscriber with on_messages: the messages of one read go in one call,
  -- in these arrays (reused), other replies in between keep their place
  local batch = self.subscriber and self.on_messages
  local chans, datas, n = {}, {}, 0
  local got = 0   -- bytes read since the loop last went round
  while self.open do
    local data, err = io_.read(sock)
    if not data then return self:close(err == "closed" and "connection lost" or err) end
    parser:feed(data)
    got = got + #data
    while true do
      local ok, v, payload
      if batch then ok, v, payload = parser:next_message() else ok, v = parser:next() end
      if ok == nil then break end
      if ok == false then
        flush_messages(self, chans, datas, n)
        return self:close("protocol error: " .. tostring(v))
      end
      if ok == true and batch and type(v) == "table" and v[1] == "message" and v.n == 3
        and type(v[2]) == "string" and type(v[3]) == "string" then
        ok, v, payload = "message", v[2], v[3]   -- (a message the quick path did not take)
      end
      if ok == "message" then
        n = n + 1
        chans[n], datas[n] = v, payload
      else
        flush_messages(self, chans, datas, n)
        n = 0
        if not reply(self, v) then
          -- (a reply nobody waited for: an error Redis sent unasked)
          return self:close(resp.is_error(v) and v.message or "protocol error: unexpected reply")
        end
      end
      if not self.open then return end
    end
    flush_messages(self, chans, datas, n)
    n = 0
    -- a burst, whose next read returns at once: let the other tasks (the
    -- fan-out's flush, the connections' writers) run first, or the whole
    -- burst is queued before a byte of it is written; counted over reads,
    -- whatever they held (a big reply, pushes, replies without end from a
    -- server gone wrong held the loop as long as they kept coming)
    if got >= BURST then
      got = 0
      self.loop:yield()
    end
  end
end

function Client:writer()
  while self.open and self.nout > 0 do
    local s = table.concat(self.out, "", 1, self.nout)
    self.out, self.nout, self.outbytes = {}, 0, 0
    self.sent = self.tail      -- (if the write fails, part of it may have gone)
    local ok, err = io_.write(self.sock, s, 1, gettime() + self.timeout)
    if not ok then
      self.writing = false
      return self:close(err == "timeout" and "write timeout" or err)
    end
  end
  self.writing = false
end

local SMALL = 1024   -- bytes of a command max_unanswered never refuses

-- Queue an encoded command; the writer task (one per round) sends the lot.
local function queue(self, bytes, entry)
  if not self.open then return nil, "closed" end
  if self.outbytes + #bytes > self.max_buffer then return nil, "busy" end
  if entry then
    if self.tail - self.head + 1 >= self.max_pending then return nil, "busy" end
    local t = self.tail + 1
    if self.max_unanswered then
      -- (a small command always goes: a probe must not wait behind big ones)
      if #bytes > SMALL and self.unanswered > 0 and self.unanswered + #bytes > self.max_unanswered then
        return nil, "busy"
      end
      self.sizes[t], self.unanswered = #bytes, self.unanswered + #bytes
    end
    self.fifo[t], self.tail = entry, t
  end
  local n = self.nout + 1
  self.out[n], self.nout, self.outbytes = bytes, n, self.outbytes + #bytes
  if not self.writing then
    self.writing = true
    self.loop:spawn(Client.writer, self)
  end
  return true
end

--- Send a command and wait (inside a task of the loop) for its reply, at
-- most the client's timeout. Returns the reply, or nil, err.
function Client:call(...)
  local co = coroutine.running()
  local e = { co = co }
  local ok, err = queue(self, resp.command(...), e)
  if not ok then return nil, err end
  local good, v = self.loop:suspend(gettime() + self.timeout)
  if good then return v end
  if v == "timeout" then
    -- the reply may still come: it is skipped then, keeping the pipeline in step
    e.done = true
  end
  return nil, v
end

--- Send a command without waiting; cb(ok, reply_or_err) is called with
-- the reply (cb may be nil). Returns true, or nil, err ("closed", "busy").
-- Works from outside a task too.
function Client:send(cb, ...)
  return queue(self, resp.command(...), cb or true)   -- (no table per command)
end

--- Send a command whose answer arrives as pushes, one per argument after
-- the command's name (SUBSCRIBE, UNSUBSCRIBE on a subscriber connection):
-- cb(true) once they came, cb(nil, err) if Redis refused the command (or
-- the connection was lost); without cb, a refusal closes the connection.
-- Returns true, or nil, err.
function Client:push(cb, ...)
  return queue(self, resp.command(...), { pushes = select("#", ...) - 1, cb = cb })
end

function Client:push_command(...)
  return self:push(nil, ...)
end

--- Commands awaiting a reply.
function Client:pending()
  return self.tail - self.head + 1
end

return M
