/* ws.tls_context: certificates, keys and settings TLS sessions share. */
#include <string.h>

#include "ws_tls.h"

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"
/* ---- TLS ---------------------------------------------------------------- */

/* tls_context{ mode = "server"|"client", certificate, key, password,
 *   cafile, capath, verify = 0|1|2 (none, peer, require), ciphers,
 *   ciphersuites, min_version = 12|13 } -> context | nil, err
 * verify defaults to 2 for a client, 0 for a server. Strings must be
 * plain values in the table (they are read while it is alive). */
static int l_tls_context(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    ws_tls_opts o;
    memset(&o, 0, sizeof o);
    const char *mode = ws_opt_str(L, 1, "mode");
    luaL_argcheck(L, mode && (strcmp(mode, "server") == 0 || strcmp(mode, "client") == 0), 1,
                  "mode must be \"server\" or \"client\"");
    o.server = mode[0] == 's';
    o.certificate = ws_opt_str(L, 1, "certificate");
    o.key = ws_opt_str(L, 1, "key");
    o.password = ws_opt_str(L, 1, "password");
    o.cafile = ws_opt_str(L, 1, "cafile");
    o.capath = ws_opt_str(L, 1, "capath");
    o.ciphers = ws_opt_str(L, 1, "ciphers");
    o.ciphersuites = ws_opt_str(L, 1, "ciphersuites");
    lua_Integer v = ws_opt_int(L, 1, "verify", o.server ? 0 : 2);
    luaL_argcheck(L, v >= 0 && v <= 2, 1, "verify must be 0, 1 or 2");
    o.verify = (int)v;
    lua_Integer mv = ws_opt_int(L, 1, "min_version", 12);
    luaL_argcheck(L, mv == 12 || mv == 13, 1, "min_version must be 12 or 13");
    o.min_version = (int)mv;
    /* born closed, then filled: a failure in between leaves nothing to free */
    ltlsctx *c = (ltlsctx *)lua_newuserdatauv(L, sizeof *c, 0);
    c->ctx = NULL;
    luaL_setmetatable(L, TLSCTX_MT);
    char err[256];
    c->ctx = ws_tls_ctx_new(&o, err, sizeof err);
    if (!c->ctx)
        return ws_fail(L, err);
    return 1;
}

static int l_tlsctx_gc(lua_State *L) {
    ltlsctx *c = (ltlsctx *)luaL_checkudata(L, 1, TLSCTX_MT);
    ws_tls_ctx_free(c->ctx);      /* sessions keep their own reference */
    c->ctx = NULL;
    return 0;
}

static int l_tlsctx_tostring(lua_State *L) {
    ltlsctx *c = (ltlsctx *)luaL_checkudata(L, 1, TLSCTX_MT);
    if (!c->ctx)
        lua_pushliteral(L, "ws.tls_context (closed)");
    else
        lua_pushfstring(L, "ws.tls_context (%s): %p",
                        ws_tls_ctx_is_server(c->ctx) ? "server" : "client", (void *)c);
    return 1;
}

/* fd:starttls(context [, server_name]) -> true | nil, err
 * Puts a TLS session on the connection; the handshake is fd:handshake().
 * A client sends server_name as SNI and checks the certificate against it. */
static const luaL_Reg tlsctx_methods[] = {
    {"close", l_tlsctx_gc},
    {NULL, NULL}
};

static const luaL_Reg tlsctx_meta[] = {
    {"__gc", l_tlsctx_gc},
    {"__close", l_tlsctx_gc},
    {"__tostring", l_tlsctx_tostring},
    {NULL, NULL}
};


void ws_open_tls(lua_State *L) {
    ws_new_type(L, TLSCTX_MT, tlsctx_meta, tlsctx_methods, 0);
    lua_pushcfunction(L, l_tls_context);
    lua_setfield(L, -2, "tls_context");
}
