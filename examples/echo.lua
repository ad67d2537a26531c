-- Echo server: the Lua twin of gorilla/websocket's echo example.
--   lua5.4 examples/echo.lua [--host H] [--port P] [--compression] [--verbose]
-- ws://HOST:PORT/ws echoes every message with its type; http://HOST:PORT/
-- serves a page that tries it from a browser. --compression accepts
-- permessage-deflate (off by default, as in the original).
local ws = require "ws"

local host, port, compression, verbose = "127.0.0.1", 8080, false, false
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--host" then host = arg[i + 1]; i = i + 1
  elseif a == "--port" then port = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--compression" then compression = true
  elseif a == "--verbose" then verbose = true
  else
    io.stderr:write("usage: lua5.4 examples/echo.lua [--host H] [--port P] [--compression] [--verbose]\n")
    os.exit(2)
  end
  i = i + 1
end

local log = ws.log or function(fmt, ...) io.stderr:write(string.format(fmt, ...), "\n") end

local server, err = ws.listen {
  host = host,
  port = port,
  max_message = 16 * 1024 * 1024,              -- echo large messages too
  compression = compression,
  check_origin = function() return true end,   -- like the original: accept all origins
}
if not server then   -- a busy port, say: say so, without a traceback
  io.stderr:write("echo: ", err, "\n")
  os.exit(1)
end

server:route("/ws", function(conn)
  log("connect %s", conn.peer)
  -- a while loop, not `for message, kind in conn:messages()`, so that it runs on
  -- Lua 5.1 too (which cannot wait inside a for iterator)
  while true do
    local message, kind = conn:receive()
    if not message then break end
    if verbose then log("recv %s: %s %d bytes", conn.peer, kind, #message) end
    if not conn:send(message, kind) then break end
  end
  log("disconnect %s (%s %s)", conn.peer, tostring(conn.close_code), conn.close_reason or "")
end)

server:page("/", [[
<!doctype html>
<meta charset="utf-8">
<title>lua-ws echo</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto}#log{white-space:pre-wrap;border:1px solid #ccc;padding:.5em;min-height:8em}</style>
<h1>lua-ws echo</h1>
<form id="f"><input id="msg" size="40" value="hello" autofocus> <button>Send</button></form>
<p id="state">connecting…</p>
<div id="log"></div>
<script>
const log = (s) => { document.getElementById("log").textContent += s + "\n"; };
const state = document.getElementById("state");
const sock = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
sock.onopen = () => { state.textContent = "open"; document.title = "open"; };
sock.onmessage = (e) => { log("echo: " + e.data); document.title = "echo:" + e.data; };
sock.onclose = (e) => { state.textContent = "closed " + e.code; };
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const m = document.getElementById("msg").value;
  sock.send(m); log("sent: " + m);
};
</script>
]])

log("echo server on ws://%s/ws (page at http://%s/)", server.address, server.address)
server:run()
