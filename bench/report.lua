-- Turns bench/run.sh's raw results into one Markdown table with ratio rows.
--   lua5.4 bench/report.lua build/bench/results.txt
-- Input lines: "SERVER MODE RUN RESULT key=value ..." (wsload's RESULT line).
local order, data = {}, {}
for line in io.lines(arg[1]) do
  local server, mode, fields = line:match("^(%S+) (%S+) %S+ RESULT ?(.*)$")
  if server then
    if not data[server] then data[server] = {}; order[#order + 1] = server end
    local t = {}
    for k, v in fields:gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
    local runs = data[server][mode] or {}
    runs[#runs + 1] = t
    data[server][mode] = runs
  end
end

local function median(xs)
  if #xs == 0 then return nil end
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local flagged = false
-- Median of one metric over the good runs; flag the cell if any run failed.
local function metric(server, mode, f)
  local xs, bad = {}, false
  for _, t in ipairs(data[server][mode] or {}) do
    if t.failed or (t.errors or 0) > 0 then bad = true end
    local v = not t.failed and f(t)
    if v then xs[#xs + 1] = v end
  end
  if bad then flagged = true end
  return median(xs), bad
end

local function field(k) return function(t) return t[k] end end
local function idle_kib(t)
  if not t.conns or t.conns < t.want then return nil end
  return (t.rss_kb - t.rss_base_kb) / t.conns
end
local function fmt(v, bad, digits)
  if not v then return "fail" end
  return string.format("%." .. (digits or 0) .. "f", v) .. (bad and " !" or "")
end

-- Tables of columns. A column is { label, mode, getter, digits } (a number;
-- the ratio row divides ours by the peer's) or { label, mode, lat = scale,
-- digits } (p50 / p99 / max round trip). A table is printed when one of its
-- modes has results; its rows are the servers with results in it.
local function lat(label, mode, scale, digits) return { label, mode, lat = scale, digits = digits } end
local tables = {
  { title = "Echo, many messages in flight; upgrades; idle memory",
    { "64x32 B text msg/s", "m32", field "msgs_per_s", 0 },
    { "64x4 KiB bin msg/s", "m4k", field "msgs_per_s", 0 },
    { "4x1 MiB bin MiB/s", "m1m", field "mib_per_s", 0 },
    { "upgrades/s (16 conc.)", "upg", field "upgrades_per_s", 0 },
    { "server CPU µs/upgrade", "upg", field "server_cpu_us_per_upgrade", 1 },
    { "idle KiB/conn", "idle", idle_kib, 1 },
    lat("32 B p50/p99/max µs", "m32", 1, 0),
    lat("4 KiB p50/p99/max µs", "m4k", 1, 0),
    lat("1 MiB p50/p99/max ms", "m1m", 1e3, 1),
  },
  { title = "Echo, one message in flight per connection (64 connections)",
    { "32 B text msg/s", "r32", field "msgs_per_s", 0 },
    lat("32 B p50/p99/max µs", "r32", 1, 0),
    { "4 KiB bin msg/s", "r4k", field "msgs_per_s", 0 },
    lat("4 KiB p50/p99/max µs", "r4k", 1, 0),
    { "server CPU µs/msg: 32 B", "r32", field "server_cpu_us_per_msg", 1 },
    { "4 KiB", "r4k", field "server_cpu_us_per_msg", 1 },
  },
  { title = "permessage-deflate echo, JSON-like text, one message in flight (64 connections)",
    { "4 KiB no takeover msg/s", "z4kn", field "msgs_per_s", 0 },
    { "4 KiB takeover msg/s", "z4kt", field "msgs_per_s", 0 },
    { "64 KiB no takeover msg/s", "z64kn", field "msgs_per_s", 0 },
    { "64 KiB takeover msg/s", "z64kt", field "msgs_per_s", 0 },
    lat("4 KiB no takeover p50/p99/max µs", "z4kn", 1, 0),
    lat("64 KiB no takeover p50/p99/max µs", "z64kn", 1, 0),
    { "server CPU µs/msg: 4 KiB no takeover", "z4kn", field "server_cpu_us_per_msg", 1 },
    { "4 KiB takeover", "z4kt", field "server_cpu_us_per_msg", 1 },
    { "64 KiB no takeover", "z64kn", field "server_cpu_us_per_msg", 1 },
    { "64 KiB takeover", "z64kt", field "server_cpu_us_per_msg", 1 },
  },
  { title = "Fan-out: 1 publisher -> 1,000 receivers on one server (every message to all the others)",
    { "32 B deliveries/s", "f32", field "deliveries_per_s", 0 },
    lat("32 B publish -> last receiver p50/p99/max µs", "f32", 1, 0),
    { "4 KiB deliveries/s", "f4k", field "deliveries_per_s", 0 },
    lat("4 KiB publish -> last receiver p50/p99/max µs", "f4k", 1, 0),
  },
  { title = "Client throughput: one connection, 32 in flight, through the libwebsockets echo server (rows are clients)",
    { "32 B text msg/s", "c32", field "msgs_per_s", 0 },
    { "4 KiB text msg/s", "c4k", field "msgs_per_s", 0 },
    { "client CPU µs/msg: 32 B", "c32", field "cpu_us_per_msg", 1 },
    { "4 KiB", "c4k", field "cpu_us_per_msg", 1 },
  },
  { title = "wss:// (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256)",
    { "64x32 B text msg/s", "s32", field "msgs_per_s", 0 },
    { "4x1 MiB bin MiB/s", "s1m", field "mib_per_s", 0 },
    { "TLS upgrades/s (16 conc.)", "supg", field "upgrades_per_s", 0 },
    { "server CPU µs/msg: 32 B", "s32", field "server_cpu_us_per_msg", 2 },
    { "1 MiB", "s1m", field "server_cpu_us_per_msg", 0 },
    { "server CPU µs/TLS upgrade", "supg", field "server_cpu_us_per_upgrade", 0 },
    lat("32 B p50/p99/max µs", "s32", 1, 0),
    lat("1 MiB p50/p99/max ms", "s1m", 1e3, 1),
  },
}

local function ratio(a, b) return (a and b and b > 0) and string.format("%.2f", a / b) or "-" end
local KEYS = { "p50_us", "p99_us", "max_us" }

for _, tab in ipairs(tables) do
  local rows = {}
  for _, s in ipairs(order) do
    for _, c in ipairs(tab) do
      if data[s][c[2]] then rows[#rows + 1] = s; break end
    end
  end
  if #rows > 0 then
    local header = { "server" }
    for _, c in ipairs(tab) do header[#header + 1] = c[1] end
    print("**" .. tab.title .. "**")
    print()
    print("| " .. table.concat(header, " | ") .. " |")
    print("|---" .. string.rep("|---:", #header - 1) .. "|")
    local values = {}   -- values[server][i] = number or {p50, p99, max}
    for _, s in ipairs(rows) do
      local cells, vals = { s }, {}
      for i, c in ipairs(tab) do
        if c.lat then
          local trio, parts = {}, {}
          for k, key in ipairs(KEYS) do
            local v, bad = metric(s, c[2], field(key))
            trio[k] = v and v / c.lat
            parts[k] = fmt(trio[k], bad, c.digits)
          end
          vals[i] = trio
          cells[#cells + 1] = data[s][c[2]] and table.concat(parts, " / ") or "-"
        else
          local v, bad = metric(s, c[2], c[3])
          vals[i] = v
          if c[2] == "idle" and not v and data[s].idle then
            local t = data[s].idle[1]
            cells[#cells + 1] = t.conns and string.format("fail (%d/%d conns)", t.conns, t.want) or "fail"
          elseif not data[s][c[2]] then
            cells[#cells + 1] = "-"
          else
            cells[#cells + 1] = fmt(v, bad, c[4])
          end
        end
      end
      values[s] = vals
      print("| " .. table.concat(cells, " | ") .. " |")
    end
    -- ratio rows: ours / peer for every column
    local ours = values.ours
    if ours then
      for _, s in ipairs(rows) do
        if s ~= "ours" then
          local cells, peer = { "**ours/" .. s .. "**" }, values[s]
          for i, c in ipairs(tab) do
            if c.lat then
              local r = {}
              for k = 1, 3 do r[k] = ratio(ours[i][k], peer[i][k]) end
              cells[#cells + 1] = table.concat(r, " / ")
            else
              cells[#cells + 1] = ratio(ours[i], peer[i])
            end
          end
          print("| " .. table.concat(cells, " | ") .. " |")
        end
      end
    end
    print()
  end
end
print("Ratios are ours/peer: above 1 is better for msg/s, MiB/s and upgrades/s;"
  .. " below 1 is better for KiB/conn, latency and CPU µs/msg.")
if flagged then print("`!`: at least one run of that cell reported errors (see build/bench/wsload.log).") end
