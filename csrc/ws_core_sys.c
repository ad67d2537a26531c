/* ws.core, deployment part: listeners (SO_REUSEPORT, inherited), fork and
 * wait, signals as a descriptor the loop can wait on, and the PROXY
 * protocol header. Bound here, apart from the codec bindings in ws_core.c;
 * the system calls are in ws_io.c, the parser in ws_proxy.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"

#include "ws_io.h"
#include "ws_proxy.h"

#include "ws_binding.h"

#define SIGNALS_MT "ws.signals"

/* descriptors that are not connections, processes, signals: errno as
 * strerror says it (connections use ws_fail_errno) */
static int fail_strerror(lua_State *L, int err) {
    return ws_fail(L, strerror(err));
}

/* a ws.fd userdata owning fd (the type is ws_core.c's) */
#define push_fd ws_core_push_fd

/* listen(host, port, backlog, reuseport) -> ws.fd | nil, err */
static int l_listen(lua_State *L) {
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);   /* (checked before any cast: 2^32 + 80 is not 80) */
    lua_Integer backlog = luaL_optinteger(L, 3, 4096);
    int reuseport = lua_toboolean(L, 4);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
    /* (an int in listen(2): a larger one would wrap, to a small or negative backlog) */
    luaL_argcheck(L, backlog >= 1 && backlog <= INT_MAX, 3, "backlog out of range");
    int gai = 0;
    int fd = ws_fd_listen(host, (int)port, (int)backlog, reuseport, &gai);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushstring(L, gai ? gai_strerror(gai) : ws_errno_token(errno));
        return 2;
    }
    push_fd(L, fd);
    return 1;
}

/* listen_fd(n) -> ws.fd for an inherited listening descriptor | nil, err */
static int l_listen_fd(lua_State *L) {
    int fd = ws_check_fdnum(L, 1);
    if (ws_fd_adopt_listener(fd) != 0) {
        if (errno != EINVAL)
            return fail_strerror(L, errno);
        lua_pushnil(L);
        lua_pushliteral(L, "not a listening socket");
        return 2;
    }
    push_fd(L, fd);
    return 1;
}

/* fd:getsockname() -> ip, port, "inet"|"inet6" | nil, err */
static int l_fd_getsockname(lua_State *L) {
    int fd = ws_core_check_fd(L, 1);
    char ip[64];
    int port = 0;
    int fam = fd < 0 ? (errno = EBADF, -1) : ws_fd_sockname(fd, ip, sizeof ip, &port);
    if (fam < 0)
        return ws_fail_errno(L, errno);
    lua_pushstring(L, ip);
    lua_pushinteger(L, port);
    lua_pushstring(L, fam == 6 ? "inet6" : "inet");
    return 3;
}

/* ---- PROXY protocol ----------------------------------------------------- */

/* { version, family (4, 6 or absent), src, src_port, dst, dst_port } */
static void push_info(lua_State *L, const ws_proxy_info *info) {
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, info->version);
    lua_setfield(L, -2, "version");
    if (info->family) {
        lua_pushinteger(L, info->family);
        lua_setfield(L, -2, "family");
        lua_pushstring(L, info->src);
        lua_setfield(L, -2, "src");
        lua_pushinteger(L, info->src_port);
        lua_setfield(L, -2, "src_port");
        lua_pushstring(L, info->dst);
        lua_setfield(L, -2, "dst");
        lua_pushinteger(L, info->dst_port);
        lua_setfield(L, -2, "dst_port");
    }
}

/* proxy_header(fd) -> info | nil, "timeout" (incomplete) | nil, "closed"
 * (incomplete, and the peer sends no more) | nil, err.
 * Peeks, so that exactly the header is consumed and the bytes after it (a
 * TLS ClientHello, an HTTP request) stay in the socket for whoever reads
 * next. info = { version, family (4, 6 or nil), src, src_port, dst, dst_port } */
static int l_proxy_header(lua_State *L) {
    int fd = ws_check_fdnum(L, 1);
    unsigned char buf[WS_PROXY_MAX];
    ssize_t n = ws_fd_peek(fd, buf, sizeof buf);
    if (n == 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (n < 0) {
        return ws_fail_errno(L, errno);
    }
    ws_proxy_info info;
    const char *why = "invalid";
    int r = ws_proxy_parse(buf, (size_t)n, &info, &why);
    if (r == 0) {
        /* short, and the peer has stopped sending (FIN, RST): no more
         * will come, and the wait that woke us had its only edge, so
         * another would last until the handshake deadline */
        lua_pushnil(L);
        if (ws_fd_hungup(fd))
            lua_pushliteral(L, "closed");
        else
            lua_pushliteral(L, "timeout");
        return 2;
    }
    if (r < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "PROXY protocol: %s", why);
        return 2;
    }
    if (ws_fd_read(fd, buf, (size_t)r) != r)   /* what was peeked is there */
        return ws_fail_errno(L, errno);
    push_info(L, &info);
    return 1;
}

