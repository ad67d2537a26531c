--- Test helpers: start servers as real processes, and speak raw WebSocket
-- over real sockets with a tiny pure-Lua frame codec that shares no code
-- with ws.core (an independent oracle).
local socket = require "socket"
local B = require "spec.bits"

local M = {}

-- the Lua for the servers and clients the specs start: $LUA, else the
-- interpreter running the specs
M.LUA = os.getenv("LUA") or (rawget(_G, "jit") and "luajit") or "lua" .. _VERSION:match("%d+%.%d+")
M.PYTHON = "/usr/bin/python3"
M.ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers%.lua$")) or "."
M.LOGDIR = M.ROOT .. "/build/test-logs"

--- Run a shell command; true if it exited 0 (os.execute's result differs
-- between Lua 5.1 and 5.2+).
function M.sh(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

M.sh("mkdir -p '" .. M.LOGDIR .. "'")

--- A route handler that echoes every message with its kind until the
-- connection closes.
function M.echo(conn)
  while true do
    local data, kind = conn:receive()
    if not data or not conn:send(data, kind) then return end
  end
end

--- Run a shell command; returns its stdout and exit status.
function M.run(cmd)
  local p = io.popen("(" .. cmd .. "); echo \"[exit $?]\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)%[exit (%d+)%]\n$")
  return body, tonumber(code)
end

--- The JSON objects among a peer's output lines (other lines are ignored).
function M.json_lines(out)
  local json = require "dkjson"
  local t = {}
  for line in out:gmatch("[^\n]+") do
    local obj = line:sub(1, 1) == "{" and json.decode(line)
    if type(obj) == "table" then t[#t + 1] = obj end
  end
  return t
end

--- Run a peer command (bounded by secs, default 60); returns the JSON
-- objects it printed and its whole output.
function M.run_json(cmd, secs)
  local out = M.run(string.format("timeout %d %s 2>&1", secs or 60, cmd))
  return M.json_lines(out), out
end

function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- A fresh temporary directory.
function M.tmpdir()
  local out = M.run("mktemp -d")
  return assert(out:match("^(%S+)"), "mktemp -d failed")
end

--- A fresh directory holding ca.pem, server.pem + server.key for
-- localhost and 127.0.0.1 signed by it, and client.pem + client.key (a
-- client certificate) signed by it (openssl, P-256).
function M.throwaway_ca()
  local dir = M.tmpdir()
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local script = table.concat({
    "set -e", "cd " .. M.shell_quote(dir),
    "openssl req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 2 -subj '/CN=lua-ws test CA'",
    "openssl req " .. ec .. " -keyout server.key -out server.csr -subj '/CN=localhost'",
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n" ..
      "keyUsage=digitalSignature\\nextendedKeyUsage=serverAuth\\n' > ext.cnf",
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf",
    "openssl req " .. ec .. " -keyout client.key -out client.csr -subj '/CN=lua-ws test client'",
    "printf 'basicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\nextendedKeyUsage=clientAuth\\n' > client.cnf",
    "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.cnf",
  }, "\n")
  local out, code = M.run("sh -c " .. M.shell_quote(script) .. " 2>&1")
  assert(code == 0, "openssl failed:\n" .. out)
  return dir
end

function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

--- A connected loopback TCP pair (LuaSocket): a reads what b writes.
function M.tcp_pair()
  local lsn = assert(socket.bind("127.0.0.1", 0))
  local ip, port = lsn:getsockname()
  local a = assert(socket.connect(ip, port))
  local b = assert(lsn:accept())
  lsn:close()
  return a, b
end

--- Wait until something accepts TCP on port (or fail after secs).
function M.wait_port(port, secs)
  local deadline = socket.gettime() + (secs or 10)
  while socket.gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then c:close(); return true end
    c:close()
    socket.sleep(0.05)
  end
  error("nothing listening on port " .. port)
end

--- How many times a Lua pattern matches in s.
function M.count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

--- Start a command in the background; returns { pid, log, stop(), alive() }.
function M.spawn(cmd, name)
  local log = string.format("%s/%s-%d.log", M.LOGDIR, name or "proc", math.random(1e9))
  -- empty it now: specs seed math.random, so a later run reuses the name, and
  -- output() must not read the old run's lines before the shell truncates it
  local f = io.open(log, "w")
  if f then f:close() end
  local p = io.popen(string.format("(%s) >'%s' 2>&1 </dev/null & echo $!", cmd, log))
  local pid = tonumber(p:read("*l"))
  p:close()
  local proc = { pid = pid, log = log }
  function proc.alive() return M.sh("kill -0 " .. pid .. " 2>/dev/null") end
  function proc.stop()
    os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.05; kill -9 " .. pid .. " 2>/dev/null")
  end
  function proc.output()
    local fh = io.open(log)
    if not fh then return "" end
    local s = fh:read("*a")
    fh:close()
    return s
  end
  return proc
end

--- Poll a process's output (see spawn) for a Lua pattern, up to secs
-- (default 3); returns the first capture, or nil.
function M.wait_output(proc, pattern, secs)
  local deadline = socket.gettime() + (secs or 3)
  repeat
    local m = proc.output():match(pattern)
    if m then return m end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return nil
end

--- Start a server: cmd_of(port) for a free port is the shell command; waits
-- up to secs (default 10) until it listens, else stops it and raises.
function M.start_server(cmd_of, name, secs)
  local port = M.free_port()
  local proc = M.spawn(cmd_of(port), name)
  local ok, err = pcall(M.wait_port, port, secs)
  if not ok then
    proc.stop()
    error(err .. "\n" .. proc.output())
  end
  proc.port = port
  return proc
end

--- Start a Lua server script with --port; waits until it listens.
-- prefix: shell commands to run first (e.g. "ulimit -n 64;").
function M.start_lua(script, args, name, prefix)
  return M.start_server(function(port)
    return string.format("%s exec %s %s/%s --port %d %s", prefix or "", M.LUA, M.ROOT, script, port, args or "")
  end, name or "server")
end

--- Start a Lua server script (with --port) under strace -f tracing the
-- system calls syscalls ("read,sendmsg") into proc.trace; nil where strace
-- cannot trace (ptrace forbidden in some containers). proc.stop() stops the
-- server (strace's child) first, by its pid, then strace, and removes the trace.
-- args: more arguments for the script.
function M.start_strace(script, syscalls, name, args)
  if not M.sh("strace -f -qq -o /dev/null true 2>/dev/null") then return nil end
  local trace = os.tmpname()
  local proc = M.start_server(function(port)
    return string.format("exec strace -f -qq -o %s -e trace=%s %s %s/%s --port %d %s",
      trace, syscalls, M.LUA, M.ROOT, script, port, args or "")
  end, name or "strace", 20)
  local stop = proc.stop
  function proc.stop()
    -- (read from /proc, since a pgrep run under the ASan preload can hang)
    local f = io.open(string.format("/proc/%d/task/%d/children", proc.pid, proc.pid))
    local child = f and tonumber((f:read("*a"):match("%d+")))
    if f then f:close() end
    if child then os.execute("kill " .. child .. " 2>/dev/null") end
    stop()
    os.remove(trace)
  end
  proc.trace = trace
  return proc
end

--- Start Debian's redis-server on a free loopback port (or opts.port), no
-- persistence; waits until it answers. Returns the process (see spawn)
-- with port, url and cli(args) -> output of redis-cli on it.
function M.start_redis(opts)
  opts = opts or {}
  local port = opts.port or M.free_port()
  local proc = M.spawn(string.format(
    "exec redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --protected-mode no" ..
    " --enable-debug-command yes %s",
    port, opts.args or ""), "redis")
  local ok, err = pcall(M.wait_port, port, 10)
  if not ok then
    proc.stop()
    error(err .. "\n" .. proc.output())
  end
  proc.port, proc.url = port, "redis://127.0.0.1:" .. port .. "/0"
  function proc.cli(args)
    return (M.run(string.format("timeout 10 redis-cli -p %d %s 2>&1", port, args)))
  end
  function proc.kill9() os.execute("kill -9 " .. proc.pid .. " 2>/dev/null") end
  return proc
end

--- RSS of a process in KiB, and its count of open file descriptors.
function M.rss_kib(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

function M.fd_count(pid)
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("*l"))
  p:close()
  return n
end

--- This process's own count of open descriptors. (Through os.execute and a
-- file, not popen: a popen's pipe end is still ours or already closed
-- depending on when its ls runs, which made the count differ by one.)
function M.own_fd_count()
  local listing = os.tmpname()
  os.execute("ls /proc/" .. require("ws.core").getpid() .. "/fd | wc -l > " .. listing)
  local f = assert(io.open(listing))
  local n = tonumber(f:read("*l"))
  f:close()
  os.remove(listing)
  return n
end

-- pid's descriptor count once it is back to baseline (waiting up to 6 s)
function M.fd_settled(pid, baseline)
  local deadline = socket.gettime() + 6
  local n = M.fd_count(pid)
  while n > baseline and socket.gettime() < deadline do
    socket.sleep(0.1)
    n = M.fd_count(pid)
  end
  return n
end

---- raw WebSocket client --------------------------------------------------------

-- 2^63-1, the largest legal 64-bit frame length: its bytes, since a double
-- cannot hold it
M.MAX_LEN = B.hex "7f ff ff ff ff ff ff ff"

local function pack_len(n, masked)
  local m = masked and 0x80 or 0
  if n < 126 then return string.char(m + n) end
  if n < 65536 then return string.char(m + 126) .. B.u16(n) end
  return string.char(m + 127) .. B.u64(n)
end

--- Encode a frame in pure Lua. opts: fin (default true), rsv (0..7),
-- mask (default true: client frames), key (4 bytes), len (override the length field).
function M.frame(opcode, payload, opts)
  opts = opts or {}
  payload = payload or ""
  local fin = opts.fin == nil and true or opts.fin
  local b0 = (fin and 0x80 or 0) + (opts.rsv or 0) * 16 + opcode
  local masked = opts.mask ~= false
  local out = { string.char(b0), pack_len(opts.len or #payload, masked) }
  if masked then
    local key = opts.key or "\055\250\033\061"
    out[#out + 1] = key
    payload = B.mask(payload, key)
  end
  out[#out + 1] = payload
  return table.concat(out)
end

--- A raw connection: handshake done by hand, then frames in and out.
local Raw = {}
Raw.__index = Raw

--- Connect and send the request head (a string, or nil for a valid upgrade;
-- false: send nothing). opts: timeout (5), rcvbuf (a receive buffer size set
-- before connecting: a peer whose socket fills fast).
-- Returns the raw connection and the response head.
function M.raw(port, request, opts)
  opts = opts or {}
  local s = assert(opts.rcvbuf and socket.tcp4() or socket.tcp())   -- (tcp4: set before connect)
  if opts.rcvbuf then assert(s:setoption("recv-buffer-size", opts.rcvbuf)) end
  s:settimeout(opts.timeout or 5)
  assert(s:connect("127.0.0.1", port))
  local self = setmetatable({ sock = s, buf = "", timeout = opts.timeout or 5 }, Raw)
  if request == nil then request = M.request(port, opts.path) end
  if request ~= false then
    assert(s:send(request))
    self.head = self:read_head()
  end
  return self, self.head
end

function M.request(port, path, extra)
  return "GET " .. (path or "/ws") .. " HTTP/1.1\r\nHost: 127.0.0.1:" .. port ..
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" ..
    (extra or "") .. "\r\n"
end

-- Whatever is available, waiting up to the socket's timeout (a blocking
-- receive(n) would wait for all n bytes).
function Raw:recv_some()
  local r = socket.select({ self.sock }, nil, self.timeout)
  if not r[1] then return nil, "timeout" end
  self.sock:settimeout(0)
  local data, err, partial = self.sock:receive(65536)
  self.sock:settimeout(self.timeout)
  data = data or partial
  if data and #data > 0 then return data end
  return nil, err == "timeout" and "timeout" or "closed"
end

-- read exactly n bytes (nil, err on close/timeout)
function Raw:read(n)
  while #self.buf < n do
    local data, err = self:recv_some()
    if not data then return nil, err end
    self.buf = self.buf .. data
  end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

function Raw:read_head()
  while not self.buf:find("\r\n\r\n", 1, true) do
    local data, err = self:recv_some()
    if not data then return nil, err, self.buf end
    self.buf = self.buf .. data
  end
  local e = self.buf:find("\r\n\r\n", 1, true)
  local head = self.buf:sub(1, e + 3)
  self.buf = self.buf:sub(e + 4)
  return head
end

function Raw:send(bytes)
  return self.sock:send(bytes)
end

function Raw:send_frame(opcode, payload, opts)
  return self.sock:send(M.frame(opcode, payload, opts))
end

--- Read one frame: returns { fin, rsv, opcode, masked, payload } or nil, err.
function Raw:read_frame()
  local h, err = self:read(2)
  if not h then return nil, err end
  local b0, b1 = h:byte(1, 2)
  local n = b1 % 128
  if n == 126 then n = B.get_u16(assert(self:read(2)))
  elseif n == 127 then n = B.get_u64(assert(self:read(8))) end
  local key
  if b1 >= 128 then key = assert(self:read(4)) end
  local payload = n > 0 and assert(self:read(n)) or ""
  return { fin = b0 >= 128, rsv = math.floor(b0 / 16) % 8, opcode = b0 % 16, masked = key ~= nil, payload = payload }
end

--- Read frames until a close; returns code (1005 if none), reason, or nil, err.
function Raw:read_close()
  while true do
    local f, err = self:read_frame()
    if not f then return nil, err end
    if f.opcode == 8 then
      if #f.payload >= 2 then return B.get_u16(f.payload), f.payload:sub(3) end
      return 1005, ""
    end
  end
end

--- true once the server has closed the TCP connection (reads EOF).
function Raw:closed_by_peer(secs)
  local saved = self.timeout
  self.timeout = secs or 3
  while true do
    local data, err = self:recv_some()
    if not data then
      self.timeout = saved
      return err == "closed"
    end
    self.buf = self.buf .. data
  end
end

function Raw:close()
  self.sock:close()
end

---- in-process ws.loop ----------------------------------------------------------

--- Run fn(...) as a task of ws.loop l, stepping l until fn returns or secs
-- pass. Returns fn's results; raises fn's error, or a timeout error.
function M.run_task(l, secs, fn, ...)
  local res
  -- ws.loop's xpcall: fn may wait inside it on Lua 5.1 too
  l:spawn(function(...) res = B.pack(require("ws.loop").xpcall(fn, debug.traceback, ...)) end, ...)
  local deadline = socket.gettime() + secs
  while not res and socket.gettime() < deadline do l:step(0.05) end
  if not res then error(string.format("loop task did not finish within %g s", secs), 2) end
  if not res[1] then error(res[2], 0) end
  return B.unpack(res, 2, res.n)
end

--- Step ws.loop l until pred() is true or secs pass; returns pred().
function M.step_until(l, secs, pred)
  local deadline = socket.gettime() + secs
  while not pred() and socket.gettime() < deadline do l:step(0.05) end
  return pred()
end

--- Close server srv and run its loop l until its connections are gone (at
-- most 5 s): later specs in the same busted process would otherwise get
-- its descriptors, and select() fails past 1024.
function M.stop_server(srv, l)
  srv:close()
  return M.step_until(l, 5, function() return next(srv.conns) == nil end)
end

---- proxies in front (nginx, HAProxy) --------------------------------------------

--- text with each key of subs (a literal string) replaced by its value
function M.template(text, subs)
  for from, to in pairs(subs) do
    local at = text:find(from, 1, true)
    assert(at, "template: " .. from .. " not found")
    text = text:gsub(from:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"), (tostring(to):gsub("%%", "%%%%")))
  end
  return text
end

local function start_config(name, text, file, cmd_of, port)
  local dir = M.tmpdir()
  local f = assert(io.open(dir .. "/" .. file, "w"))
  f:write(text)
  f:close()
  local proc = M.spawn(cmd_of(dir .. "/" .. file, dir), name)
  local ok, err = pcall(M.wait_port, port, 10)
  if not ok then
    proc.stop()
    error(err .. "\n" .. proc.output())
  end
  return proc
end

--- Start the system nginx in the foreground on config text (a whole
-- nginx.conf); waits until port listens. Returns the process (see spawn).
function M.start_nginx(text, port)
  return start_config("nginx", text, "nginx.conf", function(conf, dir)
    return string.format("exec nginx -p %s -c %s -g 'daemon off; pid %s/nginx.pid; error_log stderr;'",
      M.shell_quote(dir), M.shell_quote(conf), dir)
  end, port)
end

--- Start the system haproxy in the foreground (-db) on config text.
function M.start_haproxy(text, port)
  return start_config("haproxy", text, "haproxy.cfg", function(conf)
    return "exec haproxy -db -f " .. M.shell_quote(conf)
  end, port)
end

--- examples/deploy/nginx.conf started in front of lua-ws servers on
-- loopback: the upstreams (9001, 9002, and 9003 for the PROXY-protocol
-- stream server) replaced by opts.w1, opts.w2 (default w1), opts.pp
-- (default w1); its own listeners on fresh ports; opts.tls = a directory
-- with server.pem/server.key (else the TLS listener is dropped); opts.subs:
-- more replacements. Returns the process with .http, .tls, .stream ports.
function M.nginx_in_front(opts)
  local f = assert(io.open(M.ROOT .. "/examples/deploy/nginx.conf"))
  local text = f:read("*a")
  f:close()
  local http, tls, stream = M.free_port(), M.free_port(), M.free_port()
  local subs = {
    ["127.0.0.1:9001"] = "127.0.0.1:" .. opts.w1,
    ["127.0.0.1:9002"] = "127.0.0.1:" .. (opts.w2 or opts.w1),
    ["127.0.0.1:9003"] = "127.0.0.1:" .. (opts.pp or opts.w1),
    ["127.0.0.1:8080"] = "127.0.0.1:" .. http,
    ["127.0.0.1:8081"] = "127.0.0.1:" .. stream,
  }
  if opts.tls then
    subs["127.0.0.1:8443"] = "127.0.0.1:" .. tls
    subs["/etc/ssl/lua-ws/server.pem"] = opts.tls .. "/server.pem"
    subs["/etc/ssl/lua-ws/server.key"] = opts.tls .. "/server.key"
  else
    subs["listen 127.0.0.1:8443 ssl;"] = ""
    subs["ssl_certificate     /etc/ssl/lua-ws/server.pem;"] = ""
    subs["ssl_certificate_key /etc/ssl/lua-ws/server.key;"] = ""
  end
  for k, v in pairs(opts.subs or {}) do subs[k] = v end
  local proc = M.start_nginx(M.template(text, subs), http)
  proc.http, proc.tls, proc.stream = http, tls, stream
  return proc
end

return M
