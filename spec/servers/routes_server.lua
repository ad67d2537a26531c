-- Routes, pages and static files for spec/routes_spec.lua:
--   lua spec/servers/routes_server.lua --port P --root FOLDER
-- (subprotocol "chat" offered) /ws (exact), /rooms/:name and /api/* (WebSocket) send one text message
-- "ROUTE params" and then echo; pages /page/:id and /files/* answer
-- "ROUTE params"; /static/ serves FOLDER, /fsroot/ the root folder "/";
-- the page /api/help (under the route /api/*) answers "help", /boom raises,
-- /status/CODE answers with status CODE.
-- handshake_timeout is 2 s (a slow download outlasts it). params is a sorted k=v list.
local common = require "spec.servers.common"

local root
local server = common.listen(arg, { host = "127.0.0.1", protocols = { "chat" }, handshake_timeout = 2 }, function(flag, v)
  if flag == "--root" then root = v; return 2 end
end)

local function show(params)
  local t = {}
  for k, v in pairs(params or {}) do t[#t + 1] = k .. "=" .. v end
  table.sort(t)
  return table.concat(t, "&")
end

local function ws_route(name)
  return function(conn)
    conn:send(name .. " " .. show(conn.params))
    common.echo(conn)
  end
end

local function page(name)
  return function(request) return 200, name .. " " .. show(request.params), { ["Content-Type"] = "text/plain" } end
end

server:route("/ws", ws_route("ws"))
-- /hdr: the request's X-Test and Origin headers and the subprotocol, then echo
server:route("/hdr", function(conn)
  local h = conn.request.headers
  conn:send(string.format("x-test=%s origin=%s protocol=%s", tostring(h["x-test"]), tostring(h.origin),
    tostring(conn.protocol)))
  common.echo(conn)
end)
server:route("/rooms/:name", ws_route("room"))
server:route("/rooms/:name/users/:user", ws_route("user"))
server:route("/api/*", ws_route("api"))
server:page("/page/:id", page("page"))
server:page("/files/*", page("files"))
server:page("/files/special", page("special"))
server:page("/api/help", page("help"))
server:page("/boom", function() error("boom") end)
server:page("/status/:code", function(request) return tonumber(request.params.code), "" end)
if root then server:static("/static/", root) end
server:static("/fsroot/", "/")
server:run()
