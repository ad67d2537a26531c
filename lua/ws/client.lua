--- The client: ws:// and wss:// (ws.tls) connections with the same
-- connection object as the server side. Inside a ws.loop task (or a
-- cqueues / copas coroutine, or with opts.sched) it yields; in a plain
-- script it blocks, always bounded by opts.timeout.
-- @module ws.client
local socket = require "socket"
local core = require "ws.core"
local io_ = require "ws.io"
local http = require "ws.http"
local connection = require "ws.connection"
local tunnel = require "ws.tunnel"
local deflate = require "ws.deflate"
local tls_ = require "ws.tls"
local logging = require "ws.log"
local hosts = require "ws.sched"
local options = require "ws.options"
local resolve = require "ws.resolve"

local gettime = socket.gettime

local M = {}

--- The defaults of ws.connect (the schema and its docs: ws.options).
M.defaults = options.defaults("ws.connect")

--- Split a ws:// or wss:// URL into scheme, host, port, target.
---@param url string
---@return string|nil scheme "ws" or "wss" (nil: then the error)
---@return string host_or_err
---@return integer port
---@return string target path and query
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "ws" and scheme ~= "wss" then return nil, "unsupported url (ws:// or wss:// expected): " .. url end
  local authority, target = rest:match("^([^/?#]*)([^#]*)")
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  -- a request target holds no spaces or controls (RFC 9112 section 3.2):
  -- those and non-ASCII bytes go percent-encoded, as browsers send them
  target = target:gsub("[^\33-\126]", function(c) return ("%%%02X"):format(c:byte()) end)
  if authority:find("@", 1, true) then return nil, "credentials in url are not supported" end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "no host in url: " .. url end
  port = tonumber(port) or (scheme == "wss" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "bad port in url: " .. url end
  return scheme, host, port, target
end

-- The chunks of a chunked body (RFC 9112 section 7.1) as far as raw holds
-- them: the data, and true once the last chunk came (or the framing broke).
local function dechunk(raw)
  local out, pos = {}, 1
  while true do
    local line_end = raw:find("\r\n", pos, true)
    if not line_end then return table.concat(out), false end
    -- (at most 15 digits: past 2^63 tonumber(s, 16) wraps on Lua 5.3+, and a
    -- negative size would never move pos on)
    local hex = raw:sub(pos, line_end - 1):match("^%s*0*(%x+)%s*;?")
    local size = hex and #hex <= 15 and tonumber(hex, 16)
    if not size or size == 0 then return table.concat(out), true end
    if #raw < line_end + 1 + size + 2 then return table.concat(out), false end
    out[#out + 1] = raw:sub(line_end + 2, line_end + 1 + size)
    pos = line_end + 2 + size + 2
  end
end

-- The body of a refusal, at most max bytes, read until deadline: none for
-- 1xx, 204 and 304 (RFC 9112 section 6.3), the chunks up to the last one
-- when chunked, else Content-Length bytes or what comes until the server
-- closes.
local function read_body(sock, res, body, deadline, max, sched)
  local st = res.status
  if st < 200 or st == 204 or st == 304 then return "" end
  local chunked = (res.headers["transfer-encoding"] or ""):lower():find("chunked", 1, true)
  -- (Content-Length is 1*DIGIT: "1.5" or "0x10" is no length, as none)
  local length = tonumber((res.headers["content-length"] or ""):match("^%d+$") or "")
  local want = chunked and max or math.min(length or max, max)
  while true do
    local data, done
    if chunked then data, done = dechunk(body) else data, done = body:sub(1, want), #body >= want end
    if done or #body >= 2 * max then return data:sub(1, max) end   -- (chunked: its framing too)
    local more = io_.read(sock, deadline, sched)
    if not more then return data:sub(1, max) end
    body = body .. more
  end
end

local function fail(sock, err, sched)
  if sock then
    if sched then sched:forget(sock) end
    sock:close()
  end
  return nil, err
end

-- Non-blocking connect that waits through the loop (or blocks, in a
-- script); the name is resolved off the loop's thread (ws.resolve).
local function tcp_connect(host, port, deadline, sched)
  local sock, err, stage = resolve.connect(host, port, deadline, sched)
  if sock then return sock end
  if stage == "resolve" then return nil, err end
  return nil, "connect " .. host .. ":" .. port .. ": " .. err
end

-- The caller's headers: Host and Origin (any case) replace ours; those the
-- handshake itself makes (Upgrade, Connection, Sec-WebSocket-*) would go
-- twice, so they are refused. Returns the other lines, Host, Origin; or
-- nil, err.
local function user_headers(headers, origin)
  local rest, host = {}, nil
  for name, value in pairs(headers or {}) do
    local lname = type(name) == "string" and name:lower() or ""
    if lname == "upgrade" or lname == "connection" or lname:find("^sec%-websocket%-") then
      return nil, "invalid header: " .. name .. " (the handshake sets it)"
    elseif lname == "host" or lname == "origin" then
      if not http.valid(name, value) then return nil, "invalid header: " .. name end
      if lname == "host" then host = value else origin = value end
    else
      rest[name] = value
    end
  end
  local lines, bad = http.header_lines(rest)
  if not lines then return nil, "invalid header: " .. bad end
  return lines, host, origin
end

--- Open a WebSocket connection.
-- opts: headers (name -> value), origin, protocols (list), timeout (name
-- resolution included: inside a task the name is looked up off the loop's
-- thread, see ws.resolve; the Host header and TLS name stay the URL's),
-- tls = { verify = true, cafile, capath, certificate, key, server_name },
-- sock (a connected LuaSocket TCP socket to use instead of connecting, e.g.
-- a tunnel through a proxy; for wss:// its descriptor is taken over, or a
-- LuaSec socket, used as it is), proxy (an http:// proxy URL to tunnel
-- through with CONNECT; false: none; default: from the environment, see
-- ws.tunnel.pick), logger, sched (the scheduler to wait
-- through; default: the running ws.loop, cqueues or copas coroutine, else
-- block) and the connection limits (max_message, ...).
-- Returns a connection, or nil, err (and the response when the server
-- refused the handshake: status, reason, headers, body).
---@param url string ws://host[:port]/path or wss://...
---@param opts? ws.ConnectOptions
---@return ws.Conn|nil conn
---@return string? err
---@return ws.Response? response
function M.connect(url, opts)
  opts = options.check("ws.connect", opts)
  local scheme, host, port, target = M.parse_url(url)
  if not scheme then return nil, host end
  local deadline = gettime() + opts.timeout
  local sched, log = hosts.current(opts), logging.get(opts.logger, "ws.connect")

  local sock, err = opts.sock
  if sock then
    sock, err = hosts.socket(sock)
    if not sock then return nil, err end
    sock:settimeout(0)
  end
  local extra, user_host, origin = user_headers(opts.headers, opts.origin)
  if not extra then return fail(sock, user_host, sched) end
  -- the TLS context before connecting: a bad tls option raises, and a
  -- missing file fails, with no connection made
  local ctx
  if scheme == "wss" and not (sock and sock.getpeercertificate) then
    ctx, err = tls_.context(opts.tls or {}, "client")
    if not ctx then return fail(sock, err, sched) end
  end
  if not sock then
    local proxy
    proxy, err = tunnel.pick(scheme, host, port, opts.proxy)
    if err then return nil, err end
    if proxy then
      sock, err = tcp_connect(proxy.host, proxy.port, deadline, sched)
      if not sock then return nil, "proxy " .. proxy.url .. ": " .. err end
      local ok, terr, res = tunnel.open(sock, proxy, host, port, deadline, opts.max_header, sched)
      if not ok then
        fail(sock, nil, sched)
        return nil, terr, res
      end
    else
      sock, err = tcp_connect(host, port, deadline, sched)
      if not sock then return nil, err end
    end
  end
  if sock.setoption then sock:setoption("tcp-nodelay", true) end   -- (a LuaSec socket has none)
  if scheme == "wss" then
    local tcp = sock
    sock, err = tls_.connect(tcp, host, opts.tls, deadline, sched, ctx)
    if not sock then return fail(tcp, err, sched) end   -- (closed; the scheduler forgets it)
  end

  local key = core.new_key()
  local default_port = scheme == "wss" and 443 or 80
  local bracketed = host:find(":", 1, true) and "[" .. host .. "]" or host   -- IPv6
  local hosthdr = user_host or port ~= default_port and bracketed .. ":" .. port or bracketed
  local request, bad = http.head("GET " .. target .. " HTTP/1.1", {
    "Host", hosthdr, "Upgrade", "websocket", "Connection", "Upgrade",
    "Sec-WebSocket-Key", key, "Sec-WebSocket-Version", "13",
    "Origin", origin or false,
    "Sec-WebSocket-Protocol", opts.protocols and #opts.protocols > 0 and table.concat(opts.protocols, ", ") or false,
    "Sec-WebSocket-Extensions", opts.compression and deflate.offer(opts.compression) or false,
  }, extra)
  if not request then return fail(sock, "invalid request line: " .. bad, sched) end
  local ok
  ok, err = io_.write(sock, request, 1, deadline, sched)
  if not ok then return fail(sock, "handshake: " .. err, sched) end

  local head, rest, part = io_.read_head(sock, deadline, opts.max_header, nil, sched)
  if not head then
    local b = part and part:byte(1)
    if rest == "closed" and b and b ~= 0x15 and b ~= 0x16 then
      -- an answer that never ended with an empty line (cut short)
      rest = string.format("connection closed by server before the end of its answer (%q)", part:sub(1, 40))
    elseif rest == "closed" then
      -- nothing, or a TLS record (an alert): a TLS port, likely
      rest = "connection closed by server" ..
        (scheme == "ws" and " without an answer (is it a TLS port? try wss://)" or "")
    end
    return fail(sock, "handshake: " .. rest, sched)
  end
  -- interim answers (103 Early Hints, 100) come before the real one: skip
  -- them (RFC 9110 section 15.2), a few at most
  for _ = 1, 4 do
    local r = core.parse_response(head)
    if not (r and r.status >= 100 and r.status < 200 and r.status ~= 101) then break end
    head, rest = io_.read_head(sock, deadline, opts.max_header, rest, sched)
    if not head then return fail(sock, "handshake: " .. rest, sched) end
  end
  local res, rerr = core.parse_response(head, key)
  if not res then
    local r = core.parse_response(head)
    if r and r.status ~= 101 then
      -- the refusal as data: status, reason, headers and the body (what
      -- arrives before the deadline, at most max_header bytes)
      local body = read_body(sock, r, rest, deadline, opts.max_header, sched)
      fail(sock, nil, sched)
      return nil, string.format("handshake: server answered %d %s", r.status, r.reason),
        { status = r.status, reason = r.reason, headers = r.headers, body = body }
    end
    -- a head that does not parse (bare LF or CR, ...) is named as such
    return fail(sock, "handshake: " .. (r and "" or "malformed response: ") .. rerr, sched)
  end
  local protocol = res.headers["sec-websocket-protocol"]
  if protocol then
    local offered = false
    for _, p in ipairs(opts.protocols or {}) do if p == protocol then offered = true end end
    if not offered then
      return fail(sock, "handshake: server chose a subprotocol we did not offer: " .. protocol, sched)
    end
  end
  local ext, dopts = res.headers["sec-websocket-extensions"], nil
  if ext then
    if not opts.compression then
      return fail(sock, "handshake: server chose an extension we did not offer: " .. ext, sched)
    end
    local derr
    dopts, derr = deflate.agree(ext, opts.compression)
    if not dopts then return fail(sock, "handshake: " .. derr, sched) end
  end

  local conn_opts = {}
  for _, k in ipairs(connection.options) do conn_opts[k] = opts[k] end
  conn_opts.role, conn_opts.buffered, conn_opts.response = "client", rest, res
  conn_opts.peer, conn_opts.protocol, conn_opts.on_pong = bracketed .. ":" .. port, protocol, opts.on_pong
  conn_opts.deflate, conn_opts.sched, conn_opts.log = dopts, sched, log
  return connection.new(sock, conn_opts)
end

return M
