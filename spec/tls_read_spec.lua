-- TLS records in and out (csrc/ws_tls.c, csrc/l_fd.c): OpenSSL reads ahead,
-- so one read(2) can take several records; every one of them is served
-- before the server waits for the socket again. A large frame's header
-- shares its first record with the payload. Counted by a Python peer that
-- parses the records it receives (spec/peers/tls_records.py).
local json = require "dkjson"
local ws = require "ws"
local loop = require "ws.loop"
local H = require "spec.helpers"

-- An echo server over TLS on a new loop, and the JSON line of the peer
-- spec/peers/SCRIPT run with the server's port and ARGS (waited for up to secs).
-- (No keepalive: the peers parse every frame they get as an echo, and the
-- longest runs take 14 to 17 s under ASan on a busy machine, near the 20 s
-- ping_interval: a ping among the echoes failed them, and a flood that
-- reads nothing while it sends was dropped at ping_timeout.)
local function run_peer(script, args, secs, max_message)
  local dir = H.throwaway_ca()
  local l = loop.new()
  local port = H.free_port()
  local server = assert(ws.listen { host = "127.0.0.1", port = port, loop = l, logger = false, ping_interval = false,
    max_message = max_message or 1024 * 1024, tls = { certificate = dir .. "/server.pem", key = dir .. "/server.key" } })
  server:route("/ws", H.echo)
  local peer = H.spawn(string.format("exec %s %s/spec/peers/%s %d %s", H.PYTHON, H.ROOT, script, port, args),
    script:match("^(.-)%.py$") .. "-" .. args:gsub(" ", "-"))
  finally(function()
    peer.stop()
    server:close()
    H.step_until(l, 3, function() return l.ntasks == 0 end)
    H.sh("rm -rf " .. H.shell_quote(dir))
  end)
  assert.truthy(H.step_until(l, secs or 20, function() return peer.output():match("{.*}") end), peer.output())
  return json.decode(peer.output():match("{.*}"))
end

describe("TLS records", function()
  it("answers the 32 records that came in one write in one record, 10 times", function()
    -- read ahead takes all 32 records at once; a server that waited for the
    -- socket with records still in OpenSSL's buffer would never answer
    -- the rest (the peer times out after 10 s)
    local res = run_peer("tls_records.py", "10 32 each")
    assert.equal(320, res.echoed)        -- whole and in order (the peer checks)
    -- one read decrypts all 32, so the echoes are corked into one write; a
    -- read of one record at a time left nothing pending to cork on: 32 records
    assert.equal(10, #res.records)
    for i, r in ipairs(res.records) do assert(r <= 3, "burst " .. i .. ": " .. r .. " records") end
  end)

  it("keeps serving others while one message comes in 1,000,000 one-byte records", function()
    -- each record costs OpenSSL about a microsecond: a reader:next that
    -- read until the message was whole held the loop for most of a second
    -- (630-810 ms for the probe's slowest echo); it reads 16 times at most
    -- per call, then the others' turn (about 12 ms at worst here)
    local res = run_peer("tls_flood.py", "1000000", 60)
    assert.is_true(res.echoed)              -- the big message whole
    assert(res.rounds >= 10, "the probe ran " .. res.rounds .. " times")
    assert(res.worst_ms < 250, "slowest probe echo " .. res.worst_ms .. " ms")
  end)

  it("reads and writes a 1 MiB message with many records per system call", function()
    local dir = H.throwaway_ca()
    local srv = H.start_strace("examples/wss_echo.lua", "read,write,sendto,sendmsg", "strace-wss", string.format(
      "--cert %s/server.pem --key %s/server.key", dir, dir))
    if not srv then
      H.sh("rm -rf " .. H.shell_quote(dir))
      return pending("strace cannot trace here")   -- ptrace forbidden
    end
    finally(function() srv.stop() H.sh("rm -rf " .. H.shell_quote(dir)) end)
    local function calls()   -- (the server's start reads files too: counted apart)
      local f = assert(io.open(srv.trace))
      local t = f:read("*a")
      f:close()
      return H.count(t, "read%("), H.count(t, "write%(") + H.count(t, "sendto%(") + H.count(t, "sendmsg%(")
    end
    local reads0, writes0 = calls()
    local out, code = H.run(string.format("timeout 60 %s %s/spec/peers/tls_records.py %d 3 1048576 big",
      H.PYTHON, H.ROOT, srv.port))
    assert.equal(0, code, out)
    assert.equal(3, json.decode(out:match("{.*}")).echoed)
    local reads, writes = calls()
    reads, writes = reads - reads0, writes - writes0
    -- 64 records of 16 KiB per MiB. OpenSSL's socket BIO read about one
    -- record per read(2) (over 64 per MiB) and wrote each record with its
    -- own write(2) (64 per MiB); ws_tls reads up to 256 KiB at once and
    -- sends up to 16 records together
    assert(reads < 3 * 24, reads .. " reads for 3 MiB")
    assert(writes < 3 * 24, writes .. " writes for 3 MiB")
  end)

  it("sends a 4 MiB echo whole to a client that reads it only later", function()
    -- more than the server's socket takes (loopback sizes its send buffer
    -- to about 1.3 MiB; the peer's window is 4 KiB): records made for the
    -- echo wait for the socket, count as written only once sent, and the
    -- connection waits for writability to send them. Counted early, the
    -- last ones waited for a write that never came (the peer times out)
    local res = run_peer("tls_records.py", "3 4194304 late", 60, 4 * 1024 * 1024)
    assert.equal(3, res.echoed)
  end)

  it("sends a 100,000-byte echo in 7 records: the header rides in the first", function()
    -- 100,010 frame bytes in records of up to 16,384; a header record of
    -- its own made 8
    local res = run_peer("tls_records.py", "3 100000 big")
    assert.equal(3, res.echoed)
    assert.same({ 7, 7, 7 }, res.records)
  end)
end)
