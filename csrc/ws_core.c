/* ws.core: luaopen_ws_core, which wires the binding files (l_*.c,
 * ws_core_sys.c: one per type, as luv does) into one module, and the helpers
 * they share. The binding files are the only ones that know Lua.
 * Convention: wrong argument types raise; bad input data returns nil, err. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"

/* permessage-deflate output above this is not kept between messages */
#define KEEP_ZBUF (1024 * 1024)

void ws_zbuf_trim(lzctx *z) {
    if (z->buf.cap > KEEP_ZBUF) {
        free(z->buf.p);
        z->buf.p = NULL;
        z->buf.cap = 0;
    }
}

ws_zbuf ws_zbuf_lend(lzctx *z) {
    ws_zbuf b = z->buf;
    z->buf.p = NULL;
    z->buf.cap = 0;
    return b;
}

void ws_zbuf_back(lzctx *z, ws_zbuf b) {
    free(z->buf.p);               /* what a nested call made, if any */
    z->buf = b;
}

void ws_push_zbuf(lua_State *L, lzctx *z, size_t n) {
    ws_zbuf b = ws_zbuf_lend(z);
    lua_pushlstring(L, (const char *)b.p, n);   /* 5.1, LuaJIT: a GC step, then the copy */
    ws_zbuf_back(z, b);
    ws_zbuf_trim(z);
}

int ws_fail(lua_State *L, const char *err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

void ws_new_type(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods,
                 int nup) {
    luaL_newmetatable(L, name);             /* ups, mt */
    luaL_setfuncs(L, meta, 0);
    lua_insert(L, -(nup + 1));              /* mt, ups */
    lua_newtable(L);
    lua_insert(L, -(nup + 1));              /* mt, index, ups */
    luaL_setfuncs(L, methods, nup);         /* mt, index */
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

void *ws_toudata_up(lua_State *L, int idx, int up) {
    void *p = lua_touserdata(L, idx);
    if (!p || !lua_getmetatable(L, idx))
        return NULL;
    int same = lua_rawequal(L, -1, lua_upvalueindex(up));   /* (0 if there is no such upvalue) */
    lua_pop(L, 1);
    return same ? p : NULL;
}

int ws_fail_errno(lua_State *L, int err) {
    return ws_fail(L, ws_errno_token(err));
}

lua_Integer ws_opt_int(lua_State *L, int t, const char *k, lua_Integer d) {
    lua_getfield(L, t, k);
    lua_Integer v = lua_isnil(L, -1) ? d : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

int ws_check_fdnum(lua_State *L, int idx) {
    lua_Integer fd = luaL_checkinteger(L, idx);
    /* a cast alone would turn 2^32 + 1 into descriptor 1 */
    luaL_argcheck(L, fd >= -1 && fd <= INT_MAX, idx, "descriptor out of range");
    return (int)fd;
}

/* A string field, or NULL if nil. Only a real string: one converted from a
 * number would be referenced by nothing once popped, and callers keep the
 * pointer across allocations (a GC step could free it). */
const char *ws_opt_str(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    int type = lua_type(L, -1);
    if (type != LUA_TNIL && type != LUA_TSTRING)
        luaL_error(L, "option '%s' must be a string, not a %s", k, lua_typename(L, type));
    const char *v = type == LUA_TNIL ? NULL : lua_tostring(L, -1);
    lua_pop(L, 1);                /* (the string stays referenced by the table) */
    return v;
}

/* realpath(path) -> the absolute path with every symlink, "." and ".."
 * resolved, or nil, err (ws.static keeps files inside their folder). */
static int l_realpath(lua_State *L) {
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    if (strlen(path) != len) return ws_fail(L, "path contains a NUL byte");
    char *resolved = realpath(path, NULL);
    if (!resolved) return ws_fail(L, strerror(errno));
    lua_pushstring(L, resolved);
    free(resolved);
    return 1;
}

/* file_info(path) -> size, mtime (seconds), "file" | "directory" | "other",
 * mtime's nanoseconds, or nil, err (ws.static's ETag and its check for
 * regular files; the nanoseconds tell apart two writes of one size within
 * a second). */
static int l_file_info(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) return ws_fail(L, strerror(errno));
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "other");
    lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_nsec);
    return 4;
}

/* new_table(narr, nrec) -> a table sized for narr array items and nrec
 * fields: an object filled field by field is then never rehashed (a
 * connection has about 50 fields, set by two layers). */
static int l_new_table(lua_State *L) {
    lua_Integer narr = luaL_checkinteger(L, 1), nrec = luaL_checkinteger(L, 2);
    luaL_argcheck(L, narr >= 0 && narr <= 1 << 20, 1, "0..2^20 expected");
    luaL_argcheck(L, nrec >= 0 && nrec <= 1 << 20, 2, "0..2^20 expected");
    lua_createtable(L, (int)narr, (int)nrec);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"new_table", l_new_table},
    {"realpath", l_realpath},
    {"file_info", l_file_info},
    {NULL, NULL}
};


static int l_zctx_gc(lua_State *L) {
    lzctx *z = (lzctx *)lua_touserdata(L, 1);
    ws_deflate_shared_free(&z->sh);
    memset(&z->keys, 0, sizeof z->keys);
    free(z->buf.p);
    z->buf.p = NULL;
    z->buf.cap = 0;
    return 0;
}

/* the one symbol ws/core.so exports (the csrc/ headers declare the rest hidden) */
int luaopen_ws_core(lua_State *L) {
    /* One per Lua state, kept by the registry: a ws.deflate points into it
     * and may outlive the load that made it (package.loaded cleared and
     * required again). Made before any ws.deflate, so finalised after them all. */
    lua_getfield(L, LUA_REGISTRYINDEX, "ws.core.zctx");
    int zctx = lua_gettop(L);
    if (lua_isnil(L, zctx)) {
        lzctx *zc = (lzctx *)lua_newuserdatauv(L, sizeof *zc, 0);
        memset(zc, 0, sizeof *zc);
        zc->keys.pos = sizeof zc->keys.buf;
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, l_zctx_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "ws.core.zctx");
        lua_replace(L, zctx);
    }
    lua_newuserdatauv(L, SHARED_READ, 0);   /* the shared read buffer */
    int shared = lua_gettop(L);
    luaL_newlibtable(L, funcs);
    luaL_setfuncs(L, funcs, 0);
    ws_open_codec(L, zctx);
    ws_open_reader(L, shared, zctx);
    ws_open_fd(L, shared, zctx);
    ws_open_tls(L);
    ws_open_deflate(L, zctx);
    ws_open_resolve(L);
#ifdef WS_HAVE_EPOLL
    ws_open_poller(L);
#endif
    ws_core_sys_register(L);
    lua_replace(L, zctx);                   /* the module; the rest is kept by upvalues */
    lua_settop(L, zctx);
    return 1;
}
