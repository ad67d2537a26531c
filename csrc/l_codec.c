/* ws.core: handshake, frame and UTF-8 functions. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>


#include <lua.h>
#include <lauxlib.h>
#include "ws_compat.h"   /* 5.1, LuaJIT, 5.2, 5.3: what they lack of the 5.4 API */

#include "ws_binding.h"
#include "ws_handshake.h"
#include "ws_utf8.h"
/* ---- handshake ---------------------------------------------------------- */

static int l_accept_key(lua_State *L) {
    size_t n;
    const char *key = luaL_checklstring(L, 1, &n);
    unsigned char raw[16];
    char out[WS_ACCEPT_LEN + 1];
    if (ws_base64_decode(key, n, raw, sizeof raw) != 16)
        return ws_fail(L, "invalid sec-websocket-key");
    if (ws_accept_key(key, n, out) != 0)
        return ws_fail(L, "sha-1 failed");
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
 * with ", " as RFC 9110 section 5.3 allows. Whether a name came before is
 * asked of the fields already parsed, not of the table (no lookup per
 * field; most heads repeat none). */
#define KEY_MAX 256   /* bytes of a name kept as its key */
static int same_name(const ws_header *a, const ws_header *b) {
    size_t n = a->name_len < KEY_MAX ? a->name_len : KEY_MAX;
    if (n != (b->name_len < KEY_MAX ? b->name_len : KEY_MAX))
        return 0;
    for (size_t j = 0; j < n; j++) {
        unsigned char x = (unsigned char)a->name[j], y = (unsigned char)b->name[j];
        if (x != y && ((x | 0x20) != (y | 0x20) || (x | 0x20) < 'a' || (x | 0x20) > 'z'))
            return 0;
    }
    return 1;
}

static void push_headers(lua_State *L, const ws_http *h) {
    lua_createtable(L, 0, (int)h->nheaders);
    for (size_t i = 0; i < h->nheaders; i++) {
        const ws_header *f = &h->headers[i];
        char name[KEY_MAX];
        size_t n = f->name_len < sizeof name ? f->name_len : sizeof name;
        int again = 0;
        for (size_t k = 0; k < i && !again; k++)
            again = same_name(&h->headers[k], f);
        for (size_t j = 0; j < n; j++) {
            char c = f->name[j];
            name[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        lua_pushlstring(L, name, n);
        if (!again) {
            lua_pushlstring(L, f->value, f->value_len);
        } else {
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);
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
    const char *q = memchr(req.path, '?', req.path_len);
    size_t plen = q ? (size_t)(q - req.path) : req.path_len;
    if (plen == 0)
        lua_pushliteral(L, "/");        /* "http://host" or "http://host?q" */
    else
        lua_pushlstring(L, req.path, plen);
    lua_setfield(L, -2, "path");
    if (q)
        set_field(L, "query", q + 1, req.path_len - plen - 1);
    lua_pushstring(L, req.minor ? "1.1" : "1.0");
    lua_setfield(L, -2, "version");
    push_headers(L, &req);
    /* an absolute-form target names the host: RFC 9112 section 3.2.2 has
     * the server use it, not the Host header (which must still be there) */
    if (req.authority)
        set_field(L, "host", req.authority, req.authority_len);
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

/* 1 if head holds a line starting with SP or HTAB (an obs-fold, maybe) */
static int has_fold(const char *head, size_t n) {
    const char *p = head, *end = head + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL && ++p < end)
        if (*p == ' ' || *p == '\t')
            return 1;
    return 0;
}

/* parse_response(head [, key]) -> res | nil, err [, res]
 * With key, the response must be a valid 101 for it. Obs-folds are
 * replaced with SP first (RFC 9112 section 5.2), in a copy. */
static int l_parse_response(lua_State *L) {
    size_t n;
    const char *head = luaL_checklstring(L, 1, &n);
    const char *key = luaL_optstring(L, 2, NULL);
    ws_http res;
    const char *err = NULL;
    if (has_fold(head, n)) {
        char *copy = lua_newuserdata(L, n);   /* (stays on the stack while parsed) */
        memcpy(copy, head, n);
        ws_http_unfold(copy, n);
        head = copy;
    }
    if (ws_http_parse_response(head, n, &res, &err) != 0)
        return ws_fail(L, err ? err : "malformed response");
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

/* build_response(accept [, protocol [, extensions]]) -> the 101 response head */
static int l_build_response(lua_State *L) {
    size_t n, pn = 0, en = 0;
    const char *accept = luaL_checklstring(L, 1, &n);
    const char *proto = luaL_optlstring(L, 2, NULL, &pn);
    const char *ext = luaL_optlstring(L, 3, NULL, &en);
    luaL_argcheck(L, !proto || ws_http_field_value_ok(proto, pn), 2, "invalid protocol");
    luaL_argcheck(L, !ext || ws_http_field_value_ok(ext, en), 3, "invalid extensions");
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

const char *const ws_kind_names[] = {"continuation", "text", "binary", NULL, NULL,
    NULL, NULL, NULL, "close", "ping", "pong", NULL, NULL, NULL, NULL, NULL};

int ws_check_opcode(lua_State *L, int idx) {
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
        if (op < 0 || strcmp(k, ws_kind_names[op]) != 0)
            return luaL_argerror(L, idx, "unknown frame kind");
        return op;
    }
    lua_Integer op = luaL_checkinteger(L, idx);
    luaL_argcheck(L, op >= 0 && op <= 15, idx, "opcode out of range");
    return (int)op;
}

/* A frame to encode: frame()'s arguments, read and checked, the payload
 * compressed (then it lies in zc->buf until written). */
typedef struct {
    const char *payload;
    size_t n, hl;
    int op, fin, rsv, z;
    unsigned char key[4];
    const unsigned char *kp;
} frame_args;

/* frame()'s arguments from index a on: payload, kind, fin, mask, rsv |
 * deflate, check. 0, or -1 when check found a text payload not UTF-8. */
static int get_frame_args(lua_State *L, int a, lzctx *zc, frame_args *f) {
    f->payload = luaL_checklstring(L, a, &f->n);
    f->op = ws_check_opcode(L, a + 1);
    if (f->op == WS_OP_TEXT && lua_toboolean(L, a + 5) &&
        !ws_utf8_valid((const unsigned char *)f->payload, f->n))
        return -1;
    f->fin = lua_isnoneornil(L, a + 2) ? 1 : lua_toboolean(L, a + 2);  /* nil: default */
    ws_deflate *z = lua_type(L, a + 4) == LUA_TUSERDATA ? &ws_check_deflate(L, a + 4)->d : NULL;
    lua_Integer rsv = z ? 4 : luaL_optinteger(L, a + 4, 0);
    luaL_argcheck(L, rsv >= 0 && rsv <= 7, a + 4, "rsv out of range");
    f->rsv = (int)rsv;
    f->z = z != NULL;
    if (z) {
        if (ws_deflate_compress(z, (const unsigned char *)f->payload, f->n, &zc->buf, &f->n) != WS_DEFLATE_OK)
            return luaL_error(L, "not enough memory");
        f->payload = (const char *)zc->buf.p;
    }
    f->kp = NULL;
    if (lua_type(L, a + 3) == LUA_TSTRING) {
        size_t kl;
        const char *k = lua_tolstring(L, a + 3, &kl);
        luaL_argcheck(L, kl == 4, a + 3, "mask key must be 4 bytes");
        memcpy(f->key, k, 4);
        f->kp = f->key;
    } else if (lua_toboolean(L, a + 3)) {
        if (ws_mask_key(&zc->keys, f->key) != 0)
            return luaL_error(L, "RAND_bytes failed");
        f->kp = f->key;
    }
    f->hl = ws_frame_header_size(f->n, f->kp != NULL);
    return 0;
}

/* the frame's f->hl + f->n bytes into out */
static void write_frame(const frame_args *f, lzctx *zc, unsigned char *out) {
    ws_frame_write_header(out, f->fin, f->rsv, f->op, f->n, f->kp);
    if (f->kp)
        ws_mask(out + f->hl, (const unsigned char *)f->payload, f->n, f->kp, 0);
    else
        memcpy(out + f->hl, f->payload, f->n);
    if (f->z)
        ws_zbuf_trim(zc);
}

/* frame(payload, kind_or_opcode [, fin=true [, mask=false [, rsv=0 | deflate [, check]]]]) -> bytes
 * mask=true draws a fresh key (buffered RAND_bytes); mask may also be a 4-byte key.
 * With a ws.deflate object the payload is compressed here and the frame has RSV1.
 * check (true): a text payload must be UTF-8, else nil, "invalid utf-8". */
static int l_frame(lua_State *L) {
    lzctx *zc = ZCTX(1);
    frame_args f;
    if (get_frame_args(L, 1, zc, &f) != 0)
        return ws_fail(L, "invalid utf-8");
    luaL_Buffer b;
    ws_zbuf lent = ws_zbuf_lend(zc);   /* f.payload may be in it */
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, f.hl + f.n);
    ws_zbuf_back(zc, lent);
    write_frame(&f, zc, out);
    luaL_pushresultsize(&b, f.hl + f.n);
    return 1;
}

/* ---- frame buffers ------------------------------------------------------ */

/* framebuf() -> a buffer frames are encoded into, to leave as one string:
 * a connection's corked frames, with no Lua string per frame. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
} lframebuf;

static lframebuf *check_framebuf(lua_State *L) {
    lframebuf *b = (lframebuf *)ws_toudata_up(L, 1, 2);
    return b ? b : (lframebuf *)luaL_checkudata(L, 1, FRAMEBUF_MT);
}

/* fb:add(payload, kind [, fin [, mask [, rsv | deflate [, check]]]]) -> bytes added | nil, "invalid utf-8"
 * (frame()'s arguments) */
static int l_framebuf_add(lua_State *L) {
    lframebuf *b = check_framebuf(L);
    lzctx *zc = ZCTX(1);
    frame_args f;
    if (get_frame_args(L, 2, zc, &f) != 0)
        return ws_fail(L, "invalid utf-8");
    size_t need = f.hl + f.n;
    if (b->cap - b->len < need) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap - b->len < need)
            cap *= 2;
        unsigned char *p = (unsigned char *)realloc(b->p, cap);
        if (!p) {
            if (f.z)
                ws_zbuf_trim(zc);
            return luaL_error(L, "not enough memory");
        }
        b->p = p;
        b->cap = cap;
    }
    write_frame(&f, zc, b->p + b->len);
    b->len += need;
    lua_pushinteger(L, (lua_Integer)need);
    return 1;
}

/* fb:take() -> the frames added since the last take, as one string, or
 * nil if none. The memory goes back: an idle connection keeps none. */
static int l_framebuf_take(lua_State *L) {
    lframebuf *b = check_framebuf(L);
    if (b->len == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, (const char *)b->p, b->len);
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    return 1;
}

/* fb:size() -> bytes added and not taken */
static int l_framebuf_size(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)check_framebuf(L)->len);
    return 1;
}

