-- Echo over TLS: wss://HOST:PORT/ws with a certificate and key (PEM files).
--   lua5.4 examples/wss_echo.lua --cert cert.pem --key key.pem [--host H] [--port P] [--quiet]
--     [--receive-loop]
-- --quiet: no line per connection (as the peers' servers in bench/)
-- --receive-loop: a loop over conn:receive() instead of conn:serve (see echo.lua)
local ws = require "ws"

local opts = { host = "127.0.0.1", port = 8443, max_message = 16 * 1024 * 1024,
               check_origin = function() return true end }
local quiet, receive_loop = false, false
local i = 1
while arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "--cert" then opts.tls = opts.tls or {}; opts.tls.certificate = v
  elseif a == "--key" then opts.tls = opts.tls or {}; opts.tls.key = v
  elseif a == "--host" then opts.host = v
  elseif a == "--port" then opts.port = tonumber(v)
  elseif a == "--quiet" then quiet = true; i = i - 1
  elseif a == "--receive-loop" then receive_loop = true; i = i - 1
  else
    io.stderr:write("usage: lua5.4 examples/wss_echo.lua --cert FILE --key FILE [--host H] [--port P] [--quiet]" ..
      " [--receive-loop]\n")
    os.exit(2)
  end
  i = i + 2
end
if not (opts.tls and opts.tls.certificate and opts.tls.key) then
  io.stderr:write("wss_echo: --cert and --key are required\n")
  os.exit(2)
end

local function send_back(conn, message, kind) conn:send(message, kind) end

local server = assert(ws.listen(opts))
server:route("/ws", function(conn)
  if not quiet then ws.log("connect %s", conn.peer) end
  if receive_loop then
    -- a while loop, not `for message, kind in conn:messages()`, so that it
    -- runs on Lua 5.1 too (which cannot wait inside a for iterator)
    while true do
      local message, kind = conn:receive()
      if not message then break end
      send_back(conn, message, kind)
    end
  else
    -- the loop calls this itself as each message comes (see examples/echo.lua)
    conn:serve(send_back)
  end
  if not quiet then ws.log("disconnect %s (%s)", conn.peer, tostring(conn.close_code)) end
end)
ws.log("wss echo server on wss://%s/ws", server.address)
server:run()
