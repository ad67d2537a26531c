-- Echo client for Autobahn|Testsuite's fuzzingserver (its client tests):
--   wstest -m fuzzingserver          (listens on ws://127.0.0.1:9001)
--   lua5.4 examples/autobahn_client.lua [ws://127.0.0.1:9001] [agent]
-- It asks for the number of cases, runs each one as an echo client
-- offering permessage-deflate, then has the reports written.
-- spec/client_conformance_spec.lua runs it against spec/servers/fuzzing_server.lua.
local ws = require "ws"

local base = arg[1] or "ws://127.0.0.1:9001"
local agent = arg[2] or "lua-ws"
-- the suite sends messages of up to 16 MiB
local opts = { max_message = 16 * 1024 * 1024, compression = true, timeout = 60 }

local conn = assert(ws.connect(base .. "/getCaseCount", opts))
local count = assert(tonumber((conn:receive())), "no case count")
conn:close()

for n = 1, count do
  local c, err = ws.connect(string.format("%s/runCase?case=%d&agent=%s", base, n, agent), opts)
  if not c then
    io.stderr:write("case ", n, ": ", err, "\n")
  else
    while true do
      local data, kind = c:receive()
      if not data or not c:send(data, kind) then break end
    end
  end
end

conn = assert(ws.connect(base .. "/updateReports?agent=" .. agent, opts))
conn:receive()   -- the server closes when the reports are written
print(string.format("ran %d cases; reports updated for agent %s", count, agent))
