--- Non-blocking socket I/O that waits through a scheduler (the `sched`
-- argument: ws.loop, or an adapter for cqueues, luv or copas; see
-- ws.loop's wait/sleep/spawn/suspend/wake/yield/forget), through the
-- running ws.loop when none is given and called from one of its tasks,
-- and blocks in socket.select otherwise.
-- Works for LuaSocket TCP sockets, ws.fd connections (plain or TLS) and
-- LuaSec SSL sockets alike.
local socket = require "socket"
local loop = require "ws.loop"

local gettime, select = socket.gettime, socket.select
local current = loop.current

local M = {}

M.CHUNK = 1024 * 1024   -- most bytes asked of one receive

--- What ws.core can read and write directly (reader:next, send_frame): a
-- ws.fd connection, plain or TLS, as it is; the descriptor of a plain
-- LuaSocket TCP socket holding no buffered input; else nil (LuaSec
-- sockets and wrappers are read through their own receive).
function M.raw_fd(sock)
  if sock.starttls then return sock end
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

-- What a failed non-blocking call asks us to wait for: LuaSocket and
-- ws.fd say "timeout", TLS says "wantread"/"wantwrite" (TLS may read to
-- write); "again": our TLS read its share of records that carried no data
-- (a flood of them), to be read on after the others' turn, without waiting.
local WANT = { timeout = false, wantread = "r", wantwrite = "w", again = false }

-- A read that saw the transport end (an error that came with the last
-- partial data): [sock] = err. Later reads return it at once, and a LuaSec
-- socket is never written after it: LuaSec 1.2 reports a write on a
-- session OpenSSL has failed (SSL_ERROR_SYSCALL, errno 0) as "0 bytes
-- sent, no error", and LuaSocket's send loop then spins forever.
local ended = setmetatable({}, { __mode = "k" })

-- Rounds without progress after which a read waits anyway, and a write
-- gives up: a transport that claims to be ready and is not must not spin.
local STALLS = 16
M.STALLS = STALLS

--- One non-blocking receive of whatever is there (at most M.CHUNK bytes).
-- Returns data, or nil, "timeout" / "wantread" / "wantwrite" / "again" / "closed" / err.
function M.receive(sock)
  local gone = ended[sock]
  if gone then return nil, gone end
  local data, err, partial = sock:receive(M.CHUNK)
  if data then return data end
  if WANT[err] == nil then ended[sock] = err end
  if partial and partial ~= "" then return partial end
  return nil, err
end

--- One non-blocking send of s[i..]: as sock:send, but nil, "closed" at
-- once for a LuaSec socket whose reads saw the transport end.
function M.send(sock, s, i)
  if ended[sock] and sock.getpeercertificate then return nil, "closed", (i or 1) - 1 end
  return sock:send(s, i)
end

--- Read whatever is available (at least one byte), waiting until deadline
-- (through sched, as in M.wait). Returns data, or nil, "timeout" /
-- "closed" / an OS or TLS error.
function M.read(sock, deadline, sched)
  local stalls = 0
  while true do
    local data, err = M.receive(sock)
    if data then return data end
    local want = WANT[err]
    if want == nil then return nil, err end
    if err == "again" then
      local l = sched
      if l == nil then l = current() end
      if l then l:yield() end
      if deadline and gettime() >= deadline then return nil, "timeout" end
    else
      -- TLS may hold decrypted bytes the poller cannot see
      stalls = stalls + 1
      if stalls > STALLS or not (sock.dirty and sock:dirty()) then
        local ok, werr = M.wait(sock, want or "r", deadline, sched)
        if not ok then return nil, werr end
      end
    end
  end
end

--- Write s[i..] until done or deadline (waiting through sched, as in
-- M.wait). Each round makes progress or waits for the socket; STALLS rounds
-- in a row without progress give up ("closed").
-- Returns true, or nil, err, last index sent.
function M.write(sock, s, i, deadline, sched)
  i = i or 1
  local n = #s
  local stalls = 0
  while i <= n do
    local last, err, sent = M.send(sock, s, i)
    if last then return true end
    if sent and sent >= i then
      i, stalls = sent + 1, 0
    else
      stalls = stalls + 1
      if stalls > STALLS then return nil, "closed", i - 1 end
    end
    local want = WANT[err]
    if want == nil then return nil, err, i - 1 end
    local ok, werr = M.wait(sock, want or "w", deadline, sched)
    if not ok then return nil, werr, i - 1 end
  end
  return true
end

--- Read an HTTP head (up to and including the blank line), at most max bytes.
-- The head ends at the first LF followed by LF or CR LF (ws_http_head_end):
-- the CRLF CRLF of a valid head, and a head written with bare LFs ends
-- there too, for the parser to refuse at once (RFC 9112 section 2.2)
-- rather than wait for a CRLF CRLF that never comes.
-- Returns head, rest (bytes after the head), or nil, err ("timeout",
-- "closed", "too large").
function M.read_head(sock, deadline, max, buffered, sched)
  local buf = buffered or ""
  local from = 1
  while true do
    -- (two plain finds: a pattern costs a microsecond more per upgrade)
    local e, lf = buf:find("\n\r\n", from, true), buf:find("\n\n", from, true)
    if e then e = e + 2 end
    if lf and (not e or lf + 1 < e) then e = lf + 1 end
    if e then
      if e > max then return nil, "too large" end
      return buf:sub(1, e), buf:sub(e + 1)
    end
    if #buf >= max then return nil, "too large" end
    from = math.max(#buf - 2, 1)
    local data, err = M.read(sock, deadline, sched)
    if not data then return nil, err, buf end   -- (buf: what came before the end)
    buf = buf .. data
  end
end

return M
