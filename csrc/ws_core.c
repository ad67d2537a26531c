/* ws.core: the only file that knows Lua. Binds the plain-C codec
 * (handshake, frames, reader, UTF-8) to the Lua C API.
 * Convention: wrong argument types raise; bad input data returns nil, err. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"
#include "ws_crypto.h"
#include "ws_deflate.h"
#include "ws_frame.h"
#include "ws_handshake.h"
#include "ws_io.h"
#include "ws_reader.h"
#include "ws_tls.h"
#include "ws_utf8.h"

#define READER_MT "ws.reader"
#define POLLER_MT "ws.poller"
#define DEFLATE_MT "ws.deflate"
#define TLSCTX_MT "ws.tls_context"
/* One read buffer shared by every reader: input left over after an event
 * is copied out, so an idle connection holds no read buffer. */
#define SHARED_READ (256 * 1024)
#define KEEP_LEFTOVER 4096
/* permessage-deflate output above this is not kept between messages */
#define KEEP_ZBUF (1024 * 1024)

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

static void zbuf_trim(lzctx *z) {
    if (z->buf.cap > KEEP_ZBUF) {
        free(z->buf.p);
        z->buf.p = NULL;
        z->buf.cap = 0;
    }
}

static int fail(lua_State *L, const char *err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* ---- handshake ---------------------------------------------------------- */

static int l_accept_key(lua_State *L) {
    size_t n;
    const char *key = luaL_checklstring(L, 1, &n);
    unsigned char raw[16];
    char out[WS_ACCEPT_LEN + 1];
    if (ws_base64_decode(key, n, raw, sizeof raw) != 16)
        return fail(L, "invalid sec-websocket-key");
    if (ws_accept_key(key, n, out) != 0)
        return fail(L, "sha-1 failed");
    lua_pushlstring(L, out, WS_ACCEPT_LEN);
    return 1;
}

static int l_new_key(lua_State *L) {
    char out[WS_KEY_LEN + 1];
    if (ws_new_key(out) != 0)
        return luaL_error(L, "RAND_bytes failed");
    lua_pushlstring(L, out, WS_KEY_LEN);
    return 1;
}

static int l_random(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_Buffer b;
    luaL_argcheck(L, n >= 0 && n <= 65536, 1, "size out of range");
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    if (ws_random(p, (size_t)n) != 0)
        return luaL_error(L, "RAND_bytes failed");
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* Headers as a table keyed by lower-case name; repeated fields are joined
 * with ", " as RFC 9110 section 5.3 allows. */
static void push_headers(lua_State *L, const ws_http *h) {
    lua_createtable(L, 0, (int)h->nheaders);
    for (size_t i = 0; i < h->nheaders; i++) {
        const ws_header *f = &h->headers[i];
        char name[256];
        size_t n = f->name_len < sizeof name ? f->name_len : sizeof name;
        for (size_t j = 0; j < n; j++) {
            char c = f->name[j];
            name[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        lua_pushlstring(L, name, n);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, f->value, f->value_len);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, f->value, f->value_len);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
}

static void set_field(lua_State *L, const char *k, const char *v, size_t n) {
    lua_pushlstring(L, v, n);
    lua_setfield(L, -2, k);
}

/* parse_request(head) -> req | nil, status, err
 * req.ws_accept is set for a valid upgrade; otherwise req.ws_status and
 * req.ws_error say what to answer, so routing (404) can come first. */
static int l_parse_request(lua_State *L) {
    size_t n;
    const char *head = luaL_checklstring(L, 1, &n);
    ws_http req;
    const char *err = NULL;
    int status = ws_http_parse_request(head, n, &req, &err);
    if (status != 0) {
        lua_pushnil(L);
        lua_pushinteger(L, status);
        lua_pushstring(L, err ? err : "bad request");
        return 3;
    }
    lua_createtable(L, 0, 8);
    set_field(L, "method", req.method, req.method_len);
    set_field(L, "target", req.target, req.target_len);
    const char *q = memchr(req.target, '?', req.target_len);
    size_t plen = q ? (size_t)(q - req.target) : req.target_len;
    set_field(L, "path", req.target, plen);
    if (q)
        set_field(L, "query", q + 1, req.target_len - plen - 1);
    lua_pushstring(L, req.minor ? "1.1" : "1.0");
    lua_setfield(L, -2, "version");
    push_headers(L, &req);
    lua_setfield(L, -2, "headers");

    char accept[WS_ACCEPT_LEN + 1];
    status = ws_handshake_check_request(&req, accept, &err);
    if (status == 0) {
        set_field(L, "ws_accept", accept, WS_ACCEPT_LEN);
    } else {
        lua_pushinteger(L, status);
        lua_setfield(L, -2, "ws_status");
        lua_pushstring(L, err ? err : "bad upgrade");
        lua_setfield(L, -2, "ws_error");
    }
    return 1;
}

/* parse_response(head [, key]) -> res | nil, err [, res]
 * With key, the response must be a valid 101 for it. */
static int l_parse_response(lua_State *L) {
    size_t n;
    const char *head = luaL_checklstring(L, 1, &n);
    const char *key = luaL_optstring(L, 2, NULL);
    ws_http res;
    const char *err = NULL;
    if (ws_http_parse_response(head, n, &res, &err) != 0)
        return fail(L, err ? err : "malformed response");
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, res.status);
    lua_setfield(L, -2, "status");
    set_field(L, "reason", res.reason, res.reason_len);
    push_headers(L, &res);
    lua_setfield(L, -2, "headers");
    if (key && ws_handshake_check_response(&res, key, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "bad handshake response");
        lua_pushvalue(L, -3);
        return 3;
    }
    return 1;
}

/* A header value we write must not smuggle CR/LF or other controls. */
static int header_value_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* build_response(accept [, protocol [, extensions]]) -> the 101 response head */
static int l_build_response(lua_State *L) {
    size_t n, pn = 0, en = 0;
    const char *accept = luaL_checklstring(L, 1, &n);
    const char *proto = luaL_optlstring(L, 2, NULL, &pn);
    const char *ext = luaL_optlstring(L, 3, NULL, &en);
    luaL_argcheck(L, !proto || header_value_ok(proto, pn), 2, "invalid protocol");
    luaL_argcheck(L, !ext || header_value_ok(ext, en), 3, "invalid extensions");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: ");
    luaL_addlstring(&b, accept, n);
    if (proto) {
        luaL_addstring(&b, "\r\nSec-WebSocket-Protocol: ");
        luaL_addlstring(&b, proto, pn);
    }
    if (ext) {
        luaL_addstring(&b, "\r\nSec-WebSocket-Extensions: ");
        luaL_addlstring(&b, ext, en);
    }
    luaL_addstring(&b, "\r\n\r\n");
    luaL_pushresult(&b);
    return 1;
}

/* ---- frames ------------------------------------------------------------- */

static const char *const kind_names[] = {"continuation", "text", "binary", NULL, NULL,
    NULL, NULL, NULL, "close", "ping", "pong", NULL, NULL, NULL, NULL, NULL};

static int check_opcode(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *k = lua_tostring(L, idx);
        int op;
        switch (k[0]) {   /* hot path: one comparison per call */
        case 't': op = WS_OP_TEXT; break;
        case 'b': op = WS_OP_BINARY; break;
        case 'c': op = k[1] == 'l' ? WS_OP_CLOSE : WS_OP_CONT; break;
        case 'p': op = k[1] == 'i' ? WS_OP_PING : WS_OP_PONG; break;
        default: op = -1;
        }
        if (op < 0 || strcmp(k, kind_names[op]) != 0)
            return luaL_argerror(L, idx, "unknown frame kind");
        return op;
    }
    lua_Integer op = luaL_checkinteger(L, idx);
    luaL_argcheck(L, op >= 0 && op <= 15, idx, "opcode out of range");
    return (int)op;
}

/* frame(payload, kind_or_opcode [, fin=true [, mask=false [, rsv=0 | deflate]]]) -> bytes
 * mask=true draws a fresh key (buffered RAND_bytes); mask may also be a 4-byte key.
 * With a ws.deflate object the payload is compressed here and the frame has RSV1. */
static int l_frame(lua_State *L) {
    size_t n;
    const char *payload = luaL_checklstring(L, 1, &n);
    int op = check_opcode(L, 2);
    int fin = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);  /* nil: default */
    ws_deflate *z = lua_type(L, 5) == LUA_TUSERDATA ? (ws_deflate *)luaL_checkudata(L, 5, DEFLATE_MT) : NULL;
    lua_Integer rsv = z ? 4 : luaL_optinteger(L, 5, 0);
    luaL_argcheck(L, rsv >= 0 && rsv <= 7, 5, "rsv out of range");
    lzctx *zc = ZCTX(1);
    if (z) {
        if (ws_deflate_compress(z, (const unsigned char *)payload, n, &zc->buf, &n) != WS_DEFLATE_OK)
            return luaL_error(L, "not enough memory");
        payload = (const char *)zc->buf.p;
    }
    unsigned char key[4];
    const unsigned char *kp = NULL;
    if (lua_type(L, 4) == LUA_TSTRING) {
        size_t kl;
        const char *k = lua_tolstring(L, 4, &kl);
        luaL_argcheck(L, kl == 4, 4, "mask key must be 4 bytes");
        memcpy(key, k, 4);
        kp = key;
    } else if (lua_toboolean(L, 4)) {
        if (ws_mask_key(&zc->keys, key) != 0)
            return luaL_error(L, "RAND_bytes failed");
        kp = key;
    }
    size_t hl = ws_frame_header_size(n, kp != NULL);
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, hl + n);
    ws_frame_write_header(out, fin, (int)rsv, op, n, kp);
    if (kp)
        ws_mask(out + hl, (const unsigned char *)payload, n, kp, 0);
    else
        memcpy(out + hl, payload, n);
    luaL_pushresultsize(&b, hl + n);
    if (z)
        zbuf_trim(zc);
    return 1;
}

