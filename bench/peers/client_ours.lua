-- Client throughput: our ws:// client echoing through a server, DEPTH
-- messages in flight on one connection; every echo checked. Also the
-- client's own CPU (os.clock: user + system) per message over the timed window.
--   lua5.4 bench/peers/client_ours.lua URL SIZE DEPTH SECS
-- Prints "RESULT mode=client ... msgs_per_s=... errors=N".
local ws = require "ws"
local socket = require "socket"

local url, size, depth, secs = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local conn = assert(ws.connect(url, { timeout = 10, max_message = 16 * 1024 * 1024 }))
-- 16 distinct messages of SIZE bytes, printable ASCII (sent as text)
local msgs = {}
for i = 1, 16 do msgs[i] = string.rep(string.char(64 + i), size) end

local sent, got, errors = 0, 0, 0
local function send() sent = sent + 1; assert(conn:send(msgs[sent % 16 + 1])) end
for _ = 1, depth do send() end
local t0, c0 = socket.gettime(), os.clock()
local t_end = t0 + secs
while true do
  local data = conn:receive(10)
  got = got + 1
  if data ~= msgs[got % 16 + 1] then errors = errors + 1 end
  if socket.gettime() >= t_end then break end
  send()
end
local elapsed, cpu = socket.gettime() - t0, os.clock() - c0
for _ = got + 1, sent do conn:receive(10) end
conn:close()
print(string.format("RESULT mode=client size=%d depth=%d secs=%.2f msgs=%d msgs_per_s=%.0f cpu_us_per_msg=%.1f errors=%d",
  size, depth, elapsed, got, got / elapsed, cpu * 1e6 / got, errors))
