-- The `ws` command (bin/ws) as a user runs it: stdin lines out, messages in,
-- against our own server (`ws serve --echo`), python-websockets and Node ws
-- servers (spec/peers/), over ws:// and wss://; failures exit non-zero with
-- a message.
local H = require "spec.helpers"

local PEERS = H.ROOT .. "/spec/peers"
local NODE = os.getenv("NODE") or "node"
local q = H.shell_quote

-- Run bin/ws with args, stdin from input; returns stdout, stderr, exit code.
local function ws_cmd(args, input)
  local dir = H.tmpdir()
  local f = assert(io.open(dir .. "/in", "wb"))
  f:write(input or "")
  f:close()
  local out, code = H.run(string.format("timeout 20 %s %s/bin/ws %s < %s/in 2> %s/err", H.LUA, H.ROOT, args, dir, dir))
  local ef = assert(io.open(dir .. "/err"))
  local err = ef:read("*a")
  ef:close()
  H.sh("rm -rf " .. q(dir))
  return out, err, code
end

local function start_peer(name, args)
  local run_it = name == "node" and NODE .. " " .. PEERS .. "/node_server.js"
    or H.PYTHON .. " " .. PEERS .. "/py_server.py " .. (args or "")
  return H.start_server(function(port)
    return string.format("exec %s --port %d", run_it, port)
  end, "cli-" .. name .. "-server", 15)
end

-- examples/wss_echo.lua with a throwaway CA; returns its wss:// URL and the
-- CA folder (both stopped and removed when the test ends)
local function start_wss(name)
  local dir = H.throwaway_ca()
  local s = H.start_lua("examples/wss_echo.lua", string.format("--cert %s/server.pem --key %s/server.key", dir, dir), name)
  finally(function() s.stop(); H.sh("rm -rf " .. q(dir)) end)
  return "wss://127.0.0.1:" .. s.port .. "/ws", dir
end

