--- Behind a proxy: who the client is. trusted_proxies (addresses and
-- CIDR blocks), the forwarding headers read only from those, and the
-- PROXY protocol header (parsed in C, ws_proxy.c) read before TLS and HTTP.
local core = require "ws.core"
local io_ = require "ws.io"

local M = {}

-- "ip:port", "[ip]:port" for IPv6; a bare ip when the port is unknown
local function address(ip, port)
  if not port then return ip end
  return ip:find(":", 1, true) and "[" .. ip .. "]:" .. port or ip .. ":" .. port
end

-- one "10.0.0.0/8" or "::1" -> { bytes, bits }; an error (at level, from
-- the caller of block's caller) for a bad entry
local function block(s, level)
  local ip, bits = tostring(s):match("^([^/]+)/(%d+)$")
  ip = ip or s
  local b = type(ip) == "string" and core.inet_pton(ip)
  if not b then error("trusted_proxies: not an address or CIDR block: " .. tostring(s), level + 1) end
  bits = tonumber(bits) or #b * 8
  if bits > #b * 8 then error("trusted_proxies: prefix too long: " .. s, level + 1) end
  return { b, bits }
end

local function in_block(b, blk)
  local want, bits = blk[1], blk[2]
  if #b ~= #want then return false end
  local full = math.floor(bits / 8)
  if b:sub(1, full) ~= want:sub(1, full) then return false end
  local rest = bits - full * 8
  if rest == 0 then return true end
  local unit = 2 ^ (8 - rest)                  -- compare the top `rest` bits
  return math.floor(b:byte(full + 1) / unit) == math.floor(want:byte(full + 1) / unit)
end

--- A predicate ip -> boolean for a list of addresses and CIDR blocks
-- ("127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"). An entry that is not one
-- raises (a programmer error), at the caller (level: as error's, default 2).
---@param list string[]
---@param level? integer
---@return fun(ip: string): boolean
function M.matcher(list, level)
  level = level or 2
  if type(list) ~= "table" then error("trusted_proxies must be a list of addresses or CIDR blocks", level) end
  local blocks = {}
  for i, s in ipairs(list) do blocks[i] = block(s, level) end
  return function(ip)
    local b = ip and core.inet_pton(ip)
    if not b then return false end
    for _, blk in ipairs(blocks) do if in_block(b, blk) then return true end end
    return false
  end
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- "[::1]:80", "1.2.3.4:80", "1.2.3.4", "::1" -> the address part, checked
local function host_part(s)
  s = trim(s):gsub('^"(.*)"$', "%1")
  local ip = s:match("^%[([^%]]+)%]")
  if not ip then
    local _, colons = s:gsub(":", "")
    ip = colons == 1 and s:match("^([^:]+):%d+$") or s   -- IPv4 with a port
  end
  return core.inet_pton(ip) and ip or nil
end

-- the client in a list of hops (oldest first): the rightmost one that is
-- not a trusted proxy, and its index; nil if one is not an address
local function rightmost_untrusted(hops, trusted)
  for i = #hops, 1, -1 do
    local ip = host_part(hops[i])
    if not ip then return nil end
    if not trusted(ip) or i == 1 then return ip, i end
  end
end

local function split(s, sep)
  local t = {}
  for part in (s .. sep):gmatch("([^" .. sep .. "]*)" .. sep) do t[#t + 1] = part end
  return t
end

--- The headers a proxy may name the client in (the option forwarded_header).
M.HEADERS = { ["x-forwarded-for"] = true, forwarded = true, ["x-real-ip"] = true }

--- The client's address from a request that came through trusted proxies,
-- read from the one header those proxies write (which, default
-- "x-forwarded-for"): X-Forwarded-For or Forwarded (RFC 7239 for=) walked
-- from the right, skipping trusted hops, or X-Real-IP. The others are not
-- read: a proxy passes on the ones it does not write as the client sent
-- them. The scheme: with "forwarded", the proto= of the client's element, else
-- X-Forwarded-Proto. Call it only when the TCP peer is trusted. Returns ip
-- or nil, scheme or nil.
---@param headers table request headers (lower-case names)
---@param trusted fun(ip: string): boolean
---@param which? string "x-forwarded-for" (default), "forwarded" or "x-real-ip"
function M.from_headers(headers, trusted, which)
  local ip, scheme
  which = which or "x-forwarded-for"
  local value = headers[which]
  if which == "forwarded" then
    if value then
      local hops, protos = {}, {}
      for elem in value:gmatch("[^,]+") do
        local f = elem:lower():match("for=([^;]+)")
        hops[#hops + 1] = f or "unknown"
        protos[#hops] = elem:lower():match("proto=([%w]+)")
      end
      -- the scheme the client's own element gives (written by the trusted
      -- proxy that saw it): one left of it is the client's word, and one
      -- right of it is a later hop's, between proxies
      local i
      ip, i = rightmost_untrusted(hops, trusted)
      scheme = i and protos[i]
    end
  else
    if value then ip = which == "x-real-ip" and host_part(value) or rightmost_untrusted(split(value, ","), trusted) end
    local xfp = headers["x-forwarded-proto"]
    if xfp then scheme = trim(split(xfp, ",")[1]):lower() end
  end
  if scheme ~= "http" and scheme ~= "https" then scheme = nil end
  return ip, scheme
end

--- Read the PROXY protocol header (v1 or v2) from an accepted socket,
-- before anything else reads it. Returns the client's "ip:port" (or nil
-- when the header names no address: a LOCAL health check, UNKNOWN), or
-- false, err when it is missing, invalid or late.
function M.read_header(sock, deadline)
  local fd = sock:getfd()
  while true do
    local info, err = core.proxy_header(fd)
    if info then return info.src and address(info.src, info.src_port) or nil end
    if err ~= "timeout" then return false, err end
    local ok, werr = io_.wait(sock, "r", deadline)
    if not ok then return false, werr end
  end
end

--- Set-up for a server's options: o.trusted (the predicate) from
-- o.trusted_proxies; raises when proxy_protocol is asked without it, at
-- the caller of ws.listen or ws.accept (configure <- merge <- the entry point).
function M.configure(o)
  if o.trusted_proxies then o.trusted = M.matcher(o.trusted_proxies, 5) end
  local which = o.forwarded_header
  if which then o.forwarded_header = which:lower() end
  if which and not M.HEADERS[o.forwarded_header] then
    error("ws.listen: option 'forwarded_header' must be \"x-forwarded-for\", \"forwarded\" or \"x-real-ip\", got "
      .. string.format("%q", o.forwarded_header), 4)
  end
  if o.proxy_protocol and not o.trusted then
    error("ws.listen: proxy_protocol needs trusted_proxies (the addresses allowed to send the header)", 4)
  end
end

M.address = address
return M
