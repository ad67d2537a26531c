/* ws.reader: frames in, messages and control events out. */
#define _GNU_SOURCE
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"
#include "ws_reader.h"

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"
/* input left over after an event, up to this, keeps its own buffer */
#define KEEP_LEFTOVER 4096
/* Reads one reader:next(fd) makes at most before it returns "again" (the
 * caller lets the other tasks run, then calls again): a message that keeps
 * coming (many small TLS records, or tiny fragments) must not hold the
 * loop until it is whole. 16 reads: up to 4 MiB plain, 1,024 TLS records. */
#define READS_PER_CALL 16

/* The userdata holds the C reader and the chunk being consumed; the chunk
 * string is pinned in the user value so the pointer stays valid. */
typedef struct {
    ws_reader r;
    int live;                 /* 0 once closed */
    const char *in;           /* current input: a pinned Lua string, the shared buffer, or own */
    size_t in_len, in_pos;
    char *own;                /* leftover input copied out of the shared buffer */
    size_t own_cap;
    ldeflate *z;              /* permessage-deflate: RSV1 messages are inflated here */
    int drained;              /* the last read was a short plain read, not yet reported */
} lreader;

/* (methods have the reader's metatable as upvalue 3: see ws_open_reader) */
static lreader *check_reader(lua_State *L) {
    lreader *lr = (lreader *)ws_toudata_up(L, 1, 3);
    if (!lr)
        lr = (lreader *)luaL_checkudata(L, 1, READER_MT);
    if (!lr->live)
        luaL_error(L, "attempt to use a closed reader");
    return lr;
}

/* reader{ role = "server"|"client", max_message = n (0 = none), rsv_allowed = bits,
 *         deflate = ws.deflate object (messages with RSV1 come out inflated) };
 * new_reader(role, max_message, rsv_allowed, deflate): the same options as
 * arguments (ws.protocol's form: no table per connection) */
static int make_reader(lua_State *L, int args) {
    if (!args)
        luaL_checktype(L, 1, LUA_TTABLE);
    ws_reader_opts o;
    memset(&o, 0, sizeof o);
    if (!args)
        lua_getfield(L, 1, "role");
    const char *role = luaL_optstring(L, args ? 1 : -1, "server");
    if (strcmp(role, "server") == 0)
        o.role = WS_ROLE_SERVER;
    else if (strcmp(role, "client") == 0)
        o.role = WS_ROLE_CLIENT;
    else
        return luaL_argerror(L, 1, "role must be \"server\" or \"client\"");
    if (!args)
        lua_pop(L, 1);
    lua_Integer max = args ? luaL_optinteger(L, 2, 0) : ws_opt_int(L, 1, "max_message", 0);
    luaL_argcheck(L, max >= 0, args ? 2 : 1, "max_message must be >= 0");
    o.max_message = (uint64_t)max;
    lua_Integer rsv = args ? luaL_optinteger(L, 3, 0) : ws_opt_int(L, 1, "rsv_allowed", 0);
    luaL_argcheck(L, rsv >= 0 && rsv <= 7, args ? 3 : 1, "rsv_allowed out of range");
    o.rsv_allowed = (int)rsv;
    if (args)
        lua_settop(L, 4);
    else
        lua_getfield(L, 1, "deflate");
    ldeflate *z = lua_isnil(L, -1) ? NULL : ws_check_deflate(L, -1);

    /* born closed, then filled: a failure in between leaves nothing to free */
    lreader *lr = (lreader *)lua_newuserdatauv(L, sizeof *lr, 2);
    memset(lr, 0, sizeof *lr);
    luaL_setmetatable(L, READER_MT);
    ws_reader_init(&lr->r, &o);
    lr->live = 1;
    lr->z = z;
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, 2);   /* the deflate object lives as long as the reader */
    return 1;
}

static int l_reader(lua_State *L) { return make_reader(L, 0); }

static int l_new_reader(lua_State *L) {
    luaL_checktype(L, 1, LUA_TSTRING);
    return make_reader(L, 1);
}

