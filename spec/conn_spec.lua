-- connection.lua's driver: keepalive when nobody receives (the background
-- read and its inbox), the 1008 close for a full send queue, and __gc.
local socket = require "socket"
local json = require "dkjson"
local ws = require "ws"
local core = require "ws.core"
local loop = require "ws.loop"
local connection = require "ws.connection"
local H = require "spec.helpers"

local gettime = socket.gettime

-- A server on loop l; log lines go to the table returned.
local function serve(l, opts, handler)
  local lines = {}
  opts.host, opts.port, opts.loop = "127.0.0.1", H.free_port(), l
  opts.logger = function(level, msg, f)
    lines[#lines + 1] = level .. " " .. msg .. (f and f.code and " " .. f.code or "")
  end
  local server = assert(ws.listen(opts))
  server:route("/ws", handler)
  return server, opts.port, lines
end

describe("a full send queue (max_queue)", function()
  it("sends the peer a close frame 1008 after the frames already started, then closes", function()
    local l = loop.new()
    local gave_up
    local server, port, log = serve(l, { max_queue = 64 * 1024 }, function(conn)
      for i = 1, 2000 do
        -- 16 KiB frames of one letter each: the reader checks each is whole
        local ok, err = conn:send_encoded(core.frame(string.char(65 + i % 26):rep(16384), "binary", true, false, 0))
        if not ok then gave_up = err return end
        l:sleep(0.001)
      end
    end)
    local flag = os.tmpname()
    os.remove(flag)
    local peer = H.spawn(string.format("exec %s %s/spec/peers/slow_reader.py %d %s", H.PYTHON, H.ROOT, port, flag), "slow-reader")
    finally(function() peer.stop() os.remove(flag) end)
    assert.truthy(H.step_until(l, 20, function() return gave_up end), peer.output())
    assert.equal("send queue full", gave_up)
    io.open(flag, "w"):close()     -- the peer reads everything now
    assert.truthy(H.step_until(l, 10, function() return peer.output():match("{.*}") end), peer.output())
    local res = json.decode(peer.output():match("{.*}"))
    assert.same({ 1008, "send queue full" }, res.close)
    assert.equal(0, res.rest)                    -- nothing after the close frame, nothing cut
    assert.equal(res.frames - 1, res.intact)     -- every frame before it whole
    assert.is_true(res.intact >= 1)
    assert.truthy(H.step_until(l, 3, function()
      for _, line in ipairs(log) do if line:match("send queue full") then return true end end
    end), table.concat(log, "\n"))
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
  end)
end)

describe("Conn.__gc", function()
  it("makes the scheduler forget the descriptor of a collected, never closed connection", function()
    local forgot, closed = {}, 0
    local sched = { forget = function(_, sock) forgot[#forgot + 1] = sock end }
    local sock = setmetatable({}, { __index = {
      settimeout = function() end, close = function() closed = closed + 1 end } })
    connection.new(sock, { sched = sched, ping_interval = false })
    collectgarbage() collectgarbage()
    assert.equal(1, closed)
    assert.same({ sock }, forgot)
  end)
end)
