-- An echo server for spec/deflate_spec.lua, permessage-deflate on by default.
--   lua5.4 spec/servers/deflate_server.lua --port N [--off] [--set key=value ...]
--                                          [--c key=value ...]
-- --off          compression off (the `compression` option is not given)
-- --set k=v      a listen option (numbers, true/false, or strings), e.g. max_message=1048576
-- --c k=v        a compression option (level, threshold, server_no_context_takeover,
--                client_no_context_takeover, server_max_window_bits, client_max_window_bits);
--                without any, compression = true
-- Routes:
--   /echo     echoes every message with its kind
--   /info     first sends one text message describing the negotiation:
--             deflate=true|false;offer=<the request's Sec-WebSocket-Extensions or "">
--             then echoes like /echo
--   /         the browser test page (spec/deflate_spec.lua drives Chromium at it):
--             it writes its results into the DOM and also reports them on /report
--   /wait     answers once /report got a message (holds the page's load event)
--   /report   logs "report <message>" for every message it gets
-- Logs "closed PEER CODE REASON" for every finished connection.
local ws = require "ws"
local common = dofile(arg[0]:gsub("[^/]*$", "") .. "common.lua")

-- compression = true, or the --c options; none with --off
local opts = { host = "127.0.0.1", check_origin = function() return true end, max_message = 16 * 1024 * 1024,
               compression = true }
local off = false
local server = common.listen(arg, opts, function(flag, kv)
  if flag == "--off" then
    off, opts.compression = true, nil
    return 1
  elseif flag == "--c" then
    local k, v = kv:match("^([%w_]+)=(.*)$")
    if not off then
      if opts.compression == true then opts.compression = {} end
      opts.compression[k] = common.value(v)
    end
    return 2
  end
end)
local echo = common.echo

server:route("/echo", echo)

server:route("/info", function(conn)
  local offer = conn.request.headers["sec-websocket-extensions"] or ""
  conn:send("deflate=" .. tostring(conn.deflate ~= nil) .. ";offer=" .. offer)
  echo(conn)
end)

local reported = false
server:route("/report", function(conn)
  while true do   -- not `for ... in conn:messages()`: Lua 5.1 cannot wait there
    local data = conn:receive()
    if not data then break end
    ws.log("report %s", data)
    io.stderr:flush()
    reported = true
  end
end)

-- The page's <img src="/wait"> holds its load event (and so Chromium's
-- --dump-dom) until the page has reported, at most 40 s.
server:page("/wait", function()
  local t = 0
  while not reported and t < 40 do
    server.loop:sleep(0.05)
    t = t + 0.05
  end
  return 200, "done\n", { ["Content-Type"] = "text/plain" }
end)

-- The browser page: text and binary messages, small to 1 MiB, each checked
-- against its echo; the results go to document.title / #result and /report.
server:page("/", [[
<!doctype html>
<meta charset="utf-8">
<title>running</title>
<pre id="result">running</pre>
<img src="/wait" alt="">
<script>
const out = [];
const done = (s) => {
  document.getElementById("result").textContent = s;
  document.title = "done";
  const r = new WebSocket("ws://" + location.host + "/report");
  r.onopen = () => { r.send(s); };
};
const open = (path) => new Promise((res, rej) => {
  const w = new WebSocket("ws://" + location.host + path);
  w.binaryType = "arraybuffer";
  const inbox = [], waiting = [];
  w.onmessage = (e) => { if (waiting.length) waiting.shift()(e.data); else inbox.push(e.data); };
  w.next = () => new Promise((r2) => { if (inbox.length) r2(inbox.shift()); else waiting.push(r2); });
  w.onopen = () => res(w);
  w.onerror = () => rej(new Error("websocket error on " + path));
});
const eqBytes = (a, b) => {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
};
(async () => {
  try {
    const w = await open("/info");
    out.push("info " + (await w.next()));
    out.push("extensions " + w.extensions);
    const pool = "az09 ~éßжλ€中文ㅎ😀🎉𝄞";
    const chars = Array.from(pool);
    for (const n of [0, 1, 200, 70000, 1 << 20]) {
      // compressible text
      const t1 = "a".repeat(n);
      w.send(t1);
      const e1 = await w.next();
      out.push("text-a " + n + " " + (e1 === t1 ? "ok" : "BAD"));
      // varied multi-byte text of about n chars
      let t2 = "";
      const parts = [];
      for (let i = 0; i < n / 2; i++) parts.push(chars[(i * 7919 + (i >> 3)) % chars.length]);
      t2 = parts.join("");
      w.send(t2);
      const e2 = await w.next();
      out.push("text-u " + n + " " + (e2 === t2 ? "ok" : "BAD"));
      // random binary
      const b = new Uint8Array(n);
      for (let off = 0; off < n; off += 65536) crypto.getRandomValues(b.subarray(off, Math.min(n, off + 65536)));
      w.send(b.buffer);
      const e3 = await w.next();
      out.push("binary " + n + " " + (e3 instanceof ArrayBuffer && eqBytes(e3, b.buffer) ? "ok" : "BAD"));
    }
    w.close(1000);
    done(out.join("|"));
  } catch (e) {
    out.push("error " + e);
    done(out.join("|"));
  }
})();
</script>
]])

ws.log("deflate server on port %d (compression %s)", server.port, off and "off" or "on")
server:run()
