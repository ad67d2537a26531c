--- Non-blocking socket I/O that waits through the running ws.loop when
-- called from one of its tasks, and blocks in socket.select otherwise.
-- Works for LuaSocket TCP sockets and LuaSec SSL sockets alike.
local socket = require "socket"
local loop = require "ws.loop"

local gettime, select = socket.gettime, socket.select
local current = loop.current

local M = {}

M.CHUNK = 1024 * 1024   -- most bytes asked of one receive

--- The descriptor of a plain TCP socket, or nil (TLS sockets must be read
-- through LuaSec; LuaSocket must hold no buffered input for it to be used).
function M.raw_fd(sock)
  if sock.getpeercertificate or not sock.getfd then return nil end
  if sock.dirty and sock:dirty() then return nil end
  local fd = sock:getfd()
  return fd and fd >= 0 and fd or nil
end

--- Wait until sock is ready for "r" or "w", or deadline (absolute, or nil).
-- sched: the scheduler to wait through (false: none, block; nil: the
-- running ws.loop, if any). Returns true, or nil, "timeout" / "closed".
function M.wait(sock, mode, deadline, sched)
  local l = sched
  if l == nil then l = current() end
  if l then return l:wait(sock, mode, deadline) end
  local t = deadline and math.max(deadline - gettime(), 0)
  local r, w, err = select(mode == "r" and { sock } or nil, mode == "w" and { sock } or nil, t)
  if err == "timeout" then return nil, "timeout" end
  if (r and r[1]) or (w and w[1]) then return true end
  return nil, err or "timeout"
end

-- What a failed non-blocking call asks us to wait for: LuaSocket says
-- "timeout", LuaSec says "wantread"/"wantwrite" (TLS may read to write).
local WANT = { timeout = false, wantread = "r", wantwrite = "w" }

--- Read whatever is available (at least one byte), waiting until deadline
-- (through sched, as in M.wait). Returns data, or nil, "timeout" /
-- "closed" / an OS or TLS error.
function M.read(sock, deadline, sched)
  while true do
    local data, err, partial = sock:receive(M.CHUNK)
    if data then return data end
    if partial and partial ~= "" then return partial end
    local want = WANT[err]
    if want == nil then return nil, err end
    -- LuaSec may hold decrypted bytes the poller cannot see
    if not (sock.dirty and sock:dirty()) then
      local ok, werr = M.wait(sock, want or "r", deadline, sched)
      if not ok then return nil, werr end
    end
  end
end

--- Write s[i..] until done or deadline (waiting through sched, as in
-- M.wait). Returns true, or nil, err, last index sent.
function M.write(sock, s, i, deadline, sched)
  i = i or 1
  local n = #s
  while i <= n do
    local last, err, sent = sock:send(s, i)
    if last then return true end
    if sent and sent >= i then i = sent + 1 end
    local want = WANT[err]
    if want == nil then return nil, err, i - 1 end
    local ok, werr = M.wait(sock, want or "w", deadline, sched)
    if not ok then return nil, werr, i - 1 end
  end
  return true
end

--- Finish a LuaSec handshake without blocking the loop.
-- Returns true, or nil, err.
function M.tls_handshake(s, deadline)
  while true do
    local ok, err = s:dohandshake()
    if ok then return true end
    local want = WANT[err]
    if want == nil then return nil, err end
    local wok, werr = M.wait(s, want or "r", deadline)
    if not wok then return nil, werr end
  end
end

--- HTTP header lines ("Name: value\r\n"...) from a table name -> value
-- (strings or numbers). Returns nil, name for a name that is not a token
-- or a value with control characters: nothing can be smuggled in by CR/LF.
function M.header_lines(headers)
  local t = {}
  for name, value in pairs(headers or {}) do
    if type(value) == "number" then value = tostring(value) end
    if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+.^_`|~-]+$")
       or type(value) ~= "string" or value:find("%c") then
      return nil, tostring(name)
    end
    t[#t + 1] = name .. ": " .. value .. "\r\n"
  end
  return table.concat(t)
end

--- Read an HTTP head (up to and including the blank line), at most max bytes.
-- Returns head, rest (bytes after the head), or nil, err ("timeout",
-- "closed", "too large").
function M.read_head(sock, deadline, max, buffered)
  local buf = buffered or ""
  local from = 1
  while true do
    local e = buf:find("\r\n\r\n", from, true)
    if e then
      if e + 3 > max then return nil, "too large" end
      return buf:sub(1, e + 3), buf:sub(e + 4)
    end
    if #buf >= max then return nil, "too large" end
    from = math.max(#buf - 2, 1)
    local data, err = M.read(sock, deadline)
    if not data then return nil, err end
    buf = buf .. data
  end
end

return M
