--- Rooms (topics) and pub/sub, in one process or across processes and
-- machines through Redis, with one API for both.
--
--   local hub = require("ws.hub").new { redis = "redis://127.0.0.1:6379/0" }
--   local server = ws.listen { port = 8080, hub = hub }
--   server:route("/ws", function(conn)
--     hub:subscribe(conn, "lobby")               -- left automatically on close
--     for msg, kind in conn:messages() do hub:publish("lobby", msg, kind, { except = conn }) end
--   end)
--
-- Across processes: one Redis channel per topic (PREFIX .. topic),
-- subscribed when the first local subscriber joins and unsubscribed after
-- the last leaves. Each message carries the publishing node's id and a
-- per-(node, topic) sequence: a node delivers its own messages locally at
-- once and ignores their echo; receivers drop anything they already saw.
-- Publishing only queues (pipelined, coalesced writes); fan-out never
-- waits (a frame encoded once; what a task publishes before it waits goes
-- out in one write per connection: ws.fanout), so a slow client never
-- slows the Redis reader, and one past max_queue is closed with 1008.
--
-- ordered = true: one total order per topic. A server-side Lua script
-- numbers each message (offset, epoch), appends it to a capped Stream and
-- publishes it atomically; every process, the publisher included, delivers
-- in offset order, replays what it missed from the Stream after any
-- reconnect, and tells the application (on_gap) when the Stream no longer
-- covers a gap. Local delivery then goes through Redis. While Redis is
-- down, publishes wait in a bounded outbox and go out (in order) on
-- reconnect (past max_outbox they are dropped and counted); with
-- local_when_down (default) this process's subscribers get them at once,
-- after its earlier publishes still on their way: each publisher's order
-- holds everywhere, the one total order only for what went through Redis.
-- @module ws.hub
local socket = require "socket"
local core = require "ws.core"
local fanout = require "ws.fanout"
local loop = require "ws.loop"
local redis = require "ws.redis"
local resp = require "ws.resp"
local logging = require "ws.log"
local options = require "ws.options"

local gettime = socket.gettime
local unpack = table.unpack or unpack
local concat, find, strsub, match = table.concat, string.find, string.sub, string.match
local utf8_valid = core.utf8_valid

local M = {}

-- prefix, history, max_outbox, max_publish, timeout, probe_interval, probe_timeout,
-- backoff_min, backoff_max: the "hub" group of ws.options (docs, defaults)
M.defaults = {}
do
  local all = options.defaults("ws.hub")
  for _, k in ipairs { "prefix", "history", "max_outbox", "max_publish", "local_when_down", "timeout", "probe_interval",
                       "probe_timeout", "backoff_min", "backoff_max" } do
    M.defaults[k] = all[k]
  end
end

-- KEYS: stream, meta hash. ARGV: channel, maxlen, epoch if new, header, data,
-- and for a copy sent again (see confirmed) the epoch it was answered in.
-- Offsets are the stream ids 0-N; a lost meta hash (Redis restarted empty)
-- starts a new epoch from the caller's random candidate. A copy whose epoch
-- is still current is in the Stream already: it is dropped (offset 0).
local SCRIPT = [[
local epoch = redis.call('HGET', KEYS[2], 'e')
if epoch and epoch == ARGV[6] then return {0, epoch} end
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch)
end
local off = redis.call('HINCRBY', KEYS[2], 's', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '0-' .. off, 'h', ARGV[4], 'd', ARGV[5])
redis.call('PUBLISH', ARGV[1], 'o ' .. epoch .. ' ' .. off .. ' ' .. ARGV[4] .. '\n' .. ARGV[5])
return {off, epoch}
]]

local KINDS = { text = "t", binary = "b", t = "text", b = "binary" }

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local Hub = {}
Hub.__index = Hub

local published_cb

--- A new hub. opts: redis (URL: redis://[:password@]host:port/db or
-- unix://path; nil = this process only), ordered (false), loop (else the
-- server's, given by attach or ws.listen{ hub = }), logger, on_state(state,
-- info) ("down", "up", "resubscribed"), on_gap(topic, info), and M.defaults.
---@param opts table|nil
---@return table hub
function M.new(opts)
  opts = options.check("ws.hub", opts)
  local self = setmetatable({
    opts = opts,
    url = opts.redis,
    ordered = opts.ordered and opts.redis ~= nil,
    log = logging.get(opts.logger, "ws.hub"),
    node = hex(core.random(8)),
    topics = {},      -- topic -> { conns = set, n, fns = list, seen, ord }
    of = setmetatable({}, { __mode = "k" }),   -- conn -> set of its topics
    seqs = {},        -- topic -> our last sequence
    excepts = setmetatable({}, { __mode = "v" }),   -- ordered: "topic seq" -> conn left out
    outbox = {}, oh = 1, ot = 0,   -- ordered: publishes not sent yet (Redis down, or busy): outbox[oh..ot], in order
    retry = {},       -- ordered: sends that failed, to go out before the outbox on reconnect
    answered = { h = 1, t = 0, bytes = 0 },   -- ordered: recent publishes Redis answered (see confirmed)
    run_frames = {}, run_n = 0, run_t = nil,   -- see flush_run
    stats = { published = 0, received = 0, delivered = 0, dropped = 0, unconfirmed = 0, refused = 0, invalid = 0,
              missed = 0, resent = 0 },
    warned = {},      -- stats name -> when it was last logged (see count_warn)
    refusals = 0,     -- publishes Redis refused since it last took one (the reconnect backoff)
    state = opts.redis and "down" or "local",
  }, Hub)
  for k, v in pairs(M.defaults) do
    if opts[k] ~= nil then v = opts[k] end
    self[k == "history" and "maxlen" or k] = v     -- (hub:history is a method)
  end
  self.publish_reply = published_cb(self)
  self.probe_channel = self.prefix .. "!node:" .. self.node
  self.all_channel = self.prefix .. "!all"
  if opts.loop then self:start(opts.loop) end
  return self
