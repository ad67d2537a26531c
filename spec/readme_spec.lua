-- README.md as a newcomer reads it: every ```lua block parses and runs and
-- does what the text around it says, the `ws` command lines of "The `ws`
-- command" behave as stated, the option tables match ws.options (the single
-- source of the defaults), and the examples no other spec runs work as their
-- header comments say.
--
-- The blocks are fragments: HARNESS says how to run each, keyed by a line
-- only that block holds. A block with no entry fails, so a new example gets
-- one; an entry whose block is gone fails too.
local H = require "spec.helpers"
local ws = require "ws"
local socket = require "socket"

local q = H.shell_quote
-- (absolute: some commands run in a scratch folder)
local ROOT = H.ROOT:sub(1, 1) == "/" and H.ROOT or assert(os.getenv("PWD")) .. "/" .. H.ROOT
local load_string = rawget(_G, "loadstring") or load
local PUC51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")

local function read_file(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(name, s)
  local f = assert(io.open(name, "wb"))
  f:write(s)
  f:close()
end

local README = read_file(H.ROOT .. "/README.md")

-- every fenced block of a language: { line = N, code = "...", section = "..." }
-- (indented fences, inside a list item, have their indentation removed)
local function blocks(lang)
  local out, cur, section, n = {}, nil, "", 0
  for line in (README .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if not cur then
      section = line:match("^#+%s+(.*)$") or section
      local indent, fence = line:match("^(%s*)```(%S*)%s*$")
      if indent then cur = { line = n, code = "", indent = #indent, section = section, lang = fence } end
    elseif line:match("^%s*```%s*$") then
      if cur.lang == lang then out[#out + 1] = cur end
      cur = nil
    else
      cur.code = cur.code .. line:sub(cur.indent + 1) .. "\n"
    end
  end
  return out
end

-- load a block's code with env as its globals (setfenv on Lua 5.1)
local function load_block(code, name, env)
  if rawget(_G, "setfenv") then
    local f, err = load_string(code, name)
    if f then setfenv(f, env) end
    return f, err
  end
  return load(code, name, "t", env)
end

-- Lua 5.4 syntax that Lua 5.1 cannot parse (variable attributes)
local function needs_54(code)
  return code:find("<close>", 1, true) or code:find("<const>", 1, true)
end

---- running a block -------------------------------------------------------------

-- a fresh folder, removed by the returned function
local function scratch()
  local dir = H.tmpdir()
  return dir, function() H.sh("rm -rf " .. q(dir)) end
end

-- the block as a script in dir: prefix, the block with port for 8080, suffix;
-- stdout line-buffered, so that what it prints is seen before it exits
local function script(dir, code, port, prefix, suffix)
  local name = dir .. "/block.lua"
  local text = 'io.stdout:setvbuf("line")\n' .. (prefix or "") .. "\n" .. code .. "\n" .. (suffix or "")
  write_file(name, (text:gsub("8080", tostring(port))))
  return name
end

-- the block as a server process on a free port (8080 in the block)
local function serve_block(dir, code, prefix, suffix, name)
  return H.start_server(function(port)
    return string.format("exec %s %s", H.LUA, script(dir, code, port, prefix, suffix))
  end, name or "readme-block", 15)
end

-- a Lua module the Lua under test can load
local function has_module(name)
  return H.sh(string.format("%s -e %s >/dev/null 2>&1", H.LUA, q("require('" .. name .. "')")))
end

-- ws.connect from the spec (a plain script: it blocks), echo of text and binary
local function assert_echoes(url, opts)
  local conn = assert(ws.connect(url, opts))
  assert(conn:send("héllo"))
  assert.same({ "héllo", "text" }, { conn:receive(5) })
  assert(conn:send("\0\1\2\255", "binary"))
  assert.same({ "\0\1\2\255", "binary" }, { conn:receive(5) })
  assert(conn:close())
end

local ECHO_LOOP = [[
local function handler(conn)           -- left to the reader: an echo
  while true do
    local m, k = conn:receive()
    if not m or not conn:send(m, k) then return end
  end
end
]]

-- python-websockets: send text and binary, print the kind and the echo of each
local PY_ECHO = [[
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as c:
        await c.send("hello"); r = await c.recv(); print(type(r).__name__, r)
        await c.send(b"\x00\xff"); r = await c.recv(); print(type(r).__name__, r.hex())
asyncio.run(asyncio.wait_for(main(), 10))
]]

-- python-websockets server: answers each message with it and the names of the extensions agreed
local PY_EXTENSIONS = [[
import asyncio, sys, websockets
async def answer(c, path=None):
    async for m in c:
        await c.send(m + " " + ",".join(e.name for e in c.extensions))
async def main():
    async with websockets.serve(answer, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
]]

local HARNESS = {
  -- the first block: examples/echo.lua in short, a server
  { key = "examples/echo.lua, in short", run = function(b)
    local dir, rm = scratch()
    local s = serve_block(dir, b.code)
    finally(function() s.stop(); rm() end)
    write_file(dir .. "/client.py", PY_ECHO)
    local out, code = H.run(string.format("timeout 15 %s %s/client.py ws://127.0.0.1:%d/ws 2>&1",
      H.PYTHON, dir, s.port))
    assert.equal(0, code, out)
    assert.equal("str hello\nbytes 00ff\n", out)        -- each echoed with its kind
    assert_echoes("ws://127.0.0.1:" .. s.port .. "/ws")
  end },

  -- a client in a plain script, against an echo server: prints "hello  text"
  { key = "a client, in a plain script", run = function(b)
    local dir, rm = scratch()
    local s = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d", H.LUA, H.ROOT, port)
    end, "readme-echo")
    finally(function() s.stop(); rm() end)
    local name = script(dir, b.code, s.port, 'local ws = require "ws"')
    local out, code = H.run(string.format("timeout 15 %s %s 2>&1", H.LUA, name))
    assert.equal(0, code, out)
    assert.equal("hello\ttext\n", out)
    -- and inside a handler's loop: a task of a ws.loop, print captured
    local printed = {}
    local env = setmetatable({ ws = ws, print = function(...) printed[#printed + 1] = { ... } end },
      { __index = _G })
    local f = assert(load_block((b.code:gsub("8080", tostring(s.port))), "=README.md:" .. b.line, env))
    local l = require("ws.loop").new { logger = false }
    H.run_task(l, 10, f)
    assert.same({ { "hello", "text" } }, printed)
  end },

  -- conn:serve: code before it at the open, after it at the close
  { key = "conn:serve(function(conn, message, kind)", run = function(b)
    local dir, rm = scratch()
    local s = serve_block(dir, b.code,
      'local ws = require "ws"\nlocal server = assert(ws.listen { port = 8080, logger = false })',
      "server:run()")
    finally(function() s.stop(); rm() end)
    assert_echoes("ws://127.0.0.1:" .. s.port .. "/ws")
    assert.truthy(H.wait_output(s, "open\t127%.0%.0%.1:%d+\n"), s.output())
    assert.truthy(H.wait_output(s, "closed\t1000\n", 5), s.output())
  end },

  -- on_request: 401 with its body and header, or request.user in the handler
  { key = "request.user = user", run = function(b)
    local dir, rm = scratch()
    local s = serve_block(dir, b.code,
      'local ws = require "ws"\nlocal sessions = { abc123 = "alice" }   -- left to the reader',
      'server:route("/ws", function(conn) conn:send(conn.request.user) end)\nserver:run()')
    finally(function() s.stop(); rm() end)
    local base = "ws://127.0.0.1:" .. s.port .. "/ws"
    for _, url in ipairs { base, base .. "?token=nobody" } do
      local conn, err, response = ws.connect(url)
      assert.is_nil(conn)
      assert.matches("401", err)
      assert.equal(401, response.status)
      assert.equal("who are you?\n", response.body)
      assert.equal("Bearer", response.headers["www-authenticate"])
    end
    local conn = assert(ws.connect(base .. "?token=abc123"))
    assert.same({ "alice", "text" }, { conn:receive(5) })
    conn:close()
  end },

  -- the host-loop blocks: each is a server with a client of its own that
  -- prints "hello  text"; then a client of ours is echoed too
  { key = "cq:wrap(function()", lua = "5.4", module = "cqueues", run = function(b)
    local dir, rm = scratch()
    local s = serve_block(dir, b.code, nil, nil, "readme-cqueues")
    finally(function() s.stop(); rm() end)
    assert.truthy(H.wait_output(s, "hello\ttext\n", 5), s.output())
    assert_echoes("ws://127.0.0.1:" .. s.port .. "/")
  end },
  { key = "wsluv.spawn(function()", lua = "5.4", module = "luv", run = function(b)
    local dir, rm = scratch()
    local s = serve_block(dir, b.code, nil, nil, "readme-luv")
    finally(function() s.stop(); rm() end)
    assert.truthy(H.wait_output(s, "hello\ttext\n", 5), s.output())
    assert_echoes("ws://127.0.0.1:" .. s.port .. "/")
  end },
  { key = "copas.addserver(", module = "copas", run = function(b)
    local dir, rm = scratch()
    local s = serve_block(dir, b.code, nil, nil, "readme-copas")
    finally(function() s.stop(); rm() end)
    assert.truthy(H.wait_output(s, "hello\ttext\n", 5), s.output())
    assert_echoes("ws://127.0.0.1:" .. s.port .. "/")
  end },

  -- client certificates: alice gets in, anyone else is closed with 1008
  { key = 'cert.subject == "CN=alice,O=Example"', run = function(b)
    local dir, rm = scratch()
    local ca = H.throwaway_ca()
    local s
    finally(function() if s then s.stop() end; rm(); H.sh("rm -rf " .. q(ca)) end)
    local out, code = H.run(string.format("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 " ..
      "-nodes -keyout alice.key -out alice.csr -subj '/O=Example/CN=alice' 2>&1 && " ..
      "openssl x509 -req -in alice.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out alice.pem -days 2 " ..
      "-extfile client.cnf 2>&1", q(ca)))
    assert.equal(0, code, out)
    s = serve_block(dir, b.code, string.format(
      'local ws = require "ws"\nlocal srv = assert(ws.listen { port = 8080, logger = false, tls = {\n' ..
      '  certificate = %q, key = %q, cafile = %q, verify = "peer" } })',
      ca .. "/server.pem", ca .. "/server.key", ca .. "/ca.pem"), "srv:run()")
    local url = "wss://localhost:" .. s.port .. "/admin"
    local alice = assert(ws.connect(url, { tls = { cafile = ca .. "/ca.pem",
      certificate = ca .. "/alice.pem", key = ca .. "/alice.key" } }))
    local got = { alice:receive(5) }
    alice:close()
    assert.same({ "welcome, alice", "text" }, got)
    for _, tls in ipairs {
      { cafile = ca .. "/ca.pem" },                                                    -- none sent
      { cafile = ca .. "/ca.pem", certificate = ca .. "/client.pem", key = ca .. "/client.key" },
    } do
      local conn = assert(ws.connect(url, { tls = tls }))
      assert.same({ nil, "closed", 1008, "forbidden" }, { conn:receive(5) })
      conn:close()
    end
  end },

  -- ws.workers: one worker per core on one port; SIGTERM drains, exit 0
  { key = 'require("ws.workers").run(0', run = function(b)
    local dir, rm = scratch()
    local s = H.start_server(function(port)
      local name = script(dir, b.code, port, 'local ws = require "ws"\n' .. ECHO_LOOP)
      return string.format("%s %s & echo \"pid $!\"; wait $!; echo \"exit $?\"", H.LUA, name)
    end, "readme-workers", 15)
    local pid = H.wait_output(s, "pid (%d+)")
    finally(function()
      if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
      s.stop(); rm()
    end)
    assert_echoes("ws://127.0.0.1:" .. s.port .. "/ws")
    os.execute("kill -TERM " .. pid)
    assert.equal("0", H.wait_output(s, "exit (%d+)", 15), s.output())
    pid = nil
  end },

  -- ws.hub over Redis: a message reaches the others of the room, not its sender
  { key = "hub:subscribe(conn, \"lobby\")", slow = true, run = function(b)
    if PUC51 then return pending("PUC Lua 5.1 cannot wait inside this block's for iterator (README says so)") end
    if not H.sh("command -v redis-server >/dev/null") then return pending("no redis-server") end
    local dir, rm = scratch()
    local redis, s, a, c
    finally(function()
      if a then a:abort() end
      if c then c:abort() end
      if s then s.stop() end
      if redis then redis.stop() end
      rm()
    end)
    redis = H.start_redis()
    s = serve_block(dir, (b.code:gsub("redis://127%.0%.0%.1:6379/0", redis.url)), nil, nil, "readme-hub")
    local url = "ws://127.0.0.1:" .. s.port .. "/ws"
    a, c = assert(ws.connect(url)), assert(ws.connect(url))
    -- (a's subscription is in place once its own handler reads; retry until c hears)
    local heard
    for i = 1, 50 do
      assert(a:send("from a " .. i))
      heard = c:receive(0.1)
      if heard then break end
    end
    assert.matches("^from a %d+$", heard)
    assert(c:send("from c"))
    local got
    for _ = 1, 60 do                              -- (a's earlier ones may reach c first)
      got = a:receive(5)
      if got ~= nil and not got:match("^from a") then break end
    end
    assert.equal("from c", got)                  -- a never gets its own
  end },
}

---- the `ws` command lines ---------------------------------------------------------

-- Run bin/ws with the args of a README line, stdin from input; stdout, stderr, code
local function ws_cmd(args, input, dir)
  write_file(dir .. "/in", input or "")
  local out, code = H.run(string.format("timeout 20 %s %s/bin/ws %s < %s/in 2> %s/err",
    H.LUA, H.ROOT, args, dir, dir))
  return out, read_file(dir .. "/err"), code
end

-- the lines of the sh block of "The `ws` command", each with a check;
-- ctx: { dir, plain = port of `ws serve --echo`, tls = port of the wss:// one, ca }
local WS_LINES = {
  { key = "ws ws://127.0.0.1:8080/ws ", run = function(args, ctx)
    local out, err, code = ws_cmd(args, "hello\nwörld\n", ctx.dir)
    assert.equal("hello\nwörld\n", out, err)
    assert.equal(0, code, err)
    assert.matches("closed: 1000\n$", err)
  end },
  { key = "--cafile ca.pem", run = function(args, ctx)
    local out, err, code = ws_cmd(args, "hello\n", ctx.dir)
    assert.equal("hello\n", out, err)
    assert.equal(0, code, err)
    -- and without it the certificate is refused; --insecure skips the check
    out, err, code = ws_cmd(args:gsub("%-%-cafile %S+", ""), "hello\n", ctx.dir)
    assert.equal(1, code, err)
    assert.equal("", out)
    out, err, code = ws_cmd(args:gsub("%-%-cafile %S+", "--insecure"), "hello\n", ctx.dir)
    assert.equal(0, code, err)
    assert.equal("hello\n", out)
  end },
  { key = "--protocol chat", run = function(args, ctx)
    local out, err, code = ws_cmd(args, "hi\n", ctx.dir)
    assert.equal("hi\n", out, err)
    assert.equal(0, code, err)
  end },
  { key = "--binary < file.bin", run = function(args, ctx)
    local bytes = "\0\1\2\255binary\n"
    write_file(ctx.dir .. "/file.bin", bytes)
    local out, code = H.run(string.format("cd %s && timeout 20 %s %s/bin/ws %s 2>err",
      q(ctx.dir), H.LUA, ROOT, args))
    local err = read_file(ctx.dir .. "/err")
    assert.equal(0, code, err)
    assert.equal(bytes, out)
  end },
  { key = "--max-message 67108864", run = function(args, ctx)
    local out, err, code = ws_cmd(args, "hi\n", ctx.dir)
    assert.equal("hi\n", out, err)
    assert.equal(0, code, err)
    -- past --max-message it says so, and fails
    out, err, code = ws_cmd(args:gsub("67108864", "4"), "longer than four\n", ctx.dir)
    assert.equal(1, code, err)
    assert.equal("", out)
    assert.matches("max%-message", err)
  end },
  { key = "--ping --close 4000", run = function(args, ctx)
    local _, err, code = ws_cmd(args, "", ctx.dir)
    assert.equal(0, code, err)
    assert.matches("%d", err:match("[^\n]*pong[^\n]*") or err:match("[^\n]*round[^\n]*") or "", err)
    assert.matches("closed: 4000\n$", err)
  end },
  { key = "--compression --timeout 5", run = function(args, ctx)
    -- python-websockets answers each message with the extensions agreed
    write_file(ctx.dir .. "/ext.py", PY_EXTENSIONS)
    local s = H.start_server(function(port)
      return string.format("exec %s %s/ext.py %d", H.PYTHON, ctx.dir, port)
    end, "readme-ws-deflate", 15)
    local out, err, code = ws_cmd(args:gsub(":" .. ctx.plain .. "/", ":" .. s.port .. "/"), "squeeze me\n", ctx.dir)
    local plain_out = ws_cmd(args:gsub(":" .. ctx.plain .. "/", ":" .. s.port .. "/"):gsub("%-%-compression ", ""),
      "plain\n", ctx.dir)
    s.stop()
    assert.equal(0, code, err)
    assert.equal("squeeze me permessage-deflate\n", out)
    assert.equal("plain \n", plain_out)                 -- (none offered, none agreed)
    -- a server that never answers the handshake: given up after --timeout
    local mute = assert(socket.bind("127.0.0.1", 0))
    local _, port = mute:getsockname()
    local t0 = socket.gettime()
    out, err, code = ws_cmd(args:gsub(":" .. ctx.plain .. "/", ":" .. port .. "/"):gsub("%-%-timeout 5", "--timeout 0.5"),
      "", ctx.dir)
    local took = socket.gettime() - t0
    mute:close()
    assert.equal(1, code, err)
    assert.equal("", out)
    assert.matches("timeout", err)
    assert.truthy(took < 4, took)
  end },
  { key = "--proxy http://proxy:3128", run = function(args, ctx)
    -- no proxy listens on the dead port: the error names the proxy, exit 1
    local _, err, code = ws_cmd(args, "", ctx.dir)
    assert.equal(1, code, err)
    assert.matches("proxy http://127%.0%.0%.1:%d+", err)
  end },
  { key = "ws serve --echo --port 9000", run = function(args)
    -- our echo server is that line already; with --workers too:
    local s = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws %s", H.LUA, H.ROOT,
        (args:gsub("%-%-port %d+", "--port " .. port):gsub("%[%-%-workers N%]", "--workers 2")))
    end, "readme-ws-workers", 15)
    local ok, err = pcall(assert_echoes, "ws://127.0.0.1:" .. s.port .. "/any/path")
    s.stop()
    assert(ok, err)
  end },
  { key = "ws serve --echo --cert", run = function(args, ctx)
    -- the line as written, on a free port: wss://; kill -HUP reloads the files and it serves on
    local s = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws %s --port %d", H.LUA, ROOT, args, port)
    end, "readme-ws-cert", 15)
    local ok, err = pcall(function()
      local url, opts = "wss://localhost:" .. s.port .. "/ws", { tls = { cafile = ctx.ca .. "/ca.pem" } }
      assert_echoes(url, opts)
      os.execute("kill -HUP " .. s.pid)
      assert.truthy(H.wait_output(s, "SIGHUP: TLS certificate reloaded", 5), s.output())
      assert.truthy(s.alive())
      assert_echoes(url, opts)
    end)
    s.stop()
    assert(ok, err)
  end },
}

-- a README ws line as arguments for bin/ws against our servers
local function ws_args(line, ctx)
  local args = line:gsub("%s+#.*$", ""):gsub("^ws%s+", "")
  return (args:gsub("ws://127%.0%.0%.1:8080", "ws://127.0.0.1:" .. ctx.plain)
    :gsub("ws://host", "ws://127.0.0.1:" .. ctx.plain)
    :gsub("wss://example%.com", "wss://localhost:" .. ctx.tls)
    :gsub("ca%.pem", q(ctx.ca .. "/ca.pem"))
    :gsub("http://proxy:3128", "http://127.0.0.1:" .. ctx.dead)
    :gsub("cert%.pem", q(ctx.ca .. "/server.pem"))
    :gsub("key%.pem", q(ctx.ca .. "/server.key")))
end

---- the option tables -------------------------------------------------------------

local UNITS = { s = 1, KiB = 1024, MiB = 1024 * 1024 }
local NONE = { ["none"] = true, ["stderr"] = true, ["same origin"] = true, ["the running loop"] = true,
  ["from the socket"] = true, ["a new one"] = true, ["the server's"] = true, ["nil"] = true }

-- a default cell's value: (ok, value), or (false, why)
local function value_of(text)
  local t = text:gsub("%b()", ""):gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s+on the server$", "")
  if NONE[t] then return true, nil end
  if t == "true" or t == "false" then return true, t == "true" end
  local str = t:match('^`"(.*)"`$') or t:match('^"(.*)"$')
  if str then return true, str end
  local num, unit = t:match("^([%d.,]+)%s*(%a*)$")
  if num and (unit == "" or UNITS[unit]) then
    return true, tonumber((num:gsub(",", ""))) * (UNITS[unit] or 1)
  end
  return false, "cannot read default '" .. text .. "'"
end

-- split a cell on ", " outside parentheses and backticks
local function split(cell)
  local parts, depth, tick, cur = {}, 0, false, ""
  local i = 1
  while i <= #cell do
    local ch = cell:sub(i, i)
    if ch == "`" then tick = not tick end
    if ch == "(" then depth = depth + 1 elseif ch == ")" then depth = depth - 1 end
    if ch == "," and cell:sub(i + 1, i + 1) == " " and depth == 0 and not tick then
      parts[#parts + 1] = cur
      cur, i = "", i + 1
    else
      cur = cur .. ch
    end
    i = i + 1
  end
  parts[#parts + 1] = cur
  return parts
end

-- the README's `| option | default | ... |` tables: { { line, heading, rows = { { names, defaults, text } } } }
local function option_tables()
  local tables, cur, heading, n, fenced = {}, nil, "", 0, false
  for line in (README .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:match("^%s*```") then fenced = not fenced end
    if not fenced then heading = line:match("^#+%s+(.*)$") or heading end
    if line:match("^| option | default |") then
      cur = { line = n, heading = heading, rows = {} }
      tables[#tables + 1] = cur
    elseif cur and line:match("^|") then
      local c1, c2, c3 = line:match("^| ([^|]*) | ([^|]*) |(.*)$")
      if c1 and not c1:match("^%-") then
        local names = {}
        for name in c1:gmatch("`([%w_]+)`") do names[#names + 1] = name end
        cur.rows[#cur.rows + 1] = { names = names, defaults = split(c2), text = c3, line = n }
      end
    else
      cur = nil
    end
  end
  return tables
end

---- the specs ------------------------------------------------------------------------

describe("README.md", function()
  local lua_blocks = blocks("lua")

  local function harness_of(b)
    local found = {}
    for _, h in ipairs(HARNESS) do
      if b.code:find(h.key, 1, true) then found[#found + 1] = h end
    end
    return found
  end

  it("has a harness for every ```lua block, and a block for every harness", function()
    assert.truthy(#lua_blocks >= 10, "found only " .. #lua_blocks .. " ```lua blocks")
    for _, b in ipairs(lua_blocks) do
      local found = harness_of(b)
      assert(#found == 1, string.format("README.md:%d: %d harness entries match this block (want 1); "
        .. "add one to HARNESS in spec/readme_spec.lua:\n%s", b.line, #found, b.code))
    end
    for _, h in ipairs(HARNESS) do
      local n = 0
      for _, b in ipairs(lua_blocks) do if b.code:find(h.key, 1, true) then n = n + 1 end end
      assert(n == 1, "HARNESS key matches no README block (or several): " .. h.key)
    end
  end)

  for _, b in ipairs(lua_blocks) do
    local h = harness_of(b)[1]
    local title = string.format("```lua block at line %d (%s): %s", b.line, b.section,
      (b.code:match("^%s*([^\n]*)")))
    it("parses: " .. title, function()
      if PUC51 and needs_54(b.code) then return pending("Lua 5.4 syntax; Lua 5.1 cannot parse it") end
      local f, err = load_string(b.code, "=README.md:" .. b.line)
      assert(f, err)
    end)
    if h then
      it("runs and does what the text says: " .. title .. (h.slow and " #slow" or ""), function()
        if PUC51 and needs_54(b.code) then return pending("Lua 5.4 syntax") end
        if h.lua and H.LUA ~= "lua" .. h.lua then return pending("this block runs on Lua " .. h.lua) end
        if h.module and not has_module(h.module) then
          return pending(h.module .. " is not installed for " .. H.LUA)
        end
        if PUC51 and b.code:find("in conn:messages()", 1, true) then
          return pending("PUC Lua 5.1 cannot wait inside a for iterator (README says so)")
        end
        h.run(b)
      end)
    end
  end

  it("the `ws` command: every line of its section works as its comment says, exit codes too", function()
    local section = README:match("\n### The `ws` command\n(.-)\n##")
    local sh = assert(section and section:match("```sh\n(.-)```"), "no sh block under ### The `ws` command")
    local dir, rm = scratch()
    local ca = H.throwaway_ca()
    local plain, tls
    finally(function()
      if plain then plain.stop() end
      if tls then tls.stop() end
      rm(); H.sh("rm -rf " .. q(ca))
    end)
    plain = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d", H.LUA, H.ROOT, port)
    end, "readme-ws-plain")
    tls = H.start_server(function(port)
      return string.format("exec %s %s/bin/ws serve --echo --port %d --cert %s --key %s", H.LUA, H.ROOT, port,
        q(ca .. "/server.pem"), q(ca .. "/server.key"))
    end, "readme-ws-tls")
    local ctx = { dir = dir, plain = plain.port, tls = tls.port, ca = ca, dead = H.free_port() }
    local n = 0
    for line in sh:gmatch("[^\n]+") do
      local h
      for _, w in ipairs(WS_LINES) do
        if line:find(w.key, 1, true) then assert(not h, "two WS_LINES entries match: " .. line); h = w end
      end
      assert(h, "no check in WS_LINES (spec/readme_spec.lua) for the README line: " .. line)
      h.run(ws_args(line, ctx), ctx)
      n = n + 1
    end
    assert.equal(#WS_LINES, n)
    -- 2 on a usage error: each value is checked first
    for _, args in ipairs {
      "serve --echo --port 70000", "ws://127.0.0.1:1/ws --close 1005", "ws://127.0.0.1:1/ws --timeout -1",
      "serve --echo --workers 1.5", "ws://127.0.0.1:1/ws --max-message 0.5",
    } do
      local _, err, code = ws_cmd(args, "", dir)
      assert.equal(2, code, args .. ": " .. err)
    end
    -- 143 after closing with 1001 on SIGTERM (bash: $! is ws, not the sleep feeding it)
    local out = H.run(string.format("bash -c 'sleep 4 | %s %s/bin/ws ws://127.0.0.1:%d/ws 2>%s/err & " ..
      "for i in $(seq 100); do grep -q connected %s/err 2>/dev/null && break; sleep 0.05; done; " ..
      "kill -TERM $!; wait $!; echo \"exit $?\"'", H.LUA, ROOT, ctx.plain, dir, dir))
    assert.equal("exit 143\n", out, read_file(dir .. "/err"))
    assert.matches("SIGTERM: closing with 1001", read_file(dir .. "/err"))
    -- 1 with a message on stderr on a failure: a refused handshake prints the status and the body
    local _, err, code = ws_cmd("ws://127.0.0.1:" .. ctx.dead .. "/ws", "", dir)
    assert.equal(1, code, err)
    assert.truthy(#err > 0)
  end)

  it("Commands: the lines to try the client in another terminal work as written (Lua 5.4's tree)", function()
    if H.LUA ~= "lua5.4" then return pending("the block uses lua5.4 and .rocks, the tree of make's Lua 5.4") end
    local sh = README:match("Then, in another terminal, [^\n]*\n\n```sh\n(.-)```")
    assert(sh, "the block after 'Then, in another terminal' is gone")
    local s = H.start_lua("examples/echo.lua", "--quiet", "readme-commands")
    finally(function() s.stop() end)
    local lines = {}
    for line in sh:gmatch("[^\n]+") do
      line = line:gsub("%s+#.*$", ""):gsub("8080", tostring(s.port))
      -- (the interactive client reads the terminal: a line from echo instead)
      if line:match("^ws ") then line = "echo hi | " .. line end
      lines[#lines + 1] = line
    end
    assert.equal(3, #lines, sh)
    -- (in a clean environment, as a new terminal: no LUA_PATH of the test run)
    local out, code = H.run(string.format("cd %s && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH -u LUA_CPATH " ..
      "timeout 30 sh -ec %s 2>&1", q(ROOT), q(table.concat(lines, "\n"))))
    assert.equal(0, code, out)
    -- echo_client "prints: hello"; ws prints the echo, then its close on stderr
    -- (stdout and stderr in one pipe: compared as sorted lines)
    local got = {}
    for line in out:gmatch("[^\n]+") do got[#got + 1] = line end
    table.sort(got)
    assert.same({ "closed: 1000", "connected to ws://127.0.0.1:" .. s.port .. "/ws", "hello", "hi" }, got)
  end)

  it("names every example, and each flag its examples table gives is one the example takes", function()
    local p = io.popen("ls " .. q(ROOT .. "/examples") .. "/*.lua")
    local listed = p:read("*a")
    p:close()
    local n = 0
    for name in listed:gmatch("examples/([%w_]+%.lua)") do
      assert(README:find("examples/" .. name, 1, true), "README.md never names examples/" .. name)
      n = n + 1
    end
    assert.truthy(n >= 9, listed)
    local rows = 0
    for name, text in README:gmatch("\n| `examples/([%w_]+%.lua)` |([^\n]*)") do
      local source = read_file(ROOT .. "/examples/" .. name)
      for flag in text:gmatch("%-%-%w[%w-]*") do
        assert(source:find('"' .. flag .. '"', 1, true), "README: examples/" .. name .. " takes " .. flag .. "; it does not")
      end
      rows = rows + 1
    end
    assert.equal(6, rows)
  end)

  it("Options and limits: a wrong option raises the very errors the README shows", function()
    local shown = README:match("so a typo cannot be silently ignored:\n\n```\n(.-)```")
    assert(shown, "the block of errors under 'Options and limits' is gone")
    local CALLS = {   -- keyed by a part of each line
      ["'max_mesage'"] = { max_mesage = 1 },
      ["'port'"] = { port = 70000 },
      ["'compression.level'"] = { compression = { level = 42 } },
    }
    local n = 0
    for line in shown:gmatch("[^\n]+") do
      local opts
      for key, o in pairs(CALLS) do if line:find(key, 1, true) then opts = o end end
      assert(opts, "no call in CALLS (spec/readme_spec.lua) for: " .. line)
      local ok, err = pcall(ws.listen, opts)
      assert.is_false(ok)
      assert.equal(line, (tostring(err):gsub("^[^\n]-:%d+: ", "")))
      n = n + 1
    end
    assert.equal(3, n)
  end)

  it("option tables: every `| option | default |` row matches ws.options", function()
    local options = require "ws.options"
    local tables = option_tables()
    assert.equal(3, #tables, "expected the ws.listen, deployment and ws.hub option tables")
    local checked = 0
    for _, t in ipairs(tables) do
      local entry = t.heading:find("ws.hub", 1, true) and "ws.hub" or "ws.listen"
      local defaults, known = options.defaults(entry), {}
      for _, s in ipairs(options.list(entry)) do known[s.name] = true end
      local connect = options.defaults("ws.connect")
      for _, row in ipairs(t.rows) do
        local where = string.format("README.md:%d (%s)", row.line, table.concat(row.names, ", "))
        assert(#row.names >= 1, where .. ": no option name")
        assert(#row.defaults == #row.names or #row.defaults == 1,
          where .. ": " .. #row.names .. " names, " .. #row.defaults .. " defaults")
        for i, name in ipairs(row.names) do
          assert(known[name], where .. ": " .. entry .. " has no option " .. name)
          local cell = row.defaults[i] or row.defaults[1]
          local ok, v = value_of(cell)
          assert(ok, where .. ": " .. tostring(v))
          assert(v == defaults[name], string.format("%s: README says %s = %s, ws.options says %s",
            where, name, tostring(v), tostring(defaults[name])))
          -- the client's: the same, or none where the README says it is the server's
          if entry == "ws.listen" and options.defaults("ws.connect")[name] ~= nil or
            (entry == "ws.listen" and cell:find("server", 1, true)) then
            local want = v
            if cell:find("server", 1, true) then want = nil end
            assert(connect[name] == want, string.format("%s: ws.connect's %s is %s, README implies %s",
              where, name, tostring(connect[name]), tostring(want)))
          end
          -- "(`ws.listen`)" alone: not an option of ws.accept
          if row.text:find("(`ws.listen`)", 1, true) then
            for _, s in ipairs(options.list("ws.accept")) do
              assert(s.name ~= name, where .. ": marked ws.listen only, but ws.accept takes " .. name)
            end
          end
          checked = checked + 1
        end
      end
    end
    assert.truthy(checked >= 40, "checked only " .. checked .. " options")
    -- every option of every entry point is named in the README
    for _, entry in ipairs { "ws.listen", "ws.connect", "ws.hub" } do
      for _, s in ipairs(options.list(entry)) do
        assert(README:find("`" .. s.name .. "[`( ]") or README:find("[{,]%s*" .. s.name .. "%s*="),
          entry .. " option " .. s.name .. " is not in the README")
      end
    end
    -- the prose above the table: which of them ws.connect takes
    local connection, with, without = README:match("and `ws.connect` the connection's (%b()) with (.-); not the "
      .. "server side of the handshake (%b())")
    assert(connection, "the sentence naming ws.connect's options is gone")
    local function names(s)
      local t = {}
      for name in s:gmatch("`([%w_]+)`") do t[#t + 1] = name end
      table.sort(t)
      return t
    end
    local group = {}
    for _, s in ipairs(options.list("connection")) do group[#group + 1] = s.name end
    table.sort(group)
    assert.same(group, names(connection))
    local takes = {}
    for _, s in ipairs(options.list("ws.connect")) do takes[s.name] = true end
    for _, name in ipairs(names(with)) do assert(takes[name], "ws.connect has no option " .. name) end
    for _, name in ipairs(names(without)) do assert(not takes[name], "ws.connect takes " .. name) end
    -- and ws.connect's own timeout (10 s), compression's level (1) and threshold (64)
    assert.equal(10, options.defaults("ws.connect").timeout)
    assert.truthy(README:find("`timeout`: seconds for name resolution, connect, TLS and the handshake together (default 10)",
      1, true))
    local comp = options.defaults("compression")
    assert.truthy(README:find("`level` (1..9, default " .. comp.level .. ",", 1, true))
    assert.truthy(README:find("default " .. comp.threshold .. ")", 1, true))
  end)
end)

---- the examples no other spec runs ------------------------------------------------

describe("examples run as their header comments say", function()
  -- "Try it: examples/echo_client.lua ws://127.0.0.1:8080/ws": prints the echoes
  local function try_it(script_name, args, lua, module)
    if H.LUA ~= lua then return pending(script_name .. " runs on " .. lua .. " (its header)") end
    if not has_module(module) then return pending(module .. " is not installed for " .. H.LUA) end
    local s = H.start_lua("examples/" .. script_name, args, "readme-" .. module)
    finally(function() s.stop() end)
    local out, code = H.run(string.format("timeout 15 %s %s/examples/echo_client.lua ws://127.0.0.1:%d/ws one 'two words' 2>&1",
      H.LUA, H.ROOT, s.port))
    assert.equal(0, code, out)
    assert.equal("one\ntwo words\n", out)
    assert_echoes("ws://127.0.0.1:" .. s.port .. "/ws")
  end
  it("examples/cqueues_echo.lua", function() try_it("cqueues_echo.lua", "", "lua5.4", "cqueues") end)
  it("examples/cqueues_echo.lua --nested", function() try_it("cqueues_echo.lua", "--nested", "lua5.4", "cqueues") end)
  it("examples/luv_echo.lua", function() try_it("luv_echo.lua", "", "lua5.4", "luv") end)
  it("examples/luv_echo.lua --nested", function() try_it("luv_echo.lua", "--nested", "lua5.4", "luv") end)
  it("examples/copas_echo.lua", function() try_it("copas_echo.lua", "", "lua5.1", "copas") end)

  -- (spec/cli_spec.lua hears its ticks and its 1001; here: its task per
  -- connection answers, and the process ends after --for)
  it("examples/ticker.lua answers each client's messages in its own task and exits after --for", function()
    local t = H.start_lua("examples/ticker.lua", "--every 0.2 --for 3", "readme-ticker")
    local conn
    finally(function() if conn then conn:abort() end; t.stop() end)
    conn = assert(ws.connect("ws://127.0.0.1:" .. t.port .. "/ticks"))
    assert(conn:send("hi"))
    local heard, ticks, closed = nil, 0, nil
    for _ = 1, 100 do                            -- (ticks and the answer, in any order)
      local data, err, code, reason = conn:receive(5)
      if not data then closed = { err, code, reason }; break end
      if data == "you said: hi" then heard = true elseif data:match("^tick %d+$") then ticks = ticks + 1 end
    end
    assert.truthy(heard)
    assert.truthy(ticks >= 2, ticks)
    assert.same({ "closed", 1001, "ticker stopping" }, closed)
    local deadline = socket.gettime() + 5
    while t.alive() and socket.gettime() < deadline do socket.sleep(0.05) end
    assert.is_false(t.alive(), t.output())
  end)
end)
