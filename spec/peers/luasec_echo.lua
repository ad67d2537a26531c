-- An echo server on LuaSec sockets handed to ws.accept (the path lua-ws
-- keeps for applications that bring their own LuaSec sockets):
--   LUA spec/peers/luasec_echo.lua --port P --cert FILE --key FILE
local ws = require "ws"
local socket = require "socket"
local ssl = require "ssl"

local opts = {}
for i = 1, #arg - 1, 2 do opts[arg[i]:sub(3)] = arg[i + 1] end
local l = ws.loop.new()
local listener = assert(socket.bind("127.0.0.1", tonumber(opts.port)))
listener:settimeout(0)
local ctx = assert(ssl.newcontext { mode = "server", protocol = "any", certificate = opts.cert, key = opts.key,
                                    options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" } })

local function handshake(s, deadline)
  while true do
    local ok, err = s:dohandshake()
    if ok then return true end
    if err ~= "wantread" and err ~= "wantwrite" then return nil end
    if not l:wait(s, err == "wantwrite" and "w" or "r", deadline) then return nil end
  end
end

local function serve(c)
  c:settimeout(0)
  c:setoption("tcp-nodelay", true)
  local s = assert(ssl.wrap(c, ctx))
  s:settimeout(0)
  if not handshake(s, socket.gettime() + 5) then s:close(); return end
  local conn = ws.accept(s, { check_origin = function() return true end, max_message = 16 * 1024 * 1024 })
  if not conn then return end
  while true do
    local data, kind = conn:receive()
    if not data or not conn:send(data, kind) then break end
  end
  conn:close()
end

l:spawn(function()
  while true do
    local c = listener:accept()
    if c then l:spawn(serve, c) else l:wait(listener, "r") end
  end
end)
print("luasec echo on " .. opts.port)
io.stdout:flush()
l:run()
