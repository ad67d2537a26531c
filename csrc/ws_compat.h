/* ws_compat.h: the parts of the Lua 5.4 C API that ws_core.c uses, for
 * Lua 5.1, LuaJIT 2.1, 5.2 and 5.3. Included by ws_core.c only, right
 * after lua.h and lauxlib.h; on 5.4 it adds nothing.
 *
 *   5.4   everything is native
 *   5.3   one user value per userdata (lua_setuservalue), no lua_newuserdatauv
 *   5.2   as 5.3, but the user value must be a table; lua_Integer truncates
 *   5.1   no user values: the userdata's environment table holds them;
 *         no luaL_buffinitsize/luaL_pushresultsize; lua_Integer truncates
 *   LuaJIT 2.1 (reports 5.1) adds luaL_setfuncs, luaL_setmetatable and
 *         luaL_newlib, detected by luaL_newlib being a macro
 *
 * User values are used for one thing only (ws.reader pins the Lua string
 * it is reading from), so only what that needs is shimmed: a userdata made
 * with lua_newuserdatauv(L, sz, n) may have user values 1..n set and read.
 */
#ifndef WS_COMPAT_H
#define WS_COMPAT_H

#include <stddef.h>
#include <stdint.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM < 504

/* An index that stays valid after pushes (negative ones are relative). */
static inline int ws_absindex(lua_State *L, int idx) {
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

#if LUA_VERSION_NUM == 503

/* 5.3 has exactly one user value per userdata, of any type. */
static inline void *ws_newuserdatauv(lua_State *L, size_t sz, int nuv) {
    (void)nuv;
    return lua_newuserdata(L, sz);
}

static inline int ws_setiuservalue(lua_State *L, int idx, int n) {
    if (n != 1) {
        lua_pop(L, 1);
        return 0;
    }
    lua_setuservalue(L, idx);
    return 1;
}

static inline int ws_getiuservalue(lua_State *L, int idx, int n) {
    if (n != 1) {
        lua_pushnil(L);
        return LUA_TNONE;
    }
    return lua_getuservalue(L, idx);
}

#else /* 5.1, LuaJIT, 5.2 */

/* The user values live in a table of their own: the userdata's
 * environment (5.1, LuaJIT) or its user value (5.2, which must be a table). */
#if LUA_VERSION_NUM == 501
#define ws_setudtable lua_setfenv
#define ws_getudtable lua_getfenv
#else
#define ws_setudtable lua_setuservalue
#define ws_getudtable lua_getuservalue
#endif

static inline void *ws_newuserdatauv(lua_State *L, size_t sz, int nuv) {
    void *p = lua_newuserdata(L, sz);
    if (nuv > 0) {
        lua_createtable(L, nuv, 0);
        ws_setudtable(L, -2);
    }
    return p;
}

/* pops the value; only for a userdata made with nuv >= n (in 5.1 any other
 * userdata's environment is a shared table, usually the globals) */
static inline int ws_setiuservalue(lua_State *L, int idx, int n) {
    idx = ws_absindex(L, idx);
    ws_getudtable(L, idx);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        return 0;
    }
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, n);
    lua_pop(L, 2);
    return 1;
}

static inline int ws_getiuservalue(lua_State *L, int idx, int n) {
    idx = ws_absindex(L, idx);
    ws_getudtable(L, idx);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return LUA_TNONE;
    }
    lua_rawgeti(L, -1, n);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

/* 5.1 and 5.2 truncate a non-integral number to lua_Integer (and overflow
 * silently); 5.3+ raise. Raise here too, so that every version refuses
 * opcode 1.5 or a size of 2^70 alike. */
static inline lua_Integer ws_checkinteger(lua_State *L, int arg) {
    lua_Number n = luaL_checknumber(L, arg);
    /* lua_Integer is ptrdiff_t in 5.1/5.2: [-2^(w-1), 2^(w-1)) */
    const lua_Number lim = -(lua_Number)PTRDIFF_MIN;
    if (!(n >= -lim && n < lim) || (lua_Number)(lua_Integer)n != n)
        luaL_argerror(L, arg, "number has no integer representation");
    return (lua_Integer)n;
}

static inline lua_Integer ws_optinteger(lua_State *L, int arg, lua_Integer def) {
    return lua_isnoneornil(L, arg) ? def : ws_checkinteger(L, arg);
}

#undef luaL_checkinteger
#undef luaL_optinteger
#define luaL_checkinteger ws_checkinteger
#define luaL_optinteger ws_optinteger

#endif /* user values, integers */

#define lua_newuserdatauv ws_newuserdatauv
#define lua_setiuservalue ws_setiuservalue
#define lua_getiuservalue ws_getiuservalue

#if LUA_VERSION_NUM == 501

#define lua_rawlen lua_objlen

/* luaL_buffinitsize/luaL_pushresultsize (5.2+): a buffer of sz bytes to
 * fill, then pushed as a string of sz bytes. Up to LUAL_BUFFERSIZE the
 * luaL_Buffer's own space is used; beyond, a userdata on the stack (the
 * stack must be as buffinitsize left it, as 5.2+ require as well). */
static inline char *ws_buffinitsize(lua_State *L, luaL_Buffer *B, size_t sz) {
    luaL_buffinit(L, B);
    if (sz <= LUAL_BUFFERSIZE)
        return luaL_prepbuffer(B);                /* B->p == B->buffer */
    B->p = (char *)lua_newuserdata(L, sz);        /* the box; B->p != B->buffer */
    return B->p;
}

static inline void ws_pushresultsize(luaL_Buffer *B, size_t sz) {
    if (B->p == B->buffer) {
        luaL_addsize(B, sz);
        luaL_pushresult(B);
    } else {
        lua_pushlstring(B->L, B->p, sz);
        lua_remove(B->L, -2);                     /* the box */
    }
}

#define luaL_buffinitsize ws_buffinitsize
#define luaL_pushresultsize ws_pushresultsize

/* PUC 5.1 only: LuaJIT 2.1 has these (and defines luaL_newlib). */
#ifndef luaL_newlib
static inline void ws_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name != NULL; l++) {
        for (int i = 0; i < nup; i++)       /* each function gets the upvalues */
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

static inline void ws_setmetatable(lua_State *L, const char *tname) {
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}

#define luaL_setfuncs ws_setfuncs
#define luaL_setmetatable ws_setmetatable
#define luaL_newlibtable(L, l) lua_createtable(L, 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#define luaL_newlib(L, l) (luaL_newlibtable(L, l), luaL_setfuncs(L, l, 0))
#endif

#endif /* 5.1 */

#endif /* < 5.4 */

#endif