/* reader:feed(chunk): input for next(); unconsumed input is kept in front. */
static int l_reader_feed(lua_State *L) {
    lreader *lr = check_reader(L);
    size_t n;
    luaL_checklstring(L, 2, &n);
    if (lr->in_pos < lr->in_len) {
        /* an event stopped the last chunk early: rare, so just concatenate */
        lua_pushlstring(L, lr->in + lr->in_pos, lr->in_len - lr->in_pos);
        lua_pushvalue(L, 2);
        lua_concat(L, 2);
    } else {
        lua_pushvalue(L, 2);
    }
    lr->in = lua_tolstring(L, -1, &lr->in_len);
    lr->in_pos = 0;
    lua_setiuservalue(L, 1, 1);
    return 0;
}

static int push_error(lua_State *L, const ws_reader *r) {
    lua_pushnil(L);
    lua_pushstring(L, r->error ? r->error : "protocol error");
    lua_pushinteger(L, r->error_code ? r->error_code : 1002);
    return 3;
}

/* the kind name of an opcode ("text", ...): upvalue 5 of the reader's
 * methods holds them, so no lua_pushstring (a string-cache lookup and a
 * strcmp) per message */
static void push_kind(lua_State *L, int opcode) {
    lua_rawgeti(L, lua_upvalueindex(5), opcode + 1);
}

static int push_event(lua_State *L, const ws_event *ev) {
    push_kind(L, ev->opcode);
    lua_pushlstring(L, (const char *)ev->data, ev->len);
    if (ev->opcode == WS_OP_CLOSE) {
        lua_pushinteger(L, ev->close_code);
        lua_pushlstring(L, (const char *)ev->reason, ev->reason_len);
        return 4;
    }
    if (ev->rsv) {
        lua_pushinteger(L, ev->rsv);
        return 3;
    }
    return 2;
}

/* A message with RSV1 on a reader with deflate: inflated (at most
 * max_message bytes), text checked for UTF-8, pushed as kind, message. A
 * failure fails the reader like a protocol error: nil, reason, close code. */
static int push_inflated(lua_State *L, lreader *lr, const ws_event *ev, lzctx *zc) {
    if (!lr->z->live)
        return luaL_error(L, "attempt to use a closed deflate");
    size_t n = 0;
    int rc = ws_deflate_decompress(&lr->z->d, ev->data, ev->len, (size_t)lr->r.opts.max_message, &zc->buf, &n);
    if (rc == WS_DEFLATE_NOMEM)
        return luaL_error(L, "not enough memory");
    if (rc == WS_DEFLATE_TOO_BIG)
        lr->r.error_code = 1009, lr->r.error = "message too big";
    else if (rc != WS_DEFLATE_OK)
        lr->r.error_code = 1007, lr->r.error = "invalid compressed data";
    else if (ev->opcode == WS_OP_TEXT && !ws_utf8_valid(zc->buf.p, n))
        lr->r.error_code = 1007, lr->r.error = "invalid utf-8";
    else {
        ws_push_zbuf(L, zc, n);
        push_kind(L, ev->opcode);
        lua_insert(L, -2);
        return 2;
    }
    ws_zbuf_trim(zc);
    return push_error(L, &lr->r);
}

/* The shared-read-buffer rule. One SHARED_READ buffer per Lua state
 * (an upvalue) takes every reader:next(fd) read and every ws.fd:receive.
 * It belongs to the call that fills it, for that call only: the next call,
 * on any reader or ws.fd, overwrites it. So no reader may return while its
 * input (lr->in) points into the shared buffer with bytes left: every way
 * out of reader:next either has dropped its input or copies the leftover
 * out with keep_leftover (and asserts SHARED_RULE). A new way out, or a
 * new user of the buffer, must do the same. */
#define SHARED_RULE(lr, shared) ((lr)->in != (shared) || (lr)->in_pos >= (lr)->in_len)

/* Input after an event still sits in the shared buffer, which the next
 * reader will overwrite: move it to this reader's own buffer. */
