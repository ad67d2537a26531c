-- Routes beyond exact paths (ws.router) and static files (ws.static): the
-- router and the path check on their own, then a real server process
-- (spec/servers/routes_server.lua) asked over real sockets.
local socket = require "socket"
local ws = require "ws"
local router = require "ws.router"
local static = require "ws.static"
local H = require "spec.helpers"

local gettime = socket.gettime

describe("ws.router", function()
  local r = router.new()
  r:add("/ws", "ws"):add("/rooms/:name", "room"):add("/rooms/lobby", "lobby")
   :add("/rooms/:name/users/:user", "user"):add("/api/*", "api"):add("/api/v2/*", "v2"):add("/", "root")

  it("matches exact paths, with or without one trailing slash", function()
    assert.equal("ws", (r:match("/ws")))
    assert.equal("ws", (r:match("/ws/")))
    assert.is_nil(r:match("/ws//"))
    assert.is_nil(r:match("/wsx"))
    assert.equal("root", (r:match("/")))
  end)

  it("captures pattern segments, percent-decoded, and prefers literal segments", function()
    local v, p = r:match("/rooms/caf%C3%A9")
    assert.equal("room", v)
    assert.same({ name = "café" }, p)
    assert.equal("lobby", (r:match("/rooms/lobby")))
    v, p = r:match("/rooms/a/users/b/")
    assert.equal("user", v)
    assert.same({ name = "a", user = "b" }, p)
    assert.is_nil(r:match("/rooms/"))                 -- a capture is never empty
    assert.is_nil(r:match("/rooms/a%2Fb/users"))      -- nor holds a slash
    assert.is_nil(r:match("/rooms/%zz"))              -- nor a malformed escape
  end)

  it("matches the longest prefix, the rest of the path in params['*']", function()
    local v, p = r:match("/api/users/7")
    assert.equal("api", v)
    assert.equal("users/7", p["*"])
    v, p = r:match("/api/v2/x")
    assert.equal("v2", v)
    assert.equal("x", p["*"])
    v, p = r:match("/api/")
    assert.equal("api", v)
    assert.equal("", p["*"])
    assert.equal("api", (r:match("/api")))
    assert.is_nil(r:match("/apix"))
  end)

  it("a path added again replaces its value, exact or pattern", function()
    local r2 = router.new():add("/a", 1):add("/a", 2):add("/p/:x", 1):add("/p/:x", 2):add("/s/*", 1):add("/s/*", 2)
    assert.equal(2, (r2:match("/a")))
    assert.equal(2, (r2:match("/p/q")))
    assert.equal(2, (r2:match("/s/t")))
    assert.equal(2, #r2.patterns)
  end)

  it("refuses malformed routes as programmer errors", function()
    assert.has_error(function() router.new():add("ws", 1) end)
    assert.has_error(function() router.new():add("/a/:", 1) end)
    assert.has_error(function() router.new():add("/a/*/b/:x", 1) end)
  end)

  it("decodes query strings", function()
    assert.same({ a = "1", b = "x y", c = "&=", d = "", e = "%zz" },
      router.parse_query("a=1&b=x+y&c=%26%3D&d&e=%zz"))
    assert.same({}, router.parse_query(nil))
  end)
end)

describe("ws.static path check", function()
  it("refuses every way out of the folder", function()
    for _, bad in ipairs { "../x", "a/../../x", "%2e%2e/x", "%2E%2e/x", "a/%2e%2e/%2e%2e/etc/passwd", "..%2fx",
                           "a%2f..%2f..%2fx", "a%5c..%5cx", "a\\..\\x", "a%00.txt", "a\0.txt", "%", "%2", ".env",
                           ".git/config", "a/./b" } do
      assert.is_nil(static.clean(bad), bad)
    end
    assert.equal("a/b.js", static.clean("a/b.js"))
    assert.equal("caf\195\169.txt", static.clean("caf%C3%A9.txt"))
    assert.equal("index.html", static.clean(""))
    assert.equal("sub/index.html", static.clean("sub/"))
  end)

  it("property: no accepted path has a '..' or '.' segment, a NUL or a backslash, for 20000 random paths", function()
    local alphabet = { "a", "b", ".", "/", "%", "2", "e", "E", "f", "F", "5", "c", "0", "\\", "\0", ".." , "%2e", "%2f" }
    math.randomseed(15)
    for _ = 1, 20000 do
      local t = {}
      for i = 1, math.random(1, 12) do t[i] = alphabet[math.random(#alphabet)] end
      local input = table.concat(t)
      local out = static.clean(input)
      if out then
        assert.is_nil(out:find("\0", 1, true), input)
        assert.is_nil(out:find("\\", 1, true), input)
        for seg in out:gmatch("[^/]+") do
          assert.is_true(seg ~= ".." and seg ~= "." and seg:sub(1, 1) ~= ".", input)
        end
        assert.is_nil(out:find("//", 1, true), input)
        assert.is_true(out:sub(1, 1) ~= "/", input)
      end
    end
  end)

  it("knows the usual MIME types", function()
    assert.equal("text/javascript; charset=utf-8", static.mime_type("app.JS"))
    assert.equal("text/html; charset=utf-8", static.mime_type("index.html"))
    assert.equal("image/png", static.mime_type("a.b.png"))
    assert.equal("application/octet-stream", static.mime_type("README"))
  end)
end)

describe("routes and static files on a real server", function()
  local server, dir, outside

  -- one HTTP request; returns status, lower-case headers, body, status line
  local function http(request)
    local raw, head = H.raw(server.port, request)
    assert(head, "no answer to " .. request)
    local body = raw.buf
    while true do
      local data = raw:recv_some()
      if not data then break end
      body = body .. data
    end
    raw:close()
    local headers = {}
    for k, v in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do headers[k:lower()] = v end
    return tonumber(head:match("^HTTP/1.1 (%d+)")), headers, body, head:match("^[^\r]*")
  end
  local function get(path, extra, method)
    return http((method or "GET") .. " " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n" .. (extra or "") .. "\r\n")
  end

  setup(function()
    dir = H.tmpdir()
    outside = H.tmpdir()
    assert(H.sh(string.format("mkdir -p %s/public/sub && printf 'console.log(1)\\n' > %s/public/app.js && " ..
      "printf '<h1>hi</h1>' > %s/public/index.html && printf 'sub' > %s/public/sub/index.html && " ..
      "printf 'secret' > %s/secret.txt && ln -s %s/secret.txt %s/public/link.txt && ln -s %s %s/public/out && " ..
      "printf 'inside' > %s/public/in.txt && ln -s in.txt %s/public/inlink.txt",
      dir, dir, dir, dir, outside, outside, dir, outside, dir, dir, dir)))
    server = H.start_lua("spec/servers/routes_server.lua", "--root " .. dir .. "/public", "routes-server")
  end)
  teardown(function()
    if server then server.stop() end
    H.sh("rm -rf " .. dir .. " " .. outside)
  end)

  local function first_message(path)
    local conn = assert(ws.connect("ws://127.0.0.1:" .. server.port .. path, { timeout = 5 }))
    local data = assert(conn:receive(5))
    assert(conn:send("echo"))
    assert.equal("echo", (conn:receive(5)))
    conn:close()
    return data
  end

  it("WebSocket routes: exact with trailing slash, captures (conn.params with the query), prefixes", function()
    assert.equal("ws ", first_message("/ws"))
    assert.equal("ws ", first_message("/ws/"))
    assert.equal("room name=lobby 1&x=a b", first_message("/rooms/lobby%201?x=a+b"))
    assert.equal("user name=r&user=u", first_message("/rooms/r/users/u"))
    assert.equal("api *=v1/items", first_message("/api/v1/items"))
    local conn, err, res = ws.connect("ws://127.0.0.1:" .. server.port .. "/rooms/", { timeout = 5 })
    assert.is_nil(conn)
    assert.equal("handshake: server answered 404 Not Found", err)
    assert.equal(404, res.status)
  end)

  it("pages: captures and query in request.params, exact before prefix, 405 for POST", function()
    local status, _, body = get("/page/7?q=%C3%A9")
    assert.equal(200, status)
    assert.equal("page id=7&q=é", body)
    status, _, body = get("/files/a/b")
    assert.equal(200, status)
    assert.equal("files *=a/b", body)
    status, _, body = get("/files/special")
    assert.equal(200, status)
    assert.equal("special ", body)
    status = get("/page/7", nil, "POST")
    assert.equal(405, status)
    assert.truthy(H.wait_output(server, "refused 405: method not allowed %(peer=[^)]*path=/page/7", 5))
  end)

  it("serves files with their MIME type, an ETag, 304 on If-None-Match, HEAD and index.html", function()
    local status, h, body = get("/static/app.js")
    assert.equal(200, status)
    assert.equal("console.log(1)\n", body)
    assert.equal("text/javascript; charset=utf-8", h["content-type"])
    assert.equal("15", h["content-length"])
    local etag = assert(h.etag)
    status, h, body = get("/static/app.js", "If-None-Match: " .. etag .. "\r\n")
    assert.equal(304, status)
    assert.equal("", body)
    assert.is_nil(h["content-length"])
    status = get("/static/app.js", 'If-None-Match: "other"\r\n')
    assert.equal(200, status)
    status, h, body = get("/static/app.js", nil, "HEAD")
    assert.equal(200, status)
    assert.equal("15", h["content-length"])
    assert.equal("", body)
    status, h, body = get("/static/")
    assert.equal(200, status)
    assert.equal("<h1>hi</h1>", body)
    assert.equal("text/html; charset=utf-8", h["content-type"])
    assert.equal("sub", select(3, get("/static/sub/")))
    assert.equal("inside", select(3, get("/static/inlink.txt")))   -- a symlink inside the folder is fine
    assert.equal(404, (get("/static/missing.js")))
    -- a folder named without its slash: sent where its index.html is
    status, h = get("/static/sub?x=1")
    assert.equal(301, status)
    assert.equal("/static/sub/?x=1", h.location)
    status, h = get("/static?x=1")   -- the prefix's own folder too
    assert.equal(301, status)
    assert.equal("/static/?x=1", h.location)
    -- the type of the name asked for, not of a symlink's target
    assert.equal("text/plain; charset=utf-8", select(2, get("/static/inlink.txt"))["content-type"])
    -- a folder at the root of the file system
    assert.equal("console.log(1)\n", select(3, get("/fsroot" .. dir .. "/public/app.js")))
  end)

  it("a file rewritten with the same size within a second gets a new ETag", function()
    local _, h = get("/static/in.txt")
    assert(H.sh(string.format("printf 'INSIDE' > %s/public/in.txt", dir)))
    local status, h2, body = get("/static/in.txt", "If-None-Match: " .. h.etag .. "\r\n")
    assert.equal(200, status, "the same ETag for new content")
    assert.equal("INSIDE", body)
    assert.are_not.equal(h.etag, h2.etag)
  end)

  it("streams a big file for as long as the client takes, past handshake_timeout (2 s here)", function()
    local size = 16 * 1024 * 1024
    assert(H.sh(string.format("head -c %d /dev/zero | tr '\\0' 'z' > %s/public/big.bin", size, dir)))
    local c = socket.tcp()
    c:settimeout(5)
    assert(c:connect("127.0.0.1", server.port))
    assert(c:send("GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"))
    local got, t0 = {}, gettime()
    while true do
      socket.sleep(0.05)   -- about 5 MiB/s: 3 s for the file
      local data, err, partial = c:receive(256 * 1024)
      data = data or partial
      if data and data ~= "" then got[#got + 1] = data end
      if err == "closed" or gettime() - t0 > 20 then break end
    end
    c:close()
    local all = table.concat(got)
    local head = all:match("^(.-\r\n\r\n)")
    assert.truthy(head and head:match("^HTTP/1.1 200 "), all:sub(1, 100))
    assert.truthy(head:find("Content-Length: " .. size .. "\r\n", 1, true))
    assert.equal(size, #all - #head)
    assert.is_true(gettime() - t0 > 2.2, "the download was not slow enough to test anything")
  end)

  it("answers with the standard reason phrase, or the class's for a status without one", function()
    for code, line in pairs { [201] = "HTTP/1.1 201 Created", [202] = "HTTP/1.1 202 Accepted",
                              [413] = "HTTP/1.1 413 Content Too Large", [418] = "HTTP/1.1 418 Client Error",
                              [504] = "HTTP/1.1 504 Gateway Timeout", [299] = "HTTP/1.1 299 Successful" } do
      assert.equal(line, select(4, get("/status/" .. code)))
    end
  end)

  it("a page answers a plain GET under a route's pattern; the route, the WebSocket request", function()
    local status, _, body = get("/api/help")
    assert.equal(200, status)
    assert.equal("help ", body)
    assert.equal("api *=help", first_message("/api/help"))
    -- a page that raises: 500, in plain text
    local h
    status, h = get("/boom")
    assert.equal(500, status)
    assert.equal("text/plain; charset=utf-8", h["content-type"])
  end)

  it("refuses traversal: .., encoded, symlinks out of the folder, NUL, backslashes (404, logged)", function()
    for _, path in ipairs { "/static/../secret.txt", "/static/%2e%2e/%2e%2e/secret.txt", "/static/%2E%2E%2Fsecret.txt",
                            "/static/sub/..%2f..%2fsecret.txt", "/static/link.txt", "/static/out/secret.txt",
                            "/static/app.js%00.png", "/static/..%5csecret.txt", "/static/.%2e/secret.txt" } do
      local status, _, body = get(path)
      assert.equal(404, status, path)
      assert.is_nil(body:find("secret", 1, true), path)
    end
    assert.truthy(H.wait_output(server, "refused /static/link%.txt: outside the folder", 5))
    assert.truthy(H.wait_output(server, "refused /static/app%.js%%00%.png: NUL byte", 5))
  end)
end)
