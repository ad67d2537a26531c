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

-- What the test page checks; the summary it reports when all pass.
local EXPECTED = "RESULT text=ok empty=ok binary256=ok text1m=ok binary1m=ok order=ok close=1000/clean END"

local TEST_PAGE = [[
<!doctype html>
<meta charset="utf-8">
<title>lua-ws browser test</title>
<pre id="result">running</pre>
<img src="/hold" alt="">
<script>
const ECHO = "%s", REPORT = "ws://" + location.host + "/report";
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
function open(url) {
  return within(new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
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
  const ws = await open(ECHO);
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

describe("headless Chromium #browser", function()
  local echo, wss, certdir, server, report, browser, dump, profile

  setup(function()
    assert(io.open(CHROMIUM), "no " .. CHROMIUM .. " (apt-get install -y chromium)"):close()
    echo = H.start_lua("examples/echo.lua", "", "echo-browser")
    server = assert(ws.listen { host = "127.0.0.1", port = 0, handshake_timeout = 60,
                                check_origin = function() return true end })
    server:page("/test-page", string.format(TEST_PAGE, "ws://127.0.0.1:" .. echo.port .. "/ws"))
    -- the same page against the TLS example, with a throwaway certificate
    certdir = H.throwaway_ca()
    wss = H.start_lua("examples/wss_echo.lua",
      string.format("--cert %s/server.pem --key %s/server.key", certdir, certdir), "wss-browser")
    server:page("/test-page-wss", string.format(TEST_PAGE, "wss://127.0.0.1:" .. wss.port .. "/ws"))
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

  it("echoes text, binary (all 256 byte values), 1 MiB text and binary, in order, and closes cleanly", function()
    browser, dump, profile = chromium(string.format("http://127.0.0.1:%d/test-page", server.port))
    -- run our test server's loop until Chromium is done (timeout kills it at 60 s)
    local deadline = gettime() + 70
    while browser.alive() and gettime() < deadline do server:step(0.05) end
    for _ = 1, 10 do server:step(0.01) end
    assert.is_false(browser.alive(), "chromium did not exit")
    assert.equal(EXPECTED, report, "report over WebSocket; chromium log:\n" .. browser.output():sub(-3000))
    local dom = read_file(dump)
    assert.truthy(dom:find('<pre id="result">' .. EXPECTED .. '</pre>', 1, true), "dumped DOM:\n" .. dom:sub(1, 3000))
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
    report = nil
    local b, d, p = chromium(string.format("http://127.0.0.1:%d/test-page-wss", server.port),
      "--ignore-certificate-errors")
    local deadline = gettime() + 70
    while b.alive() and gettime() < deadline do server:step(0.05) end
    for _ = 1, 10 do server:step(0.01) end
    local dom = read_file(d)
    os.execute("rm -rf " .. shell_quote(p))
    assert.is_false(b.alive(), "chromium did not exit")
    assert.equal(EXPECTED, report, "report over WebSocket; chromium log:\n" .. b.output():sub(-3000))
    assert.truthy(dom:find('<pre id="result">' .. EXPECTED .. '</pre>', 1, true), "dumped DOM:\n" .. dom:sub(1, 3000))
    assert.truthy(H.wait_output(wss, "disconnect [^\n]*%(1000%)"), wss.output())
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
