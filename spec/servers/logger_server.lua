-- A lua-ws server whose logger option raises, in each host loop, for
-- spec/logger_raises_spec.lua:
--   logger_server.lua --loop std|luv|luv-nested|cqueues|cqueues-nested|copas --port N
-- "std": ws.listen on its own ws.loop (server:run); "-nested": ws.listen
-- on a ws.loop created with the same logger, driven by the host; "luv",
-- "cqueues", "copas": the host accepts, ws.accept upgrades in a host
-- coroutine. Paths: /echo; /boom (listen only: the handler raises after
-- one message, so the server logs it); /queue (queues 64 KiB frames
-- without waiting until one is refused, then prints "queue: OK ERR").
-- max_queue is 64 KiB. Prints "serving" once it listens.
local ws = require "ws"
local common = require "spec.servers.common"

local kind, port
local i = 1
while arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "--loop" then kind = v
  elseif a == "--port" then port = tonumber(v)
  else error("unknown argument " .. a) end
  i = i + 2
end

local function logger(_, message) error("the logger broke on: " .. tostring(message)) end

local opts = { logger = logger, max_queue = 64 * 1024, ping_interval = false, handshake_timeout = 2 }

local function handler(conn)
  local path = conn.request.path
  if path == "/boom" then
    conn:receive()
    error("handler boom")
  elseif path == "/queue" then
    local frame = ws.core.frame(("q"):rep(64 * 1024), "binary")
    local ok, err
    for _ = 1, 10000 do
      ok, err = conn:send_encoded(frame)
      if not ok then break end
    end
    io.stdout:write("queue: ", tostring(ok), " ", tostring(err), "\n")
    io.stdout:flush()
    return
  end
  common.echo(conn)
end

local function accept(sock)
  local conn = ws.accept(sock, opts)
  if not conn then return end
  handler(conn)
  if conn.state ~= "closed" then conn:close() end
end

-- ws.listen on loop l (nil: its own, made with opts.logger)
local function listen(l)
  local lopts = { host = "127.0.0.1", port = port, loop = l, signals = false }
  for k, v in pairs(opts) do lopts[k] = v end
  local server = assert(ws.listen(lopts))
  for _, p in ipairs { "/echo", "/boom", "/queue" } do server:route(p, handler) end
  return server
end

local function serving()
  io.stdout:write("serving\n")
  io.stdout:flush()
end

local loop = require "ws.loop"
if kind == "std" then
  local server = listen()
  serving()
  server:run()
elseif kind == "cqueues" or kind == "cqueues-nested" then
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  if kind == "cqueues" then
    local srv = require("cqueues.socket").listen("127.0.0.1", port)
    assert(srv:listen())
    cq:wrap(function()
      while true do cq:wrap(accept, assert(srv:accept())) end   -- (Lua 5.1 cannot yield in a for)
    end)
  else
    require("ws.cqueues").attach(cq, listen(loop.new { logger = logger }))
  end
  serving()
  assert(cq:loop())
elseif kind == "luv" or kind == "luv-nested" then
  local uv = require "luv"
  local wsluv = require "ws.luv"
  if kind == "luv" then
    local srv = uv.new_tcp()
    assert(srv:bind("127.0.0.1", port))
    srv:listen(128, function()
      local c = uv.new_tcp()
      srv:accept(c)
      wsluv.spawn(accept, c)
    end)
  else
    local l = loop.new { logger = logger }
    wsluv.attach(l)
    listen(l)
  end
  serving()
  uv.run()
elseif kind == "copas" then
  local copas = require "copas"
  local listener = assert(require("socket").bind("127.0.0.1", port))
  copas.addserver(listener, accept)
  serving()
  if copas.sleep then copas.loop() else require("ws.copas").loop() end
else
  error("--loop std|luv|luv-nested|cqueues|cqueues-nested|copas expected")
end
