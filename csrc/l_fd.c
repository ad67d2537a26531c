/* ws.fd: a non-blocking connection, plain or TLS, and send_frame. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "ws_deflate.h"
#include "ws_fanout.h"
#include "ws_frame.h"
#include "ws_io.h"
#include "ws_tls.h"
#include "ws_utf8.h"

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"
/* ---- descriptor I/O, plain or TLS --------------------------------------- */

/* What reader:next and send_frame read from / write to: an integer
 * descriptor (a LuaSocket socket's) or a ws.fd, plain or TLS. */
lfd ws_check_io(lua_State *L, int idx, int mt_up) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lfd c = {ws_check_fdnum(L, idx), NULL};
        return c;
    }
    lfd *s = mt_up ? (lfd *)ws_toudata_up(L, idx, mt_up) : NULL;
    return *(s ? s : (lfd *)luaL_checkudata(L, idx, FD_MT));
}

/* What to do after a TLS call that made no progress: "timeout" (wait for
 * the direction the call naturally needs: readable for a read, writable for
 * a write), "wantread"/"wantwrite" (the other direction), "closed", or why
 * the handshake failed. */
static const char *tls_text(const ws_tls *t, int r, int writing) {
    switch (r) {
    case WS_TLS_WANT_READ: return writing ? "wantread" : "timeout";
    case WS_TLS_WANT_WRITE: return writing ? "timeout" : "wantwrite";
    case WS_TLS_AGAIN: return "again";   /* (reads: call again after a yield) */
    case WS_TLS_ERROR: return ws_tls_error(t);
    default: return "closed";
    }
}

/* Read up to n bytes: > 0, or 0 with *err ("timeout", "wantwrite",
 * "closed", or an error). */
size_t ws_io_read(const lfd *c, void *buf, size_t n, const char **err) {
    if (c->fd < 0) {
        *err = "closed";
        return 0;
    }
    if (c->tls) {
        size_t got;
        int r = ws_tls_read(c->tls, buf, n, &got);
        if (r == WS_TLS_DONE)
            return got;
        *err = tls_text(c->tls, r, 0);
        return 0;
    }
    ssize_t r = ws_fd_read(c->fd, buf, n);
    if (r > 0)
        return (size_t)r;
    *err = r == 0 ? "closed" : ws_errno_token(errno);
    return 0;
}

/* One write of up to n bytes: > 0 (progress), or 0 with *err ("timeout":
 * wait until writable; "wantread"; "closed"; or an error). */
static size_t io_write(const lfd *c, const void *buf, size_t n, const char **err) {
    if (c->fd < 0) {
        *err = "closed";
        return 0;
    }
    if (c->tls) {
        size_t put;
        int r = ws_tls_write(c->tls, buf, n, &put);
        if (r == WS_TLS_DONE && put > 0)
            return put;
        *err = tls_text(c->tls, r, 1);
        return 0;
    }
    ssize_t w = ws_fd_send(c->fd, buf, n);
    if (w > 0)
        return (size_t)w;
    *err = w == 0 ? "closed" : ws_errno_token(errno);
    return 0;
}

/* ---- fd I/O ------------------------------------------------------------ */

/* Bytes copied into the first TLS record of a frame (a record carries up
 * to 16 KiB): the header and the payload's start, so a large frame's header
 * costs no record (and no write) of its own; the rest of a larger payload
 * goes to SSL_write as it is. */
#define TLS_COPY 16384

/* Write header and payload over TLS, one record at a time; the bytes
 * written, stopping at the first call that makes no progress (*err). */
static size_t tls_send_frame(const lfd *c, const unsigned char *head, size_t hl,
                             const char *payload, size_t n, const char **err) {
    unsigned char one[TLS_COPY];
    size_t total = hl + n, done = 0;
    size_t first = total < TLS_COPY ? total : TLS_COPY;
    memcpy(one, head, hl);
    memcpy(one + hl, payload, first - hl);
    while (done < total) {
        const void *p;
        size_t len;
        if (done < first) {
            p = one + done;
            len = first - done;
        } else {
            p = payload + (done - hl);
            len = total - done;
        }
        size_t w = io_write(c, p, len, err);
        if (w == 0)
            break;
        done += w;
    }
    return done;
}

