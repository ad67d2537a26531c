/* What the binding files (ws_core.c, l_*.c, ws_core_sys.c) share. The only
 * header besides the Lua ones that knows of lua_State. */
#ifndef WS_BINDING_H
#define WS_BINDING_H

#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>

#include "ws_crypto.h"
#include "ws_deflate.h"
#include "ws_frame.h"
#include "ws_io.h"
#include "ws_tls.h"

/* Every csrc/ header declares its functions hidden (after its system
 * includes, which must keep their own visibility): ws/core.so exports
 * luaopen_ws_core alone, whatever CFLAGS luarocks is given. */
#pragma GCC visibility push(hidden)

#define FD_MT "ws.fd"
#define READER_MT "ws.reader"
#define POLLER_MT "ws.poller"
#define DEFLATE_MT "ws.deflate"
#define TLSCTX_MT "ws.tls_context"
#define FRAMEBUF_MT "ws.framebuf"

/* One read buffer shared by every reader and ws.fd: input left over after
 * an event is copied out, so an idle connection holds no read buffer. */
#define SHARED_READ (256 * 1024)

/* Per Lua state: the zlib streams connections with no context takeover
 * borrow, one output buffer every (de)compression writes into before its
 * result becomes a Lua string or goes to the socket, and the client's mask
 * keys. An upvalue of the functions that use them. */
typedef struct {
    ws_deflate_shared sh;
    ws_zbuf buf;
    ws_mask_keys keys;        /* client mask keys (frame(..., mask = true)) */
} lzctx;

#define ZCTX(i) ((lzctx *)lua_touserdata(L, lua_upvalueindex(i)))

/* A connection accepted here (or adopted by wrap_fd) is a bare descriptor
 * with the part of the LuaSocket API the library and LuaSec use (receive,
 * send, close, shutdown, getfd/setfd, getpeername, settimeout, dirty,
 * setoption), and optionally our TLS session on it (starttls): an idle
 * connection then costs a few bytes, not LuaSocket's 8 KiB buffer. */
typedef struct {
    int fd;                   /* -1 once closed or handed over (setfd) */
    ws_tls *tls;              /* NULL: plain TCP */
} lfd;

/* ws.deflate; d first: the reader keeps a pointer to it */
typedef struct {
    ws_deflate d;
    int live;                 /* 0 until made and once closed */
} ldeflate;

typedef struct {
    ws_tls_ctx *ctx;          /* NULL once closed */
} ltlsctx;

/* ws_core.c: helpers */
int ws_fail(lua_State *L, const char *err);            /* nil, err */
int ws_fail_errno(lua_State *L, int err);             /* nil, ws_errno_token(err) */
/* A descriptor number at idx: -1 (none, as getfd of a closed one) ..
 * INT_MAX; raises on any other. */
int ws_check_fdnum(lua_State *L, int idx);
lua_Integer ws_opt_int(lua_State *L, int t, const char *k, lua_Integer d);
const char *ws_opt_str(lua_State *L, int t, const char *k);
void ws_zbuf_trim(lzctx *z);                          /* drop a big output buffer */
/* While z->buf holds a result, any Lua allocation (a GC step) may run a
 * finalizer that (de)compresses again into z->buf, overwriting or moving
 * it. Around such an allocation, lend the buffer out of z (a nested call
 * then fills one of its own, freed when it comes back): no copy and no
 * malloc unless a call nests. (An error raised in between leaks it.) */
ws_zbuf ws_zbuf_lend(lzctx *z);
void ws_zbuf_back(lzctx *z, ws_zbuf b);
/* push z->buf[0 .. n) as a string, lent meanwhile; then ws_zbuf_trim */
void ws_push_zbuf(lua_State *L, lzctx *z, size_t n);
/* Make metatable name: meta's metamethods and an __index of methods, which
 * share the nup upvalues on top of the stack (popped). */
void ws_new_type(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods,
                 int nup);

/* l_codec.c */
int ws_check_opcode(lua_State *L, int idx);
extern const char *const ws_kind_names[];   /* by opcode: "text", "ping", ... */
/* l_deflate.c: the open ws.deflate at idx; raises if it is not one or closed */
ldeflate *ws_check_deflate(lua_State *L, int idx);
/* The userdata at idx if its metatable is upvalue up of the running C
 * function, else NULL: a type check without luaL_checkudata's lookup of
 * the metatable by name (about 350 instructions; a message took three). */
void *ws_toudata_up(lua_State *L, int idx, int up);
/* l_fd.c: what reader:next and send_frame read from / write to; mt_up: the
 * upvalue holding ws.fd's metatable (0: none, luaL_checkudata) */
lfd ws_check_io(lua_State *L, int idx, int mt_up);
size_t ws_io_read(const lfd *c, void *buf, size_t n, const char **err);
/* l_fd.c: push a new ws.fd owning descriptor fd (plain, no TLS). */
void ws_core_push_fd(lua_State *L, int fd);
/* l_fd.c: the descriptor of the ws.fd at idx (-1 once closed); raises
 * if it is not a ws.fd. */
int ws_core_check_fd(lua_State *L, int idx);

/* Each adds its functions to the module table on top of the stack (and
 * makes its metatable); zctx and shared are stack indexes of the lzctx and
 * of the shared read buffer. */
void ws_open_codec(lua_State *L, int zctx);
void ws_open_reader(lua_State *L, int shared, int zctx);
void ws_open_fd(lua_State *L, int shared, int zctx);
void ws_open_tls(lua_State *L);
void ws_open_deflate(lua_State *L, int zctx);
void ws_open_resolve(lua_State *L);
#ifdef WS_HAVE_EPOLL
void ws_open_poller(lua_State *L);
#endif
/* ws_core_sys.c: the deployment functions (listeners, signals, processes,
 * PROXY). */
int ws_core_sys_register(lua_State *L);

#pragma GCC visibility pop

#endif
