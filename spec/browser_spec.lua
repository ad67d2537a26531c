-- A real browser (headless Chromium) against examples/echo.lua.
-- A tiny in-process test server (ws.listen + server:page) serves a test page
-- whose JavaScript talks to the echo example (another process, another
-- origin), checks every echo, writes a summary into the DOM and reports it
-- over a second WebSocket to the test server. The page holds its load event
-- open (an <img> the test server answers only after the report) so that
-- --dump-dom prints the finished DOM. Chromium always runs under `timeout`.
local socket = require "socket"
local ws = require "ws"
local H = require "spec.helpers"

local gettime = socket.gettime
local CHROMIUM = os.getenv("CHROMIUM") or "/usr/bin/chromium"

local shell_quote, tmpdir = H.shell_quote, H.tmpdir

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Start headless Chromium on url, dumping the DOM to a file; returns the
-- process, the dump file and the profile dir (remove it when done).
local function chromium(url, extra)
  local profile = tmpdir()
  local dump = profile .. "/dom.html"
  local cmd = string.format(
    "exec timeout -k 5 60 %s --headless --no-sandbox --disable-gpu --disable-quic --no-first-run " ..
    "--disable-background-networking --disable-component-update --disable-sync --disable-extensions " ..
    "--disable-dev-shm-usage --user-data-dir=%s %s --dump-dom %s >%s",
    CHROMIUM, shell_quote(profile), extra or "", shell_quote(url), shell_quote(dump))
  return H.spawn(cmd, "chromium"), dump, profile
end

-- A test page: its run() (the body given) pushes "name=value" results to
-- out; the page writes the summary into the DOM and reports it.
local PAGE = [[
<!doctype html>
<meta charset="utf-8">
<title>lua-ws browser test</title>
<pre id="result">running</pre>
<img src="/hold" alt="">
<script>
const TARGET = "__TARGET__", REPORT = "ws://" + location.host + "/report";
const out = [];
const same = (a, b) => {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
};
function within(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout: " + what)), ms))]);
}
function open(url, protocols) {
  return within(new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols || []);
    ws.binaryType = "arraybuffer";
    const inbox = [], waiters = [];
    ws.onmessage = (e) => { if (waiters.length) waiters.shift()(e.data); else inbox.push(e.data); };
    ws.next = () => within(new Promise((res) => { if (inbox.length) res(inbox.shift()); else waiters.push(res); }), 15000, "echo");
    ws.closed = new Promise((res) => { ws.onclose = (e) => res(e); });
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("websocket error on " + url));
  }), 10000, "open " + url);
}
function randomText(bytes) {   // random UTF-8 with 1- to 4-byte characters, exactly `bytes` long
  const pool = Array.from("az09 ~éßжλ€中文ㅎ😀🎉𝄞"), enc = new TextEncoder();
  const parts = [];
  let n = 0;
  while (true) {
    const c = pool[Math.floor(Math.random() * pool.length)], len = enc.encode(c).length;
    if (n + len > bytes) break;
    parts.push(c); n += len;
  }
  return parts.join("") + "a".repeat(bytes - n);
}
async function run() {
__RUN__
}
run().catch((err) => out.push("error=" + String(err && err.message)))
  .then(async () => {
    const summary = "RESULT " + out.join(" ") + " END";
    document.getElementById("result").textContent = summary;
    try {
      const r = await open(REPORT);
      r.send(summary);
      await within(r.closed, 5000, "report close");
    } catch (err) {}
  });
</script>
]]

local function page(target, run)
  return (PAGE:gsub("__TARGET__", target):gsub("__RUN__", function() return run end))
end

