--- Logging: every line the library would print goes to a logger
-- function(level, message, fields), level one of "error", "warn", "info",
-- "debug"; fields a table such as { peer = ..., path = ..., code = ...,
-- error = ... } (or nil). The options logger = false silences the library;
-- nil (the default) writes one line per call to stderr.
-- @module ws.log
local M = {}

M.LEVELS = { error = 1, warn = 2, info = 3, debug = 4 }

-- Fields in a stable order: the usual ones first, then the rest sorted.
local FIRST = { "peer", "path", "code", "reason", "error" }

local function format_fields(fields)
  if not fields then return "" end
  local out, seen = {}, {}
  for _, k in ipairs(FIRST) do
    if fields[k] ~= nil then out[#out + 1] = k .. "=" .. tostring(fields[k]); seen[k] = true end
  end
  local rest = {}
  for k in pairs(fields) do if not seen[k] then rest[#rest + 1] = tostring(k) end end
  table.sort(rest)
  for _, k in ipairs(rest) do out[#out + 1] = k .. "=" .. tostring(fields[k]) end
  return #out > 0 and " (" .. table.concat(out, " ") .. ")" or ""
end

-- One write per line: stderr is unbuffered, so pieces would cost a syscall
-- each. The time stamp is formatted once per second, not per line.
local stamp_sec, stamp = -1, ""

--- The default logger: "YYYY-mm-dd HH:MM:SS message (k=v ...)" on stderr
-- ("debug" lines are dropped).
function M.stderr(level, message, fields)
  if level == "debug" then return end
  local now = os.time()
  if now ~= stamp_sec then stamp_sec, stamp = now, os.date("%Y-%m-%d %H:%M:%S ", now) end
  io.stderr:write(stamp .. tostring(message) .. format_fields(fields) .. "\n")
end

local function silent() end

-- The application's loggers that raised (reported already).
local failed = setmetatable({}, { __mode = "k" })

-- The logger, called so that an error it raises ends neither the task that
-- logged (a connection's handler, left open with its peer waiting) nor the
-- loop's step that logs a failed task (server:run, or a luv callback,
-- which ends the process): its first error goes to stderr, the line is lost.
local function guard(logger)
  return function(level, message, fields)
    -- (ws.loop's pcall, once loaded: on Lua 5.1 a logger may wait in it)
    local loop = package.loaded["ws.loop"]
    local ok, err = (type(loop) == "table" and loop.pcall or pcall)(logger, level, message, fields)
    if not ok and not failed[logger] then
      failed[logger] = true
      io.stderr:write("ws: the logger raised (its later errors are not reported): " .. tostring(err) ..
        "\n  while logging: " .. tostring(level) .. " " .. tostring(message) .. "\n")
    end
  end
end

--- The logger an options table names: a function, false (silent) or nil
-- (M.stderr). Anything else is a programmer error. A function is called
-- through a guard: an error it raises is reported once on stderr and
-- serving goes on.
function M.get(logger, what)
  if logger == nil then return M.stderr end
  if logger == false then return silent end
  if type(logger) ~= "function" then
    error((what or "ws") .. ": option 'logger' must be a function or false, got " .. type(logger), 3)
  end
  return guard(logger)
end

--- printf-style convenience for scripts: ws.log("listening on %s", addr)
-- writes an "info" line through the default logger.
function M.printf(fmt, ...)
  M.stderr("info", string.format(fmt, ...))
end

return M
