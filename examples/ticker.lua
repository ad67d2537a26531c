-- Timers and background work on the server's loop: a periodic push to every
-- client, a task per connection, and a clean stop.
--   lua5.4 examples/ticker.lua [--port P] [--every SECONDS] [--for SECONDS]
-- ws://127.0.0.1:P/ticks: every client gets "tick N" every --every seconds
-- (one task for all, through server:broadcast) and "you said: ..." for each
-- of its messages (its own task); after --for seconds (default: forever) the
-- server closes every connection with 1001 and exits.
--
-- Never block in a handler or a task: socket.sleep, a blocking read or a
-- long computation stalls every client. Wait with server.loop:sleep(secs),
-- conn:receive(), or server.loop:wait(sock, "r") on a non-blocking socket.
local ws = require "ws"

local port, every, stop_after = 8080, 1, nil
local i = 1
while arg[i] do
  local a, v = arg[i], tonumber(arg[i + 1])
  if a == "--port" then port = v elseif a == "--every" then every = v elseif a == "--for" then stop_after = v
  else io.stderr:write("usage: lua5.4 examples/ticker.lua [--port P] [--every S] [--for S]\n"); os.exit(2) end
  i = i + 2
end

local server, err = ws.listen { port = port }
if not server then io.stderr:write("ticker: ", err, "\n"); os.exit(1) end
local loop = server.loop

-- one task per connection: the handler itself, which may wait freely
server:route("/ticks", function(conn)
  while true do
    local data = conn:receive()
    if not data then break end
    conn:send("you said: " .. data)
  end
end)

-- one task for every client: a periodic push, encoded once
loop:spawn(function()
  local n = 0
  while server.open do
    loop:sleep(every)
    n = n + 1
    server:broadcast("tick " .. n)
  end
end)

-- a clean stop: close every connection with 1001, then run() returns
if stop_after then
  loop:spawn(function()
    loop:sleep(stop_after)
    server:close(1001, "ticker stopping")
  end)
end

ws.log("ticker on ws://%s/ticks, a tick every %g s", server.address, every)
server:run()