/* send_frame(fd, payload, kind [, rsv | deflate [, mask=false]]) -> true | rest | nil, err
 * Writes a frame to a descriptor or a ws.fd (plain or TLS): plain with one
 * system call (ws_fd_send2: up to 1 KiB copied, larger ones gathered with no
 * payload copy), unmasked (server); mask=true (client)
 * masks with a fresh key (as frame) into the per-state output buffer.
 * rest is the part the socket did not take (the whole frame if none).
 * An uncompressed text payload must be UTF-8 (nil, "invalid utf-8").
 * With a ws.deflate object the payload is compressed here and sent with RSV1. */
static int l_send_frame(lua_State *L) {
    lfd c = ws_check_io(L, 1, 2);
    size_t n;
    const char *payload = luaL_checklstring(L, 2, &n);
    int op = ws_check_opcode(L, 3);
    ws_deflate *z = lua_type(L, 4) == LUA_TUSERDATA ? &ws_check_deflate(L, 4)->d : NULL;
    lua_Integer rsv = z ? 4 : luaL_optinteger(L, 4, 0);
    luaL_argcheck(L, rsv >= 0 && rsv <= 7, 4, "rsv out of range");
    if (op == WS_OP_TEXT && (rsv == 0 || z) && !ws_utf8_valid((const unsigned char *)payload, n))
        return ws_fail(L, "invalid utf-8");
    int masked = lua_toboolean(L, 5);
    lzctx *zc = ZCTX(1);
    if (z) {
        if (ws_deflate_compress(z, (const unsigned char *)payload, n, &zc->buf, &n) != WS_DEFLATE_OK)
            return luaL_error(L, "not enough memory");
        payload = (const char *)zc->buf.p;
    }
    unsigned char key[4];
    if (masked) {
        if (ws_mask_key(&zc->keys, key) != 0)
            return luaL_error(L, "RAND_bytes failed");
        if (!z && ws_zbuf_reserve(&zc->buf, n) != 0)
            return luaL_error(L, "not enough memory");
        ws_mask(zc->buf.p, (const unsigned char *)payload, n, key, 0);   /* in place if compressed */
        payload = (const char *)zc->buf.p;
    }
    unsigned char head[WS_MAX_HEADER];
    size_t hl = ws_frame_write_header(head, 1, (int)rsv, op, n, masked ? key : NULL);
    size_t done;
    const char *err = NULL;
    if (c.fd < 0) {
        return ws_fail(L, "closed");
    } else if (c.tls) {
        done = tls_send_frame(&c, head, hl, payload, n, &err);
    } else {
        ssize_t w = ws_fd_send2(c.fd, head, hl, payload, n);
        if (w < 0)
            err = ws_errno_token(errno);
        done = w < 0 ? 0 : (size_t)w;
    }
    int ok = done == hl + n;
    if (!ok && err && strcmp(err, "timeout") != 0 && strcmp(err, "wantread") != 0) {
        if (z || masked)
            ws_zbuf_trim(zc);
        return ws_fail(L, err);
    }
    if (ok) {
        lua_pushboolean(L, 1);
    } else {
        size_t hrest = done < hl ? hl - done : 0, from = done - (hl - hrest);
        luaL_Buffer b;
        ws_zbuf lent = ws_zbuf_lend(zc);   /* payload may be in it */
        char *out = luaL_buffinitsize(L, &b, hrest + n - from);
        ws_zbuf_back(zc, lent);
        memcpy(out, head + (hl - hrest), hrest);
        memcpy(out + hrest, payload + from, n - from);
        luaL_pushresultsize(&b, hrest + n - from);
    }
    if (z || masked)
        ws_zbuf_trim(zc);
    return 1;
}

/* ---- a send queue in one write ------------------------------------------ */

/* A position in a Lua send queue q[i..t] (a table of strings), at byte off
 * of item i. The table holds the strings, so their bytes stay put. */
typedef struct {
    lua_State *L;
    int q;                    /* stack index of the table */
    lua_Integer i, t;
    size_t off;
    int end;                  /* past t (i stays at t: t + 1 may overflow) */
} qpos;

