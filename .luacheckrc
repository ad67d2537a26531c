-- luacheck configuration: `luacheck .` (run by make check and make test).
std = "max"                      -- code for 5.1 .. 5.4 and LuaJIT (spec/bits.lua, loop.lua shims)
include_files = { "**/*.lua", "bin/ws", "*.rockspec", ".busted", ".luacheckrc" }
exclude_files = { "spec/interop/node_modules", ".rocks*", "build" }
read_globals = { "jit" }
files["spec"] = { std = "+busted" }
files["*.rockspec"] = { std = "+rockspec" }
files[".busted"] = { std = "+busted" }
max_line_length = 130
self = false                     -- scheduler adapters implement an interface: self may go unused
-- specs and examples hold long assertion messages and inline HTML
files["spec"].max_line_length = 160
files["examples"] = { max_line_length = 160 }
-- LuaLS definition files: declarations only (generated lines run long)
files["types"] = { ignore = { "211", "212", "241", "631" } }
