-- Many chat clients in one ws.loop, for spec/broadcast_spec.lua and
-- spec/hub_cluster_spec.lua.
--   lua5.4 spec/peers/chat_clients.lua --url URL[,URL...] --clients N --senders S
--          --messages M [--size B] [--timeout SECS] [--gap SECS] [--idle SECS]
-- Client i connects to the ((i - 1) % #urls + 1)th URL (several processes).
-- Connects N clients; once all are connected, clients 1..S each send M text
-- messages "<sender>:<seq>:<send time>:" padded to B bytes (a pause of
-- --gap seconds between two messages of one sender). Every client checks
-- that it gets every other sender's messages exactly once and in order,
-- and never its own. Prints one JSON line:
--   {"connected":N,"expected":E,"received":R,"complete":C,"order_errors":n,
--    "own":n,"junk":n,"max_latency":secs,"elapsed":secs,"errors":[...]}
-- complete: clients that got all they should; expected/received: messages
-- summed over clients; max_latency: the longest send-to-receive time seen.
-- Also: order_mismatch (clients whose order of all messages differs from
-- the others', each leaving out its own), closed (connections lost),
-- skipped (sequence numbers jumped over), missing (distinct messages of
-- senders that some client on another URL never got), local_missing
-- (messages a client never got from a sender on its own URL), remote_gap
-- (the longest time a client went without a message from another URL),
-- p99 (of send-to-receive times).
-- --idle SECS: once every sender is done, a client stops after SECS without
-- a message (for runs where messages may be lost).
local socket = require "socket"
local json = require "dkjson"
local ws = require "ws"
local loop = require "ws.loop"

local gettime = socket.gettime
local o = { size = 64, timeout = 30, gap = 0 }
local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-(.+)$")
  assert(k and arg[i + 1], "bad arguments")
  o[k] = tonumber(arg[i + 1]) or arg[i + 1]
  i = i + 2
end
local N, S, M = o.clients, o.senders, o.messages
local urls = {}
for u in tostring(o.url):gmatch("[^,]+") do urls[#urls + 1] = u end
local function url_of(idx) return (idx - 1) % #urls + 1 end
local orders, got_seqs = {}, {}   -- [client] = { "from:seq", ... }; [client][from] = set of seqs
local senders_done = 0
local latencies = {}

local l = loop.new()
local conns, connected, failed, errors = {}, 0, 0, {}
local stats = { received = 0, complete = 0, order_errors = 0, own = 0, junk = 0, max_latency = 0,
  order_mismatch = 0, closed = 0, skipped = 0, missing = 0, local_missing = 0, remote_gap = 0 }
local finished = 0
local t0 = gettime()
local deadline = t0 + o.timeout

local function err(s)
  if #errors < 20 then errors[#errors + 1] = s end
end

local function receiver(idx, conn)
  local expect = (idx <= S and S - 1 or S) * M
  local last = {}
  local got = 0
  local order, seqs = {}, {}
  orders[idx], got_seqs[idx] = order, seqs
  local last_remote = nil
  if expect == 0 then
    -- a lone sender: only check that nothing comes back to it
    local extra = conn:receive(0.5)
    if extra then stats.own = stats.own + 1 end
    stats.complete = stats.complete + 1
    finished = finished + 1
    return
  end
  while gettime() < deadline do
    local wait = math.max(deadline - gettime(), 0.01)
    if o.idle then wait = math.min(wait, o.idle) end
    local data, e = conn:receive(wait)
    if not data then
      if e ~= "timeout" then
        stats.closed = stats.closed + 1
        err(string.format("client %d: receive: %s", idx, tostring(e)))
        break
      end
      if not o.idle or senders_done == S or gettime() >= deadline then break end
    end
    local from, seq, sent
    if data then
      from, seq, sent = data:match("^(%d+):(%d+):([%d.]+):")
      from, seq, sent = tonumber(from), tonumber(seq), tonumber(sent)
    end
    if not data then   -- luacheck: ignore 542 (an idle timeout while senders still send)
    elseif not from then
      stats.junk = stats.junk + 1
    elseif from == idx then
      stats.own = stats.own + 1
    else
      if seq <= (last[from] or 0) then
        stats.order_errors = stats.order_errors + 1
        err(string.format("client %d: from %d got seq %d after %s", idx, from, seq, tostring(last[from])))
      elseif seq > (last[from] or 0) + 1 then
        stats.skipped = stats.skipped + seq - (last[from] or 0) - 1
      end
      last[from] = seq
      order[#order + 1] = from .. ":" .. seq
      seqs[from] = seqs[from] or {}
      seqs[from][seq] = true
      local now = gettime()
      if url_of(from) ~= url_of(idx) then
        if last_remote and now - last_remote > stats.remote_gap then stats.remote_gap = now - last_remote end
        last_remote = now
      end
      got = got + 1
      stats.received = stats.received + 1
      local lat = gettime() - sent
      if lat > stats.max_latency then stats.max_latency = lat end
      latencies[#latencies + 1] = lat
      if got == expect then
        stats.complete = stats.complete + 1
        finished = finished + 1
        -- keep listening briefly: a duplicate would arrive now
        local extra = conn:receive(0.3)
        if extra then
          stats.order_errors = stats.order_errors + 1
          err(string.format("client %d: a message beyond the expected ones: %s", idx, extra:sub(1, 40)))
        end
        return
      end
    end
  end
  finished = finished + 1
end

local function sender(idx, conn)
  for seq = 1, M do
    local head = string.format("%d:%d:%.6f:", idx, seq, gettime())
    local msg = head .. string.rep("x", math.max(0, o.size - #head))
    local ok, e = conn:send(msg)
    if not ok then
      err(string.format("client %d: send %d: %s", idx, seq, tostring(e)))
      return
    end
    l:sleep(o.gap)   -- gap 0: still let the receivers of this process run
  end
  senders_done = senders_done + 1
end

-- What the run shows beyond each client's own count (see the top).
local function summarize()
  local ref
  for idx = S + 1, N do if orders[idx] then ref = orders[idx]; break end end
  for idx = 1, N do
    local order = orders[idx]
    if ref and order then
      local k = 0
      for _, id in ipairs(ref) do
        if tonumber(id:match("^(%d+)")) ~= idx then
          k = k + 1
          if order[k] ~= id then stats.order_mismatch = stats.order_mismatch + 1; break end
        end
      end
      if k ~= #order and order[k + 1] then stats.order_mismatch = stats.order_mismatch + 1 end
    end
  end
  for from = 1, S do
    local lost = {}
    for idx = 1, N do
      local seqs = got_seqs[idx] and got_seqs[idx][from] or {}
      if idx ~= from and got_seqs[idx] then
        for seq = 1, M do
          if not seqs[seq] then
            if url_of(idx) == url_of(from) then stats.local_missing = stats.local_missing + 1
            else lost[seq] = true end
          end
        end
      end
    end
    for _ in pairs(lost) do stats.missing = stats.missing + 1 end
  end
end

l:spawn(function()
  for idx = 1, N do
    l:spawn(function()
      local conn, e = ws.connect(urls[url_of(idx)], { timeout = 20 })
      if not conn then
        err(string.format("client %d: connect: %s", idx, tostring(e)))
        failed = failed + 1
        finished = finished + 1
        return
      end
      conns[idx] = conn
      connected = connected + 1
      while connected + failed < N and gettime() < deadline do l:sleep(0.01) end
      if idx <= S then l:spawn(sender, idx, conn) end
      receiver(idx, conn)
    end)
  end
  while finished < N and gettime() < deadline do l:sleep(0.02) end
  stats.elapsed = gettime() - t0
  summarize()
  table.sort(latencies)
  stats.p99 = latencies[math.max(1, math.ceil(#latencies * 0.99))] or 0
  stats.connected = connected
  stats.expected = S * M * (N - 1)
  stats.errors = errors
  io.stdout:write(json.encode(stats), "\n")
  io.stdout:flush()
  for _, c in pairs(conns) do l:spawn(function() c:close(1000, nil, 2) end) end
  l:sleep(0.5)
  l:stop()
end)
l:run()
