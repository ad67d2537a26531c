/* ws.resolver: a name lookup on a thread of its own (ws_resolve.c), with
 * the socket methods a scheduler waits on (getfd, dirty, settimeout), and
 * the blocking and numeric lookups. Addresses go to Lua as
 * { { family = "inet" | "inet6", addr = "numeric" }, ... }. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"

#include "ws_resolve.h"

#include "ws_binding.h"

#define RESOLVER_MT "ws.resolver"

typedef struct {
    ws_resolve *r;            /* NULL once closed */
} lresolver;

static const char *check_host(lua_State *L) {
    size_t len;
    const char *host = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len > 0 && strlen(host) == len, 1, "host name expected");
    return host;
}

static void push_addrs(lua_State *L, const ws_addr *a, int n) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, a[i].family == 6 ? "inet6" : "inet");
        lua_setfield(L, -2, "family");
        lua_pushstring(L, a[i].addr);
        lua_setfield(L, -2, "addr");
        lua_rawseti(L, -2, i + 1);
    }
}

static int fail_resolve(lua_State *L, const char *host, ws_resolve_err e) {
    lua_pushnil(L);
    lua_pushfstring(L, "resolve %s: %s", host, ws_resolve_strerror(e));
    return 2;
}

/* resolve_numeric(host) -> addrs (one) | nil: host as a numeric address,
 * never a lookup */
static int l_resolve_numeric(lua_State *L) {
    ws_addr a;
    if (!ws_resolve_numeric(check_host(L), &a)) {
        lua_pushnil(L);
        return 1;
    }
    push_addrs(L, &a, 1);
    return 1;
}

/* resolve_now(host) -> addrs | nil, "resolve HOST: why": getaddrinfo here
 * (it blocks: for callers outside any loop) */
static int l_resolve_now(lua_State *L) {
    const char *host = check_host(L);
    ws_addr a[WS_RESOLVE_MAX];
    ws_resolve_err e;
    int n = ws_resolve_now(host, a, WS_RESOLVE_MAX, &e);
    if (n == 0)
        return fail_resolve(L, host, e);
    push_addrs(L, a, n);
    return 1;
}

/* resolver(host) -> ws.resolver | nil, err: the lookup started */
static int l_resolver(lua_State *L) {
    const char *host = check_host(L);
    lresolver *u = (lresolver *)lua_newuserdatauv(L, sizeof *u, 1);
    u->r = NULL;
    luaL_setmetatable(L, RESOLVER_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);   /* the host, for errors */
    u->r = ws_resolve_start(host);
    if (!u->r)
        return ws_fail(L, lua_pushfstring(L, "resolve %s: %s", host, strerror(errno)));
    return 1;
}

static lresolver *check_resolver(lua_State *L) {
    return (lresolver *)luaL_checkudata(L, 1, RESOLVER_MT);
}

/* r:result() -> addrs | false (not done yet) | nil, "resolve HOST: why" */
static int l_resolver_result(lua_State *L) {
    lresolver *u = check_resolver(L);
    if (!u->r)
        return luaL_error(L, "ws.resolver is closed");
    const ws_addr *a;
    int n;
    ws_resolve_err e;
    if (!ws_resolve_result(u->r, &a, &n, &e)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (n == 0) {
        lua_getiuservalue(L, 1, 1);
        return fail_resolve(L, lua_tostring(L, -1), e);
    }
    push_addrs(L, a, n);
    return 1;
}

static int l_resolver_getfd(lua_State *L) {
    lresolver *u = check_resolver(L);
    lua_pushinteger(L, u->r ? ws_resolve_fd(u->r) : -1);
    return 1;
}

static int l_resolver_dirty(lua_State *L) {
    check_resolver(L);
    lua_pushboolean(L, 0);
    return 1;
}

/* r:close() -> true if the lookup was still running (its thread ends on
 * its own). Idempotent; also __gc and __close. */
static int l_resolver_close(lua_State *L) {
    lresolver *u = check_resolver(L);
    int running = 0;
    if (u->r) {
        running = ws_resolve_release(u->r);
        u->r = NULL;
    }
    lua_pushboolean(L, running);
    return 1;
}

static int l_resolver_tostring(lua_State *L) {
    lresolver *u = check_resolver(L);
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "ws.resolver: %s%s", lua_tostring(L, -1), u->r ? "" : " (closed)");
    return 1;
}

/* resolvers() -> lookups not finished or not released yet in this process */
static int l_resolvers(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)ws_resolve_live());
    return 1;
}

/* resolver_threads() -> lookup threads running in this process (at most
 * resolver_threads_max, core's WS_RESOLVE_THREADS; more lookups queue) */
static int l_resolver_threads(lua_State *L) {
    lua_pushinteger(L, ws_resolve_threads());
    return 1;
}

static const luaL_Reg resolver_methods[] = {
    {"result", l_resolver_result},
    {"getfd", l_resolver_getfd},
    {"dirty", l_resolver_dirty},
    {"settimeout", l_resolver_dirty},
    {"close", l_resolver_close},
    {NULL, NULL}
};

static const luaL_Reg resolver_meta[] = {
    {"__gc", l_resolver_close},
    {"__close", l_resolver_close},
    {"__tostring", l_resolver_tostring},
    {NULL, NULL}
};

static const luaL_Reg funcs[] = {
    {"resolve_numeric", l_resolve_numeric},
    {"resolve_now", l_resolve_now},
    {"resolver", l_resolver},
    {"resolvers", l_resolvers},
    {"resolver_threads", l_resolver_threads},
    {NULL, NULL}
};

void ws_open_resolve(lua_State *L) {
    ws_new_type(L, RESOLVER_MT, resolver_meta, resolver_methods, 0);
    luaL_setfuncs(L, funcs, 0);
    lua_pushinteger(L, WS_RESOLVE_THREADS);
    lua_setfield(L, -2, "resolver_threads_max");
}
