--- The client's way through an HTTP proxy: which proxy a URL takes (the
-- `proxy` option, else the environment, as curl and Go read it) and the
-- CONNECT tunnel (RFC 9110 section 9.3.6) the WebSocket handshake then
-- runs through, TLS and all.
-- @module ws.tunnel
local core = require "ws.core"
local http = require "ws.http"
local io_ = require "ws.io"
local router = require "ws.router"

local M = {}

local base64 = core.base64

--- A proxy URL: "http://[user:password@]host[:port]" (a URL without a
-- scheme is taken as http://, as curl does; the port defaults to 80).
---@param url string
---@return table|nil proxy { host, port, auth = "Basic ..." or nil, url }
---@return string|nil err
function M.parse(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then scheme, rest = "http", url end
  -- the URL as errors name it: without credentials, even in a URL that is
  -- malformed (no scheme, an unencoded "@" or "/" in the password): all up
  -- to the last "@" goes
  local shown = (url:match("^%a[%w+.-]*://") or "") .. (rest:match("^.*@(.*)$") or rest)
  if scheme:lower() ~= "http" then
    return nil, "proxy " .. shown .. ": only http:// proxies are supported (CONNECT)"
  end
  local authority = rest:match("^([^/?#]*)")
  local userinfo, hostport = authority:match("^(.*)@([^@]*)$")
  hostport = hostport or authority
  local host, port = hostport:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  port = tonumber(port) or 80
  if not host or port < 1 or port > 65535 then return nil, "proxy " .. shown .. ": no host, or a bad port" end
  local auth
  if userinfo then
    local user, password = userinfo:match("^([^:]*):?(.*)$")
    user, password = router.unescape(user), router.unescape(password)
    if not (user and password) then return nil, "proxy " .. shown .. ": bad percent-encoding in its credentials" end
    auth = "Basic " .. base64(user .. ":" .. password)
  end
  return { host = host, port = port, auth = auth, url = shown }
end

-- (an address in any spelling, as Go's IsLoopback: 127/8, ::1 written out,
-- ::ffff:127.0.0.1; inet_pton gives an IPv4-mapped one's 4 bytes)
local LOOPBACK6 = ("\0"):rep(15) .. "\1"

local function loopback(host)
  host = host:lower()
  if host == "localhost" or host:sub(-10) == ".localhost" then return true end
  local b = core.inet_pton(host)
  return b ~= nil and (#b == 4 and b:byte(1) == 127 or b == LOOPBACK6)
end

-- no_proxy: "*", or names and addresses, each with an optional port; a
-- name covers its subdomains ("example.com" and ".example.com" both match
-- www.example.com), as curl reads it
local function bypassed(no_proxy, host, port)
  host = host:lower()
  for entry in (no_proxy or ""):lower():gmatch("[^,%s]+") do
    if entry == "*" then return true end
    local name, p = entry:match("^%[([%x:.]+)%]:?(%d*)$")
    if not name then name, p = entry:match("^([^:]+):(%d+)$") end
    name = name or entry
    if p == nil or p == "" or tonumber(p) == port then
      name = name:gsub("^%.", "")
      if host == name or host:sub(-#name - 1) == "." .. name then return true end
    end
  end
  return false
end

--- The proxy for a connection to scheme://host:port, or nil to go direct.
-- opt: the `proxy` option (a URL, false for none, nil for the
-- environment: https_proxy for wss://, http_proxy for ws://, else
-- all_proxy, lower case first; no_proxy lists hosts to reach directly).
-- The environment is not used for loopback hosts, as Go's
-- ProxyFromEnvironment, nor HTTP_PROXY inside a CGI request (where a
-- client's "Proxy:" header would set it).
---@param getenv? fun(name: string): string|nil default os.getenv
---@return table|nil proxy see parse
---@return string|nil err a proxy URL that cannot be used
function M.pick(scheme, host, port, opt, getenv)
  if opt == false then return nil end
  if opt ~= nil then return M.parse(opt) end
  getenv = getenv or os.getenv
  if loopback(host) then return nil end
  local function env(name)
    local v = getenv(name:lower())
    if v == nil or v == "" then
      if name == "HTTP_PROXY" and getenv("REQUEST_METHOD") then return nil end
      v = getenv(name)
    end
    if v ~= "" then return v end
  end
  local url = env(scheme == "wss" and "HTTPS_PROXY" or "HTTP_PROXY") or env("ALL_PROXY")
  if not url or bypassed(env("NO_PROXY"), host, port) then return nil end
  return M.parse(url)
end

--- Ask the proxy, on sock (connected to it), for a tunnel to host:port.
---@return true|nil ok
---@return string|nil err "proxy URL: answered 407 Proxy Authentication Required", ...
---@return table|nil response the proxy's refusal: status, reason, headers
function M.open(sock, proxy, host, port, deadline, max_header, sched)
  local authority = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
  local request, bad = http.head("CONNECT " .. authority .. " HTTP/1.1",
    { "Host", authority, "Proxy-Authorization", proxy.auth or false })
  if not request then return nil, "proxy: invalid target " .. bad end
  local ok, err = io_.write(sock, request, 1, deadline, sched)
  if not ok then return nil, "proxy " .. proxy.url .. ": " .. err end
  local head, rest = io_.read_head(sock, deadline, max_header, nil, sched)
  if not head then return nil, "proxy " .. proxy.url .. ": " .. rest end
  local r = core.parse_response(head)
  if not r then return nil, "proxy " .. proxy.url .. ": malformed answer" end
  if r.status < 200 or r.status > 299 then
    return nil, string.format("proxy %s: answered %d %s", proxy.url, r.status, r.reason),
      { status = r.status, reason = r.reason, headers = r.headers }
  end
  -- the server speaks only after our request (or our ClientHello): bytes
  -- now would be the proxy's, and would be read as the server's
  if rest ~= "" then return nil, "proxy " .. proxy.url .. ": sent bytes after its 2xx answer" end
  return true
end

return M
