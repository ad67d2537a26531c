-- Many processes on one port (SO_REUSEPORT, ws.workers) and the graceful
-- stop (SIGTERM -> drain -> exit 0), with examples/echo.lua as real
-- processes and hundreds of real clients.
local socket = require "socket"
local ws = require "ws"
local core = require "ws.core"
local loop = require "ws.loop"
local H = require "spec.helpers"

local gettime = socket.gettime

-- the "connect <peer> (pid N)" lines: client port -> server pid
local function connects(out)
  local t = {}
  for port, pid in out:gmatch("connect [%d.]+:(%d+) %(pid (%d+)%)") do t[tonumber(port)] = tonumber(pid) end
  return t
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function local_port(conn) return tonumber((select(2, conn.sock:getsockname()))) end

-- n clients connected to port (inside a loop task)
local function connect_all(port, n)
  local clients = {}
  for i = 1, n do
    clients[i] = assert(ws.connect("ws://127.0.0.1:" .. port .. "/ws", { timeout = 10 }))
  end
  return clients
end

-- wait until the process exits; its exit status (nil if still running)
local function wait_exit(proc, secs)
  local deadline = gettime() + secs
  while gettime() < deadline do
    if not proc.alive() then return true end
    socket.sleep(0.05)
  end
  return false
end

-- start examples/echo.lua with args through a shell that reports its
-- exit status in the log: "[exit N]"
-- the pid of the shell's child (the echo process itself)
local function child_pid(proc)
  local out = H.run("pgrep -P " .. proc.pid)
  return tonumber(out:match("%d+"))
end

-- Stopping the shell alone would leave the supervisor and its workers
-- running: proc.stop lists the workers, kills the supervisor (no
-- restarts), then them.
local function stops_workers(proc)
  local stop = proc.stop
  function proc.stop()
    local parent = child_pid(proc)
    if parent then
      local workers = H.run("pgrep -P " .. parent):gsub("%s+", " ")
      os.execute("kill -9 " .. parent .. " " .. workers .. " 2>/dev/null")
    end
    stop()
  end
  return proc
end

local function start_echo(args, name)
  return stops_workers(H.start_server(function(port)
    return string.format("%s %s/examples/echo.lua --port %d %s; echo \"[exit $?]\"", H.LUA, H.ROOT, port, args)
  end, name))
end

describe("examples/echo.lua's arguments", function()
  -- exit status and stderr of echo.lua with args (it must not start serving)
  local function echo(args)
    return H.run(string.format("timeout 5 %s %s/examples/echo.lua %s 2>&1 >/dev/null", H.LUA, H.ROOT, args))
  end

  it("refuses --port 0 with --workers (each worker would listen on a port of its own): exit 2, the usage", function()
    local err, code = echo("--port 0 --workers 2")
    assert.equal(2, code, err)
    assert.truthy(err:find("^echo: %-%-port 0 with %-%-workers.*\nusage: "), err)
  end)

  it("refuses a value that is not a number, or out of range: exit 2, the usage", function()
    for _, args in ipairs { "--workers abc", "--port x", "--port 70000", "--workers 1.5", "--grace -3",
                            "--linger soon", "--ping", "--fd x", "--grace inf", "--linger 1e999", "--ping nan" } do
      local err, code = echo(args)
      assert.equal(2, code, args .. ": " .. err)
      assert.truthy(err:find("^echo: %-%-%a+ %a+ .*\nusage: "), args .. ": " .. err)
    end
  end)
end)

describe("core.cpu_count", function()
  it("counts the CPUs this process may run on (taskset), not every one online", function()
    if not H.sh("command -v taskset >/dev/null && taskset -c 0 true 2>/dev/null") then
      pending("taskset is not available")
      return
    end
    local out = H.run(string.format("taskset -c 0 %s -e 'print(require(\"ws.core\").cpu_count())'", H.LUA))
    assert.equal("1\n", out)
    assert.equal(H.run("nproc"), tostring(core.cpu_count()) .. "\n")
  end)
end)

