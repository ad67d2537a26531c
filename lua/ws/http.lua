--- HTTP/1.1 heads of the opening handshake, for the client and the server
-- alike: one rule for header fields and one builder. A field name is a
-- token (RFC 9110 section 5.6.2); a value is an RFC 9110 field-value
-- (section 5.5: visible characters and obs-text, SP and HTAB only between
-- them), checked in C by the rule the 101 builder (core.build_response)
-- applies too, so no CR, LF, NUL or other control reaches a head.
-- @module ws.http
local core = require "ws.core"

local value_ok = core.field_value_valid

local M = {}

--- The token characters (RFC 9110 tchar), as a Lua pattern class.
M.TCHAR = "[%w!#$%%&'*+.^_`|~-]"
local NAME = "^" .. M.TCHAR .. "+$"

--- True when name and value may go into a head as a header field (the
-- rule head() applies to values).
---@param name any
---@param value any
---@return boolean
function M.valid(name, value)
  return type(name) == "string" and name:match(NAME) ~= nil and type(value) == "string" and value_ok(value)
end

--- Header lines ("Name: value\r\n"...) from a table name -> value (strings
-- or numbers). Returns nil, name for a field that breaks the rule.
---@param headers? table<string, string|number>
---@return string|nil lines
---@return string? bad the offending name
function M.header_lines(headers)
  local t = {}
  for name, value in pairs(headers or {}) do
    -- (a whole number as digits: 120.0 is "120" on every Lua, 2^53 no "e+15")
    if type(value) == "number" then
      value = (value % 1 == 0 and value > -2^63 and value < 2^63) and string.format("%d", value) or tostring(value)
    end
    if not M.valid(name, value) then return nil, tostring(name) end
    t[#t + 1] = name .. ": " .. value .. "\r\n"
  end
  return table.concat(t)
end

--- A head: the start line, the fields (a list name, value, name, value, ...;
-- the names are the caller's own tokens; a false value leaves its field
-- out), the lines of header_lines, the blank line, then body. Returns it,
-- or nil, "Name: value" (or the start line) when a value breaks the rule
-- of valid() (or the start line holds a control character).
---@param start string "GET /path HTTP/1.1", "HTTP/1.1 101 Switching Protocols"
---@param fields table
---@param lines? string
---@param body? string
---@return string|nil head
---@return string? bad
function M.head(start, fields, lines, body)
  if start:find("%c") then return nil, start end
  local t = { start, "\r\n" }
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if value then
      if not value_ok(value) then return nil, name .. ": " .. value end
      t[#t + 1] = name .. ": " .. value .. "\r\n"
    end
  end
  t[#t + 1] = lines or ""
  t[#t + 1] = "\r\n"
  t[#t + 1] = body or ""
  return table.concat(t)
end

return M
