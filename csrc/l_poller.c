/* ws.poller: epoll, where the platform has it. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "ws_io.h"

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"
#ifdef WS_HAVE_EPOLL
typedef struct {
    int ep;
    int spin_miss;   /* the last wait ran past its spin: do not spin next time */
} lpoller;

static lpoller *check_poller(lua_State *L) {
    lpoller *p = (lpoller *)luaL_checkudata(L, 1, POLLER_MT);
    if (p->ep < 0)
        luaL_error(L, "attempt to use a closed poller");
    return p;
}

/* epoll() -> poller | nil, err */
static int l_epoll(lua_State *L) {
    lpoller *p = (lpoller *)lua_newuserdatauv(L, sizeof *p, 0);
    p->ep = -1;
    p->spin_miss = 0;
    luaL_setmetatable(L, POLLER_MT);
    p->ep = ws_poll_open();
    if (p->ep < 0)
        return ws_fail(L, strerror(errno));
    return 1;
}

static int l_poller_watch(lua_State *L) {
    lpoller *p = check_poller(L);
    if (ws_poll_watch(p->ep, ws_check_fdnum(L, 2)) != 0)
        return ws_fail(L, strerror(errno));
    lua_pushboolean(L, 1);
    return 1;
}

static int l_poller_unwatch(lua_State *L) {
    lpoller *p = check_poller(L);
    ws_poll_unwatch(p->ep, ws_check_fdnum(L, 2));
    return 0;
}

/* fd, or map[fd] (false for none: an array has no holes) */
static void push_ready(lua_State *L, int fd, int map) {
    if (!map) {
        lua_pushinteger(L, fd);
        return;
    }
    lua_rawgeti(L, 6, fd);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 0);
    }
}

/* poller:wait(timeout_s|nil, rfds, wfds [, rclean [, map [, spin_s [, wmap]]]]) -> nr, nw:
 * fills the arrays with the ready descriptors, or with map[fd] (false if none)
 * when a map is given (ws.loop: its sockets, without a Lua loop per event);
 * wmap: write edges sorted here, not in Lua (every read edge of a socket
 * registered for both directions says "writable" too): one whose wmap[fd]
 * is a waiter (not a boolean) is reported as wmap[fd], which is removed;
 * any other sets wmap[fd] = true, an edge nobody took yet (ws.loop);
 * rclean[i] = true when the i-th readable event came without hang-up or
 * error (no EPOLLRDHUP/EPOLLHUP/EPOLLERR): no FIN waits behind its data,
 * and whatever comes after the wait raises a new edge, so a short plain
 * read after it proves the socket drained (reader:next's trust_short) */
static int l_poller_wait(lua_State *L) {
    lpoller *p = check_poller(L);
    int ms = -1;
    if (!lua_isnoneornil(L, 2)) {
        lua_Number t = luaL_checknumber(L, 2);
        /* (int) of NaN or of a double out of range is undefined (x86: INT_MIN, forever) */
        luaL_argcheck(L, t == t, 2, "timeout is NaN");
        ms = t <= 0 ? 0 : t > 2e6 ? 2000000000 : (int)(t * 1000 + 0.999);
    }
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    int clean = !lua_isnoneornil(L, 5);
    if (clean)
        luaL_checktype(L, 5, LUA_TTABLE);
    int map = !lua_isnoneornil(L, 6);
    if (map)
        luaL_checktype(L, 6, LUA_TTABLE);
    int wmap = !lua_isnoneornil(L, 8);
    if (wmap)
        luaL_checktype(L, 8, LUA_TTABLE);
    ws_poll_event ev[256];
    /* 7: spin, seconds of polling without sleep first (see ws_poll_wait),
     * only while it pays: after a wait that ended within the spin (events
     * come that soon), not after one that ran past it (which also slept) */
    lua_Number spin = luaL_optnumber(L, 7, 0);
    luaL_argcheck(L, spin == spin, 7, "spin is NaN");
    int spin_us = spin <= 0 ? 0 : spin > 1 ? 1000000 : (int)(spin * 1e6);
    long long waited = 0;
    int n = ws_poll_wait(p->ep, ev, 256, ms, p->spin_miss ? 0 : spin_us, spin_us ? &waited : NULL);
    if (spin_us && ms != 0)
        p->spin_miss = waited >= spin_us;
    if (n < 0)
        return ws_fail(L, strerror(errno));
    lua_Integer nr = 0, nw = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].readable) {
            push_ready(L, ev[i].fd, map);
            lua_rawseti(L, 3, ++nr);
            if (clean) {
                lua_pushboolean(L, !ev[i].hangup);
                lua_rawseti(L, 5, nr);
            }
        }
        if (ev[i].writable && wmap) {
            lua_rawgeti(L, 8, ev[i].fd);
            int t = lua_type(L, -1);
            if (t == LUA_TNIL || t == LUA_TBOOLEAN) {
                lua_pop(L, 1);
                if (t == LUA_TNIL) {
                    lua_pushboolean(L, 1);
                    lua_rawseti(L, 8, ev[i].fd);
                }
                continue;
            }
            lua_rawseti(L, 4, ++nw);
            lua_pushnil(L);
            lua_rawseti(L, 8, ev[i].fd);
        } else if (ev[i].writable) {
            push_ready(L, ev[i].fd, map);
            lua_rawseti(L, 4, ++nw);
        }
    }
    lua_pushinteger(L, nr);
    lua_pushinteger(L, nw);
    return 2;
}

/* poller:fd() -> the epoll descriptor, readable while an event is pending:
 * another event loop watches it to nest ours (ws.loop:pollfd) */
static int l_poller_fd(lua_State *L) {
    lua_pushinteger(L, check_poller(L)->ep);
    return 1;
}

static int l_poller_gc(lua_State *L) {
    lpoller *p = (lpoller *)luaL_checkudata(L, 1, POLLER_MT);
    if (p->ep >= 0) {
        ws_fd_close(p->ep);
        p->ep = -1;
    }
    return 0;
}

static int l_poller_tostring(lua_State *L) {
    lpoller *p = (lpoller *)luaL_checkudata(L, 1, POLLER_MT);
    if (p->ep < 0)
        lua_pushliteral(L, "ws.poller (closed)");
    else
        lua_pushfstring(L, "ws.poller: %d", p->ep);
    return 1;
}

static const luaL_Reg poller_methods[] = {
    {"watch", l_poller_watch},
    {"unwatch", l_poller_unwatch},
    {"wait", l_poller_wait},
    {"fd", l_poller_fd},
    {"close", l_poller_gc},
    {NULL, NULL}
};

static const luaL_Reg poller_meta[] = {
    {"__gc", l_poller_gc},
    {"__close", l_poller_gc},
    {"__tostring", l_poller_tostring},
    {NULL, NULL}
};

void ws_open_poller(lua_State *L) {
    ws_new_type(L, POLLER_MT, poller_meta, poller_methods, 0);
    lua_pushcfunction(L, l_epoll);
    lua_setfield(L, -2, "epoll");
}
#endif