static int l_framebuf_gc(lua_State *L) {
    lframebuf *b = (lframebuf *)luaL_checkudata(L, 1, FRAMEBUF_MT);
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    return 0;
}

static int l_framebuf_tostring(lua_State *L) {
    lframebuf *b = (lframebuf *)luaL_checkudata(L, 1, FRAMEBUF_MT);
    lua_pushfstring(L, "ws.framebuf (%d bytes): %p", (int)b->len, (void *)b);
    return 1;
}

static int l_framebuf_new(lua_State *L) {
    lframebuf *b = (lframebuf *)lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return 1;
}

static const luaL_Reg framebuf_methods[] = {
    {"add", l_framebuf_add},
    {"take", l_framebuf_take},
    {"size", l_framebuf_size},
    {NULL, NULL}
};

static const luaL_Reg framebuf_meta[] = {
    {"__gc", l_framebuf_gc},
    {"__close", l_framebuf_gc},
    {"__tostring", l_framebuf_tostring},
    {NULL, NULL}
};

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
        return ws_fail(L, "invalid close code");
    if (rl > WS_MAX_CONTROL - 2)
        return ws_fail(L, "close reason too long");
    if (!ws_utf8_valid((const unsigned char *)reason, rl))
        return ws_fail(L, "close reason is not utf-8");
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