/* Move p to the start of the next item. */
static void qpos_next(qpos *p) {
    if (p->i == p->t)
        p->end = 1;
    else
        p->i++;
    p->off = 0;
}

/* The bytes left in the item at p (NULL at the end), *n of them. */
static const char *qpos_bytes(const qpos *p, size_t *n) {
    if (p->end)
        return NULL;
    size_t len = 0;
    const char *s = NULL;
    lua_rawgeti(p->L, p->q, p->i);   /* (returns void before 5.3) */
    if (lua_type(p->L, -1) == LUA_TSTRING)
        s = lua_tolstring(p->L, -1, &len);
    lua_pop(p->L, 1);
    if (!s || p->off > len)
        luaL_error(p->L, "send queue item %d is not a string (or offset past its end)", (int)p->i);
    *n = len - p->off;
    return s + p->off;
}

/* Move p forward n bytes. */
static void qpos_skip(qpos *p, size_t n) {
    size_t left;
    while (n > 0 && qpos_bytes(p, &left)) {
        if (n < left) {
            p->off += n;
            return;
        }
        n -= left;
        qpos_next(p);
    }
    /* skip empty items too: the next write starts at real bytes */
    while (qpos_bytes(p, &left) && left == 0)
        qpos_next(p);
}

/* Queue items per sendmsg */
#define GATHER 64

/* Plain: up to GATHER items per sendmsg, until the socket is full. Returns
 * the bytes written. */
static size_t plain_send_queue(const lfd *c, qpos *p, const char **err) {
    size_t total = 0;
    for (;;) {
        struct iovec iov[GATHER];
        qpos scan = *p;
        size_t want = 0, n;
        int k = 0;
        const char *b;
        while (k < GATHER && (b = qpos_bytes(&scan, &n))) {
            iov[k].iov_base = (void *)b;
            iov[k].iov_len = n;
            want += n;
            k++;
            qpos_next(&scan);
        }
        if (want == 0)
            return total;
        ssize_t w = ws_fd_sendv(c->fd, iov, k);
        if (w < 0) {
            *err = ws_errno_token(errno);
            return total;
        }
        total += (size_t)w;
        qpos_skip(p, (size_t)w);
        if ((size_t)w < want) {          /* the socket is full */
            *err = "timeout";
            return total;
        }
    }
}

/* TLS: the queue's bytes in records of up to TLS_COPY (small items copied
 * together; an item with TLS_COPY bytes or more left goes as it is). What
 * one call hands to SSL_write depends only on the queue from p on, so a
 * retry after "timeout"/"wantread" starts with the same bytes, as OpenSSL
 * requires, provided the items it covered stay as they are (*held: the last
 * of them). Returns the bytes written. */
static size_t tls_send_queue(const lfd *c, qpos *p, const char **err, lua_Integer *held) {
    unsigned char buf[TLS_COPY];
    size_t total = 0;
    for (;;) {
        size_t n, len = 0;
        const char *b = qpos_bytes(p, &n);
        const void *out = b;
        qpos scan = *p;
        if (!b)
            return total;
        if (n >= TLS_COPY) {
            len = n;
        } else {
            out = buf;
            while (len < TLS_COPY && (b = qpos_bytes(&scan, &n))) {
                size_t take = n < TLS_COPY - len ? n : TLS_COPY - len;
                memcpy(buf + len, b, take);
                len += take;
                scan.off += take;
                if (take == n)
                    qpos_next(&scan);
            }
        }
        size_t w = io_write(c, out, len, err);
        if (w == 0) {
            *held = scan.end || scan.off > 0 || scan.i == p->i ? scan.i : scan.i - 1;
            return total;
        }
        total += w;
        qpos_skip(p, w);
    }
}

/* send_queue(fd, q, i, t, off) -> bytes written [, err, held]
 * Writes the strings q[i..t], from byte off (1-based) of q[i] on, to a
 * descriptor or a ws.fd (plain or TLS) without waiting: plain with one
 * sendmsg per GATHER items, TLS in records of up to 16 KiB. err (nil when
 * all went): "timeout" (wait until writable), "wantread", "closed" or an
 * error; held: the last item a TLS write that must be retried covered
 * (q[i..held] must not change until written). */
