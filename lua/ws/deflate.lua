--- permessage-deflate (RFC 7692) negotiation. The compression itself is in C
-- (ws.core.deflate); this module reads and writes Sec-WebSocket-Extensions
-- and turns an agreement into the options of a ws.core.deflate object.
--
-- Options (server `compression = true | {...}`, client likewise):
--   level (1..9, default 1: as gorilla; 2-2.5x less CPU than 6 for ~15% more
--   bytes), threshold (bytes; smaller messages are sent
--   uncompressed, default 64), server_no_context_takeover,
--   client_no_context_takeover, server_max_window_bits (8..15),
--   client_max_window_bits (8..15). Our inflater takes the window agreed for
--   the peer's compressor; an 8-bit one for ours is honoured with zlib's 9-bit
--   one (zlib deflates with no less), which never reaches back more than 250 bytes.
local TCHAR = require("ws.http").TCHAR

local M = {}

M.NAME = "permessage-deflate"

-- A window size: a decimal 8..15 without leading zeroes (RFC 7692 section 7.1.2).
local function bits(v)
  if type(v) == "string" and (v:match("^[89]$") or v:match("^1[0-5]$")) then return tonumber(v) end
  return nil
end

local TOKEN = "^(" .. TCHAR .. "+)()"
local SP_TOKEN, ALL_TOKEN = "^[ \t]*" .. TOKEN:sub(2), "^" .. TCHAR .. "+$"