describe("workers #slow", function()
  it("3 workers on one port: 300 connections served, each worker serves some; a plain listener is refused", function()
    local proc = start_echo("--workers 3", "workers3")
    finally(proc.stop)
    assert.truthy(H.wait_output(proc, "worker started.-worker=3", 10))
    local l = loop.new()
    local clients
    H.run_task(l, 60, function()
      clients = connect_all(proc.port, 300)
      for i, c in ipairs(clients) do assert(c:send("m" .. i)) end
      for i, c in ipairs(clients) do assert.same({ "m" .. i, "text" }, { c:receive(10) }) end
    end)
    local seen = {}
    local deadline = gettime() + 10
    while count(connects(proc.output())) < 300 and gettime() < deadline do socket.sleep(0.05) end
    local map = connects(proc.output())
    for _, c in ipairs(clients) do
      local pid = map[local_port(c)]
      assert.truthy(pid, "no worker logged client " .. local_port(c))
      seen[pid] = (seen[pid] or 0) + 1
    end
    assert.equal(3, count(seen))   -- a hash: no evenness asserted
    -- a 4th listener without SO_REUSEPORT cannot join the group
    local s, err = ws.listen { host = "127.0.0.1", port = proc.port, logger = false }
    assert.is_nil(s)
    assert.equal("listen 127.0.0.1:" .. proc.port .. ": address already in use", err)
    H.run_task(l, 30, function() for _, c in ipairs(clients) do c:close() end end)
  end)

  it("a worker killed with SIGKILL is restarted; the other workers' clients are not disturbed", function()
    local proc = start_echo("--workers 3", "workers-kill")
    finally(proc.stop)
    assert.truthy(H.wait_output(proc, "worker started.-worker=3", 10))
    local l = loop.new()
    H.run_task(l, 60, function()
      local clients = connect_all(proc.port, 60)
      for i, c in ipairs(clients) do assert(c:send("a" .. i)); assert.equal("a" .. i, c:receive(10)) end
      local map = connects(proc.output())
      local victim = map[local_port(clients[1])]
      assert(H.sh("kill -9 " .. victim))
      -- restarted: a 4th "worker started" line, with a new pid
      local deadline = gettime() + 10
      repeat l:sleep(0.05) until select(2, proc.output():gsub("worker started", "")) >= 4 or gettime() > deadline
      assert.truthy(proc.output():find("worker died; restarting in 0.1s %(pid=" .. victim .. " signal=KILL"))
      assert.equal(4, select(2, proc.output():gsub("worker started", "")))
      local others = 0
      for i, c in ipairs(clients) do
        if map[local_port(c)] == victim then
          assert.is_nil((c:receive(5)))          -- its worker is gone
          assert.equal(1006, c.close_code)
        else
          others = others + 1
          assert(c:send("b" .. i))
          assert.same({ "b" .. i, "text" }, { c:receive(10) })
          assert.equal("open", c.state)
        end
      end
      assert.truthy(others > 0)
      -- new connections are served (by the restarted worker too, in time)
      local fresh = connect_all(proc.port, 30)
      for i, c in ipairs(fresh) do assert(c:send("c" .. i)); assert.equal("c" .. i, c:receive(10)) end
      for _, c in ipairs(clients) do if c.state == "open" then c:close() end end
      for _, c in ipairs(fresh) do c:close() end
    end)
  end)

  it("a supervisor killed with SIGKILL takes its workers with it: they drain (1001) and exit", function()
    local proc = start_echo("--workers 2 --grace 1", "workers-orphaned")
    finally(proc.stop)
    assert.truthy(H.wait_output(proc, "worker started.-worker=2", 10))
    local parent = child_pid(proc)
    local workers = {}
    for pid in H.run("pgrep -P " .. parent):gmatch("%d+") do workers[#workers + 1] = pid end
    assert.equal(2, #workers)
    -- (an exited worker may stay a zombie if nobody reaps orphans here)
    local function alive(pid)
      local f = io.open("/proc/" .. pid .. "/stat")
      if not f then return false end
      local state = f:read("*a"):match("^%d+ %b() (%a)")
      f:close()
      return state ~= "Z"
    end
    H.run_task(loop.new(), 30, function()
      local clients = connect_all(proc.port, 20)
      for i, c in ipairs(clients) do assert(c:send("o" .. i)); assert.equal("o" .. i, c:receive(10)) end
      assert(H.sh("kill -9 " .. parent))
      for _, c in ipairs(clients) do
        assert.is_nil((c:receive(10)))
        assert.equal(1001, c.close_code, tostring(c.close_reason) .. "\n" .. proc.output():sub(-3000))
      end
    end)
    local deadline = gettime() + 10
    while (alive(workers[1]) or alive(workers[2])) and gettime() < deadline do socket.sleep(0.05) end
    assert.is_false(alive(workers[1]))
    assert.is_false(alive(workers[2]))
  end)
end)

-- 200 clients each send MSGS messages at once and read until closed; the
-- process gets SIGTERM while the echoes are in flight. Every echo the
-- server's send accepted (its "echoed N" line for that client) must arrive,
-- in order, then close 1001; the process exits 0 in time.
local CLIENTS, MSGS, GRACE, CLOSE_TIMEOUT = 200, 20, 2, 3

local function drain_check(proc, signal_pid)
  local l = loop.new()
  local results = {}
  local t_signal
  H.run_task(l, 90, function()
    local clients = connect_all(proc.port, CLIENTS)
    local done = 0
    for i, c in ipairs(clients) do
      local r = { got = 0, inorder = true, port = local_port(c) }
      results[i] = r
      l:spawn(function()
        while true do
          local m = c:receive(30)
          if not m then break end
          r.got = r.got + 1
          if m ~= string.format("%d:%d:", i, r.got) .. string.rep("x", 2000) then r.inorder = false end
        end
        r.code = c.close_code
        done = done + 1
      end)
    end
    for i, c in ipairs(clients) do
      for k = 1, MSGS do assert(c:send(string.format("%d:%d:", i, k) .. string.rep("x", 2000))) end
    end
    t_signal = gettime()
    assert(H.sh("kill -TERM " .. signal_pid))
    local deadline = gettime() + 60
    while done < CLIENTS and gettime() < deadline do l:sleep(0.05) end
    assert.equal(CLIENTS, done)
  end)
  assert.is_true(wait_exit(proc, GRACE + CLOSE_TIMEOUT + 1 - (gettime() - t_signal) + 0.5))
  local took = gettime() - t_signal
  assert.truthy(took <= GRACE + CLOSE_TIMEOUT + 1, "exited after " .. took .. " s")
  local out = proc.output()
  assert.truthy(out:find("%[exit 0%]"), out:sub(-2000))
  local echoed = {}
  for port, n in out:gmatch("disconnect [%d.]+:(%d+) %b() echoed (%d+)") do echoed[tonumber(port)] = tonumber(n) end
  local full = 0
  for _, r in ipairs(results) do
    assert.equal(1001, r.code)
    assert.is_true(r.inorder)
    assert.equal(echoed[r.port], r.got)     -- every message send accepted was delivered
    if r.got == MSGS then full = full + 1 end
  end
  -- spread over the grace period, most clients were owed and got all
  assert.truthy(full > CLIENTS / 2, full .. " clients got all " .. MSGS)
  return out
end

describe("graceful stop #slow", function()
  it("SIGTERM to a single server: every echo owed, then 1001; exit 0 within grace + close_timeout + 1 s", function()
    local proc = start_echo("--grace " .. GRACE, "drain-single")
    finally(proc.stop)
    assert.truthy(H.wait_output(proc, "echo server on", 10))
    local out = drain_check(proc, child_pid(proc))
    assert.truthy(out:find("SIGTERM: draining"))
    assert.truthy(out:find("drained %(closed=" .. CLIENTS))
  end)

  it("SIGTERM to a --workers parent drains every worker the same way", function()
    local proc = start_echo("--workers 2 --grace " .. GRACE, "drain-workers")
    finally(proc.stop)
    assert.truthy(H.wait_output(proc, "worker started.-worker=2", 10))
    local out = drain_check(proc, child_pid(proc))
    assert.equal(2, select(2, out:gsub("worker done %(exit=0", "")))
    assert.truthy(out:find("all workers done"))
  end)

  it("Ctrl-C twice: the second SIGINT during a drain stops at once", function()
    local proc = start_echo("--grace 30", "drain-twice")
    finally(proc.stop)
    assert.truthy(H.wait_output(proc, "echo server on", 10))
    local pid = child_pid(proc)
    local l = loop.new()
    H.run_task(l, 30, function()
      local clients = connect_all(proc.port, 3)
      assert(H.sh("kill -INT " .. pid))
      local deadline = gettime() + 5
      repeat l:sleep(0.05) until proc.output():find("draining 3 connections") or gettime() > deadline
      local t0 = gettime()
      assert(H.sh("kill -INT " .. pid))
      assert.is_true(wait_exit(proc, 3))
      assert.truthy(gettime() - t0 < 2)
      assert.truthy(proc.output():find("SIGINT again: stopping now"))
      for _, c in ipairs(clients) do c.sock:close() end
    end)
  end)
end)

-- Ctrl-C in a terminal: SIGINT to the whole foreground process group, the
-- supervisor and its workers alike (setsid: the supervisor leads its own)
describe("Ctrl-C under --workers #slow", function()
  local function start_group(grace, name)
    local proc = stops_workers(H.start_server(function(port)
      return string.format("setsid %s %s/examples/echo.lua --port %d --workers 2 --grace %d; echo \"[exit $?]\"",
        H.LUA, H.ROOT, port, grace)
    end, name))
    assert.truthy(H.wait_output(proc, "worker started.-worker=2", 10))
    return proc, "-" .. child_pid(proc)
  end

  it("once: every worker drains (1001 spread over grace) and the supervisor exits 0", function()
    local proc, group = start_group(2, "ctrl-c-once")
    finally(proc.stop)
    local t0, last
    H.run_task(loop.new(), 30, function()
      local clients = connect_all(proc.port, 20)
      for i, c in ipairs(clients) do assert(c:send("x" .. i)); assert.equal("x" .. i, c:receive(10)) end
      t0 = gettime()
      assert(H.sh("kill -INT " .. group))
      for _, c in ipairs(clients) do
        assert.is_nil((c:receive(10)))
        assert.equal(1001, c.close_code, proc.output())
      end
      last = gettime()
    end)
    assert.truthy(last - t0 > 1, "every close within " .. (last - t0) .. " s: not spread over grace")
    assert.is_true(wait_exit(proc, 8))
    local out = proc.output()
    assert.is_nil(out:find("SIGINT again: stopping now"), out)
    assert.equal(2, select(2, out:gsub("worker done %(exit=0", "")))
    assert.truthy(out:find("%[exit 0%]"), out)
  end)

  it("twice: the second stops every worker at once", function()
    local proc, group = start_group(30, "ctrl-c-twice")
    finally(proc.stop)
    H.run_task(loop.new(), 30, function()
      local clients = connect_all(proc.port, 20)   -- (both workers get some)
      assert(H.sh("kill -INT " .. group))
      local deadline = gettime() + 5
      repeat socket.sleep(0.05) until H.count(proc.output(), "draining %d+ connections") == 2 or gettime() > deadline
      local t0 = gettime()
      assert(H.sh("kill -INT " .. group))
      assert.is_true(wait_exit(proc, 3))
      assert.truthy(gettime() - t0 < 2)
      assert.equal(2, H.count(proc.output(), "SIGINT again: stopping now"))
      for _, c in ipairs(clients) do c.sock:close() end
    end)
  end)
end)

describe("supervisor #slow", function()
  it("backs off a worker that keeps dying (0.1, 0.2, 0.4, 0.8 s ...) and still stops at once on SIGTERM", function()
    local proc = H.start_lua("spec/peers/crashing_workers.lua", "", "crashing-workers")
    finally(proc.stop)
    assert.truthy(H.wait_output(proc, "()restarting in 0%.8s", 5), proc.output())
    local out = proc.output()
    local delays = {}
    for d in out:gmatch("worker died; restarting in ([%d.]+)s %(exit=3") do delays[#delays + 1] = tonumber(d) end
    assert.same({ 0.1, 0.2, 0.4, 0.8 }, { delays[1], delays[2], delays[3], delays[4] })
    assert.equal(1, select(2, out:gsub("worker started %(pid=%d+ worker=2%)", "")))   -- the other one untouched
    local t0 = gettime()
    assert(H.sh("kill -TERM " .. proc.pid))
    assert.is_true(wait_exit(proc, 5))
    assert.truthy(gettime() - t0 < 3)
    assert.truthy(proc.output():find("worker done %(exit=0 pid=%d+ worker=2%)"))
    assert.truthy(proc.output():find("all workers done"))
  end)
end)

describe("supervisor that gives up #slow", function()
  it("every worker fails at start (the port held without SO_REUSEPORT): exit 1, their error logged", function()
    local holder = assert(core.listen("127.0.0.1", 0, 16, false))
    local port = select(2, holder:getsockname())
    local proc = H.spawn(string.format("%s %s/examples/echo.lua --port %d --workers 2; echo \"[exit $?]\"",
      H.LUA, H.ROOT, port), "workers-give-up")
    finally(function() proc.stop(); holder:close() end)   -- (busted keeps one finally per test)
    assert.truthy(H.wait_output(proc, "%[exit (%d+)%]", 15), proc.output())
    local out = proc.output()
    assert.truthy(out:find("%[exit 1%]"), out)
    assert.truthy(out:find("echo: listen 127%.0%.0%.1:" .. port .. ": address already in use"), out)
    assert.truthy(out:find("every worker died young, 3 times or more in a row over 5s: giving up", 1, true), out)
  end)

  it("waits out a dependency down for a second: the workers start once it is back", function()
    local dir = H.tmpdir()
    local flag = dir .. "/down"
    assert(io.open(flag, "w")):close()
    local script = dir .. "/transient.lua"
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
local workers = require "ws.workers"
os.exit(workers.run(2, function(i)
  local down = io.open(%q)
  if down then down:close(); error("dependency not ready") end
  io.stderr:write("worker " .. i .. " up\n")
  return 0   -- (done: exits 0)
end, { logger = false }))
]], flag))
    f:close()
    local proc = H.spawn(H.LUA .. " " .. script .. "; echo \"[exit $?]\"", "workers-transient")
    finally(proc.stop)
    socket.sleep(1)
    os.remove(flag)
    assert.truthy(H.wait_output(proc, "worker %d up", 10), proc.output())
    proc.stop()
    assert.falsy(proc.output():find("[exit 1]", 1, true), proc.output())
  end)
