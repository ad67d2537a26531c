-- A lua-ws server inside another event loop, for spec/loops_spec.lua:
--   host_server.lua --loop cqueues|luv|copas|cqueues-nested|luv-nested --port N [--set k=v ...]
--                   [--wrap yes] (copas: ws.accept gets the socket copas.wrap made of it)
-- "cqueues", "luv", "copas": the host loop accepts, ws.accept upgrades in a
-- host coroutine; "-nested": a ws.listen server nested in the host loop.
-- A ticker in the host loop (every 10 ms) records its worst gap, less the
-- time the process waited for a CPU meanwhile (/proc/self/schedstat: on a
-- loaded machine that is the scheduler's doing, not a stall of the loop).
-- Paths: /echo; /timeout (receive(0.3) first, answers "timeout:ERR", then
-- echoes); /bye (echoes one message, then closes 4002 "server bye");
-- /stats ("reset" -> "ok"; "get" -> the ticker's worst gap in seconds);
-- /dial (a ws:// URL -> connects to it from the host loop, sends "hi",
-- answers "dialed:ECHO:CODE" after closing with 4001); /flood (sends 1 MiB
-- messages until a send fails), /queue (queues frames without waiting until
-- one is refused), /close (closes; the peer is expected never to answer):
-- these log "LIMIT: RESULTS after SECONDS"; /quit (copas 2-4: answers
-- "quitting", closes, removes the server and stops the ticker; the host
-- logs "copas loop returned" when copas.loop() comes back).
-- Logs "closed PEER CODE REASON" when a handler ends.
-- WS_COPAS_PATH=DIR: load copas from DIR (see spec/loops_spec.lua).
local ws = require "ws"
local common = require "spec.servers.common"
local gettime = require("socket").gettime

local kind, port, wrap
local host = "127.0.0.1"
local opts = {}   -- ws.accept's (checked: listen's host and port are not among them)
local i = 1
while arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "--loop" then kind = v
  elseif a == "--port" then port = tonumber(v)
  elseif a == "--wrap" then wrap = v == "yes"
  elseif a == "--set" then
    local k, val = v:match("^([%w_]+)=(.*)$")
    opts[k] = common.value(val)
  else error("unknown argument " .. a) end
  i = i + 2
end

-- seconds this process has waited on a run queue so far (0 if unknown)
local function cpu_wait()
  local f = io.open("/proc/self/schedstat")
  if not f then return 0 end
  local _, wait = f:read("*n", "*n")
  f:close()
  return (wait or 0) / 1e9
end

local on_quit   -- set by a host that can stop (/quit)

local worst, last, last_wait = 0, gettime(), cpu_wait()
local function tick()
  local now, waited = gettime(), cpu_wait()
  local gap = (now - last) - (waited - last_wait)
  if gap > worst then worst = gap end
  last, last_wait = now, waited
end

local function handler(conn)
  local path = conn.request.path
  if path == "/timeout" then
    local _, err = conn:receive(0.3)
    conn:send("timeout:" .. tostring(err))
  elseif path == "/stats" then
    while true do
      local m = conn:receive()
      if not m then break end
      if m == "reset" then
        worst, last, last_wait = 0, gettime(), cpu_wait()
        conn:send("ok")
      else
        conn:send(string.format("%.4f", worst))
      end
    end
  elseif path == "/dial" then
    local url = conn:receive()
    local c, err = ws.connect(url)
    local answer = "dial failed: " .. tostring(err)
    if c then
      c:send("hi")
      local echo = c:receive(5)
      local ok, code = c:close(4001, "dialer done")
      answer = string.format("dialed:%s:%s:%s", tostring(echo), tostring(ok), tostring(code))
    end
    conn:send(answer)
  elseif path == "/flood" or path == "/queue" or path == "/close" then
    local t, a, b = gettime(), nil, nil   -- luacheck: ignore 311
    if path == "/flood" then
      local big = ("x"):rep(1024 * 1024)
      repeat a, b = conn:send(big, "binary") until not a
    elseif path == "/queue" then
      local frame = ws.core.frame(("q"):rep(64 * 1024), "binary")
      repeat a, b = conn:send_encoded(frame) until not a
    else
      a, b = conn:close(1000)
    end
    ws.log("%s: %s %s after %.3f", path:sub(2), tostring(a), tostring(b), gettime() - t)
    return
  elseif path == "/quit" and on_quit then
    conn:send("quitting")
    conn:close()
    on_quit()
    return
  elseif path == "/bye" then
    local m, k = conn:receive()
    if m then conn:send(m, k) end
    conn:close(4002, "server bye")
  end
  common.echo(conn)
end

local function serve(conn)
  handler(conn)
  if conn.state ~= "closed" then conn:close() end
  ws.log("closed %s %s %s", conn.peer, tostring(conn.close_code), tostring(conn.close_reason))
end

local function accept(sock)
  local conn, err = ws.accept(sock, opts)   -- (opts has no loop: see nested)
  if not conn then ws.log("accept failed: %s", tostring(err)) return end
  serve(conn)
end

local function nested(loop_opt)
  local lopts = { host = host, port = port, loop = loop_opt }
  for k, v in pairs(opts) do lopts[k] = v end
  local server = assert(ws.listen(lopts))
  for _, p in ipairs { "/echo", "/timeout", "/bye", "/stats", "/dial", "/flood", "/queue", "/close" } do
    server:route(p, function(conn) handler(conn) end)
  end
  server.opts.on_disconnect = function(conn)
    ws.log("closed %s %s %s", conn.peer, tostring(conn.close_code), tostring(conn.close_reason))
  end
  return server
end

if kind == "cqueues" or kind == "cqueues-nested" then
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  if kind == "cqueues" then
    local srv = require("cqueues.socket").listen(host, port)
    assert(srv:listen())
    cq:wrap(function()
      while true do cq:wrap(accept, assert(srv:accept())) end   -- (Lua 5.1 cannot yield in a for)
    end)
  else
    require("ws.cqueues").attach(cq, nested())
  end
  cq:wrap(function() while true do cqueues.sleep(0.01); tick() end end)
  assert(cq:loop())
elseif kind == "luv" or kind == "luv-nested" then
  local uv = require "luv"
  local wsluv = require "ws.luv"
  if kind == "luv" then
    local srv = uv.new_tcp()
    assert(srv:bind(host, port))
    srv:listen(128, function()
      local c = uv.new_tcp()
      srv:accept(c)
      wsluv.spawn(accept, c)
    end)
  else
    nested(wsluv.loop())
  end
  uv.new_timer():start(10, 10, tick)
  uv.run()
elseif kind == "copas" then
  local dir = os.getenv("WS_COPAS_PATH")   -- another copas than the installed one
  if dir then package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path end
  local copas = require "copas"
  local wscopas = require "ws.copas"
  local listener = assert(require("socket").bind(host, port))
  copas.addserver(listener, wrap and function(sock) accept(copas.wrap(sock)) end or accept)
  -- copas 2-4 run as their users run them; 1.x (no timers) through ws.copas
  local nap = copas.sleep or function(s) wscopas.sched:sleep(s) end
  local quitting = false
  if copas.finished then
    on_quit = function()
      quitting = true
      copas.removeserver(listener)
    end
  end
  copas.addthread(function() while not quitting do nap(0.01); tick() end end)
  if copas.sleep then copas.loop() else wscopas.loop() end
  ws.log("copas loop returned")
else
  error("--loop cqueues|luv|copas|cqueues-nested|luv-nested expected")
end