-- Echo checks; the summary they report when all pass.
local EXPECTED = "RESULT text=ok empty=ok binary256=ok text1m=ok binary1m=ok order=ok close=1000/clean END"
local ECHO_RUN = [[
  const ws = await open(TARGET);
  const check = async (name, data, test) => {
    ws.send(data);
    const got = await ws.next();
    out.push(name + "=" + (test(got) ? "ok" : "BAD(" + typeof got + ")"));
  };
  const text = "hello ✓ héllo 😀 中文";
  await check("text", text, (g) => g === text);
  await check("empty", "", (g) => g === "");
  const all = new Uint8Array(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  await check("binary256", all.buffer, (g) => g instanceof ArrayBuffer && same(g, all.buffer));
  const big = randomText(1 << 20);
  if (new TextEncoder().encode(big).length !== (1 << 20)) throw new Error("bad test text");
  await check("text1m", big, (g) => g === big);
  const bin = new Uint8Array(1 << 20);
  for (let i = 0; i < bin.length; i += 65536) crypto.getRandomValues(bin.subarray(i, i + 65536));
  await check("binary1m", bin.buffer, (g) => g instanceof ArrayBuffer && same(g, bin.buffer));
  for (let i = 0; i < 100; i++) ws.send("msg " + i);
  let order = true;
  for (let i = 0; i < 100; i++) if ((await ws.next()) !== "msg " + i) order = false;
  out.push("order=" + (order ? "ok" : "BAD"));
  ws.close(1000, "done");
  const e = await within(ws.closed, 10000, "close");
  out.push("close=" + e.code + "/" + (e.wasClean ? "clean" : "unclean"));
]]

-- Subprotocols against a server that supports chat.v2 and chat.v1, in that
-- order, and answers every message with its choice. A browser that offered
-- protocols refuses a server that picks none.
local PROTO_EXPECTED = "RESULT chosen=chat.v2/chat.v2 single=chat.v1/chat.v1 none=refused END"
local PROTO_RUN = [[
  const ask = async (protocols) => {
    const ws = await open(TARGET, protocols);
    ws.send("which");
    const says = await ws.next();
    ws.close(1000);
    return ws.protocol + "/" + says;
  };
  out.push("chosen=" + await ask(["chat.v1", "chat.v2"]));
  out.push("single=" + await ask(["chat.v1"]));
  out.push("none=" + await ask(["x-unknown"]).catch(() => "refused"));
]]

describe("headless Chromium #browser", function()
  local echo, wss, certdir, server, report, browser, profile

  setup(function()
    assert(io.open(CHROMIUM), "no " .. CHROMIUM .. " (apt-get install -y chromium)"):close()
    echo = H.start_lua("examples/echo.lua", "", "echo-browser")
    server = assert(ws.listen { host = "127.0.0.1", port = 0, handshake_timeout = 60,
                                check_origin = function() return true end, protocols = { "chat.v2", "chat.v1" } })
    server:page("/test-page", page("ws://127.0.0.1:" .. echo.port .. "/ws", ECHO_RUN))
    server:page("/proto-page", page("ws://127.0.0.1:" .. server.port .. "/proto", PROTO_RUN))
    server:route("/proto", function(conn)
      while conn:receive(10) do conn:send(conn.protocol or "none") end
    end)
    -- the same page against the TLS example, with a throwaway certificate
    certdir = H.throwaway_ca()
    wss = H.start_lua("examples/wss_echo.lua",
      string.format("--cert %s/server.pem --key %s/server.key", certdir, certdir), "wss-browser")
    server:page("/test-page-wss", page("wss://127.0.0.1:" .. wss.port .. "/ws", ECHO_RUN))
    server:page("/hold", function()
      -- hold the page's load event until the report came (or 40 s)
      local deadline = gettime() + 40
      while not report and gettime() < deadline do server.loop:sleep(0.05) end
      return 200, "", { ["Content-Type"] = "text/plain" }
    end)
    server:route("/report", function(conn)
      local data = conn:receive(10)
      if data then report = data end
      conn:close(1000)
    end)
  end)

  teardown(function()
    if browser and browser.alive() then browser.stop() end
    if profile then os.execute("rm -rf " .. shell_quote(profile)) end
    if server then server:close() end
    if echo then echo.stop() end
    if wss then wss.stop() end
    if certdir then os.execute("rm -rf " .. shell_quote(certdir)) end
  end)

  -- Open one of our test pages in Chromium, serving our test server's loop
  -- until it is done (timeout kills it at 60 s); check that the page
  -- reported `expected` over WebSocket and shows it in its DOM.
  local function browse(path, expected, extra)
    report = nil
    local b, d, p = chromium(string.format("http://127.0.0.1:%d%s", server.port, path), extra)
    browser, profile = b, p
    local deadline = gettime() + 70
    while b.alive() and gettime() < deadline do server:step(0.05) end
    for _ = 1, 10 do server:step(0.01) end
    local dom = read_file(d)
    os.execute("rm -rf " .. shell_quote(p))
    assert.is_false(b.alive(), "chromium did not exit")
    assert.equal(expected, report, "report over WebSocket; chromium log:\n" .. b.output():sub(-3000))
    assert.truthy(dom:find('<pre id="result">' .. expected .. '</pre>', 1, true), "dumped DOM:\n" .. dom:sub(1, 3000))
  end

  it("echoes text, binary (all 256 byte values), 1 MiB text and binary, in order, and closes cleanly", function()
    browse("/test-page", EXPECTED)
    -- the echo server saw the browser's close
    local log
    for _ = 1, 50 do
      log = echo.output()
      if log:find("(1000 done)", 1, true) then break end
      socket.sleep(0.02)
    end
    assert.truthy(log:find("(1000 done)", 1, true), log)
  end)

  it("does the same over wss:// against examples/wss_echo.lua", function()
    browse("/test-page-wss", EXPECTED, "--ignore-certificate-errors")
    assert.truthy(H.wait_output(wss, "disconnect [^\n]*%(1000%)"), wss.output())
  end)

  it("subprotocols: the server picks by its preference among the browser's offer", function()
    browse("/proto-page", PROTO_EXPECTED)
  end)

  it("the example's own page at / carries the WebSocket script, and opens in the browser", function()
    -- the HTML, over plain HTTP
    local c = assert(socket.connect("127.0.0.1", echo.port))
    c:settimeout(5)
    assert(c:send("GET / HTTP/1.1\r\nHost: 127.0.0.1:" .. echo.port .. "\r\n\r\n"))
    local resp = c:receive("*a")
    c:close()
    assert.matches("^HTTP/1.1 200", resp)
    assert.matches("Content%-Type: text/html", resp)
    assert.truthy(resp:find("new WebSocket(", 1, true))
    assert.truthy(resp:find('+ "/ws"', 1, true))
    -- and in Chromium: the page's socket opens (its onopen sets the title)
    local b, d, p = chromium(string.format("http://127.0.0.1:%d/", echo.port), "--virtual-time-budget=5000")
    local deadline = gettime() + 70
    while b.alive() and gettime() < deadline do socket.sleep(0.05) end
    local dom = read_file(d)
    os.execute("rm -rf " .. shell_quote(p))
    assert.truthy(dom:find("<title>lua-ws echo</title>", 1, true) or dom:find("<title>open</title>", 1, true), dom)
    assert.truthy(dom:find('<p id="state">open</p>', 1, true), dom)
  end)
end)