-- The quoted-string at s[i] = '"' (RFC 7230 section 3.2.6, "," and ";" allowed
-- inside, quoted-pair "\x" for x), unescaped, and the position after it; nil
-- if it is not closed or holds a control character other than HTAB.
local function quoted(s, i)
  local out = {}
  i = i + 1
  while true do
    local j, c = s:match('^[^"\\%c]*()(.?)', i)
    out[#out + 1] = s:sub(i, j - 1)
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then c, j = s:sub(j + 1, j + 1), j + 1 end
    if c == "" or (c:match("%c") and c ~= "\t") then return nil end
    out[#out + 1] = c
    i = j + 1
  end
end

-- One list element from s[i] (RFC 6455 section 9.1: a name, then
-- *( ";" name [ "=" ( token / quoted-string ) ] ), a quoted value being a
-- token once unescaped): the extension, or nil; and the position of the
-- "," (or end) after it.
local function element(s, i)
  local params, dup = {}, false
  local name
  name, i = s:match(TOKEN, i)
  if not name then return nil end
  while true do
    i = s:match("^[ \t]*()", i)
    local c = s:sub(i, i)
    if c == "" or c == "," then
      return { name = name:lower(), params = params, duplicate = dup }, i
    end
    if c ~= ";" then return nil end
    local k, v
    k, i = s:match(SP_TOKEN, i + 1)
    if not k then return nil end
    i = s:match("^[ \t]*()", i)
    v = true
    if s:sub(i, i) == "=" then
      i = s:match("^[ \t]*()", i + 1)
      if s:sub(i, i) == '"' then
        v, i = quoted(s, i)
        if not (v and v:match(ALL_TOKEN)) then return nil end
      else
        v, i = s:match(TOKEN, i)
        if not v then return nil end
      end
    end
    k = k:lower()
    if params[k] ~= nil then dup = true end
    params[k] = v
  end
end

-- The elements of a Sec-WebSocket-Extensions value in order, empty ones
-- skipped; a malformed one is false, and ends at the next "," outside a
-- quoted-string, so those after it still count.
local function elements(header)
  local list, i = {}, 1
  while true do
    i = header:match("^[ \t]*()", i)
    local c = header:sub(i, i)
    if c == "" then return list end
    if c == "," then
      i = i + 1
    else
      local e, j = element(header, i)
      list[#list + 1] = e or false
      if not e then
        -- resynchronise: the next "," that is not inside quotes
        j = i
        while true do
          j = header:match('^[^,"]*()', j)
          if header:sub(j, j) ~= '"' then break end
          j = select(2, quoted(header, j))
          if not j then return list end
        end
      end
      i = j
    end
  end
end

--- Parse a Sec-WebSocket-Extensions value into { { name, params }, ... },
-- or nil if it is malformed. Parameter names are lower-cased; a parameter
-- without a value is true.
function M.parse(header)
  local list = elements(header)
  for _, e in ipairs(list) do
    if not e then return nil end
  end
  return list
end

local KNOWN = {
  server_no_context_takeover = true, client_no_context_takeover = true,
  server_max_window_bits = true, client_max_window_bits = true,
}

--- Server: choose the first acceptable permessage-deflate offer (a
-- malformed list element is skipped, not the whole header).
-- Returns the response extension string and ws.core.deflate options, or nil.
function M.accept(header, conf)
  if not header then return nil end
  conf = type(conf) == "table" and conf or {}
  -- a malformed offer is declined alone: the others still count
  for _, offer in ipairs(elements(header)) do
    local p = offer and offer.params or {}
    local ok = offer and offer.name == M.NAME and not offer.duplicate
    for k, v in pairs(p) do
      if not KNOWN[k] then ok = false
      elseif k:match("bits$") then
        if v ~= true and not bits(v) then ok = false end
        if k == "server_max_window_bits" and v == true then ok = false end
      elseif v ~= true then ok = false end
    end
    if ok then
      local resp = { M.NAME }
      local out_bits = conf.server_max_window_bits or 15
      if p.server_max_window_bits then
        out_bits = math.min(out_bits, bits(p.server_max_window_bits))
        resp[#resp + 1] = "server_max_window_bits=" .. out_bits
      end
      local out_reset = p.server_no_context_takeover or conf.server_no_context_takeover
      if out_reset then resp[#resp + 1] = "server_no_context_takeover" end
      local in_reset = p.client_no_context_takeover or conf.client_no_context_takeover
      if in_reset then resp[#resp + 1] = "client_no_context_takeover" end
      -- the client's window, which our inflater needs no more of
      local in_bits = 15
      if p.client_max_window_bits and conf.client_max_window_bits then
        local offered = p.client_max_window_bits == true and 15 or bits(p.client_max_window_bits)
        in_bits = math.min(offered, conf.client_max_window_bits)
        resp[#resp + 1] = "client_max_window_bits=" .. in_bits
      end
      return table.concat(resp, "; "), {
        level = conf.level or 1, threshold = conf.threshold or 64,
        out_bits = out_bits, in_bits = in_bits,
        out_reset = out_reset and true or false, in_reset = in_reset and true or false,
      }
    end
  end
  return nil
end

--- Client: the offer to send.
function M.offer(conf)
  conf = type(conf) == "table" and conf or {}
  local t = { M.NAME, "client_max_window_bits" .. (conf.client_max_window_bits and "=" .. conf.client_max_window_bits or "") }
  if conf.server_no_context_takeover then t[#t + 1] = "server_no_context_takeover" end
  if conf.client_no_context_takeover then t[#t + 1] = "client_no_context_takeover" end
  if conf.server_max_window_bits then t[#t + 1] = "server_max_window_bits=" .. conf.server_max_window_bits end
  return table.concat(t, "; ")
end

--- Client: check the server's answer to our offer. Returns ws.core.deflate
-- options, or nil, err.
function M.agree(header, conf)
  conf = type(conf) == "table" and conf or {}
  local list = M.parse(header)
  if not list or #list ~= 1 or list[1].name ~= M.NAME or list[1].duplicate then
    return nil, "server chose an extension we did not offer: " .. header
  end
  local p = list[1].params
  for k, v in pairs(p) do
    if not KNOWN[k] then return nil, "unknown permessage-deflate parameter: " .. k end
    if k:match("bits$") and not bits(v) then return nil, "bad " .. k end
    if not k:match("bits$") and v ~= true then return nil, "bad " .. k end
    -- a window may only shrink what we offered (RFC 7692 section 7.1.2)
    if k:match("bits$") and conf[k] and bits(v) > conf[k] then return nil, k .. " above our offer" end
  end
  local out_bits = p.client_max_window_bits and bits(p.client_max_window_bits) or conf.client_max_window_bits or 15
  if conf.server_no_context_takeover and not p.server_no_context_takeover then
    return nil, "server ignored server_no_context_takeover"
  end
  -- a server that accepts an offer of it answers it (RFC 7692 section 7.1.2.1)
  if conf.server_max_window_bits and not p.server_max_window_bits then
    return nil, "server ignored server_max_window_bits"
  end
  return {
    level = conf.level or 1, threshold = conf.threshold or 64,
    out_bits = out_bits, in_bits = p.server_max_window_bits and bits(p.server_max_window_bits) or 15,
    out_reset = (p.client_no_context_takeover or conf.client_no_context_takeover) and true or false,
    in_reset = p.server_no_context_takeover and true or false,
  }
end

return M