static int l_send_queue(lua_State *L) {
    lfd c = ws_check_io(L, 1, 2);
    luaL_checktype(L, 2, LUA_TTABLE);
    qpos p = {L, 2, luaL_checkinteger(L, 3), luaL_checkinteger(L, 4), 0, 0};
    p.end = p.i > p.t;
    lua_Integer off = luaL_optinteger(L, 5, 1);
    luaL_argcheck(L, off >= 1, 5, "offset must be >= 1");
    p.off = (size_t)off - 1;
    const char *err = NULL;
    lua_Integer held = 0;
    size_t total;
    if (c.fd < 0) {
        total = 0;
        err = "closed";
    } else {
        qpos_skip(&p, 0);
        total = c.tls ? tls_send_queue(&c, &p, &err, &held) : plain_send_queue(&c, &p, &err);
    }
    lua_pushinteger(L, (lua_Integer)total);
    if (!err)
        return 1;
    lua_pushstring(L, err);
    if (!held)
        return 2;
    lua_pushinteger(L, held);
    return 3;
}

/* fanout(bytes, fds, n) -> missed [, {i, sent, ...}]
 * Writes the encoded frame bytes to fds[1..n] (descriptors or ws.fd, plain
 * or TLS; see ws_fanout): missed counts those that did not take all of it,
 * and the list gives each one's index in fds and the bytes it took, for the
 * caller to queue the rest (or find the connection broken). */
static int l_fanout(lua_State *L) {
    size_t len;
    const char *bytes = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0 && (size_t)n <= (size_t)-1 / sizeof(ws_fan_target), 3, "bad count");
    ws_fan_target few[64], *t = few;
    if (n > 64)
        t = (ws_fan_target *)lua_newuserdatauv(L, (size_t)n * sizeof *t, 0);   /* freed by the GC */
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, 2, i + 1);
        lfd c = ws_check_io(L, -1, 2);
        lua_pop(L, 1);
        t[i].fd = c.fd;
        t[i].tls = c.tls;
    }
    size_t missed = ws_fanout(t, (size_t)n, bytes, len);
    lua_pushinteger(L, (lua_Integer)missed);
    if (missed == 0)
        return 1;
    lua_createtable(L, (int)(2 * missed), 0);
    int k = 0;
    for (lua_Integer i = 0; i < n; i++) {
        if (t[i].result == WS_FAN_DONE)
            continue;
        lua_pushinteger(L, i + 1);
        lua_rawseti(L, -2, ++k);
        lua_pushinteger(L, (lua_Integer)t[i].sent);
        lua_rawseti(L, -2, ++k);
    }
    return 2;
}

/* ---- accepted connections ---------------------------------------------- */

static lfd *check_fd(lua_State *L) {
    return (lfd *)luaL_checkudata(L, 1, FD_MT);
}


static lfd *new_fd(lua_State *L) {
    lfd *s = (lfd *)lua_newuserdatauv(L, sizeof *s, 0);
    s->fd = -1;
    s->tls = NULL;
    luaL_setmetatable(L, FD_MT);
    return s;
}

void ws_core_push_fd(lua_State *L, int fd) {
    new_fd(L)->fd = fd;
}

int ws_core_check_fd(lua_State *L, int idx) {
    return ((lfd *)luaL_checkudata(L, idx, FD_MT))->fd;
}

/* accept(listen_fd [, inherited]) -> connection, peer | nil, "timeout" | nil, err
 * peer: "ip:port" ("[ip]:port" for IPv6, "?" otherwise), from accept4
 * itself (no getpeername); inherited: the listener has TCP_NODELAY
 * (nodelay below), so the connection has it without a setsockopt */
static int l_accept(lua_State *L) {
    int listen_fd = ws_check_fdnum(L, 1);
    int inherited = lua_toboolean(L, 2);
    char peer[64];   /* "[" INET6_ADDRSTRLEN "]:65535" */
    lfd *s = new_fd(L);
    s->fd = ws_fd_accept(listen_fd, inherited, peer, sizeof peer);
    if (s->fd < 0)
        return ws_fail_errno(L, errno);
    lua_pushstring(L, peer);
    return 2;
}