/* field_value_valid(s) -> true if s may be written as a header field value */
static int l_field_value_valid(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, ws_http_field_value_ok(s, n));
    return 1;
}

/* base64(s) -> standard base64 with padding (HTTP Basic credentials) */
static int l_base64(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (n + 2) / 3 * 4 + 1);
    luaL_pushresultsize(&b, ws_base64_encode((const unsigned char *)s, n, out));
    return 1;
}

static int l_utf8_valid(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, ws_utf8_valid((const unsigned char *)s, n));
    return 1;
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
    {"base64", l_base64},
    {"field_value_valid", l_field_value_valid},
    {NULL, NULL}
};

void ws_open_codec(lua_State *L, int zctx) {
    lua_pushvalue(L, zctx);
    luaL_setfuncs(L, funcs, 1);
    /* framebuf methods: upvalue 1 zctx, 2 the metatable (quick checks) */
    lua_pushvalue(L, zctx);
    luaL_newmetatable(L, FRAMEBUF_MT);
    ws_new_type(L, FRAMEBUF_MT, framebuf_meta, framebuf_methods, 2);
    luaL_getmetatable(L, FRAMEBUF_MT);
    lua_pushcclosure(L, l_framebuf_new, 1);
    lua_setfield(L, -2, "framebuf");
}
