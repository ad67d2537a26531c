--- The server: accept TCP connections, read the HTTP request, route it,
-- upgrade WebSocket requests and run each connection's handler in its own
-- coroutine; answer everything else with a proper HTTP response.
-- @module ws.server
local socket = require "socket"
local core = require "ws.core"
local fanout = require "ws.fanout"
local loop = require "ws.loop"
local io_ = require "ws.io"
local http = require "ws.http"
local connection = require "ws.connection"
local deflate = require "ws.deflate"
local logging = require "ws.log"
local tls_ = require "ws.tls"
local hosts = require "ws.sched"
local proxy = require "ws.proxy"
local drain = require "ws.drain"
local options = require "ws.options"
local router = require "ws.router"
local static = require "ws.static"

local gettime = socket.gettime

local M = {}

--- The defaults of ws.listen (the schema and its docs: ws.options).
M.defaults = options.defaults("ws.listen")

-- The reason phrases of RFC 9110 section 15 (and RFC 6585's 429, 431);
-- keys 1 to 5: the class names, for any other status
local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
  [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [305] = "Use Proxy", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [406] = "Not Acceptable",
  [407] = "Proxy Authentication Required", [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
  [411] = "Length Required", [412] = "Precondition Failed", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
  [417] = "Expectation Failed", [421] = "Misdirected Request", [422] = "Unprocessable Content",
  [426] = "Upgrade Required", [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
  "Informational", "Successful", "Redirection", "Client Error", "Server Error",
}

-- The length of a response body: a string's, or an open file's from where
-- it stands to its end (nil if it cannot seek).
local function body_length(body)
  if type(body) == "string" then return #body end
  if io.type(body) ~= "file" then return nil end
  local at = body:seek()
  local size = at and body:seek("end")
  if not size or not body:seek("set", at) then return nil end
  return size - at
end

-- An HTTP response head: status (100..599), body (a string, or an open
-- file, streamed after it) and headers as an application gave them,
-- checked, or a 500 (logged) when they are not valid; then the body to
-- write after it. head_only (a HEAD request): the Content-Length, no body.
local function response(log, status, body, headers, head_only)
  local lines, bad = http.header_lines(headers)
  local length = body_length(body)
  if type(status) ~= "number" or status % 1 ~= 0 or status < 100 or status > 599
     or not length or not lines then
    log("error", string.format("invalid response (status %s, body %s, header %s): answering 500",
      tostring(status), io.type(body) or type(body), tostring(bad)))
    if io.type(body) == "file" then body:close() end
    status, body, lines, length = 500, "internal error\n", "", 15
  end
  local lower = ("\n" .. lines):lower()
  if head_only then
    if io.type(body) == "file" then body:close() end
    body = ""
  end
  local reason = REASONS[status] or REASONS[math.floor(status / 100)]
  local head = http.head(string.format("HTTP/1.1 %d %s", status, reason), {
    "Content-Type", not lower:find("\ncontent%-type:") and "text/plain; charset=utf-8",
    -- a 304 has no body, and no length of one (RFC 9110 section 15.4.5)
    "Content-Length", status ~= 304 and tostring(length),
    -- who sends Upgrade names it in Connection too (RFC 9110 section 7.8)
    "Connection", lower:find("\nupgrade:") and "Upgrade, close" or "close",
  }, lines, type(body) == "string" and body or "")
  return head, io.type(body) == "file" and body or nil
end

-- Write s, then the rest of file f, in pieces of at most 64 KiB, each given
-- send_timeout (30 s without one): a long download goes on as long as the
-- client takes it, a stalled one is cut. Closes f. Returns true or nil, err.
local PIECE = 64 * 1024
local function write_pieces(o, sock, s, f)
  local t = o.send_timeout or 30
  local ok, err = true, nil
  local i = 1
  while ok and i <= #s do
    local j = math.min(i + PIECE - 1, #s)
    ok, err = io_.write(sock, j - i + 1 == #s and s or s:sub(i, j), 1, gettime() + t, o.sched)
    i = j + 1
  end
  while ok and f do
    local piece = f:read(PIECE)
    if not piece then break end
    ok, err = io_.write(sock, piece, 1, gettime() + t, o.sched)
  end
  if f then f:close() end
  return ok, err
end

-- Close a socket no connection owns yet; its scheduler forgets it first
-- (cqueues keeps state per descriptor number).
local function close(o, sock)
  if o.sched then o.sched:forget(sock) end
  sock:close()
end

-- Answer with an HTTP error (or page) and close.
local function respond(o, sock, status, body, headers, deadline, head_only)
  local head, file = response(o.log, status, body, headers, head_only)
  write_pieces(o, sock, head, file)
  -- half-close and drain briefly so the client reads our answer, not a reset
  if sock.shutdown then sock:shutdown("send") end
  local stop = math.min(deadline or math.huge, gettime() + 0.5)
  repeat until not io_.read(sock, stop, o.sched)
  close(o, sock)
end

-- An application callback of the handshake raised: logged, answered 500.
local function failed(o, sock, what, err, peer, req, deadline)
  o.log("error", what .. " error: " .. tostring(err), { peer = peer, path = req.path })
  respond(o, sock, 500, "internal error\n", nil, deadline)
  return nil, what .. " error"
end

-- Refuse a request: log why through the logger, then answer and close.
local function refuse(o, sock, status, reason, fields, deadline, headers, body)
  fields.code = status
  o.log("info", string.format("refused %d: %s", status, reason), fields)
  respond(o, sock, status, body or reason .. "\n", headers, deadline)
end

local function host_of(origin)
  local h = origin:match("^[%a][%w+.-]*://([^/?#]*)")
  return h and h:lower()
end

--- Same-origin policy as gorilla/websocket: no Origin header (a non-browser
-- client) is allowed; otherwise the Origin's host must equal Host.
---@param origin string?
---@param request ws.Request
---@return boolean
function M.same_origin(origin, request)
  if origin == nil then return true end
  local host = request.headers.host
  return host ~= nil and host_of(origin) == host:lower()
end

-- An origin check from a list of allowed Origin values ("https://example.com",
-- compared without case); no Origin header (a non-browser client) is allowed.
local function origin_list(origins)
  local allowed = {}
  for _, o in ipairs(origins) do allowed[o:lower()] = true end
  return function(origin) return origin == nil or allowed[origin:lower()] == true end
end

-- Pick a subprotocol: a list in server preference order, or a function
-- (offered list, request) -> chosen or nil. Never echo the whole list.
local function choose_protocol(protocols, request)
  local header = request.headers["sec-websocket-protocol"]
  if not protocols or not header then return nil end
  local offered = {}
  for p in header:gmatch("[^,%s]+") do offered[#offered + 1] = p end
  if type(protocols) == "function" then
    local chosen = protocols(offered, request)
    for _, p in ipairs(offered) do if p == chosen then return p end end
    return nil
  end
  for _, want in ipairs(protocols) do
    for _, p in ipairs(offered) do if p == want then return p end end
  end
  return nil
end

-- "ip:port", "[ip]:port" for IPv6 (as in a URL)
local function address(ip, port)
  return ip:find(":", 1, true) and "[" .. ip .. "]:" .. port or ip .. ":" .. port
end

--- "ip:port" of a socket's peer ("[ip]:port" for IPv6).
---@param sock table
---@return string
function M.peername(sock)
  if not sock.getpeername then return "?" end
  local ip, port = sock:getpeername()
  if not ip then return "?" end
  return address(ip, port)
end

-- The options of an entry point, checked (raising at the caller of
-- ws.listen / ws.accept), with their defaults.
local function merge(entry, opts)
  local o = options.check(entry, opts, 4)
  if o.origins and not o.check_origin then o.check_origin = origin_list(o.origins) end
  o.log = logging.get(o.logger)
  proxy.configure(o)
  -- a request's path starts with "/": a health path without one never matched
  for _, p in ipairs(type(o.health_path) == "table" and o.health_path or { o.health_path }) do
    if p:sub(1, 1) ~= "/" then error(string.format("%s: option 'health_path' must start with \"/\", got %q", entry, p), 3) end
  end
  return o
end

-- The options table upgrade() hands to connection.new: made once per
-- entry point's options, then refilled per connection (connection.new
-- copies what it keeps and never yields, so one table serves them all).
-- A server's connections share their settings in one class (o.shared); a
-- connection of ws.accept, whose options are its own, holds them itself.
local function conn_options(o)
  local c = {}
  for _, k in ipairs(connection.options) do c[k] = o[k] end
  c.role, c.on_pong, c.sched, c.log = "server", o.on_pong, o.sched, o.log
  if o.shared then c.class = connection.class(c) end
  o.conn_opts = c
  return c
end

-- Validate an upgrade request already parsed and answer it: the 101 and a
-- connection, or an HTTP error (sent) and nil, err.
local function upgrade(sock, req, rest, o, deadline, peer)
  peer = peer or o.peer or M.peername(sock)
  if not req.ws_accept then
    -- what each refusal must name (RFC 9110 sections 15.5.6 and 15.5.22;
    -- RFC 6455 section 4.4): the method a WebSocket takes, the protocol and
    -- version to upgrade to
    local status, headers = req.ws_status, nil
    if status == 405 then headers = { Allow = "GET" }
    elseif status == 426 then headers = { Upgrade = "websocket", ["Sec-WebSocket-Version"] = "13" } end
    refuse(o, sock, status, req.ws_error, { peer = peer, path = req.path }, deadline, headers)
    return nil, req.ws_error
  end
  -- (the application's callbacks through pcall: one that raises gets a 500)
  local good, allowed = true
  if o.check_origin then good, allowed = loop.pcall(o.check_origin, req.headers.origin, req)
  else allowed = M.same_origin(req.headers.origin, req) end
  if not good then return failed(o, sock, "check_origin", allowed, peer, req, deadline) end
  if not allowed then
    refuse(o, sock, 403, "origin not allowed (see the origins and check_origin options)",
      { peer = peer, path = req.path, origin = req.headers.origin }, deadline)
    return nil, "origin not allowed"
  end
  -- the application's word (authentication, say): nil or 101 upgrades,
  -- with headers added to the 101; any other status is the answer
  local extra = ""
  if o.on_request then
    local ok, status, body, headers = loop.pcall(o.on_request, req)   -- (it may wait, on 5.1 too)
    if not ok then
      o.log("error", "on_request error: " .. tostring(status), { peer = peer, path = req.path })
      status, body, headers = 500, "internal error\n", nil
    end
    if status == nil or status == 101 then
      local bad
      extra, bad = http.header_lines(headers)
      if not extra then
        o.log("error", "on_request: invalid header " .. tostring(bad), { peer = peer, path = req.path })
        status, body, headers = 500, "internal error\n", nil
      end
    end
    if status ~= nil and status ~= 101 then
      o.log("info", string.format("refused %s: by on_request", tostring(status)), { peer = peer, path = req.path })
      respond(o, sock, status, body or "", headers, deadline)   -- (checked there too)
      return nil, "refused by on_request"
    end
  end
  local good_p, protocol = true
  if type(o.protocols) == "function" then good_p, protocol = loop.pcall(choose_protocol, o.protocols, req)
  else protocol = choose_protocol(o.protocols, req) end
  if not good_p then return failed(o, sock, "protocols", protocol, peer, req, deadline) end
  local ext, dopts
  if o.compression then ext, dopts = deflate.accept(req.headers["sec-websocket-extensions"], o.compression) end
  -- the 101 in one C call (Lua's pattern matcher would check its values at
  -- several times the cost); extra lines go before the blank line that ends it
  local head = core.build_response(req.ws_accept, protocol, ext)
  req.ws_accept = nil   -- (of no use once answered: a string less per connection)
  if extra ~= "" then head = head:sub(1, -3) .. extra .. "\r\n" end
  local ok, err = io_.write(sock, head, 1, deadline, o.sched)
  if not ok then
    o.log("debug", "handshake failed: " .. tostring(err), { peer = peer, path = req.path, error = err })
    close(o, sock)
    return nil, err
  end
  local c = o.conn_opts or conn_options(o)
  c.buffered, c.request, c.peer, c.protocol, c.deflate = rest, req, peer, protocol, dopts
  local conn = connection.new(sock, c)
  c.buffered, c.request, c.deflate = nil, nil, nil   -- (not held until the next upgrade)
  return conn
end

-- Read and parse a request head; on failure answer it and return nil, err.
-- request.params: the decoded query (route captures are added later).
local function read_request(sock, o, deadline, peer)
  local first, ferr = io_.read(sock, deadline, o.sched)
  if not first then
    o.log("debug", "handshake failed: " .. tostring(ferr), { peer = peer, error = ferr })
    close(o, sock)
    return nil, ferr
  end
  -- a TLS ClientHello (a handshake record, 0x16 0x03) on a plain port:
  -- refuse at once in plain words, rather than wait for a head that never
  -- comes (0x16 cannot start an HTTP request; a first read may hold it alone)
  local b2 = first:byte(2)
  if first:byte(1) == 0x16 and (b2 == nil or b2 == 0x03) then
    refuse(o, sock, 400, "TLS handshake on a plain port: this server speaks ws:// and http://, not wss://",
      { peer = peer }, deadline)
    return nil, "tls on a plain port"
  end
  local head, rest = io_.read_head(sock, deadline, o.max_header, first, o.sched)
  if not head then
    o.log("debug", "handshake failed: " .. tostring(rest), { peer = peer or M.peername(sock), error = rest })
    if rest == "too large" then
      refuse(o, sock, 431, "request header too large", { peer = peer }, deadline)
    else
      close(o, sock)
    end
    return nil, rest
  end
  local req, status, err = core.parse_request(head)
  if not req then
    refuse(o, sock, status, err, { peer = peer }, deadline)
    return nil, err
  end
  req.params = router.parse_query(req.query)
  return req, rest
end

--- The server side of the handshake on a socket someone else accepted
-- (copas, cqueues, luv or an HTTP framework; see ws.sched.socket for what
-- is taken). Reads the request, validates it, answers 101 or an HTTP error.
-- Waits through opts.sched, else the loop running this coroutine (ws.loop,
-- a cqueues controller, copas), else blocks.
---@param sock any an accepted socket
---@param opts? ws.AcceptOptions
---@return ws.Conn|nil conn
---@return string? err
function M.accept(sock, opts)
  local o = merge("ws.accept", opts)
  o.sched = hosts.current(o)
  local err
  sock, err = hosts.socket(sock)
  if not sock then return nil, err end
  sock:settimeout(0)
  local deadline = gettime() + o.handshake_timeout
  local peer = o.peer or M.peername(sock)
  local req, rest = read_request(sock, o, deadline, peer)
  if not req then return nil, rest end
  return upgrade(sock, req, rest, o, deadline, peer)
end

-- the address part of "ip:port" or "[ip]:port"
local function ip_of(peer)
  return peer:match("^%[(.*)%]") or peer:match("^(.*):%d+$") or peer
end

-- The PROXY protocol header of a new connection (o.proxy_protocol): the
-- client's address it names, or the TCP peer's and true for LOCAL/UNKNOWN
-- (no client named); nil (logged, closed) for a peer that is not trusted
-- or sent no valid header.
local function proxy_header(self, sock, peer, deadline)
  local o = self.opts
  local client, err
  if o.trusted(ip_of(peer)) then client, err = proxy.read_header(sock, deadline)
  else client, err = false, "PROXY header from an untrusted peer" end
  if client == false then
    -- a connection that ends or stays silent before its header is a
    -- layer-4 health check or a client gone, as read_request logs it: a
    -- warning per check would drown the real ones (a bad header, a peer
    -- that is not trusted)
    local quiet = err == "closed" or err == "timeout"
    o.log(quiet and "debug" or "warn", "refused: " .. tostring(err), { peer = peer })
    close(o, sock)
    return nil
  end
  return client or peer, client == nil
end

-- peer, proxy_peer, scheme after the forwarding headers, read only when
-- the TCP peer (or the PROXY header's client) is a trusted proxy
local function forwarded(o, req, peer, proxy_peer)
  if not o.trusted(ip_of(peer)) then return peer, proxy_peer, nil end
  local client, scheme = proxy.from_headers(req.headers, o.trusted, o.forwarded_header)
  if client then return client, proxy_peer or peer, scheme end
  return peer, proxy_peer, scheme
end

--- The listening descriptor systemd's socket activation passed to this
-- process (the first, 3), or nil when there is none (LISTEN_FDS and
-- LISTEN_PID, as sd_listen_fds reads them): ws.listen { fd = M.systemd_fd() }.
---@return integer|nil
function M.systemd_fd()
  local n, pid = tonumber(os.getenv("LISTEN_FDS")), tonumber(os.getenv("LISTEN_PID"))
  if n and n >= 1 and pid == core.getpid() then return 3 end
  return nil
end

--- A listening server (ws.listen).
---@class ws.Server
---@field loop ws.Loop the scheduler its handlers run on
---@field host string where it listens
---@field port integer where it listens (the one picked for port = 0)
---@field address string host:port as in a URL ("[::1]:8080" for IPv6)
---@field conns table<ws.Conn, true> the open connections
---@field open boolean false once closed
---@field opts table the checked options, defaults included
local Server = {}
Server.__index = Server
Server.__name = "ws.server"

--- Listen on host:port. opts: host, port, backlog, loop, and every
-- handshake option and limit (ws.options: checked, raising on a mistake).
---@param opts? ws.ListenOptions
---@return ws.Server|nil server
---@return string? err "listen HOST:PORT: address already in use", ...
function M.listen(opts)
  local o = merge("ws.listen", opts)
  o.shared = true   -- (its connections share one class: see conn_options)
  -- The listener is made in C for the family of the host's address, with
  -- SO_REUSEADDR (and SO_REUSEPORT) set before bind: LuaSocket's
  -- socket.tcp() has no descriptor until bind, so options set on it were
  -- silently lost. fd: a listening socket inherited from systemd.
  local sock, err
  if o.fd then sock, err = core.listen_fd(o.fd)
  else sock, err = core.listen(o.host, o.port, o.backlog, o.reuseport) end
  if not sock then return nil, "listen " .. (o.fd and "fd " .. o.fd or address(o.host, o.port)) .. ": " .. tostring(err) end
  -- as Go's runtime does: connections should not stop at a shell's 1024
  core.raise_fd_limit()
  -- glibc trims its heap top above twice the largest block freed, so each
  -- large message's blocks were faulted in anew (a third of the CPU of a
  -- 1 MiB wss:// echo); Go's and V8's heaps keep their pages too
  if o.heap_keep then core.heap_keep(o.heap_keep) end
  sock:settimeout(0)
  local tls
  if o.tls then
    tls, err = tls_.context(o.tls, "server")
    if not tls then
      sock:close()
      return nil, err
    end
  end
  -- spin: with few connections a round's answer comes back within tens of
  -- µs; polling for it beats sleeping, whose wake-up can cost more than the
  -- work it brings (one connection, one message in flight: 1.34x the rate)
  o.loop = o.loop or loop.new { logger = o.logger, spin = o.spin }
  o.sched = o.loop
  local self = setmetatable({
    sock = sock,
    opts = o,
    tls = tls,       -- TLS context (ws.tls) when serving wss://
    loop = o.loop,
    routes = router.new(),   -- path or pattern -> handler(conn) (see ws.router)
    pages = router.new(),    -- path or pattern -> page: HTML or function(request)
    conns = {},      -- open connections (set)
    handshakes = 0,  -- accepted connections not yet upgraded nor answered
    handshaking = setmetatable({}, { __mode = "k" }),   -- their tasks
    open = true,
    draining = false, -- drain() started: health paths 503 (open = false: no new connections)
    stopping_now = false,  -- a second SIGINT stopped the loop
    signal_handlers = {},
  }, Server)
  local host, port = sock:getsockname()
  self.host, self.port = host, tonumber(port)
  self.address = address(self.host, self.port)   -- for URLs: ws://ADDRESS/path
  if o.hub then o.hub:attach(self) end           -- ws.hub: rooms across processes (server.hub)
  drain.track(self)                              -- a signal drains every server of the loop
  self.loop:spawn(Server.accept_loop, self)
  return self
end

--- Serve WebSocket connections on path with handler(conn), run in its own
-- coroutine. path is exact ("/ws", which "/ws/" matches too), a pattern
-- ("/rooms/:name": conn.params.name) or a prefix ("/api/*": conn.params["*"]).
---@param path string
---@param handler fun(conn: ws.Conn)
---@return ws.Server
function Server:route(path, handler)
  if type(handler) ~= "function" then error("bad argument #2 to 'route' (function expected)", 2) end
  self.routes:add(path, handler)
  return self
end

--- Answer plain HTTP GET and HEAD requests on path (exact, pattern or prefix,
-- as route): page is a string (HTML) or function(request) -> status, body
-- [, headers], request.params holding the query and the captures.
---@param path string
---@param page string|fun(request: table): integer, string, table?
---@return ws.Server
function Server:page(path, page)
  if type(page) ~= "string" and type(page) ~= "function" then
    error("bad argument #2 to 'page' (string or function expected)", 2)
  end
  self.pages:add(path, page)
  return self
end

--- Serve the files under folder at prefix: server:static("/static/", "public/")
-- answers GET and HEAD /static/app.js with public/app.js (MIME type, ETag,
-- 304 on If-None-Match; index.html for a folder); any path leaving the
-- folder ("..", encoded, symlinks, NUL) gets 404 and a log line.
---@param prefix string
---@param folder string
---@return ws.Server
function Server:static(prefix, folder)
  if type(prefix) ~= "string" or prefix:sub(1, 1) ~= "/" then
    error("bad argument #1 to 'static' (path starting with '/' expected)", 2)
  end
  local handler = static.handler(folder, { log = self.opts.log })
  return self:page((prefix:gsub("/*$", "")) .. "/*", handler)
end

function Server:accept_loop()
  local sock, l = self.sock, self.loop
  local lfd = sock:getfd()
  -- TCP_NODELAY on the listener: what it accepts inherits it (Linux), so
  -- accept sets it per connection only if this failed
  local inherited = core.nodelay(lfd) == true
  local function serve(c, peer) return self:serve_client(c, peer) end   -- (spawn: two arguments, no closure per task)
  local failures, warned, spare = 0, 0, io.open("/dev/null")
  while self.open do
    -- accepted in C: a bare descriptor, not a LuaSocket object with its
    -- 8 KiB buffer, and the peer's address (see ws.core.accept)
    local c, err = core.accept(lfd, inherited)
    if c then
      l:spawn(serve, c, err)
    elseif err == "timeout" then
      local ok, werr = l:wait(sock, "r")
      if not ok and werr == "closed" then break end
    elseif self.open then
      -- out of descriptors or memory: back off instead of spinning, and
      -- try again (an edge-triggered wait alone might never fire again);
      -- logged at most once a second, with the count
      failures = failures + 1
      local now = gettime()
      if now >= warned + 1 then
        self.opts.log("error", "accept: " .. tostring(err), failures > 1 and { times = failures } or nil)
        warned, failures = now, 0
      end
      if spare and tostring(err):find("open files", 1, true) then
        -- the spare descriptor lets the clients waiting in the backlog go
        -- at once (a reset: they may try again) instead of hanging there
        -- until they give up, as libuv does
        spare:close()
        for _ = 1, 1000 do
          local gone = core.accept(lfd, inherited)
          if not gone then break end
          gone:close()
        end
        spare = io.open("/dev/null")
      end
      l:sleep(0.1)
    end
  end
  if spare then spare:close() end
end

local function is_health_path(hp, path)
  if type(hp) == "table" then
    for _, p in ipairs(hp) do if p == path then return true end end
    return false
  end
  return hp == path
end

-- request.params: the decoded query, then the route's captures over it
local function with_captures(req, captures)
  if captures then
    for k, v in pairs(captures) do req.params[k] = v end
  end
end

local function serve_page(self, sock, req, deadline, peer)
  local o = self.opts
  local page, captures = self.pages:match(req.path)
  if o.health_path and is_health_path(o.health_path, req.path) then
    page, captures = function()
      if self.draining then return 503, "draining\n" end
      return 200, "ok\n"
    end, nil
  end
  if not page then
    refuse(o, sock, 404, "not found", { peer = peer, path = req.path }, deadline)
    return
  end
  with_captures(req, captures)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    refuse(o, sock, 405, "method not allowed", { peer = peer, path = req.path }, deadline, { Allow = "GET, HEAD" })
    return
  end
  local status, body, headers = 200, page, { ["Content-Type"] = "text/html; charset=utf-8" }
  if type(page) == "function" then
    local ok, s, b, h = loop.pcall(page, req)   -- (a page may wait, on Lua 5.1 too)
    if ok then
      status, body, headers = s, b or "", h
    else
      o.log("error", "page error: " .. tostring(s), { peer = peer, path = req.path, error = s })
      status, body, headers = 500, "internal error\n", nil
    end
  end
  -- HEAD: the Content-Length GET would give, no body (RFC 9110 section 9.3.2)
  respond(o, sock, status, body, headers, deadline, req.method == "HEAD")
end

-- Run a route's handler on an upgraded connection, then close it.
local function trim_heap(self)
  self.trim = nil
  core.heap_trim(self.opts.heap_keep)
end

local function run_handler(self, conn, handler)
  local o = self.opts
  self.conns[conn] = true
  if o.on_connect then o.on_connect(conn) end
  local ok, err = loop.xpcall(handler, debug.traceback, conn)   -- (lets it wait on Lua 5.1 too)
  if not ok then
    o.log("error", "handler error: " .. tostring(err), { peer = conn.peer, path = conn.request and conn.request.path })
    conn:close(1011, "internal error")
  elseif conn.state ~= "closed" then
    conn:close(1000)
  end
  self.conns[conn] = nil
  if o.on_disconnect then o.on_disconnect(conn) end
  -- once connections have gone, free heap past heap_keep goes back to the
  -- kernel (a timer 2 s after the first to go: not one trim per connection)
  -- (in the background: it keeps no run() going)
  if o.heap_keep and not self.trim then self.trim = self.loop:at(gettime() + 2, trim_heap, self, true) end
end

-- The handshake of an accepted connection: its PROXY header, TLS, request,
-- answer; the upgraded connection and its route's handler, or nil (answered
-- or closed).
local function handshake(self, sock, peer)
  local o = self.opts
  local deadline = gettime() + o.handshake_timeout
  peer = peer or M.peername(sock)
  local proxy_peer, unnamed
  if o.proxy_protocol then
    -- before TLS and HTTP: the header is the first thing on the wire
    local client
    client, unnamed = proxy_header(self, sock, peer, deadline)
    if not client then return end
    proxy_peer, peer = peer, client
  end
  if self.tls then
    -- TLS in ws.core on the same descriptor: the fast path stays
    local ok, err = tls_.accept(sock, self.tls, deadline, o.sched)
    if err == "http request" then
      -- plain HTTP on a TLS port (the descriptor is plain again): say so
      -- in plain words, as the plain port answers a ClientHello
      refuse(o, sock, 400, "plain HTTP on a TLS port: this server speaks wss:// and https://, not ws:// or http://",
        { peer = peer }, deadline)
      return
    end
    if not ok then
      o.log("info", "tls handshake failed: " .. tostring(err), { peer = peer, error = err })
      close(o, sock)
      return
    end
  end
  local req, rest = read_request(sock, o, deadline, peer)
  if not req then return end
  local handler, captures = self.routes:match(req.path)
  -- a page answers what is not a WebSocket request on its path, though a
  -- route's pattern covers it too ("/chat/*" and the page "/chat/help")
  if handler and not req.ws_accept and not req.headers.upgrade and self.pages:match(req.path) then handler = nil end
  if not handler then return serve_page(self, sock, req, deadline, peer) end
  with_captures(req, captures)
  if not self.open then return respond(o, sock, 503, "server is shutting down\n", nil, deadline) end
  local scheme
  -- (a layer-4 proxy whose header named no client, UNKNOWN or LOCAL, passed
  -- the end client's own HTTP headers on untouched: none of them is believed)
  if o.trusted and not unnamed then peer, proxy_peer, scheme = forwarded(o, req, peer, proxy_peer) end
  local conn = upgrade(sock, req, rest, o, deadline, peer)
  if not conn then return end
  if not self.open then
    -- a drain began while this handshake ran (on_request may wait): its
    -- list of connections was taken already, so this one closes itself
    conn:close(1001, "going away")
    return
  end
  conn.proxy_peer, conn.scheme = proxy_peer, scheme or (self.tls and "https" or "http")
  conn.params = req.params
  return conn, handler
end

function Server:serve_client(sock, peer)
  -- counted while it runs: a drain waits for it, so that what the listener
  -- accepted gets its answer (a 503, or its 101 and 1001) before run() returns
  self.handshakes = self.handshakes + 1
  local co = coroutine.running()
  self.handshaking[co] = true   -- (a drain called from its page or on_request does not wait for itself)
  local ok, conn, handler = loop.pcall(handshake, self, sock, peer)
  self.handshaking[co] = nil
  self.handshakes = self.handshakes - 1
  if not ok then
    -- (a fault of ours: logged, and the count above kept right, or every
    -- later drain would wait for this handshake until its deadline)
    self.opts.log("error", "handshake error: " .. tostring(conn), { peer = peer })
    return close(self.opts, sock)
  end
  if not conn then return end
  -- a tail call: the handshake's locals leave the stack, which a waiting
  -- connection's coroutine keeps at the size its deepest call needed
  -- (80 slots, 1.3 KiB, or 160 past that)
  return run_handler(self, conn, handler)
end

--- Encode once and queue to every open connection without waiting; a
-- connection whose queue passes max_queue is dropped. Returns the count, or
-- nil, "invalid utf-8" for text that is not UTF-8 (every client would have
-- to close on it with 1007).
---@param data string
---@param kind? ws.Kind default "text"
---@param except? ws.Conn
---@return integer|nil count
---@return string? err
function Server:broadcast(data, kind, except)
  if type(data) ~= "string" then error("bad argument #1 to 'broadcast' (string expected)", 2) end
  kind = kind or "text"
  -- (core.frame takes any opcode: a "ping" would go out as a control
  -- frame, over 125 bytes or between fragments, that fails every peer)
  if kind ~= "text" and kind ~= "binary" then
    error("bad argument #2 to 'broadcast' (\"text\" or \"binary\" expected)", 2)
  end
  if kind == "text" and not core.utf8_valid(data) then return nil, "invalid utf-8" end
  return fanout.send(self.conns, core.frame(data, kind), except)
end

--- One round of the loop, waiting at most timeout seconds (default 0):
-- for nesting in another loop, with pollfd, events and timeout.
---@param timeout? number
---@return boolean
function Server:step(timeout)
  return self.loop:step(timeout or 0)
end

--- The descriptor a host loop watches for readability (cqueues polling
-- convention: cqueues.poll(server) works; luv: uv.new_poll(server:pollfd())).
---@return integer|nil
function Server:pollfd() return self.loop:pollfd() end

--- The events to watch pollfd for: "r".
---@return string
function Server:events() return "r" end

--- Seconds until the loop has work due (0: now), or nil: wait on pollfd only.
---@return number|nil
function Server:timeout() return self.loop:timeout() end

-- loop -> the server whose run() runs it now
local runner = setmetatable({}, { __mode = "k" })

--- Serve until close(), or until a drain that a signal started is done.
-- Unless the signals option is false, SIGTERM and SIGINT (and SIGHUP) are
-- read through the loop while it runs: by default they drain and return.
-- An error raised out of the loop is raised again, once the server no
-- longer counts as the loop's runner and the signals are given back.
function Server:run()
  local release = self.opts.signals and drain.watch(self)
  local l = self.loop
  local outer = runner[l]
  runner[l] = self
  -- (loop.pcall: the loop may run inside a task of another, and wait)
  local ok, err = loop.pcall(l.run, l)
  runner[l] = outer
  if release then release() end
  if not ok then error(err, 0) end
end

--- What a signal ("TERM", "INT" or "HUP") does while run() runs:
-- fn(server, name) in a loop task, in place of the default (drain, then
-- stop the loop; a second SIGINT stops at once; HUP reloads the TLS
-- certificate of a wss:// server (reload_tls) and is logged otherwise).
---@param name string
---@param fn fun(server: table, name: string)
function Server:on_signal(name, fn)
  local known = false
  for _, s in ipairs(drain.SIGNALS) do known = known or s == name end
  if not known then error("on_signal: one of TERM, INT, HUP expected, got " .. tostring(name), 2) end
  assert(type(fn) == "function", "on_signal: fn must be a function")
  self.signal_handlers[name] = fn
  return self
end

Server.drain = drain.drain

--- Read the TLS certificate and key again (a renewed certificate), or use
-- a new tls option table: handshakes from now on use the new context, open
-- connections keep theirs. On failure (a missing file, a key that does not
-- match) the server keeps serving with the old one. SIGHUP does this by
-- default (see on_signal).
---@param t? table tls options (default: the table the server was made with)
---@return true|nil ok
---@return string|nil err
function Server:reload_tls(t)
  if not self.tls then error("reload_tls: this server does not serve TLS", 2) end
  t = t or self.opts.tls
  local ctx, err = tls_.context(t, "server")
  if not ctx then return nil, err end
  -- the old context freed now, not when the collector gets to it (it sees
  -- a few bytes, not OpenSSL's 17 KiB: a reload storm grew the process by
  -- megabytes); sessions already made hold their own reference
  local old = self.tls
  self.tls, self.opts.tls = ctx, t
  old:close()
  return true
end

--- Stop accepting, close every connection with 1001, then stop the loop,
-- unless it is another server's run() that runs it (a shared loop).
---@param code? integer default 1001
---@param reason? string default "server shutting down"
function Server:close(code, reason)
  if self.closed then return end
  self.closed = true
  local l = self.loop
  if self.trim then l:cancel(self.trim); self.trim = nil end
  if self.open then   -- (a drain closed the listener already)
    self.open = false
    l:forget(self.sock)
    self.sock:close()
  end
  local pending = 0
  -- (not another server's run() on the same loop)
  local function stop()
    local r = runner[l]
    if r == nil or r == self then l:stop() end
  end
  for conn in pairs(self.conns) do
    pending = pending + 1
    l:spawn(function()
      conn:close(code or 1001, reason or "server shutting down")
      pending = pending - 1
      if pending == 0 then stop() end
    end)
  end
  if pending == 0 then stop() end
end

--- For `local server <close> = ws.listen{...}`: close, and outside the
-- server's own tasks, run its loop until the connections are closed (at
-- most close_timeout + 1 seconds).
function Server:__close()
  self:close()
  if loop.current() == self.loop then return end
  local deadline = gettime() + (self.opts.close_timeout or 3) + 1
  while next(self.conns) and gettime() < deadline and self.loop:step(0.05) do end
end

function Server:__tostring()
  local n = 0
  for _ in pairs(self.conns) do n = n + 1 end
  return string.format("ws.server (%s): %s, %d connection%s", self.open and "listening" or "closed",
    self.address, n, n == 1 and "" or "s")
end

return M
