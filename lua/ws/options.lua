--- Options: one declarative schema per entry point (name, type, range,
-- default, doc), used to check an options table at the call, by name, type
-- and range, with "did you mean" suggestions, and as the single source of
-- defaults.
--
-- Options live in groups ("connection", "handshake", "server", "client",
-- "compression", ...); an entry point ("ws.listen", ...) is a list of
-- groups. A module that adds an option registers it once, at load time:
--
--   require("ws.options").register("server", {
--     { name = "reuseport", type = "boolean", default = false,
--       doc = "share the port with other processes (SO_REUSEPORT)" },
--   })
--
-- and every entry point using that group checks and documents it.
-- @module ws.options
local M = {}

---@alias ws.OptionType
---| "integer" | "number" | "string" | "boolean" | "function" | "table" | "list" | "false"

---@class ws.OptionSpec
---@field name string
---@field type string one ws.OptionType or several joined by "|" ("boolean|table")
---@field min? number smallest value (integer, number)
---@field max? number largest value (integer, number)
---@field default? any the value when the caller gives none
---@field fields? string group whose schema checks a table value (compression = { level = 6 })
---@field numeric_string? boolean a string of digits is taken as the number (port = "8080")
---@field check? fun(v: any): string|nil a further rule: nil, or the error message's tail
---@field doc string one line for the reference

local groups = {}    -- group name -> { [option name] = spec, order = { names } }
local entries = {}   -- entry point -> list of group names