/* close_payload([code [, reason]]) -> payload | nil, err
 * No code gives an empty payload; 1005/1006/1015 are never sent. */
static int l_close_payload(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_pushliteral(L, "");
        return 1;
    }
    lua_Integer code = luaL_checkinteger(L, 1);
    size_t rl;
    const char *reason = luaL_optlstring(L, 2, "", &rl);
    if (code < 0 || code > 0xffff || !ws_close_code_valid((unsigned)code))
        return fail(L, "invalid close code");
    if (rl > WS_MAX_CONTROL - 2)
        return fail(L, "close reason too long");
    if (!ws_utf8_valid((const unsigned char *)reason, rl))
        return fail(L, "close reason is not utf-8");
    char buf[WS_MAX_CONTROL];
    buf[0] = (char)(code >> 8);
    buf[1] = (char)(code & 0xff);
    memcpy(buf + 2, reason, rl);
    lua_pushlstring(L, buf, rl + 2);
    return 1;
}

/* mask(data, key4 [, pos=0]) -> data xor key, starting at key position pos */
static int l_mask(lua_State *L) {
    size_t n, kl;
    const char *data = luaL_checklstring(L, 1, &n);
    const char *key = luaL_checklstring(L, 2, &kl);
    lua_Integer pos = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, kl == 4, 2, "mask key must be 4 bytes");
    luaL_argcheck(L, pos >= 0 && pos <= 3, 3, "key position out of range");
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n);
    ws_mask(out, (const unsigned char *)data, n, (const unsigned char *)key, (size_t)pos);
    luaL_pushresultsize(&b, n);
    return 1;
}

