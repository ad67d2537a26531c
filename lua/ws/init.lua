--- lua-ws: strict, fast RFC 6455 WebSockets for Lua.
--   local ws = require "ws"
--   local server = assert(ws.listen { port = 8080 })
--   server:route("/ws", function(conn)
--     for data, kind in conn:messages() do conn:send(data, kind) end
--   end)
--   server:run()
local server = require "ws.server"
local client = require "ws.client"

local M = {
  _VERSION = "lua-ws scm",
  core = require "ws.core",
  loop = require "ws.loop",
  listen = server.listen,         -- listen{ host, port, ... } -> server | nil, err
  accept = server.accept,         -- accept(sock, opts) -> conn | nil, err
  connect = client.connect,       -- connect(url, opts) -> conn | nil, err
  same_origin = server.same_origin,
  log = require("ws.log").printf, -- log(fmt, ...) to stderr with a timestamp
  -- hub{ redis = URL, ordered = bool, ... } -> rooms and pub/sub (ws.hub)
  hub = function(opts) return require("ws.hub").new(opts) end,
}

return M
