-- Subprotocols (Sec-WebSocket-Protocol) with real peers both ways: our
-- server picks by its own preference among what python-websockets and Node
-- ws clients offer; our client offers a list to their servers and reports
-- their choice. (Chromium: spec/browser_spec.lua; our own pair and a server
-- choosing what was not offered: spec/client_spec.lua.)
local json = require "dkjson"
local ws = require "ws"
local H = require "spec.helpers"

local shell_quote = H.shell_quote

local OFFERS = { { "chat.v1", "chat.v2" }, { "chat.v1" }, { "x-unknown" }, {} }

-- The peer's line for each offer, in order.
local function by_offer(lines, out)
  assert.equal(#OFFERS, #lines, out)
  for i, l in ipairs(lines) do assert.same(OFFERS[i], l.offer, out) end
  return lines
end

describe("our server (protocols = { chat.v2, chat.v1 })", function()
  local server
  setup(function()
    server = H.start_lua("spec/servers/test_server.lua", "--protocols chat.v2,chat.v1", "subprotocol-server")
  end)
  teardown(function() server.stop() end)
  local function peer(command)
    return H.run_json(string.format("%s client ws://127.0.0.1:%d/proto %s", command, server.port,
      shell_quote(json.encode(OFFERS))), 30)
  end

  it("python-websockets: its choice is ours, by our preference; none when nothing matches", function()
    local lines = by_offer(peer(H.PYTHON .. " " .. H.ROOT .. "/spec/peers/subprotocols.py"))
    assert.same({ "chat.v2", "chat.v2" }, { lines[1].chosen, lines[1].server_says })
    assert.same({ "chat.v1", "chat.v1" }, { lines[2].chosen, lines[2].server_says })
    -- no common protocol: the connection stands, without one
    assert.same({ nil, "none" }, { lines[3].chosen, lines[3].server_says })
    assert.same({ nil, "none" }, { lines[4].chosen, lines[4].server_says })
  end)

  it("Node ws: the same choices (it refuses a server that picks none of its offer)", function()
    local lines = by_offer(peer("node " .. H.ROOT .. "/spec/peers/subprotocols.js"))
    assert.same({ "chat.v2", "chat.v2" }, { lines[1].chosen, lines[1].server_says })
    assert.same({ "chat.v1", "chat.v1" }, { lines[2].chosen, lines[2].server_says })
    -- we answered no Sec-WebSocket-Protocol: Node's client gives up, as it should
    assert.equal("Server sent no subprotocol", lines[3].error)
    assert.same({ "", "none" }, { lines[4].chosen, lines[4].server_says })
  end)
end)

describe("our client offering subprotocols", function()
  for _, peer in ipairs {
    { "python-websockets", H.PYTHON .. " " .. H.ROOT .. "/spec/peers/subprotocols.py" },
    { "Node ws", "node " .. H.ROOT .. "/spec/peers/subprotocols.js" },
  } do
    it("to a " .. peer[1] .. " server supporting chat.v1: gets its choice, or none", function()
      local server = H.start_server(function(port)
        return string.format("exec %s server %d %s", peer[2], port, shell_quote(json.encode { "chat.v1" }))
      end, "subprotocol-peer")
      finally(server.stop)
      local url = "ws://127.0.0.1:" .. server.port .. "/"
      for _, case in ipairs {
        { { "chat.v2", "chat.v1" }, "chat.v1" },
        { { "chat.v1" }, "chat.v1" },
        { { "x-unknown" }, nil },
        { nil, nil },
      } do
        local conn = assert(ws.connect(url, { protocols = case[1], timeout = 5 }))
        assert.equal(case[2], conn.protocol)
        assert.is_true(conn:send("which"))
        assert.equal(case[2] or "none", (conn:receive(5)))
        assert.is_true(conn:close())
      end
    end)
  end
end)