static int l_utf8_valid(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, ws_utf8_valid((const unsigned char *)s, n));
    return 1;
}

/* ---- descriptor I/O, plain or TLS --------------------------------------- */

/* A connection accepted here (or adopted by wrap_fd) is a bare descriptor
 * with the part of the LuaSocket API the library and LuaSec use (receive,
 * send, close, shutdown, getfd/setfd, getpeername, settimeout, dirty,
 * setoption), and optionally our TLS session on it (starttls): an idle
 * connection then costs a few bytes, not LuaSocket's 8 KiB buffer. */
typedef struct {
    int fd;                   /* -1 once closed or handed over (setfd) */
    ws_tls *tls;              /* NULL: plain TCP */
} lfd;

/* What reader:next and send_frame read from / write to: an integer
 * descriptor (a LuaSocket socket's) or a ws.fd, plain or TLS. */
static lfd check_io(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lfd c = {(int)luaL_checkinteger(L, idx), NULL};
        return c;
    }
    return *(lfd *)luaL_checkudata(L, idx, FD_MT);
}

static const char *errno_text(int err) {
    if (err == EAGAIN || err == EWOULDBLOCK)
        return "timeout";
    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN || err == EBADF)
        return "closed";
    return strerror(err);
}

/* What to do after a TLS call that made no progress: "timeout" (wait for
 * the direction the call naturally needs: readable for a read, writable for
 * a write), "wantread"/"wantwrite" (the other direction), "closed", or why
 * the handshake failed. */
static const char *tls_text(const ws_tls *t, int r, int writing) {
    switch (r) {
    case WS_TLS_WANT_READ: return writing ? "wantread" : "timeout";
    case WS_TLS_WANT_WRITE: return writing ? "timeout" : "wantwrite";
    case WS_TLS_ERROR: return ws_tls_error(t);
    default: return "closed";
    }
}

/* Read up to n bytes: > 0, or 0 with *err ("timeout", "wantwrite",
 * "closed", or an error). */
static size_t io_read(const lfd *c, void *buf, size_t n, const char **err) {
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
    *err = r == 0 ? "closed" : errno_text(errno);
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
    *err = w == 0 ? "closed" : errno_text(errno);
    return 0;
}

/* ---- reader ------------------------------------------------------------- */

/* The userdata holds the C reader and the chunk being consumed; the chunk
 * string is pinned in the user value so the pointer stays valid. */
