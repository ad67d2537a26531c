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
ws:// / wss:// client on LuaSocket; TLS (wss://) on OpenSSL's libssl.
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
   -- wss:// runs on OpenSSL's libssl through ws.core; "luasec" is needed
   -- only for LuaSec sockets an application hands to ws.accept or ws.connect.
}
external_dependencies = {
   OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
   CRYPTO = { header = "openssl/sha.h", library = "crypto" },
   ZLIB = { header = "zlib.h", library = "z" },
}
build = {
   type = "builtin",
   modules = {
      ["ws.core"] = {
         sources = {
            "csrc/ws_core.c", "csrc/l_codec.c", "csrc/l_reader.c", "csrc/l_fd.c", "csrc/l_tls.c",
            "csrc/l_deflate.c", "csrc/l_poller.c", "csrc/ws_crypto.c", "csrc/ws_handshake.c",
            "csrc/ws_frame.c", "csrc/ws_reader.c", "csrc/ws_utf8.c", "csrc/ws_io.c", "csrc/ws_deflate.c",
            "csrc/ws_tls.c", "csrc/ws_core_sys.c", "csrc/ws_proxy.c", "csrc/ws_fanout.c",
            "csrc/l_resolve.c", "csrc/ws_resolve.c",
         },
         libraries = { "ssl", "crypto", "z", "pthread", "dl" },   -- (ws_resolve.c: its lookup thread, and dlopen)
         incdirs = { "$(OPENSSL_INCDIR)", "$(CRYPTO_INCDIR)", "$(ZLIB_INCDIR)", "csrc" },
         libdirs = { "$(OPENSSL_LIBDIR)", "$(CRYPTO_LIBDIR)", "$(ZLIB_LIBDIR)" },
      },
      ["ws"] = "lua/ws/init.lua",
      ["ws.loop"] = "lua/ws/loop.lua",
      ["ws.protocol"] = "lua/ws/protocol.lua",
      ["ws.connection"] = "lua/ws/connection.lua",
      ["ws.server"] = "lua/ws/server.lua",
      ["ws.client"] = "lua/ws/client.lua",
      ["ws.io"] = "lua/ws/io.lua",
      ["ws.http"] = "lua/ws/http.lua",
      ["ws.deflate"] = "lua/ws/deflate.lua",
      ["ws.log"] = "lua/ws/log.lua",
      ["ws.tls"] = "lua/ws/tls.lua",
      ["ws.sched"] = "lua/ws/sched.lua",
      ["ws.cqueues"] = "lua/ws/cqueues.lua",
      ["ws.luv"] = "lua/ws/luv.lua",
      ["ws.copas"] = "lua/ws/copas.lua",
      ["ws.proxy"] = "lua/ws/proxy.lua",
      ["ws.fanout"] = "lua/ws/fanout.lua",
      ["ws.drain"] = "lua/ws/drain.lua",
      ["ws.workers"] = "lua/ws/workers.lua",
      ["ws.resp"] = "lua/ws/resp.lua",
      ["ws.redis"] = "lua/ws/redis.lua",
      ["ws.resolve"] = "lua/ws/resolve.lua",
      ["ws.hub"] = "lua/ws/hub.lua",
      ["ws.options"] = "lua/ws/options.lua",
      ["ws.router"] = "lua/ws/router.lua",
      ["ws.static"] = "lua/ws/static.lua",
      ["ws.cli"] = "lua/ws/cli.lua",
      ["ws.tunnel"] = "lua/ws/tunnel.lua",
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
