--- Static files for server:static(prefix, folder): a page handler that
-- serves the files under a folder with their MIME type, an ETag (answering
-- If-None-Match with 304) and HEAD, and refuses every path that could leave
-- the folder: "..", encoded "%2e%2e" or "%2f", backslashes, NUL bytes, and
-- symlinks that resolve outside it (404, logged as a refusal).
-- @module ws.static
local core = require "ws.core"
local router = require "ws.router"

local M = {}

--- MIME types by lower-case extension; anything else is application/octet-stream.
M.TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8", json = "application/json",
  txt = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  xml = "application/xml", csv = "text/csv; charset=utf-8",
  svg = "image/svg+xml", png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg",
  gif = "image/gif", webp = "image/webp", ico = "image/x-icon", avif = "image/avif",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
  wasm = "application/wasm", pdf = "application/pdf", map = "application/json",
  mp3 = "audio/mpeg", ogg = "audio/ogg", wav = "audio/wav", mp4 = "video/mp4", webm = "video/webm",
}

--- The MIME type for a file name.
---@param name string
---@return string
function M.mime_type(name)
  local ext = name:match("%.([%w]+)$")
  return ext and M.TYPES[ext:lower()] or "application/octet-stream"
end

--- Check the part of a request path below the prefix (still percent-encoded)
-- and return the relative file path it names, or nil, reason. Pure: the
-- file system is not consulted (see M.resolve for symlinks).
---@param rest string
---@return string? relative
---@return string? reason
function M.clean(rest)
  if rest:find("%%2[fF]") or rest:find("%%5[cC]") then return nil, "encoded slash" end
  local path = router.unescape(rest)
  if not path then return nil, "malformed escape" end
  if path:find("%z") then return nil, "NUL byte" end
  if path:find("\\", 1, true) then return nil, "backslash" end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then return nil, "parent directory" end
    if seg:sub(1, 1) == "." then return nil, "hidden file" end   -- .git, .env, and "."
    parts[#parts + 1] = seg
  end
  if path == "" or path:sub(-1) == "/" then parts[#parts + 1] = "index.html" end
  return table.concat(parts, "/")
end

--- Resolve relative (from M.clean) inside root (an absolute, resolved
-- folder): the real path, or nil, reason when it is missing or leaves root.
---@param root string
---@param relative string
---@return string? path
---@return string? reason
function M.resolve(root, relative)
  local real, err = core.realpath(root .. "/" .. relative)
  if not real then return nil, err end
  local base = root:sub(-1) == "/" and root or root .. "/"   -- (root "/" itself)
  if real:sub(1, #base) ~= base then return nil, "outside the folder" end
  return real
end

-- The ETag of a regular file (modification time, to the nanosecond, and
-- size), or nil and the kind ("directory", ...) for anything else.
local function etag_of(path)
  local size, mtime, kind, ns = core.file_info(path)
  if kind ~= "file" then return nil, kind end
  return string.format('"%x.%x-%x"', mtime, ns, size)
end

--- A page handler function(request) -> status, body, headers serving folder;
-- the body of a 200 is the open file, which the server streams (and closes).
-- opts.log: logger(level, message, fields) for refusals.
---@param folder string
---@param opts? { log: fun(level: string, message: string, fields: table?) }
---@return fun(request: table): integer, string|file*, table
function M.handler(folder, opts)
  local log = opts and opts.log or function() end
  local root, err = core.realpath(folder)
  if not root then error("static: folder '" .. tostring(folder) .. "': " .. tostring(err), 3) end
  return function(request)
    local rest = request.params and request.params["*"] or ""
    local rel, why = M.clean(rest)
    local path = rel
    if rel then path, why = M.resolve(root, rel) end
    local etag, kind
    if path then etag, kind = etag_of(path) end
    -- a folder named without its slash, the prefix's own too ("/app" for
    -- "/app/"): sent where its index.html is served (relative links in it
    -- resolve against the slash)
    local bare = rest == "" and request.path:sub(-1) ~= "/"
    if bare or (kind == "directory" and rest:sub(-1) ~= "/") then
      local q = request.query
      return 301, "", { Location = request.path .. "/" .. (q and "?" .. q or "") }
    end
    if not etag then
      if why and why ~= "No such file or directory" then
        log("info", "static: refused " .. request.path .. ": " .. why, { path = request.path })
      end
      return 404, "not found\n"
    end
    -- (the type of the name asked for, not of a symlink's target)
    local headers = { ["Content-Type"] = M.mime_type(rel), ETag = etag, ["Cache-Control"] = "no-cache" }
    local inm = request.headers["if-none-match"]
    if inm then
      for tag in inm:gmatch("[^,%s]+") do
        if tag == etag or tag == "W/" .. etag or tag == "*" then return 304, "", headers end
      end
    end
    -- streamed by the server in 64 KiB pieces: neither read whole nor held
    local f = io.open(path, "rb")
    if not f then return 404, "not found\n" end
    return 200, f, headers
  end
end

return M
