rockspec_format = "3.0"
package = "lua-ws"
version = "0.1.0-1"
source = {
   url = "git+https://github.com/lua-ws/lua-ws.git",
   tag = "v0.1.0",
}
description = {
   summary = "Strict, fast RFC 6455 WebSockets for Lua: C codec, LuaSocket server and client",
   detailed = [[
A WebSocket library whose codec (handshake, frames, masking, UTF-8, reader)
is plain C on OpenSSL's libcrypto, with a coroutine server loop and a
ws:// / wss:// client on LuaSocket (and LuaSec for TLS).
]],
   license = "MIT",
   homepage = "https://github.com/lua-ws/lua-ws",
   labels = { "websocket", "networking", "server", "client" },
}
-- The C core calls accept4, MSG_NOSIGNAL and epoll (Linux).
supported_platforms = { "linux" }
dependencies = {
   "lua >= 5.1, < 5.5",   -- 5.1, LuaJIT 2.1, 5.3, 5.4 tested by make test (5.2 builds too)
   "luasocket >= 3.0",
   -- wss:// needs "luasec"; it is loaded only when used.
}
external_dependencies = {
   CRYPTO = { header = "openssl/sha.h", library = "crypto" },
   ZLIB = { header = "zlib.h", library = "z" },
}
build = {
   type = "builtin",
   modules = {
      ["ws.core"] = {
         sources = {
            "csrc/ws_core.c", "csrc/ws_crypto.c", "csrc/ws_handshake.c",
            "csrc/ws_frame.c", "csrc/ws_reader.c", "csrc/ws_utf8.c", "csrc/ws_io.c", "csrc/ws_deflate.c",
         },
         libraries = { "crypto", "z" },
         incdirs = { "$(CRYPTO_INCDIR)", "$(ZLIB_INCDIR)", "csrc" },
         libdirs = { "$(CRYPTO_LIBDIR)", "$(ZLIB_LIBDIR)" },
      },
      ["ws"] = "lua/ws/init.lua",
      ["ws.loop"] = "lua/ws/loop.lua",
      ["ws.connection"] = "lua/ws/connection.lua",
      ["ws.server"] = "lua/ws/server.lua",
      ["ws.client"] = "lua/ws/client.lua",
      ["ws.io"] = "lua/ws/io.lua",
      ["ws.deflate"] = "lua/ws/deflate.lua",
      ["ws.log"] = "lua/ws/log.lua",
      ["ws.options"] = "lua/ws/options.lua",
      ["ws.router"] = "lua/ws/router.lua",
      ["ws.static"] = "lua/ws/static.lua",
      ["ws.cli"] = "lua/ws/cli.lua",
   },
   install = {
      bin = { ws = "bin/ws" },
   },
   copy_directories = { "docs", "types" },   -- the API reference and the LuaLS definitions
}
-- `luarocks test`: the fast, in-process subset (codec, handshake, options,
-- routes, client and server in one loop) against this source tree, with the
-- busted from Debian's lua-busted (see scripts/luarocks-test.lua).
test = {
   type = "command",
   script = "scripts/luarocks-test.lua",
}
