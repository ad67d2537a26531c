-- Fan-out load for bench/fanout_redis.sh: N subscribers spread over
-- several servers' /ws?room=ROOM, one publisher on the first server.
--   lua5.4 bench/fanout_client.lua --ports P1[,P2...] --subs N --rate R
--          --secs T [--size B] [--room NAME] [--parse K] [--redis-port P]
--          [--pids PID1,PID2...]
-- The publisher sends R messages/s for T s ("<send time>:" padded to B
-- bytes, B < 126). Subscribers only count bytes (a frame is B + 2 bytes),
-- except the first K of each server (default 10), which parse frames and
-- time each message. Prints one line:
--   RESULT sent=.. expected=.. delivered=.. rate=<delivered/s> closed=..
--          local_p50=ms local_p99=ms remote_p50=ms remote_p99=ms
-- (local: subscribers on the publisher's server; remote: the others),
-- and with --redis-port, redis_us: Redis CPU time (user + sys) per PUBLISH
-- Redis ran (published: how many; servers that fall behind publish fewer
-- than were sent in the window; our probes, 1/s per process, count too)
-- over the publishing and the 1 s drain; with --pids,
-- server_us: the servers' CPU time (user + sys) per published message over
-- the same window.
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local io_ = require "ws.io"

local gettime = socket.gettime
local o = { size = 32, room = "bench", parse = 10, secs = 5, rate = 1000 }
local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-(.+)$")
  assert(k and arg[i + 1], "bad arguments")
  o[k] = tonumber(arg[i + 1]) or arg[i + 1]
  i = i + 2
end
local ports = {}
for p in tostring(o.ports):gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
assert(o.size < 126 and o.size >= 20, "--size must be 20..125")
local FRAME = o.size + 2

local l = loop.new()
local bytes, closed = 0, 0
local lat = { [true] = {}, [false] = {} }   -- [is_local] = latencies
local measuring = true

local function handshake(port)
  local s = socket.tcp4()
  s:settimeout(10)
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then return nil, err end
  s:send("GET /ws?room=" .. o.room .. " HTTP/1.1\r\nHost: 127.0.0.1:" .. port ..
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
    "Sec-WebSocket-Version: 13\r\n\r\n")
  local line = s:receive("*l")
  if not line or not line:match("^HTTP/1.1 101") then s:close(); return nil, line or "no answer" end
  repeat line = s:receive("*l") until line == "" or not line
  s:settimeout(0)
  return s
end

local function counter(s)
  while true do
    local data = io_.read(s)
    if not data then closed = closed + 1; return end
    bytes = bytes + #data
  end
end

local function parser(s, is_local)
  local buf = ""
  while true do
    local data = io_.read(s)
    if not data then closed = closed + 1; return end
    bytes = bytes + #data
    buf = buf .. data
    local pos = 1
    while #buf - pos + 1 >= 2 do
      local n = buf:byte(pos + 1) % 128
      if #buf - pos + 1 < 2 + n then break end
      local sent = tonumber(buf:sub(pos + 2, pos + 1 + n):match("^([%d.]+):"))
      if sent and measuring then local t = lat[is_local]; t[#t + 1] = gettime() - sent end
      pos = pos + 2 + n
    end
    buf = buf:sub(pos)
  end
end

-- Redis's used CPU seconds (INFO cpu) and the PUBLISH commands it ran
-- (also inside scripts), or nil without --redis-port.
local function redis_cpu(r)
  local info = r and r:call("INFO", "cpu")
  local stats = r and r:call("INFO", "commandstats")
  if type(info) ~= "string" or type(stats) ~= "string" then return nil end
  local s = 0
  for v in info:gmatch("used_cpu_%a+:([%d.]+)") do s = s + tonumber(v) end
  return s, tonumber(stats:match("cmdstat_publish:calls=(%d+)")) or 0
end

-- CPU seconds (user + sys) used so far by the processes in --pids, or nil.
local function procs_cpu()
  if not o.pids then return nil end
  local s = 0
  for pid in tostring(o.pids):gmatch("%d+") do
    local f = io.open("/proc/" .. pid .. "/stat")
    local line = f and f:read("*l")
    if f then f:close() end
    -- fields after the command name: state is 3rd, utime 14th, stime 15th
    local rest = line and line:match("%) (.*)$")
    local fields = {}
    for v in (rest or ""):gmatch("%S+") do fields[#fields + 1] = v end
    s = s + (tonumber(fields[12]) or 0) + (tonumber(fields[13]) or 0)
  end
  return s / 100   -- clock ticks (USER_HZ, 100 on Linux)
end

local function pct(t, p)
  if #t == 0 then return 0 end
  table.sort(t)
  return t[math.max(1, math.ceil(#t * p))] * 1000
end

l:spawn(function()
  local per = {}
  for k = 1, o.subs do
    local pi = (k - 1) % #ports + 1
    local s, err = handshake(ports[pi])
    if not s then io.stderr:write("subscriber ", k, ": ", tostring(err), "\n"); os.exit(1) end
    per[pi] = (per[pi] or 0) + 1
    if per[pi] <= o.parse then l:spawn(parser, s, pi == 1) else l:spawn(counter, s) end
    if k % 200 == 0 then l:sleep(0) end
  end
  l:sleep(1)   -- every subscription reaches Redis
  local pub = assert(ws.connect("ws://127.0.0.1:" .. ports[1] .. "/ws?room=" .. o.room, { timeout = 10 }))
  local pad = string.rep("x", o.size)
  local rport = o["redis-port"]
  local rc = rport and assert(require("ws.redis").connect("redis://127.0.0.1:" .. rport, { loop = l }))
  local cpu0, np0 = redis_cpu(rc)
  local pcpu0 = procs_cpu()
  local t0 = gettime()
  local sent = 0
  bytes = 0
  while gettime() - t0 < o.secs do
    local due = math.floor((gettime() - t0) * o.rate)
    while sent < due do
      local head = string.format("%.6f:", gettime())
      pub:send(head .. pad:sub(#head + 1))
      sent = sent + 1
    end
    l:sleep(0.001)
  end
  local elapsed = gettime() - t0
  l:sleep(1)       -- what is still queued arrives
  measuring = false
  local cpu1, np1 = redis_cpu(rc)
  local pcpu1 = procs_cpu()
  local delivered = math.floor(bytes / FRAME)
  print(string.format("RESULT sent=%d expected=%d delivered=%d rate=%.0f closed=%d " ..
    "local_p50=%.2f local_p99=%.2f remote_p50=%.2f remote_p99=%.2f redis_us=%.1f published=%d server_us=%.1f",
    sent, sent * o.subs, delivered, delivered / elapsed, closed,
    pct(lat[true], 0.5), pct(lat[true], 0.99), pct(lat[false], 0.5), pct(lat[false], 0.99),
    cpu0 and (cpu1 - cpu0) * 1e6 / math.max(np1 - np0, 1) or 0, cpu0 and np1 - np0 or 0,
    pcpu0 and (pcpu1 - pcpu0) * 1e6 / math.max(sent, 1) or 0))
  io.stdout:flush()
  os.exit(0)
end)
l:run()
