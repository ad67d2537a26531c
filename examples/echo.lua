-- Echo server: the Lua twin of gorilla/websocket's echo example.
--   lua5.4 examples/echo.lua [--host H] [--port P] [--compression] [--verbose] [--quiet]
--     [--workers N] [--reuseport] [--fd N] [--trusted-proxy ADDR_OR_CIDR]...
--     [--proxy-protocol] [--healthz] [--grace S] [--linger S] [--ping S] [--same-origin]
--     [--receive-loop]
-- ws://HOST:PORT/ws echoes every message with its type; http://HOST:PORT/
-- serves a page that tries it from a browser. --compression accepts
-- permessage-deflate (off by default, as in the original).
-- --workers N: N processes on the port (0: one per core); SIGTERM or
-- SIGINT drains (1001 to every client, spread over --grace seconds) and
-- exits 0. One line per connection starts "connect <client address>"
-- (--quiet: none, as the peers' servers in bench/; --verbose: one per message too).
-- --same-origin: the library's default Origin check instead of accepting all.
-- --receive-loop: the handler as a loop over conn:receive() (one task switch
-- per message), where by default conn:serve has the loop call it per message.
local ws = require "ws"

local o = {
  host = "127.0.0.1", port = 8080, compression = false, verbose = false, quiet = false,
  workers = nil, reuseport = false, trusted = nil, proxy_protocol = false,
  healthz = false, grace = 0, linger = 0, ping = nil, fd = nil, same_origin = false,
  receive_loop = false,
}
local USAGE = "usage: lua5.4 examples/echo.lua [--host H] [--port P] [--compression] [--verbose] [--quiet]\n" ..
  "  [--workers N] [--reuseport] [--fd N] [--trusted-proxy ADDR_OR_CIDR]... [--proxy-protocol]\n" ..
  "  [--healthz] [--grace S] [--linger S] [--ping S] [--same-origin] [--receive-loop]\n"
local function usage(why)
  io.stderr:write("echo: ", why, "\n", USAGE)
  os.exit(2)
end
local i = 1
while arg[i] do
  local a, v = arg[i], arg[i + 1]
  local function value() i = i + 1; return v or usage(a .. " needs a value") end
  -- a number in lo..hi (whole: an integer), else the usage and exit 2
  local function number(lo, hi, whole)
    local n = tonumber(value())
    if not n or n ~= n or n == math.huge or n < lo or n > hi or (whole and n % 1 ~= 0) then
      usage(string.format("%s wants %s %s", a, whole and "an integer" or "a number",
        hi == math.huge and ">= " .. lo or "in " .. lo .. ".." .. string.format("%d", hi)))
    end
    return n
  end
  if a == "--host" then o.host = value()
  elseif a == "--port" then o.port = number(0, 65535, true)
  elseif a == "--compression" then o.compression = true
  elseif a == "--verbose" then o.verbose = true
  elseif a == "--quiet" then o.quiet = true
  elseif a == "--workers" then o.workers = number(0, 4096, true)
  elseif a == "--reuseport" then o.reuseport = true
  elseif a == "--fd" then o.fd = number(0, 2 ^ 31 - 1, true)
  elseif a == "--trusted-proxy" then o.trusted = o.trusted or {}; o.trusted[#o.trusted + 1] = value()
  elseif a == "--proxy-protocol" then o.proxy_protocol = true
  elseif a == "--healthz" then o.healthz = true
  elseif a == "--grace" then o.grace = number(0, math.huge)
  elseif a == "--linger" then o.linger = number(0, math.huge)
  elseif a == "--ping" then o.ping = number(0.001, math.huge)
  elseif a == "--same-origin" then o.same_origin = true
  elseif a == "--receive-loop" then o.receive_loop = true
  else
    usage("unknown argument " .. a)
  end
  i = i + 1
end
-- the PROXY header is taken from loopback unless told otherwise
if o.proxy_protocol and not o.trusted then o.trusted = { "127.0.0.1", "::1" } end
-- systemd socket activation: asked here, in the process systemd started
-- (LISTEN_PID names it), not in the workers forked below
o.fd = o.fd or require("ws.server").systemd_fd()
-- port 0 is picked per listener: each worker would get one of its own
if o.workers and o.port == 0 and not o.fd then
  usage("--port 0 with --workers: each worker would listen on a port of its own")
end

local log = ws.log or function(fmt, ...) io.stderr:write(string.format(fmt, ...), "\n") end

local PAGE = [[
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
]]

-- (--quiet: no count, so no closure per connection)
local function send_back(conn, message, kind) conn:send(message, kind) end

-- one server, run until a signal drains it
local function serve()
  local server, err = ws.listen {
    host = o.host,
    port = o.port,
    fd = o.fd,                                    -- --fd N, or systemd's socket
    reuseport = o.reuseport or o.workers ~= nil,
    max_message = 16 * 1024 * 1024,              -- echo large messages too
    compression = o.compression,
    -- like the original: accept all origins (--same-origin: the default check)
    check_origin = not o.same_origin and function() return true end or nil,
    trusted_proxies = o.trusted,
    proxy_protocol = o.proxy_protocol,
    health_path = o.healthz and "/healthz" or nil,
    grace = o.grace,
    linger = o.linger,
    ping_interval = o.ping,
  }
  if not server then   -- a busy port, say: say so, without a traceback
    io.stderr:write("echo: ", err, "\n")
    os.exit(1)
  end
  local pid = ws.core.getpid()
  server:route("/ws", function(conn)
    if not o.quiet then log("connect %s (pid %d)", conn.peer, pid) end
    local echoed = 0
    -- (--quiet: the count goes unused, and so does this closure, unless
    -- --receive-loop --verbose logs each message)
    local echo = send_back
    if not o.quiet or (o.verbose and o.receive_loop) then
      echo = function(c, message, kind)
        if o.verbose then log("recv %s: %s %d bytes", c.peer, kind, #message) end
        if c:send(message, kind) then echoed = echoed + 1 end
      end
    end
    if o.receive_loop then
      -- a while loop, not `for message, kind in conn:messages()`, so that
      -- it runs on Lua 5.1 too (which cannot wait inside a for iterator)
      while true do
        local message, kind = conn:receive()
        if not message then break end
        echo(conn, message, kind)
      end
    else
      -- the loop calls echo itself as each message comes (no task switch)
      conn:serve(o.quiet and send_back or echo)
    end
    if not o.quiet then
      log("disconnect %s (%s %s) echoed %d", conn.peer, tostring(conn.close_code), conn.close_reason or "", echoed)
    end
  end)
  server:page("/", PAGE)
  log("echo server on ws://%s/ws (page at http://%s/) pid %d", server.address, server.address, pid)
  server:run()
end

if o.workers then
  os.exit(require("ws.workers").run(o.workers, serve))
end
serve()
