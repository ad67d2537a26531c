-- Chat server with rooms: every message from one client goes to all the
-- others in the same room, on every process that shares the Redis.
--   lua5.4 examples/chat.lua [--host H] [--port P] [--redis URL] [--ordered]
--                            [--workers N] [--verbose]
-- ws://HOST:PORT/ws?room=NAME joins room NAME (default "lobby");
-- http://HOST:PORT/ serves a page to chat from a browser (?room=NAME too).
-- Messages are relayed as they are (text or binary) through ws.hub, which
-- encodes a message once and queues it to every connection without
-- waiting: a slow reader never slows the others, and one that lets more
-- than MAX_QUEUE bytes pile up is dropped (close code 1008).
-- --redis redis://[:password@]host:port/db (or unix://path): rooms span
-- every process on that Redis; --ordered: one order per room for all.
-- --workers N: N processes on one port (needs ws.workers and SO_REUSEPORT).
local ws = require "ws"

local MAX_QUEUE = 1024 * 1024   -- bytes waiting for one client before it is dropped

local host, port, verbose, redis_url, ordered, workers = "127.0.0.1", 8080, false, nil, false, nil
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--host" then host = arg[i + 1]; i = i + 1
  elseif a == "--port" then port = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--redis" then redis_url = arg[i + 1]; i = i + 1
  elseif a == "--workers" then workers = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--ordered" then ordered = true
  elseif a == "--verbose" then verbose = true
  else
    io.stderr:write("usage: lua5.4 examples/chat.lua [--host H] [--port P] [--redis URL] [--ordered]",
      " [--workers N] [--verbose]\n")
    os.exit(2)
  end
  i = i + 1
end

local log = ws.log
local PAGE   -- the chat page, below

local function start()
  local hub = ws.hub { redis = redis_url, ordered = ordered }
  local server = assert(ws.listen {
    host = host,
    port = port,
    reuseport = workers and true or nil,
    hub = hub,
    max_queue = MAX_QUEUE,
    max_message = 64 * 1024,   -- a chat line, or a small picture
    ping_interval = 30,        -- find peers that vanished without a close
  })

  local online = 0

  server:route("/ws", function(conn)
    local room = (conn.request.query or ""):match("room=([%w_.-]+)") or "lobby"
    hub:subscribe(conn, room)   -- left when the connection closes
    online = online + 1
    log("join %s room %s (%d online)", conn.peer, room, online)
    -- a while loop, not `for message, kind in conn:messages()`, so that it runs on
    -- Lua 5.1 too (which cannot wait inside a for iterator)
    while true do
      local message, kind = conn:receive()
      if not message then break end
      local n, _, err = hub:publish(room, message, kind, { except = conn })
      if verbose then
        log("relay %s: %s %d bytes to %d%s", conn.peer, kind, #message, n, err and " (" .. err .. ")" or "")
      end
      -- no yield here: receive() yields itself after a burst of 64 messages;
      -- the publishes made meanwhile go to Redis in one write, and local
      -- deliveries in one write per receiver when this task waits (ws.fanout)
    end
    online = online - 1
    log("leave %s (%s %s) (%d online)", conn.peer, tostring(conn.close_code), conn.close_reason or "", online)
  end)

  server:page("/", PAGE)
  -- the hub's counters, one "name value" line each (for monitoring)
  server:page("/status", function()
    local lines = {}
    for k, v in pairs(hub:status()) do lines[#lines + 1] = k .. " " .. tostring(v) end
    table.sort(lines)
    return 200, table.concat(lines, "\n") .. "\n"
  end)
  log("chat server on ws://%s/ws (page at http://%s/)%s", server.address, server.address,
    redis_url and " with redis " .. redis_url .. (ordered and " (ordered)" or "") or "")
  server:run()
  return 0
end

PAGE = [[
<!doctype html>
<meta charset="utf-8">
<title>lua-ws chat</title>
<style>
body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto}
#log{height:20em;overflow-y:auto;border:1px solid #ccc;padding:.5em;white-space:pre-wrap}
.me{color:#06c}.sys{color:#888;font-style:italic}
form{display:flex;gap:.5em;margin-top:.5em}#msg{flex:1}
</style>
<h1>lua-ws chat</h1>
<p>room <b id="room"></b> · <label>name <input id="nick" size="12"></label> <span id="state">connecting…</span></p>
<div id="log"></div>
<form id="f"><input id="msg" autocomplete="off" autofocus><button>Send</button></form>
<script>
const logEl = document.getElementById("log");
const state = document.getElementById("state");
const nick = document.getElementById("nick");
const room = new URLSearchParams(location.search).get("room") || "lobby";
document.getElementById("room").textContent = room;
document.title = room + " · lua-ws chat";
nick.value = "guest" + Math.floor(Math.random() * 1000);
const line = (text, cls) => {
  const d = document.createElement("div");
  d.textContent = text;
  if (cls) d.className = cls;
  logEl.appendChild(d);
  logEl.scrollTop = logEl.scrollHeight;
};
let sock;
const connect = () => {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  sock = new WebSocket(scheme + location.host + "/ws?room=" + encodeURIComponent(room));
  sock.onopen = () => { state.textContent = "online"; line("connected", "sys"); };
  sock.onmessage = (e) => line(typeof e.data === "string" ? e.data : "(binary message)");
  sock.onclose = (e) => {
    state.textContent = "offline (" + e.code + "), reconnecting…";
    line("disconnected (" + e.code + ")", "sys");
    setTimeout(connect, 2000);
  };
};
connect();
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("msg");
  if (!input.value || sock.readyState !== WebSocket.OPEN) return;
  const text = nick.value + ": " + input.value;
  sock.send(text);
  line(text, "me");
  input.value = "";
};
</script>
]]

if workers then
  local ok, workers_mod = pcall(require, "ws.workers")
  if not ok then
    io.stderr:write("chat.lua: --workers needs the ws.workers module, which this lua-ws does not have;\n",
      "run one process per port instead (each with the same --redis)\n")
    os.exit(2)
  end
  os.exit(workers_mod.run(workers, start))
end
os.exit(start())
