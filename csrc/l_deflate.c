/* ws.deflate: permessage-deflate (RFC 7692) state of one connection. */
#define _GNU_SOURCE
#include <string.h>

#include "ws_deflate.h"

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"
ldeflate *ws_check_deflate(lua_State *L, int idx) {
    ldeflate *z = (ldeflate *)luaL_checkudata(L, idx, DEFLATE_MT);
    if (!z->live)
        luaL_error(L, "attempt to use a closed deflate");
    return z;
}

static ws_deflate *check_deflate(lua_State *L) {
    return &ws_check_deflate(L, 1)->d;
}

/* deflate{ level = 6, out_bits = 15, in_bits = 15, out_reset = false, in_reset = false } */
static int l_deflate(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer level = ws_opt_int(L, 1, "level", 6);
    lua_Integer ob = ws_opt_int(L, 1, "out_bits", 15);
    lua_Integer ib = ws_opt_int(L, 1, "in_bits", 15);
    luaL_argcheck(L, level >= 0 && level <= 9, 1, "level must be 0..9");
    luaL_argcheck(L, ob >= 8 && ob <= 15 && ib >= 8 && ib <= 15, 1, "window bits must be 8..15");
    lua_getfield(L, 1, "out_reset");
    int out_reset = lua_toboolean(L, -1);
    lua_getfield(L, 1, "in_reset");
    int in_reset = lua_toboolean(L, -1);
    lua_pop(L, 2);
    ldeflate *z = (ldeflate *)lua_newuserdatauv(L, sizeof *z, 0);
    z->live = 0;
    luaL_setmetatable(L, DEFLATE_MT);
    /* streams shared by connections with no context takeover are borrowed
     * from the lzctx; own ones are made on first use */
    ws_deflate_init(&z->d, (int)level, (int)ob, (int)ib, out_reset, in_reset, &ZCTX(1)->sh);
    z->live = 1;
    return 1;
}

static int push_zbuf(lua_State *L, lzctx *zc, size_t n) {
    ws_push_zbuf(L, zc, n);
    return 1;
}

/* d:compress(message) -> compressed payload (tail stripped) */
static int l_deflate_compress(lua_State *L) {
    ws_deflate *d = check_deflate(L);
    size_t n, len;
    const char *s = luaL_checklstring(L, 2, &n);
    lzctx *zc = ZCTX(1);
    if (ws_deflate_compress(d, (const unsigned char *)s, n, &zc->buf, &len) != WS_DEFLATE_OK)
        return luaL_error(L, "not enough memory");
    return push_zbuf(L, zc, len);
}

/* d:decompress(payload [, max]) -> message | nil, "message too big" | "invalid compressed data" */
static int l_deflate_decompress(lua_State *L) {
    ws_deflate *d = check_deflate(L);
    size_t n, len;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_Integer max = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, max >= 0, 3, "max must be >= 0");
    lzctx *zc = ZCTX(1);
    int rc = ws_deflate_decompress(d, (const unsigned char *)s, n, (size_t)max, &zc->buf, &len);
    if (rc != WS_DEFLATE_OK)
        ws_zbuf_trim(zc);
    if (rc == WS_DEFLATE_TOO_BIG)
        return ws_fail(L, "message too big");
    if (rc == WS_DEFLATE_BAD)
        return ws_fail(L, "invalid compressed data");
    if (rc != WS_DEFLATE_OK)
        return luaL_error(L, "not enough memory");
    return push_zbuf(L, zc, len);
}

/* d:stats() -> { deflated = messages, wire_out = their compressed bytes,
 *                inflated = messages, wire_in = their compressed bytes,
 *                streams = zlib streams held of its own (0..2) } */
static int l_deflate_stats(lua_State *L) {
    /* the counters outlive close(): a connection's totals, read after it ended */
    ws_deflate *d = &((ldeflate *)luaL_checkudata(L, 1, DEFLATE_MT))->d;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, d->out_live + d->in_live);
    lua_setfield(L, -2, "streams");
    lua_pushinteger(L, (lua_Integer)d->msgs_out);
    lua_setfield(L, -2, "deflated");
    lua_pushinteger(L, (lua_Integer)d->wire_out);
    lua_setfield(L, -2, "wire_out");
    lua_pushinteger(L, (lua_Integer)d->msgs_in);
    lua_setfield(L, -2, "inflated");
    lua_pushinteger(L, (lua_Integer)d->wire_in);
    lua_setfield(L, -2, "wire_in");
    return 1;
}

/* close(), __gc, __close: frees its own zlib streams (never the shared ones) */
static int l_deflate_gc(lua_State *L) {
    ldeflate *z = (ldeflate *)luaL_checkudata(L, 1, DEFLATE_MT);
    if (z->live) {
        ws_deflate_free(&z->d);
        z->live = 0;
    }
    return 0;
}

static int l_deflate_tostring(lua_State *L) {
    ldeflate *z = (ldeflate *)luaL_checkudata(L, 1, DEFLATE_MT);
    if (!z->live)
        lua_pushliteral(L, "ws.deflate (closed)");
    else
        lua_pushfstring(L, "ws.deflate: %p", (void *)z);
    return 1;
}

static const luaL_Reg deflate_methods[] = {
    {"compress", l_deflate_compress},
    {"decompress", l_deflate_decompress},
    {"stats", l_deflate_stats},
    {"close", l_deflate_gc},
    {NULL, NULL}
};

static const luaL_Reg deflate_meta[] = {
    {"__gc", l_deflate_gc},
    {"__close", l_deflate_gc},
    {"__tostring", l_deflate_tostring},
    {NULL, NULL}
};


void ws_open_deflate(lua_State *L, int zctx) {
    lua_pushvalue(L, zctx);
    ws_new_type(L, DEFLATE_MT, deflate_meta, deflate_methods, 1);
    lua_pushvalue(L, zctx);
    lua_pushcclosure(L, l_deflate, 1);
    lua_setfield(L, -2, "deflate");
}
