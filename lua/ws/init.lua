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
-- and default, is in ws.options; a misspelt or ill-typed option raises at
-- the call.
-- @module ws
local server = require "ws.server"
local client = require "ws.client"

local M = {}

--- The version, "MAJOR.MINOR.PATCH".
M._VERSION = "0.1.0"

--- The version as one number to compare: MAJOR * 10000 + MINOR * 100 + PATCH.
M._VERSION_NUM = 100

--- The C core (codec, reader, poller).
M.core = require "ws.core"

--- The coroutine scheduler.
M.loop = require "ws.loop"

--- The option schemas: names, types, ranges, defaults, docs.
M.options = require "ws.options"

--- Listen on host:port and serve WebSocket routes and pages (ws.server.listen).
-- @function listen
---@param options? ws.ListenOptions
---@return ws.Server|nil server
---@return string? err
M.listen = server.listen

--- The server side of the handshake on a socket accepted elsewhere (ws.server.accept).
-- @function accept
---@param sock table
---@param options? ws.AcceptOptions
---@return ws.Conn|nil conn
---@return string? err
M.accept = server.accept

--- Open a ws:// or wss:// connection (ws.client.connect).
-- @function connect
---@param url string
---@param options? ws.ConnectOptions
---@return ws.Conn|nil conn
---@return string? err
---@return ws.Response? response on a refused handshake
M.connect = client.connect

--- The default origin check: no Origin, or its host equal to Host.
-- @function same_origin
---@param origin string?
---@param request ws.Request
---@return boolean
M.same_origin = server.same_origin

--- An "info" line on stderr with a time stamp: ws.log("listening on %s", address).
-- @function log
---@param fmt string
---@param ... any
M.log = require("ws.log").printf

--- Rooms and pub/sub, in this process or across processes over Redis (ws.hub).
-- @function hub
---@param options? ws.HubOptions redis = URL, ordered = bool, ... (README "Rooms and pub/sub")
---@return ws.Hub hub
function M.hub(options) return require("ws.hub").new(options) end

return M
