--- The `ws` command (bin/ws): an interactive client and an echo server.
--
--   ws URL [options]        stdin lines out as messages, messages in on stdout
--   ws serve --echo [--host H] [--port P] [--workers N] [--cert FILE --key FILE]
--
-- Client options: --header "Name: value" (repeatable), --protocol P
-- (repeatable), --origin O, --cafile FILE, --insecure, --binary (stdin read
-- whole and sent as one binary message), --ping (send a ping, print the
-- round trip), --close CODE (close with CODE at the end of input),
-- --timeout S, --max-message BYTES (default 16 MiB, as `ws serve --echo`
-- takes), --compression, --proxy URL (an http:// proxy; default: the
-- environment's https_proxy / http_proxy), --no-proxy. Exit status: 0 after a clean close, 1 on any
-- failure (with a message on stderr), 2 on a usage error.
-- @module ws.cli
local ws = require "ws"
local socket = require "socket"
local core = require "ws.core"
local tls_ = require "ws.tls"

local M = {}

M.USAGE = [[
usage: ws URL [--header "Name: value"]... [--protocol P]... [--origin O]
              [--cafile FILE] [--insecure] [--binary] [--ping] [--close CODE]
              [--timeout SECONDS] [--max-message BYTES] [--compression]
              [--proxy http://[USER:PASS@]HOST:PORT | --no-proxy]
       ws serve --echo [--host HOST] [--port PORT] [--workers N]
                [--cert FILE --key FILE]   (wss://; SIGHUP reloads them)
       ws --version | --help
Client: each line of stdin is sent as a text message; each message received
is printed on its own line (binary ones as "< binary N bytes" unless --binary).
]]

-- s as an integer in lo..hi, or nil.
local function integer(s, lo, hi)
  local n = tonumber(s)
  if not n or n % 1 ~= 0 or n < lo or n > hi then return nil end
  return math.floor(n)
end

-- The parsed command line, or nil, err.
function M.parse(args)
  local o = { headers = {}, protocols = {} }
  local i = 1
  local function value(flag)
    i = i + 1
    if args[i] == nil then error({ usage = flag .. " needs a value" }) end
    return args[i]
  end
  local ok, err = pcall(function()
    while args[i] do
      local a = args[i]
      if a == "--header" or a == "-H" then
        local name, v = value(a):match("^%s*([^:%s]+)%s*:%s*(.-)%s*$")
        if not name then error({ usage = "--header wants \"Name: value\"" }) end
        o.headers[name] = v
      elseif a == "--protocol" then o.protocols[#o.protocols + 1] = value(a)
      elseif a == "--origin" then o.origin = value(a)
      elseif a == "--cafile" then o.cafile = value(a)
      elseif a == "--proxy" then o.proxy = value(a)
      elseif a == "--no-proxy" then o.proxy = false
      elseif a == "--insecure" or a == "-k" then o.insecure = true
      elseif a == "--binary" then o.binary = true
      elseif a == "--ping" then o.ping = true
      elseif a == "--compression" then o.compression = true
      elseif a == "--close" then
        o.close = integer(value(a), 0, 65535)
        if not o.close or not core.close_payload(o.close) then
          error({ usage = "--close wants a close code a peer may send (1000, 3000..4999, ...)" })
        end
      elseif a == "--timeout" then
        o.timeout = tonumber(value(a))
        if not o.timeout or o.timeout < 0 then
          error({ usage = "--timeout wants seconds >= 0" })
        end
      elseif a == "--max-message" then
        o.max_message = integer(value(a), 1, 2 ^ 53)
        if not o.max_message then error({ usage = "--max-message wants bytes >= 1" }) end
      elseif a == "--echo" then o.echo = true
      elseif a == "--cert" then o.cert = value(a)
      elseif a == "--key" then o.key = value(a)
      elseif a == "--host" then o.host = value(a)
      elseif a == "--port" or a == "-p" then
        o.port = integer(value(a), 0, 65535)
        if not o.port then error({ usage = "--port wants a number in 0..65535" }) end
      elseif a == "--workers" then
        o.workers = integer(value(a), 1, 4096)
        if not o.workers then error({ usage = "--workers wants a count in 1..4096" }) end
      elseif a == "--help" or a == "-h" then o.help = true
      elseif a == "--version" then o.version = true
      elseif a == "serve" and not o.command then o.command = "serve"
      elseif a:sub(1, 1) ~= "-" and not o.url and not o.command then o.url = a
      else error({ usage = "unknown argument " .. a }) end
      i = i + 1
    end
  end)
  if not ok then
    if type(err) == "table" then return nil, err.usage end
    error(err, 0)
  end
  if (o.cert == nil) ~= (o.key == nil) then return nil, "--cert and --key go together" end
  if o.cert and o.command ~= "serve" then return nil, "--cert and --key are options of ws serve" end
  -- port 0 is picked per listener: each worker would get one of its own
  if o.port == 0 and o.workers and o.workers > 1 then
    return nil, "--port wants a port other than 0 with --workers (each worker would listen on its own)"
  end
  return o
end

local function say(out, ...) out:write(...); out:write("\n"); out:flush() end

--- The interactive client. io: { stdout, stderr } (stdin: descriptor 0,
-- see stdin_reader). Returns an exit status.
function M.client(o, io_)
  local tls
  if o.cafile or o.insecure then tls = { cafile = o.cafile, verify = not o.insecure } end
  local failed = false
  local done = false
  local pong_at

  -- everything runs as tasks of one loop, the connection included: a
  -- connection waits through the scheduler it was made in
  local l = ws.loop.new()
  local conn_now, status   -- the connection once made; the exit status a signal sets
  -- stdout gone or a signal: close with 1001 (going away) and stop, once
  local function leave(why)
    if done then return end
    done = true
    say(io_.stderr, "ws: ", why, conn_now and ": closing with 1001" or "")
    if conn_now then conn_now:close(1001) end
    l:stop()
  end
  -- true, or nil, err when stdout cannot be written (a closed pipe: EPIPE)
  local function show(data, kind)
    local out, ok, err = io_.stdout
    if kind == "binary" and not o.binary then ok, err = out:write("< binary ", tostring(#data), " bytes\n")
    else ok, err = out:write(data, kind == "text" and "\n" or "") end
    if ok then ok, err = out:flush() end
    return ok, err
  end
  -- SIGINT (Ctrl-C) and SIGTERM through the loop: a clean close instead of
  -- Lua's "interrupted!" error that drops TCP; exit 128 + the signal
  local sigs = core.signals({ "INT", "TERM" })
  if sigs then
    l:spawn(function()
      while not done do
        local name = sigs:next()
        if name then
          status = name == "INT" and 130 or 143
          leave("SIG" .. name)
        elseif not l:wait(sigs, "r") then
          return
        end
      end
    end)
  end
  -- the reader: every message to stdout until the connection closes
  local function reader(conn)
    while true do
      local data, kind, code, reason = conn:receive()
      if not data then
        -- (done: we closed, and the writer reports it and stops the loop)
        if done then return end
        done = true
        if kind == "closed" then
          say(io_.stderr, "closed by the server: ", tostring(code), " ", reason or "")
          failed = code ~= 1000 and code ~= 1001
        else
          -- the server broke the protocol, or sent more than --max-message: we closed
          say(io_.stderr, "ws: ", kind, ": closed with ", tostring(code),
            kind == "message too big" and " (see --max-message)" or "")
          failed = true
        end
        l:stop()
        return
      end
      local ok, werr = show(data, kind)
      if not ok then
        failed = true
        return leave("stdout: " .. tostring(werr))
      end
    end
  end
  -- the writer: stdin, read through the loop so the reader keeps running
  local function writer(conn)
    if o.ping then
      pong_at = socket.gettime()
      conn:ping("ws-cli")
    end
    local input = M.stdin_reader(l)
    if o.binary then
      -- one message: everything up to the end of input
      local parts = {}
      while not done do
        local chunk = input()
        if not chunk then break end
        parts[#parts + 1] = chunk
      end
      local all = table.concat(parts)
      if all ~= "" and not done then
        local ok, serr = conn:send(all, "binary")
        if not ok then failed = true; say(io_.stderr, "ws: send: ", serr) end
      end
    else
      -- each line once its "\n" came (the last one at the end of input
      -- even without it); held: the start of a line from earlier chunks
      local chunk, pos, held = "", 1, {}
      while not done do
        local line
        local nl = chunk:find("\n", pos, true)
        if nl then
          held[#held + 1] = chunk:sub(pos, nl - 1)
          line, pos, held = table.concat(held), nl + 1, {}
        else
          held[#held + 1] = chunk:sub(pos)
          chunk, pos = input(), 1
          if not chunk then
            line, chunk, held = table.concat(held), "", {}
            if line == "" then break end
          end
        end
        if line then
          local ok, serr = conn:send(line)
          if not ok then failed = true; say(io_.stderr, "ws: send: ", serr); break end
        end
      end
    end
    if done then return end
    -- end of input: let late answers (and a pong) arrive, then close
    l:sleep(o.ping and 1 or 0.2)
    done = true
    -- (true, the peer's code; or nil, err, code: no close came back, 1006)
    local sent = o.close or 1000
    local ok, a, code = conn:close(sent)
    if not ok then
      failed = true
      say(io_.stderr, "ws: close: ", a, code and " " .. tostring(code) or "")
    else
      say(io_.stderr, "closed: ", tostring(a))
      -- clean: the server answered 1000 or 1001, or echoed our own code
      failed = a ~= 1000 and a ~= 1001 and a ~= sent
    end
    l:stop()
  end
  l:spawn(function()
    -- (ws.loop.pcall: connect waits, which PUC Lua 5.1 cannot do inside pcall)
    local ok, conn, err, res = ws.loop.pcall(ws.connect, o.url, {
      headers = o.headers, protocols = #o.protocols > 0 and o.protocols or nil, origin = o.origin,
      tls = tls, timeout = o.timeout, compression = o.compression or nil, proxy = o.proxy,
      max_message = o.max_message or 16 * 1024 * 1024,
    })
    if not ok then conn, err = nil, tostring(conn) end   -- (a bad header name, say)
    if not conn then
      say(io_.stderr, "ws: ", err)
      if res and res.body and res.body ~= "" then say(io_.stderr, "ws: the server said: ", (res.body:gsub("%s+$", ""))) end
      failed = true
      l:stop()
      return
    end
    if done then return conn:abort() end   -- (a signal came while connecting)
    conn_now = conn
    say(io_.stderr, "connected to ", o.url, conn.protocol and " (subprotocol " .. conn.protocol .. ")" or "")
    conn.on_pong = function(_, data)
      if pong_at and data == "ws-cli" then
        say(io_.stderr, string.format("pong in %.1f ms", (socket.gettime() - pong_at) * 1000))
      end
    end
    l:spawn(reader, conn)
    writer(conn)
  end)
  l:run()
  if sigs then
    l:forget(sigs)
    sigs:close()   -- (gives the signals back)
  end
  if status then return status end
  return failed and 1 or 0
end

--- A reader of stdin (descriptor 0) that waits in the loop l instead of
-- blocking it: returns a function that returns what is there (one read, at
-- most 64 KiB), or nil at the end of input. The descriptor stays blocking
-- (see core.read_fd): it is read only once select() says it is ready.
function M.stdin_reader(l)
  local fd0 = { getfd = function() return 0 end }
  local ended = false
  return function()
    while not ended do
      local r, _, err = socket.select({ fd0 }, nil, 0)
      -- (select failing on fd 0, a closed stdin: read fails at once too)
      if (r and r[1]) or err ~= "timeout" then
        local data, rerr = core.read_fd(0)
        if data then
          l:yield()   -- (a producer faster than us must not hold the loop)
          return data
        end
        ended = rerr ~= "timeout"   -- (EAGAIN: someone made it non-blocking)
      else
        -- (bounded: a descriptor epoll cannot watch must not stall us)
        l:wait(fd0, "r", socket.gettime() + 1)
      end
    end
    return nil
  end
end

--- ws serve --echo: the echo server, on N worker processes when asked.
function M.serve(o, io_)
  if not o.echo then
    say(io_.stderr, "ws serve: only --echo is built in; see examples/ for more")
    return 2
  end
  -- reuseport: with --workers, each worker listens on the port (ws.workers)
  local function start(reuseport)
    local server, err = ws.listen { host = o.host or "127.0.0.1", port = o.port or 8080, reuseport = reuseport,
      max_message = 16 * 1024 * 1024, check_origin = function() return true end,
      tls = o.cert and { certificate = o.cert, key = o.key } or nil }
    if not server then
      say(io_.stderr, "ws serve: ", err)
      return nil
    end
    server:route("/*", function(conn)
      while true do
        local data, kind = conn:receive()
        if not data or not conn:send(data, kind) then break end
      end
    end)
    say(io_.stderr, "echo server on ", o.cert and "wss://" or "ws://", server.address, "/ (any path)")
    return server
  end
  if o.workers and o.workers > 1 then
    if o.cert then
      -- a file that cannot be used fails here, once, not in every worker
      -- (restarted, failing again, until the supervisor gives up)
      local ctx, err = tls_.context({ certificate = o.cert, key = o.key }, "server")
      if not ctx then
        say(io_.stderr, "ws serve: ", err)
        return 1
      end
      ctx:close()
    end
    local ok, workers = pcall(require, "ws.workers")
    if not ok then
      say(io_.stderr, "ws serve: --workers needs the ws.workers module, which this installation lacks")
      return 1
    end
    -- each worker: its own server, run until drained (SIGTERM)
    return workers.run(o.workers, function()
      local s = start(true)
      if not s then return false end
      s:run()
      return true
    end)
  end
  local server = start()
  if not server then return 1 end
  server:run()
  return 0
end

--- Run the command with args; returns the exit status.
function M.main(args, io_)
  io_ = io_ or { stdout = io.stdout, stderr = io.stderr }
  local o, err = M.parse(args)
  if not o then
    say(io_.stderr, "ws: ", err)
    io_.stderr:write(M.USAGE)
    return 2
  end
  if o.help then io_.stdout:write(M.USAGE); return 0 end
  if o.version then say(io_.stdout, "lua-ws ", ws._VERSION); return 0 end
  if o.command == "serve" then return M.serve(o, io_) end
  if not o.url then
    io_.stderr:write(M.USAGE)
    return 2
  end
  return M.client(o, io_)
end

return M
