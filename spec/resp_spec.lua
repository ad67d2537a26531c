-- ws.resp: the RESP2 parser on every reply type, split at every byte, and
-- a bounded random-bytes loop checked against an independent oracle.
local resp = require "ws.resp"

local null = resp.null

-- The next reply by next(), or by next_message() with a message push
-- rebuilt as the array next() gives (quick: how many took that path).
local function take(p, quick)
  if not quick then return p:next() end
  local ok, v, data = p:next_message()
  if ok == "message" then
    quick.n = quick.n + 1
    return true, { n = 3, "message", v, data }
  end
  return ok, v
end

-- Feed s in the pieces cut at the given positions; returns every reply.
-- quick: a table, to read with next_message() (counts its messages).
local function parse_pieces(s, cuts, quick)
  local p = resp.parser()
  local out, last = {}, 1
  cuts[#cuts + 1] = #s + 1
  for _, c in ipairs(cuts) do
    p:feed(s:sub(last, c - 1))
    last = c
    while true do
      local ok, v = take(p, quick)
      if ok == nil then break end
      assert(ok, v)
      out[#out + 1] = v
    end
  end
  return out, p
end

local function plain(v)
  if resp.is_error(v) then return { err = v.message } end
  if type(v) ~= "table" or v == null or v.err then return v end
  local t = { n = v.n }
  for i = 1, v.n do t[i] = plain(v[i]) end
  return t
end

local SAMPLES = {
  { "+OK\r\n", "OK" },
  { "+\r\n", "" },
  { "-ERR unknown command 'FOO'\r\n", { err = "ERR unknown command 'FOO'" } },
  { ":0\r\n", 0 },
  { ":-42\r\n", -42 },
  { ":9007199254740992\r\n", 9007199254740992 },
  { "$0\r\n\r\n", "" },
  { "$-1\r\n", null },
  { "$5\r\nhe\r\no\r\n", "he\r\no" },
  { "$3\r\n\0\255\n\r\n", "\0\255\n" },
  { "*0\r\n", { n = 0 } },
  { "*-1\r\n", null },
  { "*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$-1\r\n", { n = 3, "message", "room", null } },
  { "*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$8\r\nu 1\r\n2 t\r\n", { n = 3, "message", "room", "u 1\r\n2 t" } },
  { "*3\r\n$7\r\nmessage\r\n$0\r\n\r\n$0\r\n\r\n", { n = 3, "message", "", "" } },
  { "*3\r\n$7\r\nmessage\r\n+room\r\n$1\r\nx\r\n", { n = 3, "message", "room", "x" } },
  { "*2\r\n*2\r\n:1\r\n-WRONGTYPE x\r\n*0\r\n", { n = 2, { n = 2, 1, { err = "WRONGTYPE x" } }, { n = 0 } } },
}

describe("ws.resp parser", function()
  it("reads every reply type, nil, empty and nested", function()
    for _, c in ipairs(SAMPLES) do
      local out = parse_pieces(c[1], {})
      assert.equal(1, #out)
      assert.same(c[2], plain(out[1]))
    end
  end)

  it("gives the same replies whatever byte each reply is split at", function()
    local all, want = {}, {}
    for _, c in ipairs(SAMPLES) do all[#all + 1] = c[1]; want[#want + 1] = c[2] end
    local stream = table.concat(all)
    for cut = 1, #stream + 1 do
      local out = parse_pieces(stream, { cut })
      local got = {}
      for i, v in ipairs(out) do got[i] = plain(v) end
      assert.same(want, got)
    end
    -- and byte by byte
    local cuts = {}
    for i = 2, #stream do cuts[#cuts + 1] = i end
    local out = parse_pieces(stream, cuts)
    assert.equal(#SAMPLES, #out)
  end)

  it("next_message: message pushes without their table, the same replies at every split", function()
    local all, want = {}, {}
    for _, c in ipairs(SAMPLES) do all[#all + 1] = c[1]; want[#want + 1] = c[2] end
    local stream = table.concat(all)
    for cut = 1, #stream + 1 do
      local quick = { n = 0 }
      local out = parse_pieces(stream, { cut }, quick)
      local got = {}
      for i, v in ipairs(out) do got[i] = plain(v) end
      assert.same(want, got)
      -- the two messages of bulk strings only; the nil payload and the
      -- simple-string channel go the general way
      assert.equal(2, quick.n)
    end
  end)

  it("parses a big array arriving over many reads once, not again at every read", function()
    -- VM instructions to parse an XRANGE-sized reply of n items fed in
    -- 1 KiB reads (a hook counts them, so the machine's load cannot)
    local function cost(n)
      local items = {}
      for i = 1, n do items[i] = "$20\r\n" .. string.format("%020d", i) .. "\r\n" end
      local s = "*" .. n .. "\r\n" .. table.concat(items)
      local p, got, count = resp.parser(), nil, 0
      debug.sethook(function() count = count + 1 end, "", 100)
      for i = 1, #s, 1024 do
        p:feed(s:sub(i, i + 1023))
        local ok, v = p:next()
        if ok then got = v end
      end
      debug.sethook()
      assert.equal(n, got and got.n)
      assert.equal(string.format("%020d", n), got[n])
      return count
    end
    local small, big = cost(2000), cost(8000)
    -- four times the items: about four times the work (it was sixteen)
    assert.is_true(big < 6 * small, string.format("%d against %d", big, small))
  end)

  it("returns nothing until a reply is whole, and keeps what follows", function()
    local p = resp.parser()
    p:feed("$10\r\n01234")
    assert.is_nil(p:next())
    p:feed("56789\r")
    assert.is_nil(p:next())
    p:feed("\n:7\r\n+")
    assert.same({ true, "0123456789" }, { p:next() })
    assert.same({ true, 7 }, { p:next() })
    assert.is_nil(p:next())
    assert.equal(1, p:buffered())
  end)

  it("refuses what is not RESP with false, err, and keeps refusing", function()
    for _, bad in ipairs({ "?x\r\n", ":12a\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*-5\r\n", ":\r\n",
                           string.rep("*1\r\n", 17) .. ":1\r\n", "+" .. string.rep("a", 70000) }) do
      local p = resp.parser()
      p:feed(bad)
      local ok, err = p:next()
      assert.is_false(ok, bad:sub(1, 20))
      assert.is_string(err)
      p:feed(":1\r\n")
      assert.is_false((p:next()))
    end
  end)

  it("refuses a reply longer than max_reply, whole or still arriving; takes one up to it", function()
    -- an array whose items keep coming: refused once they pass the limit
    local p = resp.parser(1000)
    p:feed("*1000000000\r\n")
    assert.is_nil(p:next())
    local n, ok, err = 0
    repeat
      p:feed(string.rep("$1\r\nx\r\n", 10))
      n = n + 1
      ok, err = p:next()
    until ok ~= nil or n > 100
    assert.same({ false, "reply too large" }, { ok, err })
    assert.is_true(n <= 15)
    -- a bulk string (alone, or as a message push's payload) that would pass it
    for _, quick in ipairs { false, true } do
      p = resp.parser(1000)
      p:feed(quick and "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2000\r\n" or "$2000\r\n")
      if quick then ok, err = p:next_message() else ok, err = p:next() end
      assert.same({ false, "reply too large" }, { ok, err })
    end
    -- up to the limit: whole, and the next reply's count starts afresh
    p = resp.parser(100)
    for _ = 1, 3 do
      p:feed("*2\r\n$30\r\n" .. ("a"):rep(30) .. "\r\n")
      assert.is_nil(p:next())
      p:feed("$30\r\n" .. ("b"):rep(30) .. "\r\n")
      assert.same({ true, { n = 2, ("a"):rep(30), ("b"):rep(30) } }, { p:next() })
    end
    assert.equal(512 * 1024 * 1024, resp.MAX_REPLY)
  end)

  it("joins a large bulk string read in many pieces once it is whole", function()
    local p = resp.parser()
    local big = string.rep("x", 1024 * 1024)
    local s = "$" .. #big .. "\r\n" .. big .. "\r\n"
    for i = 1, #s, 4096 do
      p:feed(s:sub(i, i + 4095))
      if i + 4096 <= #s then assert.is_nil(p:next()) end
    end
    local ok, v = p:next()
    assert.is_true(ok)
    assert.equal(big, v)
  end)

  it("encodes commands as arrays of bulk strings", function()
    assert.equal("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n", resp.command("SET", "k", "a\r\nb"))
    assert.equal("*2\r\n$6\r\nEXPIRE\r\n$2\r\n10\r\n", resp.command("EXPIRE", 10))
    assert.equal("*1\r\n$0\r\n\r\n", resp.command(""))
    assert.has_error(function() resp.command("SET", {}) end)
  end)

  -- An independent oracle: a whole-input parser written another way (line
  -- by line on substrings); returns "ok", value, rest | "more" | "bad".
  local function oracle(s, depth)
    depth = depth or 0
    local e = s:find("\r\n", 1, true)
    if not e then return #s > 65536 and "bad" or "more" end
    local head, line, rest = s:sub(1, 1), s:sub(2, e - 1), s:sub(e + 2)
    local function int(x) return #x <= 20 and x:match("^%-?%d+$") and tonumber(x) or nil end
    if head == "+" then return "ok", line, rest end
    if head == "-" then return "ok", { err = line }, rest end
    if head == ":" then
      local v = int(line)
      if not v then return "bad" end
      return "ok", v, rest
    end
    if head == "$" then
      local n = int(line)
      if not n or n < -1 or n > 512 * 1024 * 1024 then return "bad" end
      if n == -1 then return "ok", null, rest end
      if #rest < n + 2 then return "more" end
      if rest:sub(n + 1, n + 2) ~= "\r\n" then return "bad" end
      return "ok", rest:sub(1, n), rest:sub(n + 3)
    end
    if head == "*" then
      local n = int(line)
      if not n or n < -1 or n > 1024 * 1024 * 1024 then return "bad" end
      if n == -1 then return "ok", null, rest end
      if depth >= 16 then return "bad" end
      local t = { n = n }
      for i = 1, n do
        local st, v, r = oracle(rest, depth + 1)
        if st ~= "ok" then return st end
        t[i], rest = v, r
      end
      return "ok", t, rest
    end
    return "bad"
  end

  it("never fails on random bytes and agrees with an independent oracle", function()
    math.randomseed(6379)
    local alphabet = { "+", "-", ":", "$", "*", "\r\n", "\r", "\n", "0", "1", "2", "3", "-1", "a", "\0", "\255",
      "*3\r\n$7\r\nmessage\r\n", "$1\r\na\r\n", "$0\r\n\r\n" }
    local checked = { ok = 0, more = 0, bad = 0, quick = 0 }
    for _ = 1, 20000 do
      local t = {}
      for i = 1, math.random(1, 24) do t[i] = alphabet[math.random(#alphabet)] end
      if math.random(4) == 1 then
        -- a message push's head, then (mostly) bulk strings: next_message's quick path
        table.insert(t, 1, "*3\r\n$7\r\nmessage\r\n")
        for i = 2, 3 do
          if math.random(3) > 1 then t[i] = alphabet[#alphabet - math.random(0, 1)] end
        end
      end
      local s = table.concat(t)
      local status, want, rest = oracle(s)
      -- the same answer whole and split at a random byte, by next() and
      -- by next_message()
      for k, cut in ipairs({ #s + 1, math.random(1, #s + 1), #s + 1, math.random(1, #s + 1) }) do
        local quick = k > 2 and { n = 0 } or nil
        local p = resp.parser()
        p:feed(s:sub(1, cut - 1))
        local ok, v = take(p, quick)
        p:feed(s:sub(cut))
        if ok == nil then ok, v = take(p, quick) end
        if quick then checked.quick = checked.quick + quick.n end
        if status == "more" then
          assert.is_nil(ok, s)
        elseif status == "bad" then
          assert.is_false(ok, s)
        else
          assert.is_true(ok, s)
          assert.same(plain(want), plain(v))
          assert.equal(#rest, p:buffered())
        end
      end
      checked[status] = checked[status] + 1
    end
    -- the loop exercised all three outcomes
    assert.is_true(checked.ok > 100 and checked.more > 100 and checked.bad > 100)
    assert.is_true(checked.quick > 100)   -- and next_message's own path
  end)
end)