typedef struct {
    ws_reader r;
    int live;                 /* 0 once closed */
    const char *in;           /* current input: a pinned Lua string, the shared buffer, or own */
    size_t in_len, in_pos;
    char *own;                /* leftover input copied out of the shared buffer */
    size_t own_cap;
    ws_deflate *z;            /* permessage-deflate: RSV1 messages are inflated here */
} lreader;

static lreader *check_reader(lua_State *L) {
    lreader *lr = (lreader *)luaL_checkudata(L, 1, READER_MT);
    if (!lr->live)
        luaL_error(L, "attempt to use a closed reader");
    return lr;
}

static lua_Integer opt_field_int(lua_State *L, int t, const char *k, lua_Integer d) {
    lua_getfield(L, t, k);
    lua_Integer v = lua_isnil(L, -1) ? d : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* reader{ role = "server"|"client", max_message = n (0 = none), rsv_allowed = bits,
 *         deflate = ws.deflate object (messages with RSV1 come out inflated) } */
static int l_reader(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    ws_reader_opts o;
    memset(&o, 0, sizeof o);
    lua_getfield(L, 1, "role");
    const char *role = luaL_optstring(L, -1, "server");
    if (strcmp(role, "server") == 0)
        o.role = WS_ROLE_SERVER;
    else if (strcmp(role, "client") == 0)
        o.role = WS_ROLE_CLIENT;
    else
        return luaL_argerror(L, 1, "role must be \"server\" or \"client\"");
    lua_pop(L, 1);
    lua_Integer max = opt_field_int(L, 1, "max_message", 0);
    luaL_argcheck(L, max >= 0, 1, "max_message must be >= 0");
    o.max_message = (uint64_t)max;
    lua_Integer rsv = opt_field_int(L, 1, "rsv_allowed", 0);
    luaL_argcheck(L, rsv >= 0 && rsv <= 7, 1, "rsv_allowed out of range");
    o.rsv_allowed = (int)rsv;
    lua_getfield(L, 1, "deflate");
    ws_deflate *z = lua_isnil(L, -1) ? NULL : (ws_deflate *)luaL_checkudata(L, -1, DEFLATE_MT);

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

static int push_event(lua_State *L, const ws_event *ev) {
    lua_pushstring(L, kind_names[ev->opcode]);
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
    size_t n = 0;
    int rc = ws_deflate_decompress(lr->z, ev->data, ev->len, (size_t)lr->r.opts.max_message, &zc->buf, &n);
    if (rc == WS_DEFLATE_NOMEM)
        return luaL_error(L, "not enough memory");
    if (rc == WS_DEFLATE_TOO_BIG)
        lr->r.error_code = 1009, lr->r.error = "message too big";
    else if (rc != WS_DEFLATE_OK)
        lr->r.error_code = 1007, lr->r.error = "invalid compressed data";
    else if (ev->opcode == WS_OP_TEXT && !ws_utf8_valid(zc->buf.p, n))
        lr->r.error_code = 1007, lr->r.error = "invalid utf-8";
    else {
        lua_pushlstring(L, (const char *)zc->buf.p, n);   /* first: nothing runs before the copy */
        zbuf_trim(zc);
        lua_pushstring(L, kind_names[ev->opcode]);
        lua_insert(L, -2);
        return 2;
    }
    zbuf_trim(zc);
    return push_error(L, &lr->r);
}

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

/* reader:next([fd]) -> kind, payload [, close code, close reason]
 *                    | nil                       (needs more input; no fd given)
 *                    | nil, "timeout" | "wantwrite" | "closed" | error   (fd given: nothing to read now)
 *                    | nil, reason, close_code   (the peer broke the protocol)
 * With fd (a descriptor or a ws.fd, plain or TLS), input is read straight
 * from it once what was fed is used up. */
static int l_reader_next(lua_State *L) {
    lreader *lr = check_reader(L);
    int have_fd = !lua_isnoneornil(L, 2);
    lfd c = {-1, NULL};
    if (have_fd)
        c = check_io(L, 2);
    char *shared = (char *)lua_touserdata(L, lua_upvalueindex(1));
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
                return n;
            }
            if (rc == WS_READ_NOMEM)
                return luaL_error(L, "not enough memory");
            if (rc != WS_READ_NEED)
                return push_error(L, &lr->r);
            if (!have_fd) {
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
         * TLS alike: "timeout" only once OpenSSL wants the socket to read. */
        const char *err = NULL;
        size_t n = io_read(&c, shared, SHARED_READ, &err);
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

/* ---- fd I/O ------------------------------------------------------------ */

/* Largest frame copied into one TLS record with its header (a record
 * carries up to 16 KiB); bigger ones go as header, then payload. */
#define TLS_COPY 16384

/* Write header and payload over TLS, one record at a time; the bytes
 * written, stopping at the first call that makes no progress (*err). */
static size_t tls_send_frame(const lfd *c, const unsigned char *head, size_t hl,
                             const char *payload, size_t n, const char **err) {
    unsigned char one[TLS_COPY];
    size_t total = hl + n, done = 0;
    int copy = total <= TLS_COPY;
    if (copy) {
        memcpy(one, head, hl);
        memcpy(one + hl, payload, n);
    }
    while (done < total) {
        const void *p;
        size_t len;
        if (copy) {
            p = one + done;
            len = total - done;
        } else if (done < hl) {
            p = head + done;
            len = hl - done;
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

/* send_frame(fd, payload, kind [, rsv | deflate]) -> true | rest | nil, err
 * Writes an unmasked (server) frame to a descriptor or a ws.fd (plain or
 * TLS): plain with one gathered send, no payload copy.
 * rest is the part the socket did not take (the whole frame if none).
 * An uncompressed text payload must be UTF-8 (nil, "invalid utf-8").
 * With a ws.deflate object the payload is compressed here and sent with RSV1. */
static int l_send_frame(lua_State *L) {
    lfd c = check_io(L, 1);
    size_t n;
    const char *payload = luaL_checklstring(L, 2, &n);
    int op = check_opcode(L, 3);
    ws_deflate *z = lua_type(L, 4) == LUA_TUSERDATA ? (ws_deflate *)luaL_checkudata(L, 4, DEFLATE_MT) : NULL;
    lua_Integer rsv = z ? 4 : luaL_optinteger(L, 4, 0);
    luaL_argcheck(L, rsv >= 0 && rsv <= 7, 4, "rsv out of range");
    if (op == WS_OP_TEXT && (rsv == 0 || z) && !ws_utf8_valid((const unsigned char *)payload, n))
        return fail(L, "invalid utf-8");
    lzctx *zc = ZCTX(1);
    if (z) {
        if (ws_deflate_compress(z, (const unsigned char *)payload, n, &zc->buf, &n) != WS_DEFLATE_OK)
            return luaL_error(L, "not enough memory");
        payload = (const char *)zc->buf.p;
    }
    unsigned char head[WS_MAX_HEADER];
    size_t hl = ws_frame_write_header(head, 1, (int)rsv, op, n, NULL);
    size_t done;
    const char *err = NULL;
    if (c.fd < 0) {
        return fail(L, "closed");
    } else if (c.tls) {
        done = tls_send_frame(&c, head, hl, payload, n, &err);
    } else {
        struct iovec iov[2] = {{head, hl}, {(void *)payload, n}};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = n ? 2 : 1;
        ssize_t w;
        do
            w = sendmsg(c.fd, &msg, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0)
            err = errno_text(errno);
        done = w < 0 ? 0 : (size_t)w;
    }
    int ok = done == hl + n;
    if (!ok && err && strcmp(err, "timeout") != 0 && strcmp(err, "wantread") != 0) {
        if (z)
            zbuf_trim(zc);
        return fail(L, err);
    }
    if (ok) {
        lua_pushboolean(L, 1);
    } else {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        if (done < hl)
            luaL_addlstring(&b, (const char *)head + done, hl - done);
        size_t from = done > hl ? done - hl : 0;
        luaL_addlstring(&b, payload + from, n - from);
        luaL_pushresult(&b);
    }
    if (z)
        zbuf_trim(zc);
    return 1;
}

#ifdef WS_HAVE_EPOLL
typedef struct {
    int ep;
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
    luaL_setmetatable(L, POLLER_MT);
    p->ep = ws_poll_open();
    if (p->ep < 0)
        return fail(L, strerror(errno));
    return 1;
}

static int l_poller_watch(lua_State *L) {
    lpoller *p = check_poller(L);
    if (ws_poll_watch(p->ep, (int)luaL_checkinteger(L, 2)) != 0)
        return fail(L, strerror(errno));
    lua_pushboolean(L, 1);
    return 1;
}

static int l_poller_unwatch(lua_State *L) {
    lpoller *p = check_poller(L);
    ws_poll_unwatch(p->ep, (int)luaL_checkinteger(L, 2));
    return 0;
}

/* poller:wait(timeout_s|nil, rfds, wfds) -> nr, nw: fills the two arrays */
static int l_poller_wait(lua_State *L) {
    lpoller *p = check_poller(L);
    int ms = -1;
    if (!lua_isnoneornil(L, 2)) {
        lua_Number t = luaL_checknumber(L, 2);
        ms = t <= 0 ? 0 : t > 2e6 ? 2000000000 : (int)(t * 1000 + 0.999);
    }
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    ws_poll_event ev[256];
    int n = ws_poll_wait(p->ep, ev, 256, ms);
    if (n < 0)
        return fail(L, strerror(errno));
    lua_Integer nr = 0, nw = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].readable) {
            lua_pushinteger(L, ev[i].fd);
            lua_rawseti(L, 3, ++nr);
        }
        if (ev[i].writable) {
            lua_pushinteger(L, ev[i].fd);
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
        close(p->ep);
        p->ep = -1;
    }
    return 0;
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
    {NULL, NULL}
};
#endif

/* ---- permessage-deflate ------------------------------------------------ */

static ws_deflate *check_deflate(lua_State *L) {
    return (ws_deflate *)luaL_checkudata(L, 1, DEFLATE_MT);
}

/* deflate{ level = 6, out_bits = 15, in_bits = 15, out_reset = false, in_reset = false } */
static int l_deflate(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer level = opt_field_int(L, 1, "level", 6);
    lua_Integer ob = opt_field_int(L, 1, "out_bits", 15);
    lua_Integer ib = opt_field_int(L, 1, "in_bits", 15);
    luaL_argcheck(L, level >= 0 && level <= 9, 1, "level must be 0..9");
    luaL_argcheck(L, ob >= 8 && ob <= 15 && ib >= 8 && ib <= 15, 1, "window bits must be 8..15");
    lua_getfield(L, 1, "out_reset");
    int out_reset = lua_toboolean(L, -1);
    lua_getfield(L, 1, "in_reset");
    int in_reset = lua_toboolean(L, -1);
    lua_pop(L, 2);
    ws_deflate *d = (ws_deflate *)lua_newuserdatauv(L, sizeof *d, 0);
    ws_deflate_init(d, (int)level, (int)ob, (int)ib, out_reset, in_reset, &ZCTX(1)->sh);
    luaL_setmetatable(L, DEFLATE_MT);
    return 1;
}

static int push_zbuf(lua_State *L, lzctx *zc, size_t n) {
    lua_pushlstring(L, (const char *)zc->buf.p, n);
    zbuf_trim(zc);
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
        zbuf_trim(zc);
    if (rc == WS_DEFLATE_TOO_BIG)
        return fail(L, "message too big");
    if (rc == WS_DEFLATE_BAD)
        return fail(L, "invalid compressed data");
    if (rc != WS_DEFLATE_OK)
        return luaL_error(L, "not enough memory");
    return push_zbuf(L, zc, len);
}

/* d:stats() -> { deflated = messages, wire_out = their compressed bytes,
 *                inflated = messages, wire_in = their compressed bytes,
 *                streams = zlib streams held of its own (0..2) } */
static int l_deflate_stats(lua_State *L) {
    ws_deflate *d = check_deflate(L);
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

static int l_deflate_gc(lua_State *L) {
    ws_deflate_free(check_deflate(L));
    return 0;
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
    {NULL, NULL}
};

/* ---- accepted connections ---------------------------------------------- */

static lfd *check_fd(lua_State *L) {
    return (lfd *)luaL_checkudata(L, 1, FD_MT);
}

static int push_err(lua_State *L, const char *err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

static int fd_errno(lua_State *L, int err) {
    return push_err(L, errno_text(err));
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

/* accept(listen_fd) -> connection | nil, "timeout" | nil, err */
static int l_accept(lua_State *L) {
    int listen_fd = (int)luaL_checkinteger(L, 1);
    lfd *s = new_fd(L);
    s->fd = ws_fd_accept(listen_fd);
    if (s->fd < 0)
        return fd_errno(L, errno);
    return 1;
}

/* wrap_fd(fd) -> connection: takes over a connected descriptor (e.g. one
 * a LuaSocket object gave up with setfd(-1)) and makes it non-blocking. */
static int l_wrap_fd(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    luaL_argcheck(L, fd >= 0, 1, "descriptor expected");
    lfd *s = new_fd(L);
    s->fd = fd;                   /* ours from here: closed by __gc on failure too */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return fd_errno(L, errno);
    return 1;
}

/* adopt(fd) -> connection on a duplicate of fd | nil, err: the caller
 * closes its own handle (see ws_fd_adopt) */
static int l_adopt(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    lfd *s = new_fd(L);
    s->fd = ws_fd_adopt(fd);
    if (s->fd < 0)
        return fail(L, strerror(errno));
    return 1;
}

/* raise_fd_limit() -> the soft limit on open descriptors, raised to the
 * hard limit | nil, err */
static int l_raise_fd_limit(lua_State *L) {
    long n = ws_fd_raise_limit();
    if (n < 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
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
    s->fd = (int)luaL_checkinteger(L, 2);
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

/* receive([n]) -> up to n bytes | nil, "timeout" | "wantwrite" | "closed" | err */
static int l_fd_receive(lua_State *L) {
    lfd *s = check_fd(L);
    lua_Integer want = luaL_optinteger(L, 2, SHARED_READ);
    if (want <= 0 || want > SHARED_READ)
        want = SHARED_READ;
    char *buf = (char *)lua_touserdata(L, lua_upvalueindex(1));
    const char *err = NULL;
    size_t n = io_read(s, buf, (size_t)want, &err);
    if (n == 0)
        return push_err(L, err);
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
    push_err(L, err);
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
        close(s->fd);
        s->fd = -1;
    }
    lua_pushinteger(L, 1);
    return 1;
}

/* shutdown(["both"|"send"|"receive"]); over TLS, "send" and "both" send
 * close_notify first */
static int l_fd_shutdown(lua_State *L) {
    static const char *const how[] = {"both", "send", "receive", NULL};
    static const int flags[] = {SHUT_RDWR, SHUT_WR, SHUT_RD};
    lfd *s = check_fd(L);
    int h = luaL_checkoption(L, 2, "both", how);
    if (s->tls && s->fd >= 0 && flags[h] != SHUT_RD)
        ws_tls_shutdown(s->tls);
    if (s->fd < 0 || shutdown(s->fd, flags[h]) != 0)
        return fd_errno(L, s->fd < 0 ? EBADF : errno);
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
        return fd_errno(L, s->fd < 0 ? EBADF : errno);
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
    return fail(L, "unsupported option");
}

static int l_fd_tostring(lua_State *L) {
    lfd *s = check_fd(L);
    if (s->fd < 0)
        lua_pushliteral(L, "ws.fd (closed)");
    else
        lua_pushfstring(L, "ws.fd%s: %d", s->tls ? " (tls)" : "", s->fd);
    return 1;
}

/* ---- TLS ---------------------------------------------------------------- */

typedef struct {
    ws_tls_ctx *ctx;          /* NULL once closed */
} ltlsctx;

static const char *opt_field_str(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    const char *v = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1);                /* (the string stays referenced by the table) */
    return v;
}

/* tls_context{ mode = "server"|"client", certificate, key, password,
 *   cafile, capath, verify = 0|1|2 (none, peer, require), ciphers,
 *   ciphersuites, min_version = 12|13 } -> context | nil, err
 * verify defaults to 2 for a client, 0 for a server. Strings must be
 * plain values in the table (they are read while it is alive). */
static int l_tls_context(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    ws_tls_opts o;
    memset(&o, 0, sizeof o);
    const char *mode = opt_field_str(L, 1, "mode");
    luaL_argcheck(L, mode && (strcmp(mode, "server") == 0 || strcmp(mode, "client") == 0), 1,
                  "mode must be \"server\" or \"client\"");
    o.server = mode[0] == 's';
    o.certificate = opt_field_str(L, 1, "certificate");
    o.key = opt_field_str(L, 1, "key");
    o.password = opt_field_str(L, 1, "password");
    o.cafile = opt_field_str(L, 1, "cafile");
    o.capath = opt_field_str(L, 1, "capath");
    o.ciphers = opt_field_str(L, 1, "ciphers");
    o.ciphersuites = opt_field_str(L, 1, "ciphersuites");
    lua_Integer v = opt_field_int(L, 1, "verify", o.server ? 0 : 2);
    luaL_argcheck(L, v >= 0 && v <= 2, 1, "verify must be 0, 1 or 2");
    o.verify = (int)v;
    lua_Integer mv = opt_field_int(L, 1, "min_version", 12);
    luaL_argcheck(L, mv == 12 || mv == 13, 1, "min_version must be 12 or 13");
    o.min_version = (int)mv;
    /* OpenSSL writes with write(2): a peer gone must give EPIPE, not kill
     * the process. LuaSocket ignores SIGPIPE when it loads; make sure. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    /* born closed, then filled: a failure in between leaves nothing to free */
    ltlsctx *c = (ltlsctx *)lua_newuserdatauv(L, sizeof *c, 0);
    c->ctx = NULL;
    luaL_setmetatable(L, TLSCTX_MT);
    char err[256];
    c->ctx = ws_tls_ctx_new(&o, err, sizeof err);
    if (!c->ctx)
        return fail(L, err);
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
static int l_fd_starttls(lua_State *L) {
    lfd *s = check_fd(L);
    ltlsctx *c = (ltlsctx *)luaL_checkudata(L, 2, TLSCTX_MT);
    const char *name = luaL_optstring(L, 3, NULL);
    luaL_argcheck(L, c->ctx != NULL, 2, "closed TLS context");
    luaL_argcheck(L, s->tls == NULL, 1, "TLS already started");
    if (s->fd < 0)
        return push_err(L, "closed");
    char err[256];
    s->tls = ws_tls_new(c->ctx, s->fd, name, err, sizeof err);
    if (!s->tls)
        return push_err(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* fd:handshake() -> true | nil, "wantread" | "wantwrite" | err */
static int l_fd_handshake(lua_State *L) {
    lfd *s = check_fd(L);
    if (!s->tls)
        return luaL_error(L, "handshake without starttls");
    if (s->fd < 0)
        return push_err(L, "closed");
    switch (ws_tls_handshake(s->tls)) {
    case WS_TLS_DONE:
        lua_pushboolean(L, 1);
        return 1;
    case WS_TLS_WANT_READ:
        return push_err(L, "wantread");
    case WS_TLS_WANT_WRITE:
        return push_err(L, "wantwrite");
    default:
        return push_err(L, ws_tls_error(s->tls));
    }
}

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
    {NULL, NULL}
};

static const luaL_Reg fd_meta[] = {
    {"__gc", l_fd_close},
    {"__close", l_fd_close},
    {"__tostring", l_fd_tostring},
    {NULL, NULL}
};

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

/* realpath(path) -> the absolute path with every symlink, "." and ".."
 * resolved, or nil, err (ws.static keeps files inside their folder). */
static int l_realpath(lua_State *L) {
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    if (strlen(path) != len) return fail(L, "path contains a NUL byte");
    char *resolved = realpath(path, NULL);
    if (!resolved) return fail(L, strerror(errno));
    lua_pushstring(L, resolved);
    free(resolved);
    return 1;
}

/* file_info(path) -> size, mtime (seconds), "file" | "directory" | "other",
 * or nil, err (ws.static's ETag and its check for regular files). */
static int l_file_info(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) return fail(L, strerror(errno));
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "other");
    return 3;
}

static const luaL_Reg funcs[] = {
    {"accept_key", l_accept_key},
    {"new_key", l_new_key},
    {"random", l_random},
    {"parse_request", l_parse_request},
    {"parse_response", l_parse_response},
    {"build_response", l_build_response},
    {"frame", l_frame},
    {"close_payload", l_close_payload},
    {"mask", l_mask},
    {"utf8_valid", l_utf8_valid},
    {"reader", l_reader},
    {"send_frame", l_send_frame},
    {"deflate", l_deflate},
    {"accept", l_accept},
    {"wrap_fd", l_wrap_fd},
    {"tls_context", l_tls_context},
    {"adopt", l_adopt},
    {"raise_fd_limit", l_raise_fd_limit},
    {"realpath", l_realpath},
    {"file_info", l_file_info},
#ifdef WS_HAVE_EPOLL
    {"epoll", l_epoll},
#endif
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

int luaopen_ws_core(lua_State *L) {
    /* made before any ws.deflate, so finalised after them all */
    lzctx *zc = (lzctx *)lua_newuserdatauv(L, sizeof *zc, 0);
    memset(zc, 0, sizeof *zc);
    zc->keys.pos = sizeof zc->keys.buf;
    int zctx = lua_gettop(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_zctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, zctx);
    lua_newuserdatauv(L, SHARED_READ, 0);   /* the shared read buffer */
    int shared = lua_gettop(L);
    luaL_newmetatable(L, READER_MT);
    luaL_setfuncs(L, reader_meta, 0);
    luaL_newlibtable(L, reader_methods);
    lua_pushvalue(L, shared);
    lua_pushvalue(L, zctx);
    luaL_setfuncs(L, reader_methods, 2);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, FD_MT);
    luaL_setfuncs(L, fd_meta, 0);
    luaL_newlibtable(L, fd_methods);
    lua_pushvalue(L, shared);
    luaL_setfuncs(L, fd_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pop(L, 1);                          /* shared buffer: kept by the upvalues */
    luaL_newmetatable(L, TLSCTX_MT);
    luaL_setfuncs(L, tlsctx_meta, 0);
    luaL_newlib(L, tlsctx_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, DEFLATE_MT);
    luaL_setfuncs(L, deflate_meta, 0);
    luaL_newlibtable(L, deflate_methods);
    lua_pushvalue(L, zctx);
    luaL_setfuncs(L, deflate_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
#ifdef WS_HAVE_EPOLL
    luaL_newmetatable(L, POLLER_MT);
    luaL_setfuncs(L, poller_meta, 0);
    luaL_newlib(L, poller_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
#endif
    luaL_newlibtable(L, funcs);
    lua_pushvalue(L, zctx);
    luaL_setfuncs(L, funcs, 1);
    ws_core_sys_register(L);
    return 1;
}
