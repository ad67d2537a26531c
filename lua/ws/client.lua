--- The client: ws:// and wss:// (LuaSec) connections with the same
-- connection object as the server side. Inside a ws.loop task it yields;
-- in a plain script it blocks, always bounded by opts.timeout.
-- @module ws.client
local socket = require "socket"
local core = require "ws.core"
local io_ = require "ws.io"
local connection = require "ws.connection"
local deflate = require "ws.deflate"
local options = require "ws.options"

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
  if authority:find("@", 1, true) then return nil, "credentials in url are not supported" end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "no host in url: " .. url end
  port = tonumber(port) or (scheme == "wss" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "bad port in url: " .. url end
  return scheme, host, port, target
end

-- The body of a refusal: Content-Length bytes (or until the server closes),
-- at most max bytes, read until deadline.
local function read_body(sock, res, body, deadline, max)
  local want = tonumber(res.headers["content-length"] or "") or max
  want = math.min(want, max)
  while #body < want do
    local data = io_.read(sock, deadline)
    if not data then break end
    body = body .. data
  end
  return body:sub(1, want)
end

local function fail(sock, err)
  if sock then sock:close() end
  return nil, err
end

-- Non-blocking connect that waits through the loop (or blocks, in a script).
local function tcp_connect(host, port, deadline)
  local sock, err = socket.tcp()
  if not sock then return nil, err end
  sock:settimeout(0)
  local ok
  ok, err = sock:connect(host, port)
  if ok then return sock end
  if err ~= "timeout" then return fail(sock, "connect " .. host .. ":" .. port .. ": " .. err) end
  ok, err = io_.wait(sock, "w", deadline)
  if not ok then return fail(sock, "connect " .. host .. ":" .. port .. ": " .. err) end
  ok, err = sock:connect(host, port)
  if ok or err == "already connected" then return sock end
  return fail(sock, "connect " .. host .. ":" .. port .. ": " .. err)
end

-- RFC 6125 host name check against the certificate's names; a wildcard
-- matches exactly one left-most label.
local function name_matches(pattern, host)
  pattern, host = pattern:lower(), host:lower()
  if pattern == host then return true end
  local rest = pattern:match("^%*(%..+%..+)$")
  return rest ~= nil and host:sub(-#rest) == rest and not host:sub(1, -#rest - 1):find("[.]")
    and #host > #rest
end

local function verify_host(cert, host)
  local ext = cert:extensions() or {}
  local san = ext["2.5.29.17"]
  if san then
    local is_ip = host:match("^[%d.]+$") or host:find(":", 1, true)
    for _, name in ipairs(is_ip and (san.iPAddress or {}) or (san.dNSName or {})) do
      if is_ip and name:lower() == host:lower() or not is_ip and name_matches(name, host) then
        return true
      end
    end
    return false
  end
  for _, field in ipairs(cert:subject()) do
    if field.name == "commonName" and name_matches(field.value, host) then return true end
  end
  return false
end

-- A TLS handshake error, with a hint when the server did not speak TLS at all.
local function tls_hint(err)
  err = tostring(err)
  if err == "timeout" or err:find("wrong version number", 1, true) or err:find("packet length too long", 1, true)
     or err:find("unexpected eof", 1, true) or err == "closed" then
    return err .. " (the server did not answer TLS: is it ws://?)"
  end
  return err
end

local function tls_wrap(sock, host, opts, deadline)
  local ok, ssl = pcall(require, "ssl")
  if not ok then return fail(sock, "wss:// needs LuaSec (require \"ssl\" failed)") end
  local t = opts.tls or {}
  local verify = t.verify ~= false
  local params = {
    mode = "client",
    protocol = t.protocol or "any",
    options = t.options or { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
    verify = verify and "peer" or "none",
    cafile = t.cafile,
    capath = t.capath or (not t.cafile and "/etc/ssl/certs" or nil),
    certificate = t.certificate,
    key = t.key,
  }
  local s, err = ssl.wrap(sock, params)
  if not s then return fail(sock, "tls: " .. tostring(err)) end
  s:settimeout(0)
  if not host:match("^[%d.]+$") and not host:find(":", 1, true) then s:sni(host) end
  local done, herr = io_.tls_handshake(s, deadline)
  if not done then return fail(s, "tls handshake failed: " .. tls_hint(herr)) end
  if verify then
    local cert = s:getpeercertificate()
    local name = t.server_name or host
    if not cert or not verify_host(cert, name) then
      return fail(s, "tls: certificate does not match host " .. name)
    end
  end
  return s
end

--- Open a WebSocket connection.
-- opts: headers (name -> value), origin, protocols (list), timeout,
-- tls = { verify = true, cafile, capath, certificate, key, server_name },
-- sock (a connected LuaSocket TCP socket to use instead of connecting, e.g.
-- a tunnel through a proxy), and the connection limits (max_message, ...).
-- Returns a connection, or nil, err (and the response when the server
-- refused the handshake: status, reason, headers, body).
---@param url string
---@param opts? ws.ConnectOptions
---@return ws.Conn|nil conn
---@return string? err
---@return ws.Response? response
function M.connect(url, opts)
  opts = options.check("ws.connect", opts)
  local scheme, host, port, target = M.parse_url(url)
  if not scheme then return nil, host end
  local deadline = gettime() + opts.timeout

  local sock, err = opts.sock
  if sock then
    sock:settimeout(0)
  else
    sock, err = tcp_connect(host, port, deadline)
    if not sock then return nil, err end
  end
  sock:setoption("tcp-nodelay", true)
  if scheme == "wss" then
    sock, err = tls_wrap(sock, host, opts, deadline)
    if not sock then return nil, err end
  end

  local key = core.new_key()
  local default_port = scheme == "wss" and 443 or 80
  local bracketed = host:find(":", 1, true) and "[" .. host .. "]" or host   -- IPv6
  local hosthdr = port ~= default_port and bracketed .. ":" .. port or bracketed
  local lines = {
    "GET " .. target .. " HTTP/1.1", "Host: " .. hosthdr, "Upgrade: websocket",
    "Connection: Upgrade", "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13",
  }
  if opts.origin then lines[#lines + 1] = "Origin: " .. opts.origin end
  if opts.protocols and #opts.protocols > 0 then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(opts.protocols, ", ")
  end
  if opts.compression then
    lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. deflate.offer(opts.compression)
  end
  for i = 1, #lines do
    if lines[i]:find("%c") then return fail(sock, "invalid request line: " .. lines[i]) end
  end
  local extra, bad = io_.header_lines(opts.headers)
  if not extra then return fail(sock, "invalid header: " .. bad) end
  local ok
  ok, err = io_.write(sock, table.concat(lines, "\r\n") .. "\r\n" .. extra .. "\r\n", 1, deadline)
  if not ok then return fail(sock, "handshake: " .. err) end

  local head, rest = io_.read_head(sock, deadline, opts.max_header)
  if not head then
    if rest == "closed" then
      rest = "connection closed by server" ..
        (scheme == "ws" and " without an answer (is it a TLS port? try wss://)" or "")
    end
    return fail(sock, "handshake: " .. rest)
  end
  local res, rerr = core.parse_response(head, key)
  if not res then
    local r = core.parse_response(head)
    if r and r.status ~= 101 then
      -- the refusal as data: status, reason, headers and the body (what
      -- arrives before the deadline, at most max_header bytes)
      local body = read_body(sock, r, rest, deadline, opts.max_header)
      sock:close()
      return nil, string.format("handshake: server answered %d %s", r.status, r.reason),
        { status = r.status, reason = r.reason, headers = r.headers, body = body }
    end
    return fail(sock, "handshake: " .. rerr)
  end
  local protocol = res.headers["sec-websocket-protocol"]
  if protocol then
    local offered = false
    for _, p in ipairs(opts.protocols or {}) do if p == protocol then offered = true end end
    if not offered then return fail(sock, "handshake: server chose a subprotocol we did not offer: " .. protocol) end
  end
  local ext, dopts = res.headers["sec-websocket-extensions"], nil
  if ext then
    if not opts.compression then
      return fail(sock, "handshake: server chose an extension we did not offer: " .. ext)
    end
    local derr
    dopts, derr = deflate.agree(ext, opts.compression)
    if not dopts then return fail(sock, "handshake: " .. derr) end
  end

  local conn_opts = {}
  for _, k in ipairs(connection.options) do conn_opts[k] = opts[k] end
  conn_opts.role, conn_opts.buffered, conn_opts.response = "client", rest, res
  conn_opts.peer, conn_opts.protocol, conn_opts.on_pong = bracketed .. ":" .. port, protocol, opts.on_pong
  conn_opts.deflate = dopts
  return connection.new(sock, conn_opts)
end

return M
