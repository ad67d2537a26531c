-- `luarocks test` (the rockspec's test section runs this with the Lua it was
-- asked for): the fast subset of the busted suite, `busted --run=fast`
-- (see .busted), against this source tree and the ws.core that
-- `luarocks make` built into ./ws/. Needs busted (Debian: lua-busted).
local lua = arg[-1] or "lua"
local busted
for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
  local f = io.open(dir .. "/busted")
  if f then f:close(); busted = dir .. "/busted"; break end
end
if not busted then
  io.stderr:write("luarocks test: busted not found (apt-get install lua-busted, or luarocks install busted)\n")
  os.exit(1)
end
-- the interpreter reads LUA_PATH_5_x before LUA_PATH: set them all
local path, cpath = "./lua/?.lua;./lua/?/init.lua;;", "./?.so;;"
local env = {}
for _, v in ipairs { "", "_5_1", "_5_2", "_5_3", "_5_4" } do
  env[#env + 1] = string.format("LUA_PATH%s='%s' LUA_CPATH%s='%s'", v, path, v, cpath)
end
local cmd = string.format("env %s LUA=%s %s %s -o plainTerminal --run=fast %s",
  table.concat(env, " "), lua, lua, busted, table.concat(arg, " "))
local ok, _, code = os.execute(cmd)
if type(ok) == "number" then code = ok / 256; ok = code == 0 end   -- Lua 5.1
os.exit(ok and 0 or (code or 1))
