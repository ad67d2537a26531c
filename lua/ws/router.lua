--- Routes for server:route and server:page: exact paths, patterns with
-- captures and prefixes.
--
--   "/ws"            exact; "/ws/" matches it too (one trailing slash is ignored)
--   "/rooms/:name"   one segment captured, percent-decoded: params.name
--   "/static/*"      a prefix: "/static/" and everything under it, the rest
--                    of the path (still encoded) in params["*"]
--
-- The most specific route wins: an exact path, then the pattern with the
-- most literal segments, then the longest prefix; among equals, the first
-- added. Adding a path again replaces its value.
-- @module ws.router
local M = {}

---@class ws.Router
---@field exact table<string, any>
---@field patterns table[]
local Router = {}
Router.__index = Router

--- A new, empty router.
---@return ws.Router
function M.new()
  return setmetatable({ exact = {}, patterns = {} }, Router)
end

--- Percent-decode a path segment or query part; nil for a malformed escape.
---@param s string
---@param plus_is_space? boolean decode "+" as a space (query strings)
---@return string?
function M.unescape(s, plus_is_space)
  if plus_is_space then s = s:gsub("+", " ") end
  if s:find("%%%X") or s:find("%%%x%X") or s:find("%%.?$") then return nil end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Decode a query string ("a=1&b=x%20y") into { a = "1", b = "x y" }; a
-- name given more than once keeps its last value; a name with no "=" is "".
-- Malformed escapes are left as they are.
---@param query string?
---@return table<string, string>
function M.parse_query(query)
  local t = {}
  if not query then return t end
  for pair in query:gmatch("[^&;]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = M.unescape(k, true) or k
    if k ~= "" then t[k] = M.unescape(v, true) or v end
  end
  return t
end

local function strip_slash(path)
  if #path > 1 and path:sub(-1) == "/" then return path:sub(1, -2) end
  return path
end

local function segments(path)
  local t = {}
  for seg in path:gmatch("[^/]+") do t[#t + 1] = seg end
  return t
end

--- True if path is a pattern (captures or a prefix), not an exact path.
---@param path string
---@return boolean
function M.is_pattern(path)
  return path:find("/:", 1, true) ~= nil or path:sub(-2) == "/*"
end

--- Add a route. path must start with "/".
---@param path string
---@param value any what match returns for it
---@return ws.Router
function Router:add(path, value)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("route path must be a string starting with '/', got " .. tostring(path), 3)
  end
  if not M.is_pattern(path) then
    self.exact[strip_slash(path)] = value
    return self
  end
  local prefix = path:sub(-2) == "/*"
  local segs = segments(prefix and path:sub(1, -3) or path)
  local literal = 0
  for _, s in ipairs(segs) do
    if s:sub(1, 1) ~= ":" then literal = literal + 1
    elseif #s == 1 then error("route " .. path .. ": a capture needs a name (/:name)", 3) end
    if s == "*" then error("route " .. path .. ": '*' only at the end (/prefix/*)", 3) end
  end
  -- the same pattern again replaces it, as an exact path's does
  for _, q in ipairs(self.patterns) do
    if q.path == path then
      q.value = value
      return self
    end
  end
  local p = { path = path, segs = segs, prefix = prefix, literal = literal, value = value,
              order = #self.patterns + 1 }
  self.patterns[#self.patterns + 1] = p
  table.sort(self.patterns, function(a, b)
    if a.prefix ~= b.prefix then return not a.prefix end        -- whole patterns first
    if #a.segs ~= #b.segs and a.prefix then return #a.segs > #b.segs end   -- longest prefix
    if a.literal ~= b.literal then return a.literal > b.literal end
    return a.order < b.order
  end)
  return self
end

local function match_pattern(p, segs)
  local n = #p.segs
  if #segs < n or (not p.prefix and #segs ~= n) then return nil end
  local params = {}
  for i = 1, n do
    local want = p.segs[i]
    if want:sub(1, 1) == ":" then
      local v = M.unescape(segs[i])
      if not v or v == "" or v:find("/", 1, true) or v:find("%z") then return nil end
      params[want:sub(2)] = v
    elseif want ~= segs[i] then
      return nil
    end
  end
  if p.prefix then params["*"] = table.concat(segs, "/", n + 1) end
  return params
end

--- The value of the route matching path (the request target without its
-- query), and the captures: value, params; or nil.
---@param path string
---@return any value
---@return table<string, string>? params
function Router:match(path)
  local v = self.exact[strip_slash(path)]
  if v ~= nil then return v, {} end
  if #self.patterns == 0 then return nil end
  local segs = segments(path)
  for _, p in ipairs(self.patterns) do
    local params = match_pattern(p, segs)
    if params then
      -- a prefix route "/static/*" also takes "/static/" (and "/static")
      if p.prefix and path:sub(-1) == "/" and params["*"] ~= "" then params["*"] = params["*"] .. "/" end
      return p.value, params
    end
  end
  return nil
end

return M