end

--- Tie the hub to a server: its loop runs the Redis tasks, and
-- hub:broadcast reaches its connections. ws.listen{ hub = h } calls it.
function Hub:attach(server)
  self.server = server
  server.hub = self
  if not self.loop then self:start(server.loop) end
  return self
end

--- Start the Redis tasks on loop l (done by attach or the loop option).
function Hub:start(l)
  if self.loop then return end
  self.loop = l
  if self.url then l:spawn(Hub.supervise, self) end
end

---- local delivery -------------------------------------------------------------

-- A topic is a string not starting with "!" (our own channels: probes,
-- broadcast); anything else is a programmer error.
local function check_topic(topic, n, fname)
  if type(topic) ~= "string" or topic:sub(1, 1) == "!" then
    error("bad argument #" .. n .. " to '" .. fname .. "' (topic: a string not starting with \"!\")", 3)
  end
end

local function topic_of(self, topic)
  local t = self.topics[topic]
  if not t then
    t = { conns = {}, n = 0, fns = {}, seen = {} }   -- seen: node -> last sequence delivered
    self.topics[topic] = t
  end
  return t
end

-- Queue encoded bytes (count messages) to the topic's connections.
local function fan_out(self, t, bytes, count, except)
  local n = fanout.send(t.conns, bytes, except)
  self.stats.delivered = self.stats.delivered + n * count
  return n
end

-- Call the topic's listeners with (data, kind, info); info is built only
-- when there are any. m: the ordered message (offset, epoch), or nil.
local function tell(self, t, data, kind, topic, node, m)
  if t.fns[1] == nil then return end
  local info = { topic = topic, node = node, offset = m and m.off, epoch = m and m.epoch }
  -- a listener that waits holds the subscriber's reader: that time is not
  -- Redis's silence (see healthy; the healthy connection was replaced, and
  -- what it held was lost)
  local outer, t0 = self.telling, gettime()
  self.telling = outer or t0
  for _, fn in ipairs(t.fns) do
    local ok, err = loop.pcall(fn, data, kind, info)   -- (a listener may wait, on 5.1 too)
    if not ok then self.log("error", "hub listener failed: " .. tostring(err), { topic = topic }) end
  end
  self.telling = outer
  if not outer and self.probe_seen then self.probe_seen = self.probe_seen + (gettime() - t0) end
end

-- One message to the topic's connections (its frame encoded once) and listeners.
-- Count an event in stats[name] and log it at most once a second (a
-- flood of them must not flood the log).
local function count_warn(self, name, message, fields)
  local n = self.stats[name] + 1
  self.stats[name] = n
  local now = gettime()
  if now - (self.warned[name] or 0) < 1 then return end
  self.warned[name] = now
  fields[name] = n
  self.log("warn", message, fields)
end

-- Text from Redis that is not UTF-8 (anyone who may PUBLISH there can send
-- it; ours is checked before it is published): no client may get it as a
-- text frame (RFC 6455 section 8.1). Dropped and counted (invalid).
-- Returns true for such text.
local function invalid_text(self, kind, data)
  if kind ~= "text" or utf8_valid(data) then return false end
  count_warn(self, "invalid", "hub: text from Redis that is not UTF-8, dropped", {})
  return true
end

local function deliver(self, t, data, kind, except, topic, node, m)
  local n = fan_out(self, t, core.frame(data, kind), 1, except)
  tell(self, t, data, kind, topic, node, m)
  return n
end

local function channel(self, topic) return self.prefix .. topic end

local function users(t) return t.n + #t.fns end

local subscribe

-- First local user of a topic: subscribe its channel (if connected; the
-- supervisor subscribes everything on connect).
local function joined(self, topic, t)
  if users(t) ~= 1 or not self.sub then return end
  subscribe(self, self.sub, { channel(self, topic) })
end

local function left(self, topic, t)
  if users(t) > 0 then return end
  self.topics[topic] = nil
  if self.sub then self.sub:push_command("UNSUBSCRIBE", channel(self, topic)) end
end

--- Subscribe conn to topic (once; idempotent). It leaves every topic when
-- it closes, whoever closed it. Returns true, or nil, "closed".
function Hub:subscribe(conn, topic)
  check_topic(topic, 2, "subscribe")
  if conn.state ~= "open" then return nil, "closed" end
  local t = topic_of(self, topic)
  if t.conns[conn] then return true end
  t.conns[conn], t.n = true, t.n + 1
  local mine = self.of[conn]
  if not mine then
    mine = {}
    self.of[conn] = mine
    conn:on_close(function(c) self:unsubscribe(c) end)
  end
  mine[topic] = true
  joined(self, topic, t)
  return true
end

--- Unsubscribe conn from topic, or from every topic if topic is nil.
function Hub:unsubscribe(conn, topic)
  local mine = self.of[conn]
  if not mine then return end
  if topic == nil then
    for tp in pairs(mine) do self:unsubscribe(conn, tp) end
    return
  end
  if not mine[topic] then return end
  mine[topic] = nil
  local t = self.topics[topic]
  t.conns[conn], t.n = nil, t.n - 1
  left(self, topic, t)
end

