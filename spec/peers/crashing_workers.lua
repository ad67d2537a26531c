-- For spec/workers_spec.lua: two workers on --port N; worker 1 exits with
-- status 3 at once, every time (the supervisor backs off), worker 2 serves
-- until SIGTERM drains it.
local ws = require "ws"
local port = assert(tonumber(arg[2]), "usage: crashing_workers.lua --port N")
os.exit(require("ws.workers").run(2, function(i)
  if i == 1 then os.exit(3) end
  local server = assert(ws.listen { host = "127.0.0.1", port = port, reuseport = true })
  server:route("/ws", function(conn) repeat until not conn:receive() end)
  server:run()
end))