describe("the ws command", function()
  it("echoes stdin lines through python-websockets, Node ws and `ws serve --echo`, and exits 0", function()
    local ours = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d", H.LUA, H.ROOT, port)
    end, "cli-ours")
    local py, node
    -- (busted keeps one finally per test: the last one given)
    finally(function() ours.stop(); if py then py.stop() end; if node then node.stop() end end)
    py, node = start_peer("python"), start_peer("node")
    for _, s in ipairs { ours, py, node } do
      local out, err, code = ws_cmd("ws://127.0.0.1:" .. s.port .. "/echo", "hello\nwörld\n\nlast")
      assert.equal("hello\nwörld\n\nlast\n", out, err)
      assert.equal(0, code, err)
      assert.matches("connected to ws://", err)
      assert.matches("\nclosed: 1000\n$", err)   -- (printed once our close is answered)
    end
  end)

  it("--binary up to --max-message (16 MiB by default, as `ws serve --echo` takes); past it, says so", function()
    local ours = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d", H.LUA, H.ROOT, port)
    end, "cli-ours-big")
    finally(ours.stop)
    local big = string.rep("b", 3 * 1024 * 1024)
    local out, err, code = ws_cmd("ws://127.0.0.1:" .. ours.port .. "/ --binary", big)
    assert.equal(0, code, err)
    assert.is_true(out == big, "echo of " .. #out .. " bytes")
    -- our limit, not the server's doing
    out, err, code = ws_cmd("ws://127.0.0.1:" .. ours.port .. "/ --binary --max-message 1048576", big)
    assert.equal("", out)
    assert.equal(1, code, err)
    assert.matches("ws: message too big: closed with 1009 %(see %-%-max%-message%)", err)
    assert.is_nil(err:find("closed by the server", 1, true), err)
  end)

  it("--close CODE closes with that code (the python peer reports it); --ping prints the round trip", function()
    local py = start_peer("python")
    finally(py.stop)
    local out, err, code = ws_cmd("ws://127.0.0.1:" .. py.port .. "/echo --close 4000 --ping", "x\n")
    assert.equal("x\n", out)
    assert.equal(0, code, err)
    assert.matches("pong in [%d.]+ ms", err)
    assert.truthy(H.wait_output(py, '"code": 4000', 5))
  end)

  it("exits 1 when the server drops TCP instead of answering our close (1006)", function()
    local raw = H.start_lua("spec/servers/raw_server.lua", nil, "cli-raw-server")
    finally(raw.stop)
    local out, err, code = ws_cmd("ws://127.0.0.1:" .. raw.port .. "/dropclose", "")
    assert.equal("", out)
    assert.equal(1, code, err)
    assert.matches("ws: close: closed 1006\n$", err)
  end)

  it("--binary sends stdin as one binary message (Node ws echoes it back byte for byte)", function()
    local node = start_peer("node")
    finally(node.stop)
    local bytes = {}
    for i = 0, 2999 do bytes[#bytes + 1] = string.char(i % 256) end
    bytes = table.concat(bytes)
    local out, err, code = ws_cmd("ws://127.0.0.1:" .. node.port .. "/echo --binary", bytes)
    assert.equal(0, code, err)
    assert.equal(#bytes, #out)
    assert.is_true(out == bytes)
    -- without --binary, binary messages are summarised
    out = ws_cmd("ws://127.0.0.1:" .. node.port .. "/fragment", "")
    assert.matches("< binary 210000 bytes", out)
  end)

  it("--header, --origin and --protocol reach the server", function()
    local s = H.start_lua("spec/servers/routes_server.lua", "", "cli-routes")
    finally(s.stop)
    local out, err, code = ws_cmd(string.format("ws://127.0.0.1:%d/hdr --header 'X-Test: yes it is' " ..
      "--origin http://127.0.0.1:%d --protocol nope --protocol chat", s.port, s.port), "")
    assert.equal(0, code, err)
    assert.equal(string.format("x-test=yes it is origin=http://127.0.0.1:%d protocol=chat\n", s.port), out)
    assert.matches("subprotocol chat", err)
  end)

  it("verifies wss:// certificates: --cafile trusts a CA, --insecure skips the check", function()
    local url, dir = start_wss("cli-wss")
    local out, err, code = ws_cmd(url .. " --cafile " .. dir .. "/ca.pem", "secure\n")
    assert.equal(0, code, err)
    assert.equal("secure\n", out)
    out, err, code = ws_cmd(url, "x\n")
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^ws: tls", err)
    out, err, code = ws_cmd(url .. " --insecure", "anyway\n")
    assert.equal(0, code, err)
    assert.equal("anyway\n", out)
  end)

  it("examples/echo_client.lua takes --cafile and --insecure too", function()
    local url, dir = start_wss("echo-client-wss")
    local client = H.LUA .. " " .. H.ROOT .. "/examples/echo_client.lua "
    local out, code = H.run("timeout 20 " .. client .. "--cafile " .. dir .. "/ca.pem " .. url .. " hi there 2>&1")
    assert.equal(0, code, out)
    assert.equal("hi\nthere\n", out)
    out, code = H.run("timeout 20 " .. client .. "--insecure " .. url .. " ok 2>&1")
    assert.equal(0, code, out)
    assert.equal("ok\n", out)
    out, code = H.run("timeout 20 " .. client .. url .. " no 2>&1")
    assert.equal(1, code)
    assert.matches("echo_client: tls", out)
  end)

  it("fails with a message and a non-zero exit: refused, 404 (with the body), usage", function()
    local port = H.free_port()
    local _, err, code = ws_cmd("ws://127.0.0.1:" .. port .. "/", "")
    assert.equal(1, code)
    assert.equal("ws: connect 127.0.0.1:" .. port .. ": connection refused\n", err)
    local s = H.start_lua("spec/servers/routes_server.lua", "", "cli-404")
    finally(s.stop)
    _, err, code = ws_cmd("ws://127.0.0.1:" .. s.port .. "/nowhere", "")
    assert.equal(1, code)
    assert.matches("^ws: handshake: server answered 404 Not Found\nws: the server said: not found\n$", err)
    _, err, code = ws_cmd("--frobnicate", "")
    assert.equal(2, code)
    assert.matches("unknown argument %-%-frobnicate", err)
    _, err, code = ws_cmd("ws://x/ --close abc", "")
    assert.equal(2, code)
    assert.matches("%-%-close wants a close code", err)
    -- every value is checked before anything runs: exit 2 and one line, no stack trace
    for _, args in ipairs { "ws://x/ --close 1000.5", "ws://x/ --timeout -1", "ws://x/ --max-message 0",
                            "serve --echo --port 99999", "serve --echo --workers 1.5",
                            "serve --echo --port 0 --workers 2" } do
      _, err, code = ws_cmd(args, "")
      assert.equal(2, code, args .. ": " .. err)
      assert.matches("^ws: %-%-[%w-]+ wants ", err, args)
      assert.is_nil(err:find("traceback", 1, true), err)
    end
    local out
    out, _, code = ws_cmd("--version", "")
    assert.equal(0, code)
    assert.equal("lua-ws 0.1.0\n", out)
  end)

  it("the ws command LuaRocks installed in this Lua's tree runs this Lua (LuaJIT's: luajit, not lua5.1)", function()
    local name = H.LUA:match("[^/]+$")
    local bin = H.ROOT .. "/.rocks" .. (name == "lua5.4" and "" or "-" .. name) .. "/bin/ws"
    local f = assert(io.open(bin), "no " .. bin .. ": run the suite with make test or scripts/test-lua.sh")
    local wrapper = f:read("*a")
    f:close()
    assert.truthy(wrapper:find("/" .. name .. "' -e ", 1, true), wrapper)
    -- (the tree's modules: the suite's LUA_PATH and LUA_CPATH point at it)
    local out, code = H.run(q(bin) .. " --version 2>&1")
    assert.equal(0, code, out)
    assert.equal("lua-ws 0.1.0\n", out)
  end)

  it("stops with close 1001 and exit 1 once stdout is gone (`ws URL | head -1`)", function()
    local py = start_peer("python")
    finally(py.stop)
    -- a line every 0.2 s for 10 s, echoed: only the write error can end it sooner
    local out = H.run(string.format("bash -c 't0=$SECONDS; timeout 20 %s %s/bin/ws ws://127.0.0.1:%d/echo " ..
      "2>/dev/null < <(for i in $(seq 50); do echo line $i; sleep 0.2; done) | head -1; " ..
      "echo \"ws=${PIPESTATUS[0]} took=$((SECONDS - t0))\"'", H.LUA, H.ROOT, py.port))
    assert.matches("^line 1\nws=1 took=[0-4]\n$", out)
    assert.truthy(H.wait_output(py, '"code": 1001', 5), py.output())
  end)

  it("keeps answering pings and printing messages while stdin holds a partial line, or --binary input", function()
    -- python-websockets pings every 0.5 s and drops us with 1011 when a pong
    -- is 0.5 s late; /ping also pings at once, and sends "pong:..." once answered
    local py = start_peer("python", "--ping-interval 0.5 --ping-timeout 0.5")
    finally(py.stop)
    for _, case in ipairs {
      { "", "printf abc; sleep 2.5; printf 'def\\nlast'", "pong:ping-from-python\nabcdef\nlast\n" },
      { "--binary", "printf da; sleep 2.5; printf ta", "pong:ping-from-python\ndata" },
    } do
      local out, code = H.run(string.format("(%s) | timeout 20 %s %s/bin/ws %s ws://127.0.0.1:%d/ping 2>/dev/null",
        case[2], H.LUA, H.ROOT, case[1], py.port))
      assert.equal(case[3], out)
      assert.equal(0, code)
    end
    assert.is_nil(py.output():find('"code": 1011', 1, true), py.output())
  end)

  it("Ctrl-C (SIGINT) closes with 1001 and exits 130, without a stack trace", function()
    local py = start_peer("python")
    finally(py.stop)
    local dir = H.tmpdir()
    local out = H.run(string.format("bash -c 'sleep 10 | %s %s/bin/ws ws://127.0.0.1:%d/echo 2>%s/err & " ..
      "sleep 1.5; kill -INT $!; wait $!; echo \"exit $?\"'", H.LUA, H.ROOT, py.port, dir))
    local ef = assert(io.open(dir .. "/err"))
    local err = ef:read("*a")
    ef:close()
    H.sh("rm -rf " .. q(dir))
    assert.equal("exit 130\n", out, err)
    assert.matches("connected to ws://", err)
    assert.is_nil(err:find("interrupted!", 1, true), err)
    assert.is_nil(err:find("traceback", 1, true), err)
    assert.truthy(H.wait_output(py, '"code": 1001', 5), py.output())
  end)

  it("receives examples/ticker.lua's pushes and its clean 1001 stop", function()
    local t = H.start_lua("examples/ticker.lua", "--every 0.2 --for 4", "cli-ticker")
    finally(t.stop)
    -- stdin stays open (a listener), so the server's close ends it
    local out, code = H.run(string.format("sleep 8 | timeout 20 %s %s/bin/ws ws://127.0.0.1:%d/ticks 2>&1",
      H.LUA, H.ROOT, t.port))
    assert.equal(0, code, out)
    -- the ticks count from the server's start, not from our connect (a
    -- loaded machine may start us late): every one from then on, in order
    local ticks = {}
    for n in out:gmatch("tick (%d+)\n") do ticks[#ticks + 1] = tonumber(n) end
    assert.is_true(#ticks >= 3, out)
    for k = 2, #ticks do assert.equal(ticks[k - 1] + 1, ticks[k], out) end
    assert.matches("closed by the server: 1001 ticker stopping\n$", out)
  end)
end)
