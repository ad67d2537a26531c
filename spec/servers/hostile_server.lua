-- An echo server with small limits, for spec/hostile_spec.lua.
--   lua5.4 spec/servers/hostile_server.lua --port N [--set key=value ...] [--cert FILE --key FILE]
-- Defaults: handshake_timeout=2, send_timeout=2, close_timeout=1,
-- max_message=1 MiB, max_queue=1 MiB, idle_timeout=30; --set overrides
-- them or sets any other listen option (numbers, true/false, strings).
-- /ws echoes every message with its kind. Logs "closed PEER CODE REASON"
-- for every finished connection.
local ws = require "ws"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")

local opts = {
  host = "127.0.0.1",
  check_origin = function() return true end,
  handshake_timeout = 2,
  send_timeout = 2,
  close_timeout = 1,
  max_message = 1024 * 1024,
  max_queue = 1024 * 1024,
  idle_timeout = 30,
}
-- --cert FILE --key FILE: wss:// (spec/tls_hostile_spec.lua)
local server = common.listen(arg, opts, function(a, v)
  if a == "--cert" or a == "--key" then
    opts.tls = opts.tls or {}
    opts.tls[a == "--cert" and "certificate" or "key"] = v
    return 2
  end
end)
server:route("/ws", common.echo)
ws.log("hostile test server on port %d", server.port)
server:run()
