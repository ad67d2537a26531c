-- What the spec servers share: their command line, a log line for every
-- finished connection, and the echo handler.
local ws = require "ws"

local M = {}

local function value(v)
  if v == "true" then return true elseif v == "false" then return false end
  return tonumber(v) or v
end

--- Listen on opts completed from the command line: --port N and
-- --set key=value (numbers and booleans converted). own(flag, next_arg),
-- for a server's other flags, returns how many arguments it took (nil:
-- unknown). Logs "closed PEER CODE REASON" for every finished connection.
function M.listen(arg, opts, own)
  local i = 1
  while arg[i] do
    local a, n = arg[i], 2
    if a == "--port" then
      opts.port = tonumber(arg[i + 1])
    elseif a == "--set" then
      local k, v = arg[i + 1]:match("^([%w_]+)=(.*)$")
      opts[k] = value(v)
    else
      n = own and own(a, arg[i + 1]) or error("unknown argument " .. a)
    end
    i = i + n
  end
  opts.on_disconnect = function(conn)
    ws.log("closed %s %s %s", conn.peer, tostring(conn.close_code), tostring(conn.close_reason))
  end
  return assert(ws.listen(opts))
end

M.value = value

--- Echo every message with its kind until the peer closes.
function M.echo(conn)
  while true do   -- not `for ... in conn:messages()`: Lua 5.1 cannot wait there
    local data, kind = conn:receive()
    if not data then break end
    if not conn:send(data, kind) then break end
  end
end

return M
