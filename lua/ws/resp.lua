--- RESP2 (the Redis protocol): a sans-I/O incremental reply parser and the
-- command encoder. No sockets here: ws.redis feeds the bytes it reads.
-- Replies: simple strings and bulk strings as Lua strings, integers as
-- numbers, arrays as tables (with n = count), a nil bulk or nil array as
-- M.null, an error reply as a table with metatable M.Error ({ message }).
local M = {}

local find, sub, byte, tonumber, tostring, type, concat =
  string.find, string.sub, string.byte, tonumber, tostring, type, table.concat

--- The value of a nil bulk string or nil array ($-1, *-1).
M.null = setmetatable({}, { __tostring = function() return "redis.null" end })

M.Error = { __tostring = function(e) return e.message end }

M.MAX_BULK = 512 * 1024 * 1024   -- Redis's own proto-max-bulk-len
M.MAX_LINE = 64 * 1024           -- a header or simple string longer than this is not RESP
M.MAX_DEPTH = 16                 -- arrays nested deeper are refused (Redis nests ~4 deep)
M.MAX_ITEMS = 1024 * 1024 * 1024
M.MAX_REPLY = 512 * 1024 * 1024   -- bytes of one reply, items of its arrays included (see parser)

local PLUS, MINUS, COLON, DOLLAR, STAR = byte("+-:$*", 1, 5)