--- Call fn(data, kind, info) for every message on topic, from any process
-- (info: topic, node, and offset/epoch in ordered mode). Returns fn.
function Hub:on(topic, fn)
  check_topic(topic, 1, "on")
  if type(fn) ~= "function" then error("bad argument #2 to 'on' (function expected)", 2) end
  local t = topic_of(self, topic)
  t.fns[#t.fns + 1] = fn
  joined(self, topic, t)
  return fn
end

--- Remove a listener added by on().
function Hub:off(topic, fn)
  local t = self.topics[topic]
  if not t then return end
  for i, f in ipairs(t.fns) do
    if f == fn then
      table.remove(t.fns, i)
      return left(self, topic, t)
    end
  end
end

--- Local connections subscribed to topic (this process).
function Hub:count(topic)
  local t = self.topics[topic]
  return t and t.n or 0
end

-- Ordered mode: publishes held (the retries and the outbox).
local function held(self) return self.ot - self.oh + 1 + #self.retry end

--- { state ("local", "down", "up"), node, topics, published, received,
-- delivered, dropped, unconfirmed, missed, resent, outbox }: received
-- counts messages from other processes; dropped those Redis never took (not
-- written, or written to a connection that broke before Redis answered);
-- unconfirmed the latter kind; missed the messages of other processes this
-- one never got (seen by their sequence numbers); resent (ordered) our
-- answered publishes sent again because Redis came back without them.
function Hub:status()
  local s = { state = self.state, node = self.node, outbox = held(self), topics = 0 }
  for k, v in pairs(self.stats) do s[k] = v end
  for _ in pairs(self.topics) do s.topics = s.topics + 1 end
  return s
end

---- publishing ------------------------------------------------------------------

local function drop(self)
  self.stats.dropped = self.stats.dropped + 1
end

-- Redis answered a publish with an error (OOM, READONLY, NOPERM, ...):
-- counted (refused) and logged with what Redis said.
local function refused(self, err, topic)
  self.refusals = self.refusals + 1
  count_warn(self, "refused", "hub: Redis refused a publish: " .. tostring(err), { topic = topic })
end

-- The reply to a PUBLISH (one callback per hub): a PUBLISH never written,
-- written but never answered, or refused is a drop. Redis writes a
-- PUBLISH's reply in the same round as the message to the subscribers, so
-- one it never answered before it died reached nobody, as far as we could
-- observe (it is also counted in unconfirmed; one refused, in refused).
function published_cb(self)
  return function(ok, err)
    if ok then
      self.refusals = 0
      return
    end
    drop(self)
    if self.pub and self.pub.open then return refused(self, err) end
    if err ~= "not sent" then self.stats.unconfirmed = self.stats.unconfirmed + 1 end
  end
end

-- Can publish now: both connections up and subscribed (ordered mode: a
-- publish still waits behind a non-empty outbox).
local function ready(self)
  return self.up and self.pub.open
end

-- Ordered mode: keep msg in list (the outbox, or the retries that go out
-- before it) unless max_outbox messages already wait (then nil, why).
local function hold(self, list, msg, why)
  if held(self) >= self.max_outbox then
    drop(self)
    return nil, why or "redis down"
  end
  if list == self.outbox then
    local t = self.ot + 1
    list[t], self.ot = msg, t
  else
    list[#list + 1] = msg
  end
  return true
end

-- Returns the kind, or nil, err for data that must go nowhere: larger
-- than max_publish (Redis would drop every subscriber connection it is
-- written to, at its 32 MB limit, and the rooms on them), or text that is
-- not UTF-8.
local function check_publish(self, data, kind)
  if type(data) ~= "string" then error("bad argument #2 to 'publish' (string expected)", 3) end
  kind = kind or "text"
  if kind ~= "text" and kind ~= "binary" then
    error("bad argument #3 to 'publish' (\"text\" or \"binary\" expected)", 3)
  end
  if #data > self.max_publish then return nil, "too large" end
  if kind == "text" and not utf8_valid(data) then return nil, "invalid utf-8" end
  return kind
end

local send_ordered, own, deliver_own, confirmed

-- Ordered mode: send the outbox, in order, while the publish connection
-- takes it (not "busy"); what it cannot take yet stays first. Called when
-- Redis answers one of ours, and by the supervisor.
local function drain(self)
  local box, i = self.outbox, self.oh
  -- (a queue: the head moves, what was sent is let go; a copy of the rest
  -- per send made a long outbox quadratic)
  while i <= self.ot and ready(self) and send_ordered(self, box[i]) do
    box[i], i = nil, i + 1
  end
  self.oh = i
  if i > self.ot then self.outbox, self.oh, self.ot = {}, 1, 0 end
end

--- Publish data (kind "text" or "binary") to topic's subscribers on every
-- process; opts.except: a local connection left out. Returns the count of
-- local connections it was queued to, then true when handed to Redis, or
-- nil, "redis down" (or "redis busy": too many commands wait for a slow
-- Redis; see ws.redis max_pending, max_buffer), counted as dropped. Never waits.
-- Text that is not UTF-8 goes nowhere: nil, "invalid utf-8"; nor does data
-- larger than max_publish: nil, "too large" (neither is counted).
-- Ordered mode: local connections get it through Redis (count 0); while
-- Redis is down, or busy, it waits in the outbox behind the earlier ones
-- (past max_outbox: nil, "redis down" or "redis busy")
-- and, with local_when_down, local connections get it at once (their count).
function Hub:publish(topic, data, kind, opts)
  check_topic(topic, 1, "publish")
  local why
  kind, why = check_publish(self, data, kind)
  if not kind then return nil, why end
  local except = opts and opts.except
  self.stats.published = self.stats.published + 1
  local t = self.topics[topic]
  local seq = (self.seqs[topic] or 0) + 1
  self.seqs[topic] = seq
  if self.ordered then
    local msg = { topic = topic, data = data, kind = kind, seq = seq, node = self.node }
    -- (only where it can come back: a topic nobody here takes never does,
    -- and its entry would stay as long as the connection)
    if except and t then self.excepts[topic .. " " .. seq] = except end
    if self.closed then
      -- closed by the application: local delivery only, nothing held
      return t and self.local_when_down and deliver_own(self, topic, t, msg) or 0, nil, "closed"
    end
    if ready(self) then
      local ok, err = true, nil
      -- behind what waits, or held when the connection is busy: a later
      -- publish never overtakes an earlier one (drain sends them)
      if self.outbox[self.oh] or not send_ordered(self, msg) then ok, err = hold(self, self.outbox, msg, "redis busy") end
      if ok and t and self.local_when_down then own(t, msg) end
      return 0, ok, err
    end
    local n = 0
    if t and self.local_when_down then n = deliver_own(self, topic, t, msg) end
    return n, hold(self, self.outbox, msg)
  end
  local n = t and deliver(self, t, data, kind, except, topic, self.node) or 0
  if not self.url then return n end
  if self.closed then return n, nil, "closed" end
  if not ready(self) then drop(self); return n, nil, "redis down" end
  local env = "u " .. self.node .. " " .. seq .. " " .. KINDS[kind] .. "\n" .. data
  local ok, err = self.pub:send(self.publish_reply, "PUBLISH", channel(self, topic), env)
  if not ok then drop(self); return n, nil, err == "busy" and "redis busy" or "redis down" end
  return n, true
end

--- Send to every connection of the attached server, on every process.
-- Returns the local count, then as publish (nil, "invalid utf-8" or "too large" too).
function Hub:broadcast(data, kind, opts)
  local why
  kind, why = check_publish(self, data, kind)
  if not kind then return nil, why end
  local except = opts and opts.except
  self.stats.published = self.stats.published + 1
  local n = self.server and self.server:broadcast(data, kind, except) or 0
  self.stats.delivered = self.stats.delivered + n
  if not self.url then return n end
  if self.closed then return n, nil, "closed" end
  if not ready(self) then drop(self); return n, nil, "redis down" end
  local env = "u " .. self.node .. " 0 " .. KINDS[kind] .. "\n" .. data
  local ok, err = self.pub:send(self.publish_reply, "PUBLISH", self.all_channel, env)
  if not ok then drop(self); return n, nil, err == "busy" and "redis busy" or "redis down" end
  return n, true
end

---- ordered mode ----------------------------------------------------------------

local function keys(self, topic)
  return self.prefix .. "{" .. topic .. "}:s", self.prefix .. "{" .. topic .. "}:m"
end

-- Ordered publishes Redis answered in the last RESEND seconds (at most
-- max_outbox of them, and RESEND_BYTES: Redis's default hard limit on a
-- subscriber's buffer) are kept: Redis may die after answering one but
-- before writing it to every subscriber (it writes them in turns, and a
-- slow subscriber's share waits in Redis's buffer). If it then comes back
-- without the topic's history (restarted empty: a new epoch), nobody can
-- replay those, so they are sent again, before anything else (the script
-- drops a copy whose epoch is current; a receiver one it has, by node and
-- sequence).
local RESEND, RESEND_BYTES = 2, 32 * 1024 * 1024

-- Forget the answered publishes past those limits (oldest first).
local function trim_answered(self, now)
  local a = self.answered
  local h, t, bytes = a.h, a.t, a.bytes
  while h <= t and (a[h].at < now - RESEND or t - h >= self.max_outbox or bytes > RESEND_BYTES) do
    bytes = bytes - #a[h].data
    a[h], h = nil, h + 1
  end
  a.h, a.bytes = h, bytes
end

function confirmed(self, msg, epoch)
  local a, now = self.answered, gettime()
  msg.epoch, msg.at = epoch, now
  local t = a.t + 1
  a[t], a.t, a.bytes = msg, t, a.bytes + #msg.data
  trim_answered(self, now)
end

-- Send one ordered publish through the script (EVALSHA; loaded on connect,
-- EVAL if SCRIPT LOAD is refused). Returns true, or nil, err when the
-- connection cannot take it (the caller keeps it in the outbox).
-- One that fails before its reply joins the retries, sent again before the
-- outbox on reconnect (if Redis had run it, receivers drop the copy by its
-- node and sequence).
function send_ordered(self, msg)
  local skey, mkey = keys(self, msg.topic)
  local header = self.node .. " " .. msg.seq .. " " .. KINDS[msg.kind]
  local pub = self.pub
  local function done(ok, err)
    if ok then
      self.refusals = 0
      if self.outbox[self.oh] then drain(self) end   -- (room for what waits)
      if err[1] == 0 then return end   -- (a copy the Stream holds)
      if msg.epoch then self.stats.resent = self.stats.resent + 1 end
      return confirmed(self, msg, err[2])
    end
    if self.closed then return drop(self) end
    hold(self, self.retry, msg)
    if pub.open then
      -- Redis answered with an error (OOM, READONLY, MISCONF, NOPERM; NOSCRIPT
      -- after a SCRIPT FLUSH): what follows must not overtake this one, so the
      -- connection goes, and a new one (after a backoff) loads the script
      -- and sends the retries first, in order
      refused(self, err, msg.topic)
      pub:close("refused: " .. tostring(err))
    end
  end
  local cmd, script = "EVALSHA", self.sha
  if not script then cmd, script = "EVAL", SCRIPT end
  local ok, err = pub:send(done, cmd, script, 2, skey, mkey, channel(self, msg.topic), self.maxlen,
    hex(core.random(8)), header, msg.data, msg.epoch or "")
  if not ok then return nil, err == "busy" and "redis busy" or "redis down" end
  return true
end

-- Messages of topic that cannot be replayed: tell on_gap and the log.
local function gap(self, topic, info, what)
  self.log("warn", "hub: " .. what, { topic = topic, since = info.since, first = info.first, epoch = info.epoch })
  if self.opts.on_gap then
    local ok, err = loop.pcall(self.opts.on_gap, topic, info)
    if not ok then self.log("error", "hub: on_gap failed: " .. tostring(err)) end
  end
end

-- Our own ordered publishes to a topic with local users, until they come
-- back through Redis (t.mine: seq -> message, from t.mine_lo): while Redis
-- is down they are delivered locally first (local_when_down).
function own(t, msg)
  if not t.mine then t.mine, t.mine_lo = {}, msg.seq end
  t.mine[msg.seq] = msg
end

-- Deliver an ordered message once per (node, seq); our own ones that came
-- back leave t.mine.
local function deliver_ordered(self, topic, t, m)
  local last = t.seen[m.node]
  if last and m.seq <= last then return 0 end   -- (a copy: resent, or sent again after a lost reply)
  t.seen[m.node] = m.seq
  if m.node ~= self.node then
    self.stats.received = self.stats.received + 1
    if invalid_text(self, m.kind, m.data) then return 0 end
  end
  local except
  if m.node == self.node then
    local ek = topic .. " " .. m.seq
    except, self.excepts[ek] = self.excepts[ek], nil
    local mine = t.mine
    if mine then
      for q = t.mine_lo, m.seq do mine[q] = nil end
      if t.mine_lo <= m.seq then t.mine_lo = m.seq + 1 end
    end
  end
  return deliver(self, t, m.data, m.kind, except, topic, m.node, m)
end

-- Redis is down: msg reaches the local connections now, after our earlier
-- publishes still on their way (sent, or waiting), so that each
-- publisher's order holds; their copies through Redis are then skipped.
function deliver_own(self, topic, t, msg)
  local mine = t.mine
  if mine then
    for q = t.mine_lo, msg.seq - 1 do
      if mine[q] then deliver_ordered(self, topic, t, mine[q]) end
    end
    t.mine, t.mine_lo = nil, nil
  end
  return deliver_ordered(self, topic, t, msg)
end

-- Entries per XRANGE page: each reply well within what ws.resp takes
-- (MAX_REPLY), for messages of up to max_publish bytes.
local function page_size(self, most)
  return math.max(1, math.min(most, math.floor(resp.MAX_REPLY / 2 / (self.max_publish + 1024))))
end

local replay

-- The topic's next message in offset order (live or replayed): delivered
-- (and counted in received) unless a copy.
local function take(self, topic, t, m)
  t.ord.off = m.off
  deliver_ordered(self, topic, t, m)
end

-- A message in a topic's total order: deliver it in offset order, replay
-- what was skipped, report what cannot be replayed.
local function ordered_message(self, topic, t, m)
  local o = t.ord
  if not o then
    o = { off = m.off - 1, epoch = m.epoch }
    t.ord = o
  end
  if o.replaying then
    o.buffer[#o.buffer + 1] = m
    return
  end
  if o.epoch == nil then
    o.epoch = m.epoch         -- the first epoch seen, or the first after history was lost
  elseif m.epoch ~= o.epoch then
    gap(self, topic, { epoch = m.epoch, old_epoch = o.epoch, since = o.off }, "new epoch, history lost")
    o.epoch, o.off = m.epoch, 0
  end
  if m.off <= o.off then return end
  if m.off > o.off + 1 then
    o.buffer = { m }
    o.replaying = true
    self.loop:spawn(replay, self, topic, t)
    return
  end
  take(self, topic, t, m)
end

local function parse_header(h, data)
  local node, seq, k = h:match("^(%x+) (%d+) ([tb])$")
  if not node then return nil end
  return { node = node, seq = tonumber(seq), kind = KINDS[k], data = data }
end

-- A Stream entry { "0-OFFSET", { "h", header, "d", data } } as a message, or nil.
local function stream_entry(e)
  local off = type(e[1]) == "string" and tonumber(e[1]:match("^0%-(%d+)$"))
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  local m = off and f.h and parse_header(f.h, f.d or "")
  if m then m.off = off end
  return m
end

-- Read the topic's Stream after its last offset, deliver it, then what
-- arrived meanwhile. Runs as a task.
function replay(self, topic, t)
  local o = t.ord
  local skey, mkey = keys(self, topic)
  local pub = self.pub
  local epoch = pub and pub:call("HGET", mkey, "e")
  if epoch and epoch ~= o.epoch then
    -- Redis lost the topic's history (restarted empty, or it expired)
    if o.epoch then
      gap(self, topic, { epoch = epoch, old_epoch = o.epoch, since = o.off }, "new epoch, history lost")
    end
    o.epoch, o.off = epoch ~= redis.null and epoch or nil, 0
  end
  -- page by page, each well within what one reply may hold (ws.resp's
  -- MAX_REPLY): the whole gap in one reply, up to history x max_publish
  -- bytes, was refused, and the replay tried again at every message
  local page = page_size(self, 1000)
  local from = o.off + 1
  while epoch do
    local start = from
    local entries = pub:call("XRANGE", skey, "0-" .. from, "+", "COUNT", page)
    if not entries then
      -- Redis went away: the catch-up after the reconnect replays all this
      o.buffer, o.replaying = nil, false
      return
    end
    for _, e in ipairs(entries) do
      local m = stream_entry(e)
      local off = m and m.off
      if m and off > o.off then
        if off > o.off + 1 then
          gap(self, topic, { epoch = o.epoch, since = o.off, first = off }, "history does not cover the gap")
        end
        m.epoch = o.epoch
        take(self, topic, t, m)
      end
      if off then from = math.max(from, off + 1) end
    end
    if #entries < page or from == start then break end   -- (the end, or entries not ours)
  end
  -- the buffered live ones: those past the replay go through the usual path
  local buffered = o.buffer or {}
  o.buffer, o.replaying = nil, false
  for _, m in ipairs(buffered) do
    if self.topics[topic] == t then ordered_message(self, topic, t, m) end
  end
end

-- Entries one history call returns unless opts.limit says otherwise.
M.HISTORY_LIMIT = 10000
-- Entries per XRANGE of hub:history (fewer for big messages: see page_size).
local HISTORY_PAGE = 512

--- The topic's history after offset since (ordered mode; inside a task):
-- returns an array of { offset, data, kind } (oldest first, at most
-- opts.limit entries, default M.HISTORY_LIMIT), the epoch, and true when
-- more entries may follow the last one (ask again with since = its offset),
-- or nil, err: "gap" (with the epoch, if there is one) when opts.epoch is
-- not the current epoch or the Stream no longer reaches back to since + 1.
-- The Stream is read in pages (one XRANGE ... COUNT each): one reply never
-- holds a whole long Stream, and the loop runs between pages.
---@param topic string
---@param opts? { since?: integer, epoch?: string, limit?: integer }
---@return table|nil list
---@return string? epoch_or_err
---@return boolean|string|nil more_or_epoch
function Hub:history(topic, opts)
  if not self.ordered then return nil, "history needs ordered = true" end
  opts = opts or {}
  local limit = opts.limit or M.HISTORY_LIMIT
  if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
    error("bad argument #2 to 'history' (limit: a positive integer)", 2)
  end
  if not ready(self) then return nil, "redis down" end
  local since = opts.since or 0
  local skey, mkey = keys(self, topic)
  local pub = self.pub
  local epoch, err = pub:call("HGET", mkey, "e")
  if not epoch then return nil, err end
  if epoch == redis.null then
    -- no history (yet, or lost): a client that has an epoch or offsets lost what followed them
    if opts.epoch or since > 0 then return nil, "gap" end
    return {}, nil
  end
  if opts.epoch and opts.epoch ~= epoch then return nil, "gap", epoch end
  local page = page_size(self, HISTORY_PAGE)
  local out, n, seqs, first, more, pages = {}, 0, {}, nil, false, 0
  local from = since + 1
  while true do
    pages = pages + 1
    -- (one entry past the limit: whether more follow)
    local count = math.min(page, limit - n + 1)
    local entries, xerr = pub:call("XRANGE", skey, "0-" .. from, "+", "COUNT", count)
    if not entries then return nil, xerr end
    local start = from
    for i, e in ipairs(entries) do
      local off = type(e[1]) == "string" and tonumber(e[1]:match("^0%-(%d+)$"))
      if i == 1 and off and start > since + 1 and off > start then
        -- trimmed (MAXLEN) between two pages: what we have is whole, and
        -- the next call, since our last offset, reports the gap
        more = true
        break
      end
      local m = stream_entry(e)
      if m then
        if not first then
          first = m
          if since > 0 and m.off > since + 1 then return nil, "gap", epoch end
        end
        if n == limit then
          more = true
          break
        end
        -- a publish sent again after its reply was lost is in the Stream twice:
        -- each publisher's sequence only grows, as receivers see it
        if not (seqs[m.node] and m.seq <= seqs[m.node]) then
          seqs[m.node] = m.seq
          n = n + 1
          out[n] = { offset = m.off, data = m.data, kind = m.kind }
        end
      end
      if off and off >= from then from = off + 1 end
    end
    if more or #entries < count or from == start then break end   -- (the end, or entries not ours)
  end
  if since > 0 and not first then
    local last = pub:call("HGET", mkey, "s")
    if tonumber(last) and tonumber(last) > since then return nil, "gap", epoch end
  end
  if pages > 1 then
    -- (the topic's history lost and begun again between two pages: the
    -- later pages may hold the new epoch's entries)
    local now, nerr = pub:call("HGET", mkey, "e")
    if not now then return nil, nerr end
    if now ~= epoch then return nil, "gap", now ~= redis.null and now or nil end
  end
  return out, epoch, more
end

---- messages from Redis -----------------------------------------------------------

-- Consecutive messages of one topic from one read (a run) reach each
-- connection as one queued string, their frames joined: one send_encoded
-- per connection per run instead of one per message.
local function flush_run(self)
  local k = self.run_n
  if k == 0 then return end
  local frames = self.run_frames
  local bytes = k == 1 and frames[1] or concat(frames, "", 1, k)
  for i = 1, k do frames[i] = nil end
  local t = self.run_t
  self.run_n, self.run_t = 0, nil
  fan_out(self, t, bytes, k)
end

-- A message on one of our channels: the probe, a broadcast, a topic's.
-- Unordered topic messages join the run; anything else flushes it first.
local function message(self, ch, payload)
  if ch == self.probe_channel then
    self.probe_seen = gettime()
    return
  end
  local nl = find(payload, "\n", 1, true)
  if not nl then return end
  local head, data = strsub(payload, 1, nl - 1), strsub(payload, nl + 1)
  if ch == self.all_channel then
    flush_run(self)
    local node, k = match(head, "^u (%x+) %d+ ([tb])$")
    if node and node ~= self.node and self.server then
      self.stats.received = self.stats.received + 1
      if invalid_text(self, KINDS[k], data) then return end
      self.stats.delivered = self.stats.delivered + self.server:broadcast(data, KINDS[k])
    end
    return
  end
  local topic = strsub(ch, #self.prefix + 1)
  local t = self.topics[topic]
  if not t then return end
  if strsub(head, 1, 2) == "o " then
    flush_run(self)
    local epoch, off, rest = match(head, "^o (%x+) (%d+) (.*)$")
    local m = rest and parse_header(rest, data)
    if not m then return end
    m.epoch, m.off = epoch, tonumber(off)
    return ordered_message(self, topic, t, m)   -- (received counted when taken in order)
  end
  local node, seq, k = match(head, "^u (%x+) (%d+) ([tb])$")
  if not node or node == self.node then return end   -- (our own echo)
  self.stats.received = self.stats.received + 1
  seq = tonumber(seq)
  local last = t.seen[node]
  if last and seq <= last then return end   -- a duplicate
  if last and seq > last + 1 then self.stats.missed = self.stats.missed + seq - last - 1 end
  t.seen[node] = seq
  local kind = KINDS[k]
  if invalid_text(self, kind, data) then return end
  if self.run_t ~= t then
    flush_run(self)
    self.run_t = t
  end
  local n = self.run_n + 1
  self.run_frames[n], self.run_n = core.frame(data, kind), n
  tell(self, t, data, kind, topic, node)
end

-- The messages parsed from one read of the subscriber connection.
local function messages(self, chans, datas, n)
  for i = 1, n do message(self, chans[i], datas[i]) end
  flush_run(self)
end

---- the Redis connections -----------------------------------------------------------

local function set_state(self, state, info)
  if self.closed then return end   -- (a connect that was under way when closed)
  if state ~= "resubscribed" then self.state = state end
  local level = state == "down" and "warn" or "info"
  self.log(level, "hub: redis " .. state, info)
  if self.opts.on_state then
    local ok, err = loop.pcall(self.opts.on_state, state, info)
    if not ok then self.log("error", "hub: on_state failed: " .. tostring(err)) end
  end
end

-- Wake the supervisor (a connection was lost, subscriptions confirmed)
-- if it is idle, not inside a Redis call.
local function alarm(self)
  if self.idle then self.loop:wake(self.idle, false) end
end

local function idle(self, deadline)
  self.idle = coroutine.running()
  self.loop:suspend(deadline)
  self.idle = nil
end

-- SUBSCRIBE the channels of list. Redis refuses a command whole when the
-- ACL denies one of its channels (NOPERM): then each is subscribed on its
-- own, and one refused alone is logged and left out (its topic's members
-- miss the other processes' messages until a reconnect tries it again),
-- while the connection and every other topic stay; any other refusal (or
-- of our own channels) drops the connection, as before. (One topic refused
-- had every reconnect fail: no topic reached another process again.)
function subscribe(self, sub, list)
  sub:push(function(ok, err)
    if ok or not sub.open then return end
    local ours = list[1] == self.probe_channel or list[1] == self.all_channel
    if not (tostring(err):match("^NOPERM.*channel") and (#list > 1 or not ours)) then return sub:close(err) end
    if self.confirming then self.confirming = self.confirming - #list end
    if #list > 1 then
      for _, ch in ipairs(list) do
        if self.confirming then self.confirming = self.confirming + 1 end
        subscribe(self, sub, { ch })
      end
    else
      self.log("warn", "hub: Redis refused a subscription: " .. tostring(err), { channel = list[1] })
    end
    if self.confirming == 0 then
      self.confirming = nil
      alarm(self)
    end
  end, "SUBSCRIBE", unpack(list))
end

-- Subscribe the probe, broadcast and every topic channel, in batches.
local function subscribe_all(self, sub)
  local list = { self.probe_channel, self.all_channel }
  for topic in pairs(self.topics) do list[#list + 1] = channel(self, topic) end
  self.confirming = #list
  for i = 1, #list, 500 do
    subscribe(self, sub, { unpack(list, i, math.min(i + 499, #list)) })
  end
end

local function connect_pub(self)
  -- (max_unanswered: Redis appends what it takes in one read to every
  -- subscriber's buffer at once, and drops a subscriber whose buffer passes
  -- its limit, 32 MB by default: two publishes of max_publish in a row
  -- dropped every process's subscriber, and both were lost)
  local pub, err = redis.connect(self.url,
    { loop = self.loop, timeout = self.timeout, max_unanswered = self.max_publish, on_close = function()
      self.pub_lost = gettime()   -- (see resume_ordered)
      alarm(self)
    end })
  if not pub then return nil, err end
  if self.ordered then
    local sha, lerr = pub:call("SCRIPT", "LOAD", SCRIPT)
    if not sha and not pub.open then return nil, lerr end
    if not sha then
      -- SCRIPT refused (renamed or denied by an ACL): send the script itself
      self.log("warn", "hub: SCRIPT LOAD failed, using EVAL: " .. tostring(lerr))
    end
    self.sha = sha
  end
  return pub
end

-- The subscriber connection, with every channel subscribed (confirmed).
local function connect_sub(self)
  local closed_by
  local sub, err = redis.connect(self.url, {
    loop = self.loop, timeout = self.timeout, subscriber = true,
    on_close = function(why) closed_by = why; alarm(self) end,
    on_messages = function(chans, datas, n) messages(self, chans, datas, n) end,
    on_push = function(v)
      if v[1] == "subscribe" and self.confirming then
        self.confirming = self.confirming - 1
        if self.confirming == 0 then
          self.confirming = nil
          alarm(self)
        end
      end
    end,
  })
  if not sub then return nil, err end
  self.sub = sub
  subscribe_all(self, sub)
  local deadline = gettime() + self.timeout
  while self.confirming and sub.open and gettime() < deadline do idle(self, deadline) end
  if self.confirming or not sub.open then
    self.sub, self.confirming = nil, nil
    sub:close()
    -- (what Redis said, when it said why: NOAUTH, NOPERM, maxclients)
    return nil, "subscribe not confirmed" .. (closed_by and closed_by ~= "closed" and ": " .. closed_by or "")
  end
  self.probe_seen = gettime()
  return sub
end

-- After a (re)connect in ordered mode: catch up every topic, then send
-- what waited, in order: after a new publish connection the answered ones
-- (see confirmed), then the failed sends, then the outbox.
local function resume_ordered(self, replay_all, resend)
  if replay_all then
    for topic, t in pairs(self.topics) do
      local o = t.ord
      if o and not o.replaying then
        o.replaying, o.buffer = true, {}
        self.loop:spawn(replay, self, topic, t)
      end
    end
  end
  local waiting, a = {}, self.answered
  if resend then
    -- (only those answered in the last RESEND seconds before the connection
    -- was lost: older ones reached every subscriber, and a new epoch's
    -- history must not get them again)
    trim_answered(self, self.pub_lost or gettime())
    for i = a.h, a.t do waiting[#waiting + 1] = a[i] end
    self.answered = { h = 1, t = 0, bytes = 0 }
  end
  for _, m in ipairs(self.retry) do waiting[#waiting + 1] = m end
  for i = self.oh, self.ot do waiting[#waiting + 1] = self.outbox[i] end
  self.retry, self.outbox, self.oh, self.ot = {}, waiting, 1, #waiting
  drain(self)
end

-- Health: a PING on the subscriber connection and a probe published to our
-- own channel; nothing back for probe_timeout: the subscriber is replaced.
local function healthy(self, pub, sub)
  pub:send(nil, "PUBLISH", self.probe_channel, "p")
  if sub:pending() == 0 then sub:send(nil, "PING") end
  return self.telling ~= nil or gettime() - self.probe_seen < self.probe_timeout
end

local function topic_count(self)
  local n = 0
  for _ in pairs(self.topics) do n = n + 1 end
  return n
end

--- The supervisor task: keep a publish and a subscribe connection, each
-- reconnected on its own, forever, with jittered exponential backoff.
function Hub:supervise()
  local backoff = self.backoff_min
  local pub, sub
  while not self.closed do
    local err, fresh_pub, fresh_sub
    if not (pub and pub.open) then
      pub, err = connect_pub(self)
      fresh_pub = pub ~= nil
      -- (kept until a resume sends them: the subscriber may fail first)
      if pub then self.resend_due = true end
      if pub then self.pub = pub end
    end
    if pub and not (sub and sub.open) then
      sub, err = connect_sub(self)
      fresh_sub = sub ~= nil
    end
    if pub and pub.open and sub and sub.open then
      backoff = self.backoff_min
      self.reported = true
      local was_up = self.up
      self.up = true
      -- what waited goes into the pipeline first: a publish from on_state,
      -- or from a task while it waits, comes after it
      if self.ordered and (fresh_pub or fresh_sub) then resume_ordered(self, fresh_sub, self.resend_due) end
      self.resend_due = nil
      if not was_up then set_state(self, "up", { node = self.node }) end
      if fresh_sub then set_state(self, "resubscribed", { topics = topic_count(self) }) end
      while pub.open and sub.open and not self.closed do
        local due = gettime() + self.probe_interval
        idle(self, due)
        -- woke late: this process's loop stalled (a busy task), and the
        -- reader has not read what waits yet: that time is not silence
        local late = gettime() - due
        if late > 0 then self.probe_seen = self.probe_seen + late end
        if self.ordered then drain(self) end
        if pub.open and sub.open and not healthy(self, pub, sub) then
          self.log("warn", "hub: subscriber connection silent, replacing it")
          sub:close("subscriber silent")
        end
      end
      if not self.closed then
        self.up = false
        set_state(self, "down", { error = pub.open and "subscriber connection lost" or "publish connection lost" })
        if self.refusals > 0 then
          -- Redis refused a publish: not again at once (it may refuse for a while)
          idle(self, gettime() + math.min(self.backoff_min * 2 ^ (self.refusals - 1), self.backoff_max))
        end
      end
    else
      if self.up or not self.reported then
        self.up = false
        set_state(self, "down", { error = err })
      end
      self.reported = true
      local delay = backoff * (0.5 + math.random() * 0.5)
      backoff = math.min(backoff * 2, self.backoff_max)
      idle(self, gettime() + delay)
    end
  end
  if pub then pub:close() end
  if sub then sub:close() end
end

--- Stop the Redis connections (local delivery keeps working): state
-- "closed"; publishes then return nil, "closed" after local delivery, and
-- ordered ones still held are dropped (counted).
function Hub:close()
  if self.closed then return end
  self.closed = true
  if self.url then self.state = "closed" end
  self.stats.dropped = self.stats.dropped + held(self)
  self.outbox, self.oh, self.ot, self.retry = {}, 1, 0, {}
  if self.pub then self.pub:close() end
  if self.sub then self.sub:close() end
  alarm(self)
end

return setmetatable(M, { __call = function(_, opts) return M.new(opts) end })
