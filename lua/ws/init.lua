--- lua-ws: strict, fast RFC 6455 WebSockets for Lua.
--
--   local ws = require "ws"
--   local server = assert(ws.listen { port = 8080 })
--   server:route("/ws", function(conn)
--     for data, kind in conn:messages() do conn:send(data, kind) end
--   end)
--   server:run()
--
-- Every option of ws.listen, ws.accept and ws.connect, with its type, range
-- and default, is in ws.options (and docs/); a misspelt or ill-typed option
-- raises at the call.
-- @module ws
local server = require "ws.server"
local client = require "ws.client"

local M = {
  --- "MAJOR.MINOR.PATCH"
  _VERSION = "0.1.0",
  --- the version as one number to compare: MAJOR * 10000 + MINOR * 100 + PATCH
  _VERSION_NUM = 100,
  --- the C core (codec, reader, poller)
  core = require "ws.core",
  --- the coroutine scheduler (ws.loop)
  loop = require "ws.loop",
  --- the option schemas (ws.options)
  options = require "ws.options",
  --- listen(options) -> server | nil, err (see ws.server.listen)
  listen = server.listen,
  --- accept(sock, options) -> conn | nil, err (see ws.server.accept)
  accept = server.accept,
  --- connect(url, options) -> conn | nil, err, response (see ws.client.connect)
  connect = client.connect,
  --- same_origin(origin, request) -> boolean: the default origin check
  same_origin = server.same_origin,
  --- log(fmt, ...): an "info" line on stderr with a time stamp
  log = require("ws.log").printf,
}

return M
