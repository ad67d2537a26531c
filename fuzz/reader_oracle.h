/* The reader's oracles, shared by fuzz_reader.c and fuzz_reader_big.c:
 * split invariance (whole, alternating fixed and 1-byte pieces, arbitrary
 * pieces including empty feeds, each from an exact-size heap block), a
 * reference decoder written from RFC 6455 section 5, and the contract of
 * every event. check_stream() runs them all on one stream and aborts on
 * any difference. */
#ifndef FUZZ_READER_ORACLE_H
#define FUZZ_READER_ORACLE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_reader.h"
#include "ref_utf8.h"

typedef struct {
    unsigned char *p;
    size_t len, cap;
} vec;

static void put(vec *v, const void *d, size_t n)
{
    if (v->len + n > v->cap) {
        size_t cap = v->cap ? v->cap : 256;
        while (cap < v->len + n)
            cap *= 2;
        v->p = (unsigned char *)realloc(v->p, cap);
        if (v->p == NULL)
            abort();
        v->cap = cap;
    }
    if (n)
        memcpy(v->p + v->len, d, n);
    v->len += n;
}

static int same(const vec *a, const vec *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* One event in a form both the reader and the reference can produce. */
static void log_raw(vec *log, int opcode, int rsv, const unsigned char *data, uint64_t n,
                    unsigned close_code, const unsigned char *reason, uint64_t rl)
{
    unsigned char head[3];

    head[0] = (unsigned char)opcode;
    head[1] = (unsigned char)rsv;
    head[2] = 0;
    put(log, head, 3);
    put(log, &n, sizeof n);
    put(log, data, (size_t)n);
    put(log, &close_code, sizeof close_code);
    put(log, &rl, sizeof rl);
    put(log, reason, (size_t)rl);
}

/* The most bytes a message may have on the wire: max_message, or for an
 * RSV1 (compressed) one zlib's deflateBound() of max_message for unknown
 * parameters, + 1 for the sync flush (0: no limit). */
static uint64_t wire_limit(const ws_reader_opts *o, unsigned rsv)
{
    uint64_t m = o->max_message, a, b;

    if (!(rsv & WS_RSV1))
        return m;
    a = m + m / 8 + m / 256 + m / 512 + 4;
    b = m + m / 32 + m / 128 + m / 2048 + 7;
    return m ? (a > b ? a : b) + 1 : 0;
}

/* Check an event against the contract and append it to the log. */
static void log_event(vec *log, const ws_reader_opts *o, const ws_event *ev)
{
    if (ev->data == NULL || ev->reason == NULL)
        abort();
    switch (ev->opcode) {
    case WS_OP_TEXT:
        if (!(ev->rsv & WS_RSV1) && !ws_utf8_valid(ev->data, ev->len))
            abort();
        /* fall through */
    case WS_OP_BINARY:
        if (o->max_message && ev->len > wire_limit(o, (unsigned)ev->rsv))
            abort();
        if (ev->rsv & ~o->rsv_allowed)
            abort();
        break;
    case WS_OP_CLOSE:
        if (ev->len == 0 ? ev->close_code != 1005 || ev->reason_len != 0
                         : !ws_close_code_valid(ev->close_code))
            abort();
        if (ev->reason_len && (ev->reason != ev->data + 2 || ev->reason_len + 2 != ev->len
                               || !ws_utf8_valid(ev->reason, ev->reason_len)))
            abort();
        /* fall through */
    case WS_OP_PING:
    case WS_OP_PONG:
        if (ev->len > WS_MAX_CONTROL || ev->rsv != 0)
            abort();
        break;
    default:
        abort();
    }
    log_raw(log, ev->opcode, ev->rsv, ev->data, ev->len, ev->close_code,
            ev->reason, ev->reason_len);
}

/* Piece sizes: mode 0 everything at once; mode 1 alternately `piece` and 1;
 * mode 2 arbitrary sizes 0..64 (sometimes larger) from xorshift64. */
typedef struct {
    int mode;
    size_t piece;
    uint64_t state;
    size_t k;
    size_t scale;             /* mode 2 sizes are multiplied by this (>= 1) */
} splitter;

static size_t next_piece(splitter *s, size_t left)
{
    size_t len;

    switch (s->mode) {
    case 0:
        return left;
    case 1:
        len = (s->k++ & 1) ? 1 : s->piece;
        break;
    default:
        s->state ^= s->state << 13;
        s->state ^= s->state >> 7;
        s->state ^= s->state << 17;
        switch (s->state >> 60) {
        case 0: len = 0; break;                                  /* empty feed */
        case 1: len = (size_t)(s->state % 1024) * s->scale; break;   /* a big gulp */
        default: len = (size_t)((s->state >> 8) % 65) * s->scale; break;
        }
    }
    return len < left ? len : left;
}

/* Feed data as the splitter says. Returns the final close code (0: no
 * failure); the log gets the events, *why the failure's reason pointer. */
static unsigned run(const ws_reader_opts *o, const unsigned char *data, size_t n,
                    splitter *sp, vec *log, const char **why)
{
    ws_reader r;
    size_t start = 0;
    int rc = WS_READ_NEED;
    unsigned code = 0;
    unsigned empty_feeds = 0;

    *why = NULL;
    ws_reader_init(&r, o);
    while (start < n && rc == WS_READ_NEED) {
        size_t len = next_piece(sp, n - start);
        size_t off = 0;
        unsigned char *piece;

        /* a run of empty feeds cannot go on for ever */
        if (len == 0 && ++empty_feeds > 64)
            len = 1;
        piece = (unsigned char *)malloc(len ? len : 1);
        if (piece == NULL)
            abort();
        memcpy(piece, data + start, len);
        for (;;) {
            ws_event ev;
            size_t used = (size_t)-1;
            rc = ws_reader_feed(&r, piece + off, len - off, &used, &ev);
            if (used > len - off)
                abort();
            off += used;
            if (rc == WS_READ_EVENT) {
                log_event(log, o, &ev);
                rc = WS_READ_NEED;
                if (off == len)
                    break;
                continue;
            }
            if (rc == WS_READ_NEED && off != len)
                abort();
            break;
        }
        free(piece);
        start += len;
    }
    if (rc != WS_READ_NEED) {
        const char *err = r.error;
        ws_event ev;
        size_t used = 1;
        code = r.error_code;
        if (rc != WS_READ_ERROR || err == NULL
            || (code != 1002 && code != 1007 && code != 1009))
            abort();
        /* failed for good */
        if (ws_reader_feed(&r, data, n, &used, &ev) != WS_READ_ERROR || used != 0
            || r.error != err || r.error_code != code)
            abort();
        *why = err;
    }
    /* the buffer never grows past what the limit allows */
    if (o->max_message && r.buf_cap > wire_limit(o, (unsigned)o->rsv_allowed))
        abort();
    ws_reader_free(&r);
    return code;
}

/* ---- reference decoder ---------------------------------------------------- */

static int ref_close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* The whole input at once. Returns the close code the reader must fail
 * with, or 0 when the input ends without a failure. */
static unsigned ref_run(const ws_reader_opts *o, const unsigned char *p, size_t n, vec *log)
{
    size_t i = 0;
    int msg_op = 0, msg_rsv = 0;
    vec msg = { NULL, 0, 0 };
    unsigned code = 0;

    while (i < n) {
        size_t avail = n - i, ext, hl, take, j;
        unsigned b0 = p[i], b1 = p[i + 1 < n ? i + 1 : i], l7, op, rsv;
        int fin, masked, control, text;
        unsigned char key[4] = { 0, 0, 0, 0 };
        unsigned char pay[WS_MAX_CONTROL];
        uint64_t len;

        if (avail < 2)
            break;
        l7 = b1 & 0x7f;
        ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
        /* a 64-bit length with the top bit set fails as soon as it is seen */
        if (l7 == 127 && avail > 2 && (p[i + 2] & 0x80)) { code = 1002; break; }
        hl = 2 + ext + ((b1 & 0x80) ? 4 : 0);
        if (avail < hl)
            break;
        len = l7;
        if (ext) {
            len = 0;
            for (j = 0; j < ext; j++)
                len = len * 256 + p[i + 2 + j];
        }
        fin = (b0 & 0x80) != 0;
        rsv = (b0 >> 4) & 7;
        op = b0 & 0x0f;
        masked = (b1 & 0x80) != 0;
        if (masked)
            for (j = 0; j < 4; j++)
                key[j] = p[i + 2 + ext + j];
        control = op >= 8;

        /* every 1002 rule comes before the size rule */
        if ((op >= 3 && op <= 7) || op >= 11) { code = 1002; break; }
        if (masked != (o->role == WS_ROLE_SERVER)) { code = 1002; break; }
        if (control && (!fin || len > 125 || rsv)) { code = 1002; break; }
        if (op == 0 && (!msg_op || rsv)) { code = 1002; break; }
        if (op == 1 || op == 2) {
            if (msg_op || (rsv & ~(unsigned)o->rsv_allowed)) { code = 1002; break; }
        }
        if (!control) {
            uint64_t have = op == 0 ? msg.len : 0;
            uint64_t max = wire_limit(o, op == 0 ? (unsigned)msg_rsv : rsv);
            if (max && have + len > max) { code = 1009; break; }
            if (op != 0) {
                msg_op = (int)op;
                msg_rsv = (int)rsv;
                msg.len = 0;
            }
        }
        i += hl;
        take = (uint64_t)(n - i) < len ? n - i : (size_t)len;
        /* RSV1 (permessage-deflate) text is checked after inflating, above the reader */
        text = msg_op == 1 && !(msg_rsv & WS_RSV1);

        if (control) {
            for (j = 0; j < take; j++)
                pay[j] = p[i + j] ^ key[j % 4];
            if (take < len)
                break;
            i += take;
            if (op == 8) {
                unsigned c = 1005;
                if (take == 1) { code = 1002; break; }
                if (take >= 2) {
                    c = (unsigned)pay[0] * 256 + pay[1];
                    if (!ref_close_code_ok(c)) { code = 1002; break; }
                    if (ref_utf8_kind(pay + 2, take - 2) != REF_VALID) { code = 1007; break; }
                }
                log_raw(log, (int)op, 0, pay, take, c, take >= 2 ? pay + 2 : pay,
                        take >= 2 ? take - 2 : 0);
            } else {
                log_raw(log, (int)op, 0, pay, take, 0, pay, 0);
            }
            continue;
        }
        {
            size_t at = msg.len;
            put(&msg, p + i, take);
            for (j = 0; j < take; j++)
                msg.p[at + j] ^= key[j % 4];
        }
        i += take;
        /* bad text fails at the first byte that cannot be completed */
        if (text && ref_utf8_kind(msg.p, msg.len) == REF_INVALID) { code = 1007; break; }
        if (take < len)
            break;
        if (fin) {
            if (text && ref_utf8_kind(msg.p, msg.len) != REF_VALID) { code = 1007; break; }
            log_raw(log, msg_op, msg_rsv, msg.p, msg.len, 0, msg.p, 0);
            msg_op = 0;
        }
    }
    free(msg.p);
    return code;
}

static uint64_t fnv1a(const uint8_t *d, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= d[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

/* Run every oracle on one stream; seed drives the arbitrary splits, piece
 * the alternating ones, scale multiplies the arbitrary piece sizes. */
static void check_stream(const ws_reader_opts *o, const unsigned char *stream, size_t n,
                         size_t piece, uint64_t seed, size_t scale)
{
    vec ref = { NULL, 0, 0 }, logs[3] = { { NULL, 0, 0 }, { NULL, 0, 0 }, { NULL, 0, 0 } };
    const char *why[3];
    unsigned codes[3], ref_code;
    splitter sp[3];
    int k;

    memset(sp, 0, sizeof sp);
    sp[1].mode = 1;
    sp[1].piece = piece;
    sp[2].mode = 2;
    sp[2].state = seed | 1;          /* xorshift needs a non-zero state */
    sp[2].scale = scale ? scale : 1;
    for (k = 0; k < 3; k++)
        codes[k] = run(o, stream, n, &sp[k], &logs[k], &why[k]);
    ref_code = ref_run(o, stream, n, &ref);

    for (k = 1; k < 3; k++)
        if (codes[k] != codes[0] || why[k] != why[0] || !same(&logs[k], &logs[0]))
            abort();
    if (codes[0] != ref_code || !same(&logs[0], &ref))
        abort();
    for (k = 0; k < 3; k++)
        free(logs[k].p);
    free(ref.p);
}

#endif