static int keep_leftover(lreader *lr, const char *shared) {
    if (lr->in != shared || lr->in_pos >= lr->in_len)
        return 0;
    size_t left = lr->in_len - lr->in_pos;
    if (lr->own_cap < left) {
        char *p = (char *)realloc(lr->own, left);
        if (!p)
            return -1;
        lr->own = p;
        lr->own_cap = left;
    }
    memcpy(lr->own, lr->in + lr->in_pos, left);
    lr->in = lr->own;
    lr->in_len = left;
    lr->in_pos = 0;
    return 0;
}

/* Forget the consumed input; keep the leftover buffer if at most keep bytes. */
static void drop_input(lua_State *L, lreader *lr, size_t keep) {
    if (lr->own && lr->own_cap > keep) {
        free(lr->own);
        lr->own = NULL;
        lr->own_cap = 0;
    }
    lr->in = NULL;
    lr->in_len = lr->in_pos = 0;
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
}

/* reader:next([fd [, trust_short]]) -> kind, payload [, close code, close reason | rsv] [, dry]
 *                    | nil                       (needs more input; no fd given)
 *                    | nil, "timeout" | "wantwrite" | "closed" | error   (fd given: nothing to read now)
 *                    | nil, "again"              (fd given: READS_PER_CALL reads made, no event yet; call again soon)
 *                    | nil, reason, close_code   (the peer broke the protocol)
 * With fd (a descriptor or a ws.fd, plain or TLS), input is read straight
 * from it once what was fed is used up. trust_short: the caller's last wake
 * for reading was an epoll edge without hang-up (poller:wait's rclean), so
 * a short plain read since proves the socket drained: "timeout" comes
 * without the read that would only return EAGAIN. dry (true, 5th): with
 * trust_short, this message used up such a read, so the caller may wait for
 * the next edge without calling next() for that "timeout" (a later call
 * reads again). */
