-- Many chat clients in one ws.loop, for spec/broadcast_spec.lua.
--   lua5.4 spec/peers/chat_clients.lua --url URL --clients N --senders S
--          --messages M [--size B] [--timeout SECS] [--gap SECS]
-- Connects N clients; once all are connected, clients 1..S each send M text
-- messages "<sender>:<seq>:<send time>:" padded to B bytes (a pause of
-- --gap seconds between two messages of one sender). Every client checks
-- that it gets every other sender's messages exactly once and in order,
-- and never its own. Prints one JSON line:
--   {"connected":N,"expected":E,"received":R,"complete":C,"order_errors":n,
--    "own":n,"junk":n,"max_latency":secs,"elapsed":secs,"errors":[...]}
-- complete: clients that got all they should; expected/received: messages
-- summed over clients; max_latency: the longest send-to-receive time seen.
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

local l = loop.new()
local conns, connected, failed, errors = {}, 0, 0, {}
local stats = { received = 0, complete = 0, order_errors = 0, own = 0, junk = 0, max_latency = 0 }
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
  if expect == 0 then
    -- a lone sender: only check that nothing comes back to it
    local extra = conn:receive(0.5)
    if extra then stats.own = stats.own + 1 end
    stats.complete = stats.complete + 1
    finished = finished + 1
    return
  end
  while gettime() < deadline do
    local data, e = conn:receive(math.max(deadline - gettime(), 0.01))
    if not data then
      if e ~= "timeout" then err(string.format("client %d: receive: %s", idx, tostring(e))) end
      break
    end
    local from, seq, sent = data:match("^(%d+):(%d+):([%d.]+):")
    from, seq, sent = tonumber(from), tonumber(seq), tonumber(sent)
    if not from then
      stats.junk = stats.junk + 1
    elseif from == idx then
      stats.own = stats.own + 1
    else
      if seq ~= (last[from] or 0) + 1 then
        stats.order_errors = stats.order_errors + 1
        err(string.format("client %d: from %d got seq %d after %s", idx, from, seq, tostring(last[from])))
      end
      last[from] = seq
      got = got + 1
      stats.received = stats.received + 1
      local lat = gettime() - sent
      if lat > stats.max_latency then stats.max_latency = lat end
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
end

l:spawn(function()
  for idx = 1, N do
    l:spawn(function()
      local conn, e = ws.connect(o.url, { timeout = 20 })
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