--- Add (or replace) options in a group.
---@param group string
---@param specs ws.OptionSpec[]
function M.register(group, specs)
  local g = groups[group]
  if not g then g = { specs = {}, order = {} }; groups[group] = g end
  for _, s in ipairs(specs) do
    assert(type(s.name) == "string" and type(s.type) == "string", "option spec needs a name and a type")
    if not g.specs[s.name] then g.order[#g.order + 1] = s.name end
    g.specs[s.name] = s
  end
end

--- Name an entry point and the groups of options it takes.
---@param name string "ws.listen", "ws.connect", ...
---@param group_names string[]
function M.entry(name, group_names)
  entries[name] = group_names
end

--- Add a group to an existing entry point (a module adding "hub" options to ws.listen, say).
---@param name string
---@param group string
function M.extend(name, group)
  local list = assert(entries[name], "unknown entry point " .. tostring(name))
  for _, g in ipairs(list) do if g == group then return end end
  list[#list + 1] = group
end

-- name -> spec over an entry point's groups (or one group's)
local function specs_of(groups_list)
  local all, order = {}, {}
  for _, gname in ipairs(groups_list) do
    local g = groups[gname]
    if g then
      for _, n in ipairs(g.order) do
        if not all[n] then order[#order + 1] = n end
        all[n] = g.specs[n]
      end
    end
  end
  return all, order
end

--- Every option an entry point takes, in order: a list of specs (for docs and `ws --help`).
---@param name string
---@return ws.OptionSpec[]
function M.list(name)
  local all, order = specs_of(entries[name] or { name })
  local out = {}
  for i, n in ipairs(order) do out[i] = all[n] end
  return out
end

--- The defaults of an entry point (or a group), as a fresh table.
---@param name string
---@return table<string, any>
function M.defaults(name)
  local all = specs_of(entries[name] or { name })
  local d = {}
  for n, s in pairs(all) do d[n] = s.default end
  return d
end

-- Levenshtein distance, stopping early past limit.
local function distance(a, b, limit)
  if math.abs(#a - #b) > limit then return limit + 1 end
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur, best = { [0] = i }, i
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if cur[j] < best then best = cur[j] end
    end
    if best > limit then return limit + 1 end
    prev = cur
  end
  return prev[#b]
end

--- The known name closest to name (at most 2 edits, or a third of its length), or nil.
---@param name string
---@param known string[]
---@return string?
function M.suggest(name, known)
  local best, best_d = nil, math.max(2, math.floor(#name / 3)) + 1
  for _, k in ipairs(known) do
    local d = distance(name:lower(), k, best_d - 1)
    if d < best_d then best, best_d = k, d end
  end
  return best
end

local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  for i = 1, n do if type(v[i]) ~= "string" then return false end end
  return true
end

local function is_a(v, t)
  -- (an integer is whole and fits a 64-bit integer: 2^63 or 1e20 is whole as a float, but has no integer form)
  if t == "integer" then return type(v) == "number" and v % 1 == 0 and v >= -2^63 and v < 2^63 end
  -- (finite: an endless grace or timeout never ends a stop; false turns one off)
  if t == "number" then return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end
  if t == "list" then return is_list(v) end
  if t == "false" then return v == false end
  return type(v) == t
end

local NOUN = {
  integer = "an integer", number = "a number", string = "a string", boolean = "a boolean",
  ["function"] = "a function", table = "a table", list = "a list of strings", ["false"] = "false",
}

local function describe_type(spec)
  local parts = {}
  for t in spec.type:gmatch("[^|]+") do parts[#parts + 1] = NOUN[t] or t end
  local s = table.concat(parts, " or ")
  if spec.min and spec.max then s = s .. " in " .. spec.min .. ".." .. spec.max
  elseif spec.min then s = s .. " >= " .. spec.min
  elseif spec.max then s = s .. " <= " .. spec.max end
  return s
end

local function shown(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
  return type(v)
end

-- nil if v fits spec, else the error message's tail
local function mismatch(spec, v)
  for t in spec.type:gmatch("[^|]+") do
    if is_a(v, t) then
      if type(v) == "number" and (spec.min and v < spec.min or spec.max and v > spec.max) then break end
      return nil
    end
  end
  return "must be " .. describe_type(spec) .. ", got " .. shown(v)
end

local function check_table(what, prefix, all, order, opts, level, out)
  for k, v in pairs(opts) do
    local spec = all[k]
    if not spec then
      if type(k) ~= "string" then
        error(string.format("%s: option names must be strings, got %s", what, shown(k)), level)
      end
      local hint = M.suggest(k, order)
      error(string.format("%s: unknown option '%s%s'%s", what, prefix, k,
        hint and " (did you mean '" .. prefix .. hint .. "'?)" or ""), level)
    end
    if spec.numeric_string and type(v) == "string" and v:match("^%d+$") then
      v = tonumber(v)
      if out then out[k] = v end
    end
    local bad = mismatch(spec, v) or spec.check and spec.check(v)
    if bad then error(string.format("%s: option '%s%s' %s", what, prefix, k, bad), level) end
    if spec.fields and type(v) == "table" then
      local sub, sub_order = specs_of({ spec.fields })
      check_table(what, prefix .. k .. ".", sub, sub_order, v, level + 1)
    end
  end
end

--- Check opts against an entry point's schema and return a new table:
-- the defaults, overlaid with opts. Raises (at the caller's caller, level 3
-- by default) on an unknown name, a wrong type or an out-of-range value:
--   ws.listen: unknown option 'max_mesage' (did you mean 'max_message'?)
--   ws.listen: option 'port' must be an integer in 0..65535, got 70000
---@param name string entry point
---@param opts table|nil
---@param level? integer error level (default 3: the caller of the function calling check)
---@return table
function M.check(name, opts, level)
  level = level or 3
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("%s: options must be a table, got %s", name, type(opts)), level)
  end
  local all, order = specs_of(entries[name] or error("unknown entry point " .. tostring(name), 2))
  local o = {}
  for n, s in pairs(all) do o[n] = s.default end
  for k, v in pairs(opts or {}) do o[k] = v end
  if opts then check_table(name, "", all, order, opts, level + 1, o) end
  return o
end

---- the library's own options ---------------------------------------------------

-- subprotocol names: each a token, none twice (RFC 6455 section 4.1); else
-- "Sec-WebSocket-Protocol: chat, superchat" offers two where one was meant
local function distinct_tokens(list)
  local seen = {}
  for _, p in ipairs(list) do
    if not p:match("^[%w!#$%%&'*+.^_`|~-]+$") then
      return "must hold tokens (RFC 6455 section 4.1), got " .. shown(p)
    end
    if seen[p] then return "names " .. shown(p) .. " twice" end
    seen[p] = true
  end
end

local KiB, MiB = 1024, 1024 * 1024

-- both sides of a connection
M.register("connection", {
  { name = "max_message", type = "integer", min = 1, default = MiB,
    doc = "bytes; a bigger message is closed with 1009" },
  { name = "max_queue", type = "integer", min = 0, default = 16 * MiB,
    doc = "bytes queued without a waiting sender (pongs, broadcast); past it the connection is dropped" },
  { name = "send_timeout", type = "number", min = 0, default = 30,
    doc = "seconds one send may wait for the peer to read" },
  { name = "close_timeout", type = "number", min = 0, default = 3,
    doc = "seconds close() takes at most: our close frame written, the peer's awaited" },
  { name = "idle_timeout", type = "number|false", min = 0, default = nil,
    doc = "seconds a receive() may wait with nothing (not even a pong) from the peer; nil/false: never" },
  { name = "ping_interval", type = "number|false", min = 0.001, default = nil,
    doc = "seconds between keepalive pings (inside ws.loop); nil/false: none" },
  { name = "ping_timeout", type = "number", min = 0.001, default = 20,
    doc = "seconds a keepalive ping may wait for its pong before the connection is closed" },
  { name = "on_pong", type = "function", doc = "on_pong(conn, data) for every pong received" },
  { name = "compression", type = "boolean|table", fields = "compression", default = false,
    doc = "permessage-deflate: true or a table of the compression options" },
})

M.register("compression", {
  { name = "level", type = "integer", min = 1, max = 9, default = 1,
    doc = "zlib level (1, as gorilla: about half the CPU of 6 for ~15% more bytes on JSON)" },
  { name = "threshold", type = "integer", min = 0, default = 64,
    doc = "bytes; smaller messages are sent uncompressed" },
  { name = "server_no_context_takeover", type = "boolean", default = false,
    doc = "the server compresses each message on its own" },
  { name = "client_no_context_takeover", type = "boolean", default = false,
    doc = "the client compresses each message on its own" },
  { name = "server_max_window_bits", type = "integer", min = 8, max = 15, doc = "server's LZ77 window, 8..15" },
  { name = "client_max_window_bits", type = "integer", min = 8, max = 15, doc = "client's LZ77 window, 8..15" },
})

-- the server side of the handshake (ws.accept and ws.listen)
M.register("accept", {
  { name = "handshake_timeout", type = "number", min = 0, default = 10,
    doc = "seconds to receive the request head and answer it" },
  { name = "max_header", type = "integer", min = 256, default = 16 * KiB,
    doc = "bytes of request head; more is answered with 431" },
  { name = "idle_timeout", type = "number|false", min = 0, default = 300,
    doc = "seconds a receive() may wait with nothing (not even a pong) from the peer; false: never" },
  { name = "ping_interval", type = "number|false", min = 0.001, default = 20,
    doc = "seconds between keepalive pings (as python-websockets); false: none" },
  { name = "check_origin", type = "function",
    doc = "check_origin(origin, request) -> true to allow; default: same origin (ws.same_origin)" },
  { name = "origins", type = "list", doc = "allowed Origin values, instead of the same-origin check" },
  { name = "protocols", type = "list|function",
    doc = "subprotocols in preference order, or fn(offered, request) -> chosen" },
  { name = "on_request", type = "function",
    doc = "on_request(request) -> nil (upgrade) or status, body, headers (refuse) before the upgrade" },
  { name = "logger", type = "function|false", doc = "logger(level, message, fields); false: silent; nil: stderr" },
  { name = "peer", type = "string", doc = "the peer's address for logs (default: from the socket)" },
  { name = "sched", type = "table",
    doc = "the scheduler to wait through (default: the running ws.loop, cqueues or copas coroutine, else block)" },
})

M.register("listen", {
  { name = "host", type = "string", default = "127.0.0.1", doc = "address to listen on" },
  { name = "port", type = "integer", min = 0, max = 65535, default = 8080, numeric_string = true,
    doc = "port; 0 picks a free one" },
  { name = "backlog", type = "integer", min = 1, max = 2147483647, default = 4096,
    doc = "pending connections; the kernel caps it at net.core.somaxconn" },
  { name = "loop", type = "table", doc = "a ws.loop to run on (default: a new one)" },
  { name = "spin", type = "number|false", min = 0, max = 0.01, default = 0.0001,
    doc = "seconds the new loop polls for the next events after a round that ran tasks or read edges, before it sleeps; "
      .. "only while events keep coming that soon (false: never)" },
  { name = "tls", type = "table", doc = "serve wss://: { certificate = FILE, key = FILE, ... }" },
  { name = "on_connect", type = "function", doc = "on_connect(conn) after each upgrade" },
  { name = "on_disconnect", type = "function", doc = "on_disconnect(conn) after each handler returns" },
  -- deployment (README "Many processes, proxies, graceful stop")
  { name = "reuseport", type = "boolean", default = false,
    doc = "SO_REUSEPORT: several processes listen on one port" },
  { name = "heap_keep", type = "integer|false", min = 0, default = 64 * MiB,
    doc = "glibc: bytes of freed heap malloc keeps instead of returning them to the kernel, so large "
      .. "messages reuse their pages (blocks up to 32 MiB come from the heap); false leaves malloc alone" },
  { name = "fd", type = "integer", min = 0,
    doc = "serve on this inherited listening descriptor (systemd LISTEN_FDS) instead of binding" },
  { name = "grace", type = "number", min = 0, default = 0,
    doc = "drain(): seconds over which the 1001 closes are spread" },
  { name = "linger", type = "number", min = 0, default = 0,
    doc = "drain(): seconds still serving, health paths at 503, before it stops accepting" },
  { name = "health_path", type = "string|list", doc = "e.g. \"/healthz\" (or a list): 200 ok, 503 while draining" },
  { name = "signals", type = "boolean", default = true,
    doc = "run(): SIGTERM/SIGINT drain, then run() returns; false leaves signals alone" },
  { name = "trusted_proxies", type = "list",
    doc = "addresses/CIDR blocks whose forwarding headers (and PROXY headers) are believed" },
  { name = "forwarded_header", type = "string", default = "x-forwarded-for",
    doc = "the header trusted proxies name the client in: \"x-forwarded-for\", \"forwarded\" (RFC 7239) "
      .. "or \"x-real-ip\"; the others are the client's own and not read" },
  { name = "proxy_protocol", type = "boolean", default = false,
    doc = "every connection starts with a PROXY v1/v2 header (trusted peers only)" },
  { name = "hub", type = "table", doc = "a ws.hub to attach (server.hub): rooms across processes" },
})

M.register("connect", {
  { name = "timeout", type = "number", min = 0, default = 10, doc = "seconds for name resolution, connect, TLS and handshake" },
  { name = "max_header", type = "integer", min = 256, default = 16 * KiB, doc = "bytes of response head" },
  { name = "headers", type = "table", doc = "extra request headers { name = value }" },
  { name = "origin", type = "string", doc = "Origin header" },
  { name = "protocols", type = "list", check = distinct_tokens, doc = "subprotocols to offer (distinct tokens)" },
  { name = "tls", type = "table",
    doc = "{ verify = true, cafile, capath, certificate, key, server_name, protocol, options }" },
  { name = "sock", type = "userdata|table", doc = "a connected socket to run the handshake on (a proxy tunnel)" },
  { name = "proxy", type = "string|false",
    doc = "http://[user:password@]host[:port] of a proxy to tunnel through (CONNECT); false: none; nil: "
      .. "https_proxy (wss://), http_proxy (ws://) or all_proxy, and no_proxy, from the environment, "
      .. "never for loopback hosts" },
  { name = "logger", type = "function|false", doc = "logger(level, message, fields); false: silent; nil: stderr" },
  { name = "sched", type = "table",
    doc = "the scheduler to wait through (default: the running ws.loop, cqueues or copas coroutine, else block)" },
})

M.register("hub", {
  { name = "redis", type = "string",
    doc = "redis://[[user]:password@]host[:port][/db] or unix://[:password@]/path[?db=N]; nil: this process only" },
  { name = "ordered", type = "boolean", default = false, doc = "one total order per topic, with replay" },
  { name = "prefix", type = "string", default = "ws:", doc = "Redis key and channel prefix" },
  { name = "history", type = "integer", min = 1, default = 10000,
    doc = "ordered mode: messages kept per topic in the Stream (MAXLEN)" },
  { name = "max_outbox", type = "integer", min = 0, default = 10000,
    doc = "ordered mode: publishes held while Redis is down or busy" },
  { name = "max_publish", type = "integer", min = 1, default = 16 * 1024 * 1024,
    doc = "bytes: a larger publish or broadcast is refused (nil, \"too large\"): Redis drops subscribers past 32 MB" },
  { name = "local_when_down", type = "boolean", default = true,
    doc = "ordered mode: while Redis is down, this process's publishes reach its own subscribers at once" },
  { name = "timeout", type = "number", min = 0, default = 5,
    doc = "seconds for connecting (name resolution included) and for each Redis command" },
  { name = "probe_interval", type = "number", min = 0.01, default = 1,
    doc = "seconds between PINGs and probes on the subscriber connection" },
  { name = "probe_timeout", type = "number", min = 0.01, default = 5,
    doc = "a probe unseen this long: the subscriber connection is replaced" },
  { name = "backoff_min", type = "number", min = 0, default = 0.1, doc = "first reconnect delay, seconds" },
  { name = "backoff_max", type = "number", min = 0, default = 5, doc = "longest reconnect delay, seconds" },
  { name = "loop", type = "table", doc = "the ws.loop to run on (default: the server's, by attach or ws.listen{ hub = })" },
  { name = "logger", type = "function|false", doc = "logger(level, message, fields); false: silent; nil: stderr" },
  { name = "on_state", type = "function", doc = "on_state(state, info): \"down\", \"up\", \"resubscribed\"" },
  { name = "on_gap", type = "function", doc = "ordered: on_gap(topic, info) when missed messages cannot be replayed" },
})

M.entry("ws.accept", { "connection", "accept" })
M.entry("ws.listen", { "connection", "accept", "listen" })
M.entry("ws.connect", { "connection", "connect" })
M.entry("ws.hub", { "hub" })

return M