/* nodelay(fd) -> true | nil, err: TCP_NODELAY on a listener, which the
 * connections it accepts inherit (Linux): accept(fd, true) then skips the
 * setsockopt per connection */
static int l_nodelay(lua_State *L) {
    if (ws_fd_nodelay(ws_check_fdnum(L, 1)) != 0)
        return ws_fail_errno(L, errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* wrap_fd(fd) -> connection | nil, err: takes over a connected descriptor
 * (e.g. one a LuaSocket object gave up with setfd(-1)) and makes it
 * non-blocking.
 * adopt(fd) -> connection on a duplicate of fd | nil, err: the caller
 * closes its own handle (see ws_fd_adopt). */
static int own_fd(lua_State *L, int dup) {
    int fd = ws_check_fdnum(L, 1);
    luaL_argcheck(L, dup || fd >= 0, 1, "descriptor expected");
    lfd *s = new_fd(L);
    s->fd = dup ? ws_fd_adopt(fd) : fd;   /* ours from here: closed by __gc on failure too */
    if (s->fd < 0 || (!dup && ws_fd_nonblock(fd) != 0))
        return ws_fail_errno(L, errno);
    return 1;
}

static int l_wrap_fd(lua_State *L) {
    return own_fd(L, 0);
}

static int l_adopt(lua_State *L) {
    return own_fd(L, 1);
}

/* read_fd(fd) -> data | nil, "closed" (end of input) | nil, err: one read(2)
 * of up to 64 KiB from a descriptor left as it is. bin/ws reads stdin so:
 * O_NONBLOCK would hold for everyone sharing it (the shell's terminal, our
 * stdout on it), so it reads once select() says fd is ready, and then
 * read(2) does not wait. */
static int l_read_fd(lua_State *L) {
    int fd = ws_check_fdnum(L, 1);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, 64 * 1024);
    ssize_t r = ws_fd_read(fd, p, 64 * 1024);
    if (r <= 0)
        return r == 0 ? ws_fail(L, "closed") : ws_fail_errno(L, errno);
    luaL_pushresultsize(&b, (size_t)r);
    return 1;
}

/* raise_fd_limit() -> the soft limit on open descriptors, raised to the
 * hard limit | nil, err */
static int l_raise_fd_limit(lua_State *L) {
    long n = ws_fd_raise_limit();
    if (n < 0)
        return ws_fail(L, strerror(errno));
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_fd_getfd(lua_State *L) {
    lua_pushinteger(L, check_fd(L)->fd);
    return 1;
}

/* setfd(fd): LuaSec takes a plain descriptor over with setfd(-1) */
static int l_fd_setfd(lua_State *L) {
    lfd *s = check_fd(L);
    luaL_argcheck(L, !s->tls, 1, "a TLS connection cannot give its descriptor away");
    s->fd = ws_check_fdnum(L, 2);
    return 0;
}

static int l_fd_settimeout(lua_State *L) {
    check_fd(L);                  /* always non-blocking */
    lua_pushinteger(L, 1);
    return 1;
}

/* dirty() -> true when OpenSSL holds input the poller cannot announce */
static int l_fd_dirty(lua_State *L) {
    lfd *s = check_fd(L);
    lua_pushboolean(L, s->tls && s->fd >= 0 && ws_tls_pending(s->tls));
    return 1;
}

/* receive([n]) -> up to n bytes | nil, "timeout" | "wantwrite" | "again" | "closed" | err
 * ("again": TLS read its share of records with no data; read again soon) */
static int l_fd_receive(lua_State *L) {
    lfd *s = check_fd(L);
    lua_Integer want = luaL_optinteger(L, 2, SHARED_READ);
    if (want <= 0 || want > SHARED_READ)
        want = SHARED_READ;
    char *buf = (char *)lua_touserdata(L, lua_upvalueindex(1));
    const char *err = NULL;
    size_t n = ws_io_read(s, buf, (size_t)want, &err);
    if (n == 0)
        return ws_fail(L, err);
    lua_pushlstring(L, buf, n);
    return 1;
}

/* send(data [, i [, j]]) -> last index sent | nil, err, last index sent
 * err: "timeout" (wait until writable), "wantread" (TLS: until readable),
 * "closed", or an error. Each write makes progress or ends the call. */
static int l_fd_send(lua_State *L) {
    lfd *s = check_fd(L);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, (lua_Integer)n);
    if (i < 1)
        i = 1;
    if (j > (lua_Integer)n)
        j = (lua_Integer)n;
    size_t pos = (size_t)i - 1, end = j < i ? pos : (size_t)j;
    const char *err = NULL;
    while (pos < end) {
        size_t w = io_write(s, data + pos, end - pos, &err);
        if (w == 0)
            break;
        pos += w;
    }
    if (pos == end) {
        lua_pushinteger(L, (lua_Integer)end);
        return 1;
    }
    ws_fail(L, err);
    lua_pushinteger(L, (lua_Integer)pos);
    return 3;
}

static int l_fd_close(lua_State *L) {
    lfd *s = check_fd(L);
    if (s->tls) {
        ws_tls_shutdown(s->tls);    /* close_notify, best effort */
        ws_tls_free(s->tls);
        s->tls = NULL;
    }
    if (s->fd >= 0) {
        ws_fd_close(s->fd);
        s->fd = -1;
    }
    lua_pushinteger(L, 1);
    return 1;
}

/* shutdown(["both"|"send"|"receive"]); over TLS, "send" and "both" send
 * close_notify first */
static int l_fd_shutdown(lua_State *L) {
    static const char *const how[] = {"both", "send", "receive", NULL};   /* WS_SHUT_* order */
    lfd *s = check_fd(L);
    int h = luaL_checkoption(L, 2, "both", how);
    if (s->tls && s->fd >= 0 && h != WS_SHUT_RECEIVE)
        ws_tls_shutdown(s->tls);
    if (s->fd < 0 || ws_fd_shutdown(s->fd, h) != 0)
        return ws_fail_errno(L, s->fd < 0 ? EBADF : errno);
    lua_pushinteger(L, 1);
    return 1;
}

/* getpeername() -> ip, port, "inet"|"inet6" | nil, err */
static int l_fd_getpeername(lua_State *L) {
    lfd *s = check_fd(L);
    char ip[64];
    int port = 0;
    int fam = s->fd < 0 ? -1 : ws_fd_peer(s->fd, ip, sizeof ip, &port);
    if (fam < 0)
        return ws_fail_errno(L, s->fd < 0 ? EBADF : errno);
    lua_pushstring(L, ip);
    lua_pushinteger(L, port);
    lua_pushstring(L, fam == 6 ? "inet6" : "inet");
    return 3;
}

/* setoption(name, value): "tcp-nodelay" is always on; others are refused */
static int l_fd_setoption(lua_State *L) {
    check_fd(L);
    const char *name = luaL_checkstring(L, 2);
    if (strcmp(name, "tcp-nodelay") == 0) {
        lua_pushinteger(L, 1);
        return 1;
    }
    return ws_fail(L, "unsupported option");
}

static int l_fd_tostring(lua_State *L) {
    lfd *s = check_fd(L);
    if (s->fd < 0)
        lua_pushliteral(L, "ws.fd (closed)");
    else
        lua_pushfstring(L, "ws.fd%s: %d", s->tls ? " (tls)" : "", s->fd);
    return 1;
}

static int l_fd_starttls(lua_State *L) {
    lfd *s = check_fd(L);
    ltlsctx *c = (ltlsctx *)luaL_checkudata(L, 2, TLSCTX_MT);
    size_t len = 0;
    const char *name = luaL_optlstring(L, 3, NULL, &len);
    /* (C would check the name only up to a NUL byte) */
    luaL_argcheck(L, !name || strlen(name) == len, 3, "server name holds a NUL byte");
    luaL_argcheck(L, c->ctx != NULL, 2, "closed TLS context");
    luaL_argcheck(L, s->tls == NULL, 1, "TLS already started");
    if (s->fd < 0)
        return ws_fail(L, "closed");
    char err[256];
    s->tls = ws_tls_new(c->ctx, s->fd, name, err, sizeof err);
    if (!s->tls)
        return ws_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* fd:handshake() -> true | nil, "wantread" | "wantwrite" | err
 * err "http request": the peer sent plain HTTP; the session is dropped, so
 * the descriptor is plain again and can answer it in plain words. */
static int l_fd_handshake(lua_State *L) {
    lfd *s = check_fd(L);
    if (!s->tls)
        return luaL_error(L, "handshake without starttls");
    if (s->fd < 0)
        return ws_fail(L, "closed");
    switch (ws_tls_handshake(s->tls)) {
    case WS_TLS_DONE:
        lua_pushboolean(L, 1);
        return 1;
    case WS_TLS_WANT_READ:
        return ws_fail(L, "wantread");
    case WS_TLS_WANT_WRITE:
        return ws_fail(L, "wantwrite");
    default:
        ws_fail(L, ws_tls_error(s->tls));   /* (a copy: the session may go) */
        if (strcmp(ws_tls_error(s->tls), WS_TLS_HTTP_REQUEST) == 0) {
            ws_tls_free(s->tls);
            s->tls = NULL;
        }
        return 2;
    }
}

/* peer_certificate() -> { subject, issuer, names = { "DNS:x", "IP:y" ... },
 * not_before, not_after, sha256, verified } | nil (plain, or no
 * certificate sent) | nil, err. Built on each call: nothing is kept. */
static int l_fd_peer_certificate(lua_State *L) {
    lfd *s = check_fd(L);
    ws_tls_cert c;
    int r = s->tls ? ws_tls_peer_cert(s->tls, &c) : 0;
    if (r <= 0) {
        lua_pushnil(L);
        if (r == 0)
            return 1;
        lua_pushliteral(L, "certificate name too long");
        return 2;
    }
    lua_createtable(L, 0, 7);
    lua_pushstring(L, c.subject);
    lua_setfield(L, -2, "subject");
    lua_pushstring(L, c.issuer);
    lua_setfield(L, -2, "issuer");
    lua_pushstring(L, c.sha256);
    lua_setfield(L, -2, "sha256");
    lua_pushinteger(L, (lua_Integer)c.not_before);
    lua_setfield(L, -2, "not_before");
    lua_pushinteger(L, (lua_Integer)c.not_after);
    lua_setfield(L, -2, "not_after");
    lua_pushboolean(L, c.verified);
    lua_setfield(L, -2, "verified");
    lua_newtable(L);
    char name[256];
    int kind;
    for (int i = 0; (kind = ws_tls_peer_name(s->tls, i, name, sizeof name)) != 0; i++) {
        lua_pushfstring(L, "%s:%s", kind == 1 ? "DNS" : "IP", name);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "names");
    return 1;
}

static const luaL_Reg fd_methods[] = {
    {"getfd", l_fd_getfd},
    {"setfd", l_fd_setfd},
    {"settimeout", l_fd_settimeout},
    {"dirty", l_fd_dirty},
    {"receive", l_fd_receive},
    {"send", l_fd_send},
    {"close", l_fd_close},
    {"shutdown", l_fd_shutdown},
    {"getpeername", l_fd_getpeername},
    {"setoption", l_fd_setoption},
    {"starttls", l_fd_starttls},
    {"handshake", l_fd_handshake},
    {"peer_certificate", l_fd_peer_certificate},
    {NULL, NULL}
};

static const luaL_Reg fd_meta[] = {
    {"__gc", l_fd_close},
    {"__close", l_fd_close},
    {"__tostring", l_fd_tostring},
    {NULL, NULL}
};


static const luaL_Reg funcs[] = {
    {"send_frame", l_send_frame},
    {"send_queue", l_send_queue},
    {"fanout", l_fanout},
    {"accept", l_accept},
    {"nodelay", l_nodelay},
    {"wrap_fd", l_wrap_fd},
    {"adopt", l_adopt},
    {"read_fd", l_read_fd},
    {"raise_fd_limit", l_raise_fd_limit},
    {NULL, NULL}
};

/* shared: the shared read buffer (fd:receive reads into it) */
void ws_open_fd(lua_State *L, int shared, int zctx) {
    lua_pushvalue(L, shared);
    ws_new_type(L, FD_MT, fd_meta, fd_methods, 1);
    lua_pushvalue(L, zctx);
    luaL_getmetatable(L, FD_MT);   /* upvalue 2: ws_check_io's quick check */
    luaL_setfuncs(L, funcs, 2);
}
