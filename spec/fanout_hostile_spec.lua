-- Server:broadcast (ws.fanout) against many and hostile members: 1,000
-- members of which some never read, members joining, leaving and closing
-- between broadcasts of one batch, and members with different
-- permessage-deflate agreements getting broadcasts between their own
-- compressed messages. (spec/broadcast_spec.lua has the basics.)
local socket = require "socket"
local ws = require "ws"
local loop = require "ws.loop"
local core = require "ws.core"
local H = require "spec.helpers"

local gettime = socket.gettime

-- Broadcast message i: its number and span, then filler (300 B .. 300 +
-- span bytes; span 1000 unless given).
local function msg(i, span)
  span = span or 1000
  local head = i .. ":" .. span .. ":"
  return head .. string.char(97 + i % 26):rep(300 + (i * 7919) % span - #head)
end

-- A raw member: a LuaSocket client that sent its upgrade request; what it
-- pulls is decoded by a ws.core reader (client role). deflate: the
-- ws.core.deflate that inflates its compressed messages (fresh: a
-- function making one per message), else none is allowed.
local function member(port, opts)
  opts = opts or {}
  local r = H.raw(port, false, opts.rcvbuf and { rcvbuf = opts.rcvbuf } or nil)
  local extra = opts.ext and ("Sec-WebSocket-Extensions: " .. opts.ext .. "\r\n") or nil
  r:send(H.request(port, "/ws", extra))
  r.sock:settimeout(0)
  r.reader = core.reader { role = "client", rsv_allowed = opts.inflate and 4 or 0 }
  r.inflate = opts.inflate
  r.got = {}   -- the data messages, in order (broadcast ones as their numbers)
  r.head = ""
  return r
end

-- Read what r's socket holds now (no wait) and decode it; raises on a
-- frame that is not whole and right. r.eof once the server closed TCP.
local function pull(r)
  if r.eof or r.gone then return end
  for _ = 1, 1000 do
    local data, err, partial = r.sock:receive(65536)
    data = data or partial
    if data and #data > 0 then
      if r.head then
        r.head = r.head .. data
        local e = r.head:find("\r\n\r\n", 1, true)
        data = ""
        if e then
          assert(r.head:match("^HTTP/1.1 101"), r.head)
          r.ext = r.head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Ee]xtensions: ([^\r]*)\r\n")
          data = r.head:sub(e + 4)
          r.head = nil
        end
      end
      if #data > 0 then
        r.reader:feed(data)
        while true do
          local kind, payload, code, extra = r.reader:next()
          if not kind then
            if payload then error("member got a bad frame: " .. payload .. " " .. tostring(code)) end
            break
          end
          if kind == "close" then
            r.close_code = code
          elseif kind == "text" or kind == "binary" then
            if code == 4 then   -- (rsv)
              local z = r.inflate()
              payload = assert(z:decompress(payload), "a compressed message does not inflate")
            end
            local n, span = payload:match("^(%d+):(%d+):")
            n = kind == "binary" and tonumber(n)
            if n then
              assert(payload == msg(n, tonumber(span)), "broadcast " .. n .. " came wrong")
              r.got[#r.got + 1] = n
            else
              r.got[#r.got + 1] = payload
            end
          end
          local _ = extra
        end
      end
    end
    if err == "closed" then r.eof = true return end
    if not data or #data < 65536 then return end
  end
end

-- The broadcast numbers r got are consecutive; returns the first and last.
-- Pull every reader, in loop l's task, until each has n messages (or a
-- minute passed); returns how many have.
local function pull_all(l, readers, n)
  local deadline = gettime() + 60
  while true do
    l:sleep(0.01)
    local done = 0
    for _, r in ipairs(readers) do
      pull(r)
      if #r.got == n then done = done + 1 end
    end
    if done == #readers or gettime() > deadline then return done end
  end
end

local function run_of(r)
  local first = r.got[1]
  for k = 2, #r.got do
    if r.got[k] ~= r.got[k - 1] + 1 then
      error(string.format("member got %s after %s", tostring(r.got[k]), tostring(r.got[k - 1])), 2)
    end
  end
  return first, r.got[#r.got]
end

local function port_of(r) return tostring(select(2, r.sock:getsockname())) end

-- A server on a fresh loop whose /ws connections are kept in `members`
-- (conn -> true) by their peer port in `by_port`, and whose logged errors
-- go to `errors`.
local function start(opts)
  local l = loop.new()
  local errors = {}
  opts.host, opts.port, opts.loop, opts.ping_interval = "127.0.0.1", 0, l, false
  opts.logger = function(level, message) if level == "error" then errors[#errors + 1] = message end end
  local server = assert(ws.listen(opts))
  local members, by_port = {}, {}
  server:route("/ws", function(conn)
    members[conn] = true
    by_port[conn.peer:match(":(%d+)$")] = conn
    repeat until not conn:receive()
  end)
  return l, server, members, by_port, errors
end

-- Close the server and run its loop until every connection's task ended:
-- their descriptors go now (the suites run in one process, and a thousand
-- left to the collector pushed later specs' sockets past select's 1024)
local function stop_server(l, server)
  server:close()
  H.step_until(l, 5, function() return l.ntasks == 0 end)
end

describe("Server:broadcast's arguments", function()
  it("raises on a kind other than text or binary (a 200-byte \"ping\" would go out as a control frame every peer fails)",
    function()
    local l, server, members = start {}
    local r = member(server.port)
    finally(function()
      r:close()
      stop_server(l, server)
    end)
    H.run_task(l, 20, function()
      local deadline = gettime() + 5
      while not next(members) and gettime() < deadline do l:sleep(0.01) end
      assert.truthy(next(members))
      for _, kind in ipairs { "ping", "pong", "close", "continuation", 9, "bogus" } do
        assert.has_error(function() server:broadcast(("x"):rep(200), kind) end,
          "bad argument #2 to 'broadcast' (\"text\" or \"binary\" expected)")
      end
      assert.has_error(function() server:broadcast(nil) end, "bad argument #1 to 'broadcast' (string expected)")
      assert.equal(1, server:broadcast(msg(1), "binary"))
      l:sleep(0.05)
      pull(r)
    end)
    assert.same({ 1 }, r.got)
  end)
end)

describe("broadcast to 1,000 members", function()
  it("drops those that never read (1008, their max_queue), the others get every message in order; no call blocks",
    function()
    local l, server, _, by_port, errors = start { max_queue = 32 * 1024 }
    local readers, stalled = {}, {}
    finally(function()
      for _, r in ipairs(readers) do r:close() end
      for _, r in ipairs(stalled) do r:close() end
      stop_server(l, server)
    end)
    local N, dropped_all, max_call, max_gap = 0, false, 0, 0
    H.run_task(l, 240, function()
      -- 100 at a time: the listener's backlog, and the loop accepts them meanwhile
      for k = 1, 1000 do
        if k % 25 == 0 then stalled[#stalled + 1] = member(server.port, { rcvbuf = 4096 })
        else readers[#readers + 1] = member(server.port) end
        if k % 100 == 0 then l:sleep(0.01) end
      end
      local function count()
        local n = 0
        for _ in pairs(by_port) do n = n + 1 end
        return n
      end
      local deadline = gettime() + 30
      while count() < 1000 and gettime() < deadline do l:sleep(0.01) end
      assert.equal(1000, count())
      -- the loop keeps running while broadcasts go on: a ticker's longest gap
      local ticking, last = true, gettime()
      l:spawn(function()
        local stop = gettime() + 200
        while ticking and gettime() < stop do
          l:sleep(0.005)
          local now = gettime()
          if now - last > max_gap then max_gap = now - last end
          last = now
        end
      end)
      local function all_dropped()
        for _, r in ipairs(stalled) do
          if by_port[port_of(r)].state == "open" then return false end
        end
        return true
      end
      deadline = gettime() + 120
      while N < 4000 and gettime() < deadline do
        N = N + 1
        local t0 = gettime()
        local n = server:broadcast(msg(N, 8000), "binary")
        if gettime() - t0 > max_call then max_call = gettime() - t0 end
        assert.is_true(n >= #readers and n <= 1000)
        if N % 5 == 0 then
          l:sleep(0)
          for _, r in ipairs(readers) do pull(r) end
          if all_dropped() then
            dropped_all = true
            break
          end
        end
      end
      assert.is_true(dropped_all, "every member that never reads was dropped, after " .. N .. " messages")
      for _ = 1, 10 do
        N = N + 1
        assert.equal(#readers, server:broadcast(msg(N, 8000), "binary"))
      end
      ticking = false
      -- the readers get everything
      assert.equal(#readers, pull_all(l, readers, N))
      for _, r in ipairs(stalled) do
        local c = by_port[port_of(r)]
        assert.equal(1008, c.close_code)
        assert.equal("send queue full", c.close_reason)
      end
    end)
    for _, r in ipairs(readers) do
      local first, last = run_of(r)
      assert.equal(1, first)
      assert.equal(N, last)
      assert.is_nil(r.close_code)
    end
    -- what a stalled member holds: whole frames, in order, from the first
    for _, r in ipairs(stalled) do
      pull(r)
      local first = run_of(r)
      assert.is_true(first == nil or first == 1)
      assert.is_true(#r.got < N)
    end
    assert.is_true(max_call < 0.5, "a broadcast call took " .. max_call .. " s")
    assert.is_true(max_gap < 2, "the loop stalled for " .. max_gap .. " s")
    assert.same({}, errors)
  end)
end)

describe("broadcasts from a loop that never yields", function()
  -- server:broadcast, and a hub's publish (this process only): both ws.fanout
  for _, via in ipairs { "server:broadcast", "hub:publish" } do
    it("hold max_queue as they queue (" .. via .. "): a member that never reads is dropped (1008) within a frame " ..
      "of it, readers get all", function()
      -- frames of 304 .. 4,099 bytes; the flush task never runs meanwhile
      local MAXQ, N, SPAN = 64 * 1024, 1500, 3796
      local hub = via == "hub:publish" and ws.hub {} or nil
      local l, server, _, by_port, errors = start { max_queue = MAXQ, hub = hub }
      local readers, stalled = {}, {}
      finally(function()
        for _, r in ipairs(readers) do r:close() end
        for _, r in ipairs(stalled) do r:close() end
        stop_server(l, server)
      end)
      local peak, ticks_during = 0, nil
      H.run_task(l, 120, function()
        for k = 1, 40 do
          -- (a reader's window must take a whole max_queue at once: it reads
          -- only between broadcasts, and a write cut short leaves the rest to
          -- a task that runs only once the broadcaster yields)
          if k % 4 == 0 then stalled[#stalled + 1] = member(server.port, { rcvbuf = 4096 })
          else readers[#readers + 1] = member(server.port, { rcvbuf = 1024 * 1024 }) end
        end
        local function count()
          local n = 0
          for _ in pairs(by_port) do n = n + 1 end
          return n
        end
        local deadline = gettime() + 20
        while count() < 40 and gettime() < deadline do l:sleep(0.01) end
        assert.equal(40, count())
        for _, r in ipairs(readers) do pull(r) end   -- (the 101 heads)
        if hub then
          for _, c in pairs(by_port) do assert.is_true(hub:subscribe(c, "t")) end
        end
        local conns = {}
        for k, r in ipairs(stalled) do conns[k] = by_port[port_of(r)] end
        local ticks, ticking = 0, true
        l:spawn(function()
          local stop = gettime() + 100
          while ticking and gettime() < stop do
            l:sleep(0)
            ticks = ticks + 1
          end
        end)
        l:sleep(0.01)
        local t0 = ticks
        for i = 1, N do
          if hub then hub:publish("t", msg(i, SPAN), "binary") else server:broadcast(msg(i, SPAN), "binary") end
          for _, c in ipairs(conns) do
            if c:queued() > peak then peak = c:queued() end
          end
          for _, r in ipairs(readers) do pull(r) end
        end
        ticks_during = ticks - t0
        ticking = false
        assert.is_true(peak <= MAXQ + 4100,
          "a stalled member's queue held " .. peak .. " bytes (max_queue " .. MAXQ .. ")")
        for _, c in ipairs(conns) do
          assert.equal(1008, c.close_code)
          assert.equal("send queue full", c.close_reason)
        end
        assert.equal(#readers, pull_all(l, readers, N))
      end)
      assert.equal(0, ticks_during, "the broadcasting loop yielded")
      for _, r in ipairs(readers) do
        local first, last = run_of(r)
        assert.same({ 1, N }, { first, last })
        assert.is_nil(r.close_code)
      end
      for _, r in ipairs(stalled) do
        pull(r)
        local first = run_of(r)
        assert.is_true(first == nil or first == 1)
      end
      assert.same({}, errors)
    end)
  end
end)

describe("broadcast while members come and go", function()
  it("members joining, leaving (a reset), closed and aborted between the broadcasts of one batch", function()
    local l, server, _, by_port, errors = start { max_queue = 1024 * 1024 }
    local all = {}
    finally(function()
      for _, r in ipairs(all) do r:close() end
      stop_server(l, server)
    end)
    local kept, joined, reset, closed, aborted = {}, {}, {}, {}, {}
    local N = 0
    H.run_task(l, 120, function()
      for k = 1, 40 do
        kept[k] = member(server.port)
        all[#all + 1] = kept[k]
      end
      local deadline = gettime() + 10
      local function count()
        local n = 0
        for _ in pairs(by_port) do n = n + 1 end
        return n
      end
      while count() < 40 and gettime() < deadline do l:sleep(0.01) end
      assert.equal(40, count())
      local function take(list)
        local r = table.remove(kept)
        list[#list + 1] = r
        return r
      end
      for round = 1, 30 do
        -- ten broadcasts per batch; between them, one of each
        for j = 1, 10 do
          N = N + 1
          server:broadcast(msg(N), "binary")
          if j == 2 then
            local r = member(server.port)
            joined[#joined + 1] = r
            all[#all + 1] = r
          elseif j == 4 and round % 3 == 0 then
            local r = take(reset)
            pull(r)
            assert(r.sock:setoption("linger", { on = true, timeout = 0 }))
            r.sock:close()   -- an RST, with frames still to come
            r.gone = true
          elseif j == 6 and round % 3 == 1 then
            local c = by_port[port_of(take(closed))]
            l:spawn(function() c:close(1000, "bye") end)
          elseif j == 8 and round % 3 == 2 then
            by_port[port_of(take(aborted))]:abort()
          end
        end
        l:sleep(0)
        for _, r in ipairs(all) do pull(r) end
      end
      -- then everyone still open gets everything up to N
      deadline = gettime() + 30
      repeat
        l:sleep(0.01)
        local behind = 0
        for _, r in ipairs(all) do
          pull(r)
          -- (a member that joined after the last broadcast has none)
          if not (r.gone or r.eof or r.close_code) and r.got[1] and r.got[#r.got] ~= N then behind = behind + 1 end
        end
      until behind == 0 or gettime() > deadline
      -- (the closed ones answer the close)
      for _, r in ipairs(closed) do r:send_frame(8, "\3\232") end
      l:sleep(0.1)
    end)
    for _, r in ipairs(kept) do
      local first, last = run_of(r)
      assert.same({ 1, N }, { first, last })
    end
    local late = 0
    for _, r in ipairs(joined) do
      local first, last = run_of(r)
      if first then assert.equal(N, last) else late = late + 1 end
    end
    assert.is_true(late <= 3, late .. " of " .. #joined .. " joined too late for any broadcast")
    for _, r in ipairs(reset) do assert.is_true(#r.got == 0 or run_of(r) == 1) end
    for _, list in ipairs { closed, aborted } do
      for _, r in ipairs(list) do
        local first, last = run_of(r)
        assert.equal(1, first)
        assert.is_true(last < N)
      end
    end
    for _, r in ipairs(closed) do assert.equal(1000, r.close_code) end
    assert.same({}, errors)
  end)
end)

describe("broadcast to members with different permessage-deflate agreements", function()
  it("each decodes the broadcasts (sent plain) between its own compressed messages, with exactly its window", function()
    local l, server, _, by_port, errors = start { compression = { threshold = 0 }, max_queue = 1024 * 1024 }
    local ms = {}
    finally(function()
      for _, r in ipairs(ms) do r:close() end
      stop_server(l, server)
    end)
    local cases = {}
    for bits = 8, 15 do
      cases[#cases + 1] = { bits = bits, takeover = true }
      cases[#cases + 1] = { bits = bits, takeover = false }
    end
    cases[#cases + 1] = { none = true }
    H.run_task(l, 60, function()
      for k, case in ipairs(cases) do
        local z
        local ext = not case.none and "permessage-deflate; server_max_window_bits=" .. case.bits ..
          (case.takeover and "" or "; server_no_context_takeover") or nil
        ms[k] = member(server.port, {
          ext = ext,
          inflate = not case.none and function()
            if not z or not case.takeover then z = core.deflate { in_bits = case.bits } end
            return z
          end,
        })
      end
      local deadline = gettime() + 10
      local conns
      repeat
        l:sleep(0.01)
        conns = {}
        for k, r in ipairs(ms) do conns[k] = by_port[port_of(r)] end
      until #conns == #ms or gettime() > deadline
      assert.equal(#ms, #conns)
      for i = 1, 200 do
        assert.equal(#ms, server:broadcast(msg(i), "binary"))
        for k, c in ipairs(conns) do
          -- its own message: a repeat of earlier ones, so a compressor reaching
          -- back further than agreed would break its inflater
          assert.is_true(c:send(string.rep(msg(i), 2) .. " own " .. k .. " " .. i, "text"))
        end
        if i % 5 == 0 then
          l:sleep(0)
          for _, r in ipairs(ms) do pull(r) end
        end
      end
      deadline = gettime() + 10
      repeat
        l:sleep(0.01)
        local behind = 0
        for _, r in ipairs(ms) do
          pull(r)
          if #r.got < 400 then behind = behind + 1 end
        end
      until behind == 0 or gettime() > deadline
    end)
    for k, r in ipairs(ms) do
      assert.equal(400, #r.got, "member " .. k)
      for i = 1, 200 do
        assert.equal(i, r.got[2 * i - 1])
        assert.equal(string.rep(msg(i), 2) .. " own " .. k .. " " .. i, r.got[2 * i])
      end
    end
    assert.same({}, errors)
  end)
end)
