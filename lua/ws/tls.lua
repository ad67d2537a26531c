--- TLS for wss://: contexts from the `tls = { ... }` option tables of the
-- server and the client, and the handshake on a connection. Sessions run
-- in ws.core on OpenSSL's libssl (csrc/ws_tls.c), on the same descriptor
-- fast path as plain connections; LuaSec is not needed.
-- @module ws.tls
local core = require "ws.core"
local io_ = require "ws.io"

local M = {}

-- Keys each side takes; `protocol` and `options` are LuaSec's names,
-- accepted so existing option tables keep working (see min_version).
local KEYS = {
  server = { certificate = true, key = true, password = true, cafile = true, capath = true,
             verify = true, ciphers = true, ciphersuites = true, protocol = true, options = true },
  client = { cafile = true, capath = true, verify = true, server_name = true, certificate = true,
             key = true, password = true, ciphers = true, ciphersuites = true, protocol = true,
             options = true },
}

-- verify: false/"none" (no check), true (client: check the server, the
-- default; server: require a client certificate signed by cafile), "peer"
-- (server: check a client certificate if one is sent), or LuaSec's list
-- form ({ "peer", "fail_if_no_peer_cert" }).
local function verify_level(v, mode)
  local server = mode == "server"
  if v == nil then return server and 0 or 2 end
  if v == false or v == "none" then return 0 end
  if v == true then return 2 end
  if v == "peer" then return server and 1 or 2 end
  if type(v) == "table" then
    local peer, required = false, false
    for _, x in ipairs(v) do
      if x == "peer" then peer = true elseif x == "fail_if_no_peer_cert" then required = true end
    end
    if not peer then return 0 end
    return (required or not server) and 2 or 1
  end
  error("tls.verify: true, false, \"peer\" or \"none\" expected, got " .. tostring(v), 4)
end

-- Never below TLS 1.2; protocol = "tlsv1_3" raises the floor to 1.3.
local function min_version(p)
  if p == nil or p == "any" or p == "tlsv1_2" then return 12 end
  if p == "tlsv1_3" then return 13 end
  error("tls.protocol: \"any\", \"tlsv1_2\" or \"tlsv1_3\" expected, got " .. tostring(p), 4)
end

--- A TLS context from a `tls` option table.
-- Server: { certificate, key, password, cafile, capath, verify = false,
-- ciphers, ciphersuites, protocol = "any" }: certificate (a PEM chain
-- file) and key are required; with cafile and verify, clients must present
-- a certificate signed by it.
-- Client: { cafile, capath, verify = true, server_name, certificate, key,
-- password, ciphers, ciphersuites, protocol = "any" }: without cafile or
-- capath the system trust store is used.
-- Unknown keys and bad values raise (a programmer's mistake).
---@param t table the tls option table
---@param mode "server"|"client"
---@return userdata|nil context ws.core TLS context
---@return string|nil err why files or ciphers could not be used
function M.context(t, mode)
  if type(t) ~= "table" then error("tls options must be a table", 3) end
  for k in pairs(t) do
    if not KEYS[mode][k] then error("unknown tls option for a " .. mode .. ": " .. tostring(k), 3) end
  end
  for _, k in ipairs { "certificate", "key", "password", "cafile", "capath", "ciphers", "ciphersuites" } do
    if t[k] ~= nil and type(t[k]) ~= "string" then
      error("tls." .. k .. ": a string expected, got " .. type(t[k]), 3)
    end
  end
  -- an empty name would check the certificate against nothing, and C
  -- would check one with a NUL only up to it
  local sn = t.server_name
  if sn ~= nil and (type(sn) ~= "string" or sn == "" or sn:find("\0", 1, true)) then
    error("tls.server_name: a host name expected, got " .. (type(sn) == "string" and ("%q"):format(sn) or tostring(sn)), 3)
  end
  if mode == "server" and not (t.certificate and t.key) then
    return nil, "tls: a server needs tls.certificate and tls.key"
  end
  local verify = verify_level(t.verify, mode)
  if mode == "server" and verify > 0 and not (t.cafile or t.capath) then
    -- (a server has no trust store: no client certificate could pass)
    return nil, "tls: a server that verifies clients needs tls.cafile or tls.capath"
  end
  local ctx, err = core.tls_context {
    mode = mode, certificate = t.certificate, key = t.key, password = t.password,
    cafile = t.cafile, capath = t.capath, verify = verify,
    ciphers = t.ciphers, ciphersuites = t.ciphersuites, min_version = min_version(t.protocol),
  }
  if not ctx then return nil, "tls: " .. err end
  return ctx
end

--- Finish a TLS handshake without blocking the loop: our ws.fd sessions
-- (fd:handshake) and LuaSec sockets (s:dohandshake) alike.
---@return true|nil ok
---@return string|nil err "timeout", "closed" or why the handshake failed
function M.handshake(s, deadline, sched)
  local step = s.handshake or s.dohandshake
  while true do
    local ok, err = step(s)
    if ok then return true end
    if err ~= "wantread" and err ~= "wantwrite" then return nil, err end
    local wok, werr = io_.wait(s, err == "wantwrite" and "w" or "r", deadline, sched)
    if not wok then return nil, werr end
  end
end

--- Server side: TLS on an accepted ws.fd connection, handshake done.
---@return true|nil ok
---@return string|nil err
function M.accept(conn, ctx, deadline, sched)
  local ok, err = conn:starttls(ctx)
  if not ok then return nil, err end
  return M.handshake(conn, deadline, sched)
end

--- A client's TLS handshake error, with a hint when the server did not
-- speak TLS at all (a ws:// port).
---@param err any
---@return string
function M.hint(err)
  err = tostring(err)
  if err == "timeout" or err == "closed" or err:find("wrong version number", 1, true)
     or err:find("packet length too long", 1, true) or err:find("unexpected eof", 1, true) then
    return err .. " (the server did not answer TLS: is it ws://?)"
  end
  return err
end

--- Client side: TLS over a connected socket, checked against host (or
-- t.server_name). sock is a LuaSocket TCP socket (its descriptor is taken
-- over: the object is left without one, as LuaSec's wrap does) or a LuaSec
-- socket, returned as it is. ctx: the context made from t (made here when
-- nil). On failure sock is closed.
---@return userdata|nil conn the TLS connection (a ws.fd)
---@return string|nil err "tls: certificate does not match host NAME", "tls handshake failed: ..."
function M.connect(sock, host, t, deadline, sched, ctx)
  if sock.getpeercertificate then return sock end   -- already LuaSec TLS
  t = t or {}
  local err
  if not ctx then ctx, err = M.context(t, "client") end
  if not ctx then
    sock:close()
    return nil, err
  end
  if not (sock.getfd and sock.setfd) or (sock.dirty and sock:dirty()) then
    sock:close()
    return nil, "tls: wss:// needs a LuaSocket TCP socket with no buffered input, or a LuaSec socket"
  end
  local fd = sock:getfd()
  sock:setfd(-1)
  local conn
  conn, err = core.wrap_fd(fd)
  if not conn then
    sock:setfd(fd)   -- (to close it)
    sock:close()
    return nil, "tls: " .. err
  end
  local name = t.server_name or host
  local ok
  ok, err = conn:starttls(ctx, name)
  if ok then ok, err = M.handshake(conn, deadline, sched) end
  if ok then return conn end
  conn:close()
  if err == "certificate does not match host" then
    return nil, "tls: certificate does not match host " .. name
  end
  return nil, "tls handshake failed: " .. M.hint(err)
end

return M