static int l_reader_next(lua_State *L) {
    lreader *lr = check_reader(L);
    int have_fd = !lua_isnoneornil(L, 2);
    lfd c = {-1, NULL};
    if (have_fd)
        c = ws_check_io(L, 2, 4);
    int trust_short = lua_toboolean(L, 3);
    char *shared = (char *)lua_touserdata(L, lua_upvalueindex(1));
    int reads = 0;
    for (;;) {
        if (lr->in_pos < lr->in_len || !have_fd) {
            ws_event ev;
            size_t used = 0;
            int rc = ws_reader_feed(&lr->r, (const unsigned char *)lr->in + lr->in_pos,
                                    lr->in_len - lr->in_pos, &used, &ev);
            lr->in_pos += used;
            if (rc == WS_READ_EVENT) {
                int n = (ev.rsv & 4) && lr->z && ev.opcode < 8 ? push_inflated(L, lr, &ev, ZCTX(2))
                                                               : push_event(L, &ev);
                if (keep_leftover(lr, shared) != 0)
                    return luaL_error(L, "not enough memory");
                assert(SHARED_RULE(lr, shared));
                /* A message that used up a trusted short read: the next
                 * call would only say "timeout". Said now (a 5th result,
                 * true), and only once: a later call reads again. */
                if (trust_short && lr->drained && lr->in_pos >= lr->in_len &&
                    (ev.opcode == WS_OP_TEXT || ev.opcode == WS_OP_BINARY) && !lua_isnil(L, -n)) {
                    lr->drained = 0;
                    lua_settop(L, lua_gettop(L) + 4 - n);
                    lua_pushboolean(L, 1);
                    return 5;
                }
                return n;
            }
            if (rc == WS_READ_NOMEM)
                return luaL_error(L, "not enough memory");
            if (rc != WS_READ_NEED) {
                if (keep_leftover(lr, shared) != 0)   /* pending() still counts it */
                    return luaL_error(L, "not enough memory");
                return push_error(L, &lr->r);
            }
            if (!have_fd) {
                assert(SHARED_RULE(lr, shared));      /* fed input is a pinned string or own */
                lua_pushnil(L);
                return 1;
            }
        }
        drop_input(L, lr, KEEP_LEFTOVER);
        /* Always read until EAGAIN (or EOF) before reporting "timeout": a
         * short read does not mean the socket is empty. When data and the
         * peer's FIN arrive before one epoll_wait, edge-triggered epoll
         * reports them as one edge; read() returns the data and only the next
         * read sees EOF. Skipping that read left such a connection waiting
         * for an edge that never comes (CLOSE-WAIT until idle_timeout;
         * found by spec/hostile_spec.lua, connections dropped mid-frame).
         * TLS alike: "timeout" only once OpenSSL wants the socket to read.
         * The one exception, trust_short (see above): that edge carried no
         * FIN, and a FIN (or data) that came after it raised a new edge,
         * which the caller's next wait sees. A short read means the kernel
         * had no more (TLS, which reads records ahead: never trusted). */
        if (lr->drained && trust_short && !c.tls) {
            lr->drained = 0;
            lua_pushnil(L);
            lua_pushliteral(L, "timeout");
            return 2;
        }
        if (++reads > READS_PER_CALL) {
            lua_pushnil(L);
            lua_pushliteral(L, "again");
            return 2;
        }
        const char *err = NULL;
        size_t n = ws_io_read(&c, shared, SHARED_READ, &err);
        lr->drained = n > 0 && n < SHARED_READ && !c.tls;
        if (n > 0) {
            lr->in = shared;
            lr->in_len = n;
            continue;
        }
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
}

/* bytes of input not yet consumed (an event stopped the chunk early) */
static int l_reader_pending(lua_State *L) {
    lreader *lr = check_reader(L);
    lua_pushinteger(L, (lua_Integer)(lr->in_len - lr->in_pos));
    return 1;
}

static int l_reader_gc(lua_State *L) {
    lreader *lr = (lreader *)luaL_checkudata(L, 1, READER_MT);
    if (lr->live) {
        lr->live = 0;
        ws_reader_free(&lr->r);
        drop_input(L, lr, 0);
    }
    return 0;
}

static int l_reader_tostring(lua_State *L) {
    lreader *lr = (lreader *)luaL_checkudata(L, 1, READER_MT);
    if (!lr->live)
        lua_pushliteral(L, "ws.reader (closed)");
    else if (lr->r.error_code)
        lua_pushfstring(L, "ws.reader (failed: %s): %p", lr->r.error, (void *)lr);
    else
        lua_pushfstring(L, "ws.reader (%s): %p",
                        lr->r.opts.role == WS_ROLE_SERVER ? "server" : "client", (void *)lr);
    return 1;
}

static const luaL_Reg reader_methods[] = {
    {"feed", l_reader_feed},
    {"next", l_reader_next},
    {"pending", l_reader_pending},
    {"close", l_reader_gc},
    {NULL, NULL}
};

static const luaL_Reg reader_meta[] = {
    {"__gc", l_reader_gc},
    {"__close", l_reader_gc},
    {"__tostring", l_reader_tostring},
    {NULL, NULL}
};


/* reader(opts): the constructor; shared is the shared read buffer. */
void ws_open_reader(lua_State *L, int shared, int zctx) {
    lua_pushvalue(L, shared);
    lua_pushvalue(L, zctx);
    /* upvalues 3 and 4: the reader's and ws.fd's metatables, made here if
     * not yet (ws_new_type fills an existing one), for the quick checks;
     * 5: the kind names by opcode + 1 (see push_kind) */
    luaL_newmetatable(L, READER_MT);
    luaL_newmetatable(L, FD_MT);
    lua_createtable(L, 16, 0);
    for (int op = 0; op < 16; op++) {
        if (ws_kind_names[op]) {
            lua_pushstring(L, ws_kind_names[op]);
            lua_rawseti(L, -2, op + 1);
        }
    }
    ws_new_type(L, READER_MT, reader_meta, reader_methods, 5);
    lua_pushvalue(L, zctx);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_reader, 1);
    lua_setfield(L, -3, "reader");
    lua_pushcclosure(L, l_new_reader, 1);
    lua_setfield(L, -2, "new_reader");
}
