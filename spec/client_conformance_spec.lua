-- Autobahn-shaped conformance of the client: examples/autobahn_client.lua
-- (an echo client on ws.connect) against spec/servers/fuzzing_server.lua,
-- which plays every case of spec/client_cases.lua on the URLs of
-- Autobahn|Testsuite's fuzzingserver and judges what the client sends back.
local H = require "spec.helpers"
local CASES = require "spec.client_cases"

describe("client conformance (examples/autobahn_client.lua)", function()
  local server, verdicts, out, code

  setup(function()
    server = H.start_lua("spec/servers/fuzzing_server.lua", nil, "fuzzing-server")
    out, code = H.run(string.format("timeout 120 %s %s/examples/autobahn_client.lua ws://127.0.0.1:%d lua-ws 2>&1",
      H.LUA, H.ROOT, server.port))
    H.wait_output(server, "reports lua%-ws", 5)
    verdicts = {}
    for n, verdict in server.output():gmatch("case (%d+) %S+ ([^\n]*)") do verdicts[tonumber(n)] = verdict end
  end)
  teardown(function() server.stop() end)

  it("runs every case and has the reports written", function()
    assert.equal(0, code, out)
    assert.matches("ran " .. #CASES .. " cases; reports updated for agent lua%-ws", out)
    assert.matches("reports lua%-ws", server.output())
  end)

  for n, case in ipairs(CASES) do
    it(case.id .. " " .. case.title, function()
      assert.equal("OK", verdicts[n], server.output():match("request FAILED[^\n]*") or out)
    end)
  end
end)