/* proxy_parse(bytes) -> length, info | 0 (incomplete) | nil, err: the
 * parser on a string, for tests */
static int l_proxy_parse(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    ws_proxy_info info;
    const char *why = "invalid";
    int r = ws_proxy_parse((const unsigned char *)s, n, &info, &why);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    lua_pushinteger(L, r);
    if (r == 0)
        return 1;
    push_info(L, &info);
    return 2;
}

/* inet_pton(text) -> 4 or 16 address bytes | nil; an IPv4-mapped IPv6
 * address gives its 4 IPv4 bytes, so ::ffff:10.0.0.1 matches 10.0.0.0/8 */
static int l_inet_pton(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    unsigned char b[16];
    if (inet_pton(AF_INET, s, b) == 1) {
        lua_pushlstring(L, (const char *)b, 4);
        return 1;
    }
    if (inet_pton(AF_INET6, s, b) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, 12) == 0)
            lua_pushlstring(L, (const char *)b + 12, 4);
        else
            lua_pushlstring(L, (const char *)b, 16);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* ---- signals -------------------------------------------------------------- */

static const struct { const char *name; int sig; } SIGNALS[] = {
    {"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"CHLD", SIGCHLD}, {"KILL", SIGKILL},
    {NULL, 0}
};

static int sig_of(lua_State *L, int arg) {
    const char *name = luaL_checkstring(L, arg);
    if (strncmp(name, "SIG", 3) == 0)
        name += 3;
    for (int i = 0; SIGNALS[i].name; i++)
        if (strcmp(name, SIGNALS[i].name) == 0)
            return SIGNALS[i].sig;
    return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'", name));
}

static const char *name_of(int sig) {
    for (int i = 0; SIGNALS[i].name; i++)
        if (SIGNALS[i].sig == sig)
            return SIGNALS[i].name;
    return "?";
}

#define MAX_SIGS 8
typedef struct {
    int fd;
    int n;
    int sigs[MAX_SIGS];
} lsignals;

static lsignals *check_signals(lua_State *L) {
    return (lsignals *)luaL_checkudata(L, 1, SIGNALS_MT);
}

/* signals({ "TERM", "INT", ... }) -> a ws.signals | nil, err: the signals
 * are blocked and queue in a descriptor (getfd) a loop can wait on */
static int l_signals(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_rawlen(L, 1);
    luaL_argcheck(L, n > 0 && n <= MAX_SIGS, 1, "1 to 8 signal names");
    lsignals *s = (lsignals *)lua_newuserdatauv(L, sizeof *s, 0);
    s->fd = -1;
    s->n = n;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        s->sigs[i] = sig_of(L, -1);
        luaL_argcheck(L, s->sigs[i] != SIGKILL, 1, "KILL cannot be caught");
        lua_pop(L, 1);
    }
    luaL_setmetatable(L, SIGNALS_MT);
    s->fd = ws_signals_block(s->sigs, n, 1);
    if (s->fd < 0)
        return fail_strerror(L, errno);
    return 1;
}

/* s:next([timeout]) -> name | nil, "timeout" | nil, err: timeout in
 * seconds (nil or 0: do not wait; negative: forever) */
static int l_signals_next(lua_State *L) {
    lsignals *s = check_signals(L);
    double t = luaL_optnumber(L, 2, 0);
    /* (int) of NaN or of a double out of range is undefined: refuse, clamp */
    luaL_argcheck(L, t == t, 2, "timeout is NaN");
    if (s->fd < 0)
        return fail_strerror(L, EBADF);
    int r = ws_signals_next(s->fd, t < 0 ? -1 : t > 2e6 ? 2000000000 : (int)(t * 1000 + 0.5));
    if (r < 0)
        return fail_strerror(L, errno);
    if (r == 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "timeout");
        return 2;
    }
    lua_pushstring(L, name_of(r));
    return 1;
}

static int l_signals_getfd(lua_State *L) {
    lua_pushinteger(L, check_signals(L)->fd);
    return 1;
}

static int l_signals_dirty(lua_State *L) {
    check_signals(L);
    lua_pushboolean(L, 0);
    return 1;
}

/* Discard pending signals and unblock them, but those named in the list
 * at stack index keep (0: none) stay blocked. Idempotent. */
static void signals_release(lua_State *L, lsignals *s, int keep) {
    if (s->fd < 0)
        return;
    int rel[MAX_SIGS], n = 0;
    for (int i = 0; i < s->n; i++) {
        int kept = 0;
        if (keep) {
            int k = (int)lua_rawlen(L, keep);
            for (int j = 1; j <= k && !kept; j++) {
                lua_rawgeti(L, keep, j);
                kept = sig_of(L, -1) == s->sigs[i];
                lua_pop(L, 1);
            }
        }
        if (!kept)
            rel[n++] = s->sigs[i];
    }
    ws_signals_release(s->fd, rel, n);
    s->fd = -1;
}