end)

describe("systemd socket activation #slow", function()
  -- (systemd-socket-activate clears the environment: pass on where our modules are)
  local env = {}
  for _, v in ipairs { "LUA_PATH", "LUA_CPATH", "LUA_PATH_5_3", "LUA_CPATH_5_3", "LUA_PATH_5_4", "LUA_CPATH_5_4" } do
    if os.getenv(v) then env[#env + 1] = "-E " .. v end
  end

  it("echo.lua serves on the listener systemd passes (LISTEN_FDS), and SIGTERM still drains and exits 0", function()
    if not H.sh("command -v systemd-socket-activate >/dev/null") then
      pending("systemd-socket-activate is not installed")
      return
    end
    local proc = H.start_server(function(port)
      return string.format("systemd-socket-activate %s -l 127.0.0.1:%d %s %s/examples/echo.lua --port 1; %s",
        table.concat(env, " "), port, H.LUA, H.ROOT, 'echo "[exit $?]"')
    end, "socket-activated")
    finally(proc.stop)
    H.run_task(loop.new(), 30, function()
      local c = assert(ws.connect("ws://127.0.0.1:" .. proc.port .. "/ws"))
      assert(c:send("activated"))
      assert.equal("activated", c:receive(5))
      c:close()
    end)
    -- --port 1 was never bound: the server took descriptor 3
    assert.truthy(proc.output():find("echo server on ws://127%.0%.0%.1:" .. proc.port .. "/ws"))
    assert(H.sh("kill -TERM " .. child_pid(proc)))
    assert.is_true(wait_exit(proc, 5))
    assert.truthy(proc.output():find("%[exit 0%]"))
  end)

  it("with --workers 2 every worker serves on it (LISTEN_PID names the master, not them)", function()
    if not H.sh("command -v systemd-socket-activate >/dev/null") then
      pending("systemd-socket-activate is not installed")
      return
    end
    local proc = stops_workers(H.start_server(function(port)
      return string.format("systemd-socket-activate %s -l 127.0.0.1:%d %s %s/examples/echo.lua --port 1 --workers 2; %s",
        table.concat(env, " "), port, H.LUA, H.ROOT, 'echo "[exit $?]"')
    end, "socket-activated-workers"))
    finally(proc.stop)
    H.run_task(loop.new(), 30, function()
      for i = 1, 6 do
        local c = assert(ws.connect("ws://127.0.0.1:" .. proc.port .. "/ws", { timeout = 3 }))
        assert(c:send("activated " .. i))
        assert.equal("activated " .. i, c:receive(5))
        c:close()
      end
    end)
    -- both workers took descriptor 3, neither bound --port 1 (the second
    -- may say so after the first served all six: a loaded machine)
    local function started()
      local _, n = proc.output():gsub("echo server on ws://127%.0%.0%.1:" .. proc.port .. "/ws", "")
      return n
    end
    local deadline = socket.gettime() + 10
    while started() < 2 and socket.gettime() < deadline do socket.sleep(0.05) end
    assert.equal(2, started(), proc.output())
    assert(H.sh("kill -TERM " .. child_pid(proc)))
    assert.is_true(wait_exit(proc, 8))
  end)
end)

-- Linux 5.14+: with net.ipv4.tcp_migrate_req=1, connections queued on a
-- reuseport listener that closes (a draining worker) move to a sibling.
-- Run in a private network namespace (unshare -n, root) so the sysctl
-- touches nothing else.
describe("tcp_migrate_req #slow", function()
  local can = H.sh("unshare -n true 2>/dev/null")
  local function run(migrate)
    local cmd = string.format("unshare -n sh -c 'ip link set lo up && sysctl -q -w net.ipv4.tcp_migrate_req=%d" ..
      " && exec %s %s/spec/peers/reuseport_migrate.lua %s 9000' 2>&1", migrate, H.LUA, H.ROOT, H.ROOT)
    local out = H.run("timeout 120 " .. cmd)
    local ok, reset = out:match("ok=(%d+) reset=(%d+)")
    assert(ok, out)
    return tonumber(ok), tonumber(reset)
  end

  if not can then
    pending("tcp_migrate_req: needs root and unshare -n (a private network namespace); not available here")
    return
  end

  it("0 of 200 connections queued on a draining worker's listener are reset with tcp_migrate_req=1", function()
    assert.same({ 200, 0 }, { run(1) })
  end)

  it("(and without it, the ones hashed to that listener are reset: the test can fail)", function()
    local ok, reset = run(0)
    assert.equal(200, ok + reset)
    assert.truthy(reset > 0 and ok > 0, ok .. " ok, " .. reset .. " reset")
  end)
end)
