-- lua-http 0.4 (Debian lua-http) echo server on /ws:  lua5.4 luahttp_echo.lua PORT
-- Debian ships lua-http's pure-Lua files for 5.1-5.3 only; run.sh adds those
-- directories to LUA_PATH (its C deps cqueues, luaossl, lpeg exist for 5.4).
local http_server = require "http.server"
local http_headers = require "http.headers"
local websocket = require "http.websocket"

local port = tonumber(arg[1]) or 8080

local function onstream(_, stream)
  local req = stream:get_headers()
  if req:get(":path") ~= "/ws" then
    local h = http_headers.new()
    h:append(":status", "404")
    stream:write_headers(h, true)
    return
  end
  local ws = websocket.new_from_stream(stream, req)
  if not ws or not ws:accept() then return end
  while true do
    local data, kind = ws:receive()       -- no size limit in lua-http
    if not data then break end
    if not ws:send(data, kind) then break end
  end
  ws:close()
end

local server = assert(http_server.listen {
  host = "127.0.0.1", port = port, onstream = onstream,
  onerror = function() end,               -- a client going away is not news
})
assert(server:listen())
io.stderr:write("lua-http echo on ", port, "\n")
assert(server:loop())