/* close([keep]): release the signals, but those named in the list keep
 * (they stay blocked: a forked worker keeps TERM blocked until its own loop
 * reads it, so none is lost in between) */
static int l_signals_close(lua_State *L) {
    lsignals *s = check_signals(L);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    signals_release(L, s, lua_istable(L, 2) ? 2 : 0);
    return 0;
}

/* __gc, __close: release them all (__close's second argument is an error
 * value, not a keep list) */
static int l_signals_gc(lua_State *L) {
    signals_release(L, check_signals(L), 0);
    return 0;
}

static int l_signals_tostring(lua_State *L) {
    lsignals *s = check_signals(L);
    if (s->fd < 0) {
        lua_pushliteral(L, "ws.signals (closed)");
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "ws.signals: ");
    for (int i = 0; i < s->n; i++) {
        if (i)
            luaL_addstring(&b, ", ");
        luaL_addstring(&b, name_of(s->sigs[i]));
    }
    lua_pushfstring(L, " (fd %d)", s->fd);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    return 1;
}

/* ---- processes ------------------------------------------------------------ */

/* fork([die_with_parent]) -> pid (0 in the child) | nil, err */
static int l_fork(lua_State *L) {
    long pid = ws_fork(lua_toboolean(L, 1));
    if (pid < 0)
        return fail_strerror(L, errno);
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

/* reap() -> pid, "exit"|"signal", status or signal name | nil (none ended) */
static int l_reap(lua_State *L) {
    int how = 0, code = 0;
    long pid = ws_reap(&how, &code);
    if (pid <= 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)pid);
    if (how == 's') {
        lua_pushliteral(L, "signal");
        lua_pushstring(L, name_of(code));
    } else {
        lua_pushliteral(L, "exit");
        lua_pushinteger(L, code);
    }
    return 3;
}

/* kill(pid, name) -> true | nil, err */
static int l_kill(lua_State *L) {
    lua_Integer pid = luaL_checkinteger(L, 1);
    int sig = sig_of(L, 2);
    /* pid_t is an int: 2^32 - 1 would become -1 (every process we may signal) */
    luaL_argcheck(L, pid > 0 && pid <= INT_MAX, 1, "pid must be 1..INT_MAX");
    if (ws_kill((long)pid, sig) != 0)
        return fail_strerror(L, errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* heap_keep(bytes) -> true (glibc's malloc now keeps up to bytes of freed
 * heap, blocks up to min(bytes, 32 MiB) from the heap) | false (not glibc) */
static int l_heap_keep(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "must be >= 0");
    lua_pushboolean(L, ws_heap_keep((size_t)n));
    return 1;
}

/* heap_trim(keep) -> true if free heap went back to the kernel (glibc:
 * only when more than keep bytes are free) */
static int l_heap_trim(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "must be >= 0");
    lua_pushboolean(L, ws_heap_trim((size_t)n));
    return 1;
}

static int l_cpu_count(lua_State *L) {
    long n = ws_cpu_count();
    lua_pushinteger(L, n > 0 ? (lua_Integer)n : 1);
    return 1;
}

static int l_getpid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)ws_getpid());
    return 1;
}

static const luaL_Reg signals_methods[] = {
    {"next", l_signals_next},
    {"getfd", l_signals_getfd},
    {"dirty", l_signals_dirty},
    {"settimeout", l_signals_dirty},
    {"close", l_signals_close},
    {NULL, NULL}
};

static const luaL_Reg signals_meta[] = {
    {"__gc", l_signals_gc},
    {"__close", l_signals_gc},
    {"__tostring", l_signals_tostring},
    {NULL, NULL}
};

static const luaL_Reg funcs[] = {
    {"listen", l_listen},
    {"listen_fd", l_listen_fd},
    {"proxy_header", l_proxy_header},
    {"proxy_parse", l_proxy_parse},
    {"inet_pton", l_inet_pton},
    {"signals", l_signals},
    {"fork", l_fork},
    {"reap", l_reap},
    {"kill", l_kill},
    {"cpu_count", l_cpu_count},
    {"heap_keep", l_heap_keep},
    {"heap_trim", l_heap_trim},
    {"getpid", l_getpid},
    {NULL, NULL}
};

/* Add these functions to the module table on top of the stack (called by
 * luaopen_ws_core after ws.fd's metatable exists). */
int ws_core_sys_register(lua_State *L) {
    luaL_setfuncs(L, funcs, 0);
    luaL_newmetatable(L, SIGNALS_MT);
    luaL_setfuncs(L, signals_meta, 0);
    luaL_newlib(L, signals_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    /* listeners are ws.fd too: give that type getsockname */
    luaL_getmetatable(L, FD_MT);
    lua_getfield(L, -1, "__index");
    lua_pushcfunction(L, l_fd_getsockname);
    lua_setfield(L, -2, "getsockname");
    lua_pop(L, 2);
    return 0;
}