--- Encode one command (strings and numbers) as a RESP array of bulk strings.
function M.command(...)
  local n = select("#", ...)
  local t = { "*", tostring(n), "\r\n" }
  for i = 1, n do
    local a = select(i, ...)
    local ta = type(a)
    if ta == "number" then
      a = (a % 1 == 0 and a >= -2^53 and a <= 2^53) and string.format("%d", a) or tostring(a)
    elseif ta ~= "string" then
      error("bad argument #" .. i .. " to redis command (string or number expected, got " .. ta .. ")", 3)
    end
    t[#t + 1] = "$" .. #a .. "\r\n"
    t[#t + 1] = a
    t[#t + 1] = "\r\n"
  end
  return concat(t)
end

-- A whole number in RESP's syntax ("-"? digits), or nil.
local function integer(s)
  if not find(s, "^%-?%d+$") or #s > 20 then return nil end
  return tonumber(s)
end

-- An array header read by element: its count follows.
local ARRAY = {}

-- Parse one element of buf at pos: a value (a scalar, a nil or empty
-- array) and the next position; ARRAY, count, next position for an array
-- header (its items are elements of their own); nil, need (incomplete: at
-- least `need` bytes of buf are needed, or 0 if unknown); or false, err
-- (not RESP).
local function element(buf, pos)
  local e = find(buf, "\r\n", pos, true)
  if not e then
    if #buf - pos > M.MAX_LINE then return false, "line too long" end
    return nil, 0
  end
  if e - pos > M.MAX_LINE then return false, "line too long" end
  local t = byte(buf, pos)
  local line = sub(buf, pos + 1, e - 1)
  local nextpos = e + 2
  if t == PLUS then
    return line, nextpos
  elseif t == MINUS then
    return setmetatable({ message = line }, M.Error), nextpos
  elseif t == COLON then
    local v = integer(line)
    if not v then return false, "bad integer" end
    return v, nextpos
  elseif t == DOLLAR then
    local len = integer(line)
    if not len or len < -1 or len > M.MAX_BULK then return false, "bad bulk length" end
    if len == -1 then return M.null, nextpos end
    local stop = nextpos + len   -- where its CRLF starts
    if #buf < stop + 1 then return nil, stop + 1 end
    if sub(buf, stop, stop + 1) ~= "\r\n" then return false, "bulk string not terminated" end
    return sub(buf, nextpos, stop - 1), stop + 2
  elseif t == STAR then
    local n = integer(line)
    if not n or n < -1 or n > M.MAX_ITEMS then return false, "bad array length" end
    if n == -1 then return M.null, nextpos end
    if n == 0 then return { n = 0 }, nextpos end
    return ARRAY, n, nextpos
  end
  return false, "bad reply type " .. string.format("%q", string.char(t))
end

local Parser = {}
Parser.__index = Parser

--- A new incremental parser: feed(bytes) as they arrive, then next() until
-- it says there is no whole reply left. An array that arrives over many
-- reads is parsed once: the items parsed so far are kept (arrs, fill: the
-- arrays still open, outermost first, and how many items each holds), and
-- parsing resumes at the first item not yet whole. A reply longer than
-- max_reply bytes (default M.MAX_REPLY) is refused ("reply too large"):
-- its items are kept until it is whole, and one that never ends (a server
-- gone wrong) grew without bound.
function M.parser(max_reply)
  return setmetatable({ buf = "", pos = 1, chunks = {}, nchunks = 0, pending = 0, need = 0,
                        arrs = {}, fill = {}, open = 0, max_reply = max_reply or M.MAX_REPLY }, Parser)
end

--- Add bytes read from the connection.
function Parser:feed(data)
  local n = self.nchunks + 1
  self.chunks[n], self.nchunks = data, n
  self.pending = self.pending + #data
end

-- Join what was fed, once a reply may be complete: a large bulk string
-- arriving in many reads is concatenated once, not once per read. Returns
-- false while fewer bytes are held than the last parse said it needs.
local function gather(self)
  local have = #self.buf - self.pos + 1 + self.pending
  if have <= 0 or have < self.need then return false end
  if self.nchunks > 0 then
    local rest = self.pos <= #self.buf and sub(self.buf, self.pos) or ""
    self.buf = rest .. concat(self.chunks, "", 1, self.nchunks)
    for i = self.nchunks, 1, -1 do self.chunks[i] = nil end
    self.nchunks, self.pending, self.pos = 0, 0, 1
  end
  return true
end

local function consumed(self, p)
  self.need = 0
  if #self.arrs == 0 then self.open = 0 end
  if p > #self.buf then self.buf, p = "", 1 end
  self.pos = p
end

-- Put v in the innermost open array; close the arrays it fills. Returns the
-- whole reply once the outermost one is closed (or v, with none open).
local function place(self, v)
  local arrs, fill = self.arrs, self.fill
  while true do
    local d = #arrs
    if d == 0 then return v end
    local arr, k = arrs[d], fill[d] + 1
    arr[k], fill[d] = v, k
    if k < arr.n then return nil end
    arrs[d], fill[d] = nil, nil
    v = arr
  end
end

--- The next whole reply: returns true, value; or nil when more bytes are
-- needed; or false, err when the stream is not RESP (the connection must
-- then be dropped: nothing after it can be trusted).
function Parser:next()
  if self.err then return false, self.err end
  if not gather(self) then return nil end
  local buf, pos = self.buf, self.pos
  while true do
    local v, a, b = element(buf, pos)
    if v == nil then
      -- (the items before this one stay parsed, in the open arrays)
      self.open = self.open + pos - self.pos
      consumed(self, pos)
      self.need = a > 0 and a - self.pos + 1 or 0
      if self.open + self.need > self.max_reply then
        self.err = "reply too large"
        return false, self.err
      end
      return nil
    elseif v == false then
      self.err = a
      return false, a
    elseif v == ARRAY then
      if #self.arrs >= M.MAX_DEPTH then
        self.err = "arrays nested too deep"
        return false, self.err
      end
      local d = #self.arrs + 1
      self.arrs[d], self.fill[d], pos = { n = a }, 0, b
    else
      pos = a
      local whole = place(self, v)
      if whole ~= nil then
        consumed(self, pos)
        return true, whole
      end
    end
  end
end

local MESSAGE = "*3\r\n$7\r\nmessage\r\n"

--- As next(), but a pub/sub message push (the array "message", channel,
-- payload of bulk strings) comes back as "message", channel, payload,
-- without building its table: a subscriber connection receives mostly these.
function Parser:next_message()
  if self.err then return false, self.err end
  if not gather(self) then return nil end
  local buf, pos = self.buf, self.pos
  local head = #self.arrs == 0 and sub(buf, pos, pos + #MESSAGE - 1)
  if head and #head < #MESSAGE and head == sub(MESSAGE, 1, #head) then
    self.need = #head + 1   -- (maybe a push's start: look again with more)
    return nil
  end
  if head == MESSAGE then
    local ch, p = element(buf, pos + #MESSAGE)
    if ch == nil then   -- (incomplete: wait for the push whole, here)
      self.need = p > 0 and p - pos + 1 or 0
      return nil
    end
    if type(ch) == "string" and byte(buf, pos + #MESSAGE) == DOLLAR then
      local data, p2 = element(buf, p)
      if data == nil then
        self.need = p2 > 0 and p2 - pos + 1 or 0
        if self.need > self.max_reply then
          self.err = "reply too large"
          return false, self.err
        end
        return nil
      end
      if type(data) == "string" and byte(buf, p) == DOLLAR then
        consumed(self, p2)
        return "message", ch, data
      end
    end
    -- anything else (another shape, not RESP): the general path
  end
  return self:next()
end

--- Bytes held that are not yet part of a returned reply.
function Parser:buffered()
  return #self.buf - self.pos + 1 + self.pending
end

--- true if v is an error reply.
function M.is_error(v)
  return type(v) == "table" and getmetatable(v) == M.Error
end

return M
