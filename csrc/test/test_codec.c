/* Unit tests for ws_utf8, ws_frame and ws_reader: RFC 6455 section 5.7
 * examples, every protocol rule broken once (both roles), UTF-8 classes
 * one-shot and split at every position, masking against a byte loop, size
 * limits, and the same events whatever way the input is split. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "ws_frame.h"
#include "ws_reader.h"
#include "ws_utf8.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} vec;

static void vec_put(vec *v, const void *d, size_t n)
{
    if (v->len + n > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->len + n)
            cap *= 2;
        v->p = (unsigned char *)realloc(v->p, cap);
        if (v->p == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        v->cap = cap;
    }
    if (n)
        memcpy(v->p + v->len, d, n);
    v->len += n;
}

static void vec_free(vec *v)
{
    free(v->p);
    v->p = NULL;
    v->len = v->cap = 0;
}

/* Append a frame as a peer of a reader in role would send it: masked
 * toward a server, unmasked toward a client. */
static void frame(vec *v, int role, int fin, int rsv, int op, const void *data, size_t n)
{
    static const unsigned char keys[3][4] = {
        { 0x37, 0xfa, 0x21, 0x3d }, { 0x00, 0x00, 0x00, 0x00 }, { 0xff, 0x80, 0x01, 0x5a }
    };
    unsigned char h[WS_MAX_HEADER];
    const unsigned char *key = role == WS_ROLE_SERVER ? keys[(n + (size_t)op) % 3] : NULL;
    size_t hl = ws_frame_write_header(h, fin, rsv, op, n, key);
    size_t at;

    vec_put(v, h, hl);
    at = v->len;
    vec_put(v, data, n);
    if (key && n)
        ws_mask(v->p + at, v->p + at, n, key, 0);
}

static void frame_s(vec *v, int role, int fin, int op, const char *s)
{
    frame(v, role, fin, 0, op, s, strlen(s));
}

static ws_reader_opts opts_of(int role, uint64_t max, int rsv_allowed)
{
    ws_reader_opts o;
    memset(&o, 0, sizeof o);
    o.role = role;
    o.max_message = max;
    o.rsv_allowed = rsv_allowed;
    return o;
}

/* ---- recorded runs -------------------------------------------------------- */

#define MAXEV 32

typedef struct {
    int op, rsv;
    unsigned code;
    unsigned char *data, *reason;
    size_t len, rlen;
} rec;

typedef struct {
    rec ev[MAXEV];
    int nev;
    int rc;              /* the last return: NEED, ERROR or NOMEM */
    unsigned code;
    const char *err;
    int contract;        /* 0 if a call broke the used/return contract */
} result;

static unsigned char *dup_bytes(const unsigned char *p, size_t n)
{
    unsigned char *d = (unsigned char *)malloc(n + 1);
    if (d == NULL)
        exit(2);
    if (n)
        memcpy(d, p, n);
    return d;
}

static void record(result *res, const ws_event *ev)
{
    rec *e;
    if (res->nev == MAXEV) {
        res->contract = 0;
        return;
    }
    e = &res->ev[res->nev++];
    e->op = ev->opcode;
    e->rsv = ev->rsv;
    e->code = ev->close_code;
    e->len = ev->len;
    e->rlen = ev->reason_len;
    e->data = dup_bytes(ev->data, ev->len);
    e->reason = dup_bytes(ev->reason, ev->reason_len);
    if (ev->data == NULL || ev->reason == NULL)
        res->contract = 0;
    /* a close reason lies inside the payload, after the code */
    if (ev->opcode == WS_OP_CLOSE && ev->reason_len
        && (ev->reason != ev->data + 2 || ev->reason_len + 2 != ev->len))
        res->contract = 0;
}

static void result_free(result *res)
{
    int i;
    for (i = 0; i < res->nev; i++) {
        free(res->ev[i].data);
        free(res->ev[i].reason);
    }
    res->nev = 0;
}

/* Feed s as the pieces ending at ends[0..nends) (the last end is n). */
static void run_pieces(const ws_reader_opts *o, const unsigned char *s, size_t n,
                       const size_t *ends, size_t nends, result *res)
{
    ws_reader r;
    size_t start = 0, k;

    memset(res, 0, sizeof *res);
    res->contract = 1;
    res->rc = WS_READ_NEED;
    if (nends == 0 || ends[nends - 1] != n)
        res->contract = 0;
    ws_reader_init(&r, o);
    for (k = 0; k < nends && res->rc == WS_READ_NEED; k++) {
        size_t off = start, end = ends[k];
        for (;;) {
            size_t used = 12345;
            ws_event ev;
            int rc = ws_reader_feed(&r, s + off, end - off, &used, &ev);
            if (used > end - off)
                res->contract = 0;
            off += used;
            if (rc == WS_READ_EVENT) {
                record(res, &ev);
                if (off == end)
                    break;
                continue;
            }
            res->rc = rc;
            if (rc == WS_READ_NEED && off != end)
                res->contract = 0;
            break;
        }
        start = end;
    }
    res->code = r.error_code;
    res->err = r.error;
    if (res->rc == WS_READ_ERROR || res->rc == WS_READ_NOMEM) {
        /* failed for good: nothing consumed, same failure */
        size_t used = 1;
        ws_event ev;
        unsigned char b = 0x81;
        if (ws_reader_feed(&r, &b, 1, &used, &ev) != WS_READ_ERROR || used != 0
            || r.error_code != res->code || r.error != res->err)
            res->contract = 0;
    }
    ws_reader_free(&r);
}

static void run_whole(const ws_reader_opts *o, const unsigned char *s, size_t n, result *res)
{
    run_pieces(o, s, n, &n, 1, res);
}

static void run_cut(const ws_reader_opts *o, const unsigned char *s, size_t n,
                    size_t cut, result *res)
{
    size_t ends[2];
    ends[0] = cut;
    ends[1] = n;
    run_pieces(o, s, n, ends, 2, res);
}

static void run_step(const ws_reader_opts *o, const unsigned char *s, size_t n,
                     size_t step, result *res)
{
    size_t *ends = (size_t *)malloc((n / step + 2) * sizeof *ends);
    size_t k = 0, at = 0;
    if (ends == NULL)
        exit(2);
    while (at + step < n) {
        at += step;
        ends[k++] = at;
    }
    ends[k++] = n;
    run_pieces(o, s, n, ends, k, res);
    free(ends);
}

static int same_result(const result *a, const result *b)
{
    int i;
    if (a->nev != b->nev || a->rc != b->rc || a->code != b->code || a->err != b->err)
        return 0;
    if (!a->contract || !b->contract)
        return 0;
    for (i = 0; i < a->nev; i++) {
        const rec *x = &a->ev[i], *y = &b->ev[i];
        if (x->op != y->op || x->rsv != y->rsv || x->code != y->code
            || x->len != y->len || x->rlen != y->rlen
            || memcmp(x->data, y->data, x->len) != 0
            || memcmp(x->reason, y->reason, x->rlen) != 0)
            return 0;
    }
    return 1;
}

/* Whole, split at every position, 1, 3 and 7 bytes at a time: all the same.
 * Returns how many splits disagreed with the whole run. */
static int split_mismatches(const ws_reader_opts *o, const unsigned char *s, size_t n,
                            const result *whole)
{
    static const size_t steps[] = { 1, 3, 7 };
    result res;
    size_t cut, i;
    int bad = 0;

    for (cut = 0; cut <= n; cut++) {
        run_cut(o, s, n, cut, &res);
        if (!same_result(whole, &res)) {
            if (!bad)
                fprintf(stderr, "  split at %lu differs\n", (unsigned long)cut);
            bad++;
        }
        result_free(&res);
    }
    for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        run_step(o, s, n, steps[i], &res);
        if (!same_result(whole, &res)) {
            fprintf(stderr, "  step %lu differs\n", (unsigned long)steps[i]);
            bad++;
        }
        result_free(&res);
    }
    return bad;
}

static int event_is(const result *res, int i, int op, const void *data, size_t n)
{
    return i < res->nev && res->ev[i].op == op && res->ev[i].len == n
        && memcmp(res->ev[i].data, data, n) == 0;
}

static int err_is(const result *res, unsigned code, const char *err)
{
    return res->contract && res->rc == WS_READ_ERROR && res->code == code
        && res->err != NULL && strcmp(res->err, err) == 0;
}

/* Expect the stream to fail with code/err, fed whole and a byte at a time,
 * with exactly nev events before the failure. */
static void expect_error(const ws_reader_opts *o, const vec *v, int nev,
                         unsigned code, const char *err, int line)
{
    result a, b;
    run_whole(o, v->p, v->len, &a);
    run_step(o, v->p, v->len, 1, &b);
    if (!err_is(&a, code, err) || a.nev != nev || !same_result(&a, &b))
        fprintf(stderr, "  expect_error from line %d: got %u \"%s\" after %d events\n",
                line, a.code, a.err ? a.err : "", a.nev);
    CHECK(err_is(&a, code, err));
    CHECK(a.nev == nev);
    CHECK(same_result(&a, &b));
    result_free(&a);
    result_free(&b);
}

#define EXPECT_ERROR(o, v, nev, code, err) expect_error(o, v, nev, code, err, __LINE__)

/* ---- RFC 6455 section 5.7 ----------------------------------------------- */

static void test_rfc_examples(void)
{
    static const unsigned char hello[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    static const unsigned char hello_masked[] = {
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    static const unsigned char frag[] = {
        0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f };
    static const unsigned char ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    static const unsigned char pong_masked[] = {
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    static const unsigned char ping_masked[] = {
        0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    static const unsigned char pong[] = { 0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    static const unsigned char key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    ws_reader_opts srv = opts_of(WS_ROLE_SERVER, 0, 0), cli = opts_of(WS_ROLE_CLIENT, 0, 0);
    ws_frame_header h;
    ws_reader r;
    ws_event ev;
    result res;
    unsigned char out[WS_MAX_HEADER], *big;
    size_t need = 99, used, n;
    int rc;

    /* single-frame unmasked text, delivered in place from the input */
    ws_reader_init(&r, &cli);
    rc = ws_reader_feed(&r, hello, sizeof hello, &used, &ev);
    CHECK(rc == WS_READ_EVENT && used == sizeof hello);
    CHECK(ev.opcode == WS_OP_TEXT && ev.rsv == 0 && ev.len == 5);
    CHECK(ev.data == hello + 2);
    CHECK(r.buf == NULL);
    ws_reader_free(&r);
    CHECK(ws_frame_parse_header(hello, sizeof hello, &h, &need) == WS_FRAME_OK);
    CHECK(h.fin == 1 && h.rsv == 0 && h.opcode == 1 && h.masked == 0 && h.length == 5
          && h.header_len == 2);
    CHECK(ws_frame_write_header(out, 1, 0, WS_OP_TEXT, 5, NULL) == 2);
    CHECK_MEM(out, hello, 2);

    /* single-frame masked text */
    run_whole(&srv, hello_masked, sizeof hello_masked, &res);
    CHECK(res.contract && res.rc == WS_READ_NEED && res.nev == 1);
    CHECK(event_is(&res, 0, WS_OP_TEXT, "Hello", 5));
    result_free(&res);
    CHECK(ws_frame_parse_header(hello_masked, sizeof hello_masked, &h, &need) == WS_FRAME_OK);
    CHECK(h.masked == 1 && h.length == 5 && h.header_len == 6 && memcmp(h.key, key, 4) == 0);
    CHECK(ws_frame_write_header(out, 1, 0, WS_OP_TEXT, 5, key) == 6);
    CHECK_MEM(out, hello_masked, 6);
    ws_mask(out, hello_masked + 6, 5, key, 0);
    CHECK_MEM(out, "Hello", 5);

    /* fragmented unmasked text */
    run_whole(&cli, frag, sizeof frag, &res);
    CHECK(res.contract && res.nev == 1 && event_is(&res, 0, WS_OP_TEXT, "Hello", 5));
    result_free(&res);

    /* ping unmasked and masked, pong masked and unmasked */
    run_whole(&cli, ping, sizeof ping, &res);
    CHECK(res.contract && res.nev == 1 && event_is(&res, 0, WS_OP_PING, "Hello", 5));
    result_free(&res);
    run_whole(&srv, ping_masked, sizeof ping_masked, &res);
    CHECK(res.contract && res.nev == 1 && event_is(&res, 0, WS_OP_PING, "Hello", 5));
    result_free(&res);
    run_whole(&srv, pong_masked, sizeof pong_masked, &res);
    CHECK(res.contract && res.nev == 1 && event_is(&res, 0, WS_OP_PONG, "Hello", 5));
    result_free(&res);
    run_whole(&cli, pong, sizeof pong, &res);
    CHECK(res.contract && res.nev == 1 && event_is(&res, 0, WS_OP_PONG, "Hello", 5));
    result_free(&res);
    /* the wrong masking for the role */
    run_whole(&srv, ping, sizeof ping, &res);
    CHECK(err_is(&res, 1002, "unmasked frame from client"));
    result_free(&res);
    run_whole(&cli, pong_masked, sizeof pong_masked, &res);
    CHECK(err_is(&res, 1002, "masked frame from server"));
    result_free(&res);

    /* 256 bytes binary in a single unmasked frame: 16-bit length */
    n = 4 + 256;
    big = (unsigned char *)malloc(10 + 65536);
    if (big == NULL)
        exit(2);
    big[0] = 0x82; big[1] = 0x7E; big[2] = 0x01; big[3] = 0x00;
    for (used = 0; used < 256; used++)
        big[4 + used] = (unsigned char)(used * 13);
    CHECK(ws_frame_header_size(256, 0) == 4);
    CHECK(ws_frame_write_header(out, 1, 0, WS_OP_BINARY, 256, NULL) == 4);
    CHECK_MEM(out, big, 4);
    CHECK(ws_frame_parse_header(big, n, &h, &need) == WS_FRAME_OK);
    CHECK(h.length == 256 && h.header_len == 4 && h.opcode == WS_OP_BINARY);
    run_whole(&cli, big, n, &res);
    CHECK(res.contract && res.nev == 1 && event_is(&res, 0, WS_OP_BINARY, big + 4, 256));
    CHECK(split_mismatches(&cli, big, n, &res) == 0);
    result_free(&res);

    /* 64 KiB binary in a single unmasked frame: 64-bit length */
    n = 10 + 65536;
    {
        static const unsigned char h64[10] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00 };
        memcpy(big, h64, 10);
        for (used = 0; used < 65536; used++)
            big[10 + used] = (unsigned char)(used ^ (used >> 8));
        CHECK(ws_frame_header_size(65536, 0) == 10);
        CHECK(ws_frame_write_header(out, 1, 0, WS_OP_BINARY, 65536, NULL) == 10);
        CHECK_MEM(out, h64, 10);
        CHECK(ws_frame_parse_header(big, n, &h, &need) == WS_FRAME_OK);
        CHECK(h.length == 65536 && h.header_len == 10);
        run_whole(&cli, big, n, &res);
        CHECK(res.contract && res.nev == 1 && event_is(&res, 0, WS_OP_BINARY, big + 10, 65536));
        {
            result one;
            run_step(&cli, big, n, 1, &one);
            CHECK(same_result(&res, &one));
            result_free(&one);
            run_step(&cli, big, n, 1000, &one);
            CHECK(same_result(&res, &one));
            result_free(&one);
        }
        result_free(&res);
    }
    free(big);
}

/* ---- frame headers -------------------------------------------------------- */

static void test_headers(void)
{
    static const uint64_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536,
                                     UINT64_C(0x7fffffffffffffff), UINT64_C(1) << 32 };
    static const unsigned char key[4] = { 1, 2, 3, 4 };
    unsigned char out[WS_MAX_HEADER];
    ws_frame_header h;
    size_t i, k, need, hl;
    int m;

    /* write then parse: every length class, masked or not, every flag */
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (m = 0; m < 2; m++) {
            hl = ws_frame_write_header(out, m, 5, WS_OP_PING, lens[i], m ? key : NULL);
            CHECK(hl == ws_frame_header_size(lens[i], m));
            CHECK(ws_frame_parse_header(out, hl, &h, &need) == WS_FRAME_OK);
            CHECK(h.fin == m && h.rsv == 5 && h.opcode == WS_OP_PING && h.masked == m);
            CHECK(h.length == lens[i] && h.header_len == hl);
            CHECK(!m || memcmp(h.key, key, 4) == 0);
            /* every proper prefix asks for exactly the bytes that finish
             * the part of the header it can see */
            for (k = 0; k < hl; k++) {
                need = 0;
                CHECK(ws_frame_parse_header(out, k, &h, &need) == WS_FRAME_NEED);
                CHECK(need >= 1 && k + need <= hl);
                CHECK(k < 2 ? need == 2 - k : need == hl - k);
            }
        }
    }
    CHECK(ws_frame_header_size(125, 0) == 2 && ws_frame_header_size(126, 0) == 4);
    CHECK(ws_frame_header_size(65535, 1) == 8 && ws_frame_header_size(65536, 1) == 14);

    /* non-minimal length encodings are accepted */
    {
        static const unsigned char n16[] = { 0x82, 0x7E, 0x00, 0x05 };
        static const unsigned char n64[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0x00, 0x05 };
        static const unsigned char n64b[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0x01, 0x2C };
        CHECK(ws_frame_parse_header(n16, sizeof n16, &h, &need) == WS_FRAME_OK
              && h.length == 5 && h.header_len == 4);
        CHECK(ws_frame_parse_header(n64, sizeof n64, &h, &need) == WS_FRAME_OK
              && h.length == 5 && h.header_len == 10);
        CHECK(ws_frame_parse_header(n64b, sizeof n64b, &h, &need) == WS_FRAME_OK
              && h.length == 300 && h.header_len == 10);
    }
    /* 64-bit length with the top bit set: refused as soon as it is seen */
    {
        static const unsigned char top[] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
        static const unsigned char ok[] = { 0x82, 0x7F, 0x7F, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        CHECK(ws_frame_parse_header(top, 2, &h, &need) == WS_FRAME_NEED && need == 12);
        for (k = 3; k <= sizeof top; k++)
            CHECK(ws_frame_parse_header(top, k, &h, &need) == WS_FRAME_BAD_LENGTH);
        CHECK(ws_frame_parse_header(ok, sizeof ok, &h, &need) == WS_FRAME_OK
              && h.length == UINT64_C(0x7fffffffffffffff));
    }
    /* byte 0 fields as they are, reserved opcodes included */
    {
        static const unsigned char b[] = { 0x7B, 0x00 };
        CHECK(ws_frame_parse_header(b, 2, &h, &need) == WS_FRAME_OK);
        CHECK(h.fin == 0 && h.rsv == 7 && h.opcode == 0xB && h.length == 0);
    }
}

/* ---- masking ------------------------------------------------------------ */

static void test_mask(void)
{
    static const unsigned char key[4] = { 0x9b, 0x01, 0x7e, 0xc4 };
    unsigned char src[320], want[320], got[320], inplace[320];
    size_t len, off, pos, i, ret;
    int bad = 0, badret = 0;

    for (i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)(i * 31 + 7);
    for (len = 0; len <= 300; len++) {
        for (off = 0; off < 8; off++) {
            for (pos = 0; pos < 4; pos++) {
                for (i = 0; i < len; i++)
                    want[off + i] = src[off + i] ^ key[(pos + i) & 3];
                memset(got, 0xAA, sizeof got);
                ret = ws_mask(got + off, src + off, len, key, pos);
                if (memcmp(got + off, want + off, len) != 0)
                    bad++;
                /* nothing written outside dst[0..len) */
                for (i = 0; i < off; i++)
                    if (got[i] != 0xAA) bad++;
                for (i = off + len; i < sizeof got; i++)
                    if (got[i] != 0xAA) bad++;
                if (ret != (pos + len) % 4)
                    badret++;
                /* in place */
                memcpy(inplace, src, sizeof src);
                ws_mask(inplace + off, inplace + off, len, key, pos);
                if (memcmp(inplace + off, want + off, len) != 0)
                    bad++;
            }
        }
    }
    CHECK(bad == 0);
    CHECK(badret == 0);

    /* in pieces, carrying the position: the same as one call */
    memset(got, 0, sizeof got);
    pos = 0;
    for (off = 0, len = 1; off < 300; off += len, len = len % 13 + 1) {
        size_t n = off + len > 300 ? 300 - off : len;
        pos = ws_mask(got + off, src + off, n, key, pos);
    }
    ws_mask(want, src, 300, key, 0);
    CHECK_MEM(got, want, 300);
    /* masking twice is the identity */
    ws_mask(got, want, 300, key, 0);
    CHECK_MEM(got, src, 300);
}

static void test_close_codes(void)
{
    unsigned c;
    int bad = 0;
    for (c = 0; c < 70000; c++) {
        int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014)
                || (c >= 3000 && c <= 4999);
        if (ws_close_code_valid(c) != want)
            bad++;
    }
    CHECK(bad == 0);
    CHECK(ws_close_code_valid(1000) && ws_close_code_valid(1003) && ws_close_code_valid(1007));
    CHECK(ws_close_code_valid(1014) && ws_close_code_valid(3000) && ws_close_code_valid(4999));
    CHECK(!ws_close_code_valid(999) && !ws_close_code_valid(1004) && !ws_close_code_valid(1005));
    CHECK(!ws_close_code_valid(1006) && !ws_close_code_valid(1015) && !ws_close_code_valid(1016));
    CHECK(!ws_close_code_valid(2999) && !ws_close_code_valid(5000) && !ws_close_code_valid(0));
}

/* ---- UTF-8 -------------------------------------------------------------- */

enum { VALID, INVALID, TRUNC };   /* TRUNC: a valid prefix that ends mid code point */

typedef struct {
    const char *s;
    size_t n;
    int kind;
} utf8_case;

#define U(s, k) { s, sizeof(s) - 1, k }

static const utf8_case utf8_cases[] = {
    U("", VALID), U("a", VALID), U("Hello, world", VALID), U("\x00\x7f", VALID),
    U("\xC2\x80", VALID), U("\xC2\xA9", VALID), U("\xDF\xBF", VALID),
    U("\xE0\xA0\x80", VALID), U("\xE2\x82\xAC", VALID), U("\xED\x9F\xBF", VALID),
    U("\xEE\x80\x80", VALID), U("\xEF\xBB\xBF", VALID), U("\xEF\xBF\xBF", VALID),
    U("\xF0\x90\x80\x80", VALID), U("\xF0\x9F\x98\x80", VALID), U("\xF3\xBF\xBF\xBF", VALID),
    U("\xF4\x8F\xBF\xBF", VALID),
    U("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", VALID),
    U("0123456789abcdef\xE2\x98\x83" "0123456789abcdef\xC3\xA9", VALID),
    /* overlong 2, 3 and 4 bytes */
    U("\xC0\x80", INVALID), U("\xC0\xAF", INVALID), U("\xC1\xBF", INVALID),
    U("\xE0\x80\x80", INVALID), U("\xE0\x80\xAF", INVALID), U("\xE0\x9F\xBF", INVALID),
    U("\xF0\x80\x80\x80", INVALID), U("\xF0\x80\x80\xAF", INVALID), U("\xF0\x8F\xBF\xBF", INVALID),
    /* surrogates, alone and paired */
    U("\xED\xA0\x80", INVALID), U("\xED\xAD\xBF", INVALID), U("\xED\xB0\x80", INVALID),
    U("\xED\xBF\xBF", INVALID), U("\xED\xA0\x80\xED\xB0\x80", INVALID),
    /* above U+10FFFF */
    U("\xF4\x90\x80\x80", INVALID), U("\xF4\xBF\xBF\xBF", INVALID), U("\xF5\x80\x80\x80", INVALID),
    U("\xF7\xBF\xBF\xBF", INVALID), U("\xF8\x88\x80\x80\x80", INVALID),
    U("\xFC\x84\x80\x80\x80\x80", INVALID),
    /* bytes that never appear */
    U("\xC0", INVALID), U("\xC1", INVALID), U("\xF5", INVALID), U("\xF6", INVALID),
    U("\xF7", INVALID), U("\xF8", INVALID), U("\xF9", INVALID), U("\xFA", INVALID),
    U("\xFB", INVALID), U("\xFC", INVALID), U("\xFD", INVALID), U("\xFE", INVALID),
    U("\xFF", INVALID),
    /* lone continuation bytes */
    U("\x80", INVALID), U("\xBF", INVALID), U("a\x80z", INVALID), U("\xC2\x80\x80", INVALID),
    U("\xE2\x82\xAC\xAC", INVALID), U("0123456789abcdef\x80", INVALID),
    /* a sequence cut short by another byte */
    U("\xC2" "a", INVALID), U("\xE2\x82" "a", INVALID), U("\xF0\x9F\x98" "a", INVALID),
    U("\xE2\xC2\xA9", INVALID), U("\xC2\xC2\xA9", INVALID), U("\xDF\x7F", INVALID),
    U("\xC2\xC0", INVALID),
    /* truncated at the end: fine so far, not done */
    U("\xC2", TRUNC), U("\xDF", TRUNC), U("\xE0", TRUNC), U("\xE0\xA0", TRUNC),
    U("\xE2\x82", TRUNC), U("\xED\x9F", TRUNC), U("\xF0", TRUNC), U("\xF0\x90", TRUNC),
    U("\xF0\x90\x80", TRUNC), U("\xF4\x8F\xBF", TRUNC), U("abc\xE2\x82", TRUNC),
    U("0123456789abcdef\xF0\x9F\x98", TRUNC),
};

#define NCASES (sizeof utf8_cases / sizeof utf8_cases[0])

/* Feed through the incremental API in the given pieces; VALID/INVALID/TRUNC. */
static int utf8_kind(const unsigned char *p, size_t n, size_t cut, size_t step)
{
    ws_utf8 u;
    size_t at = 0;
    int rc = 0;
    ws_utf8_init(&u);
    if (step) {
        for (at = 0; at < n && rc == 0; at += step)
            rc = ws_utf8_feed(&u, p + at, n - at < step ? n - at : step);
    } else {
        rc = ws_utf8_feed(&u, p, cut);
        if (rc == 0)
            rc = ws_utf8_feed(&u, p + cut, n - cut);
    }
    if (rc != 0) {
        /* failed for good */
        if (ws_utf8_feed(&u, (const unsigned char *)"a", 1) != -1 || ws_utf8_done(&u))
            return -1;
        return INVALID;
    }
    return ws_utf8_done(&u) ? VALID : TRUNC;
}

static void test_utf8(void)
{
    size_t i, cut, pre;
    int bad = 0;
    unsigned char buf[128];

    for (i = 0; i < NCASES; i++) {
        const utf8_case *c = &utf8_cases[i];
        const unsigned char *p = (const unsigned char *)c->s;
        int ok = 1;
        if (ws_utf8_valid(p, c->n) != (c->kind == VALID))
            ok = 0;
        if (utf8_kind(p, c->n, c->n, 0) != c->kind || utf8_kind(p, c->n, 0, 1) != c->kind)
            ok = 0;
        for (cut = 0; cut <= c->n; cut++)
            if (utf8_kind(p, c->n, cut, 0) != c->kind)
                ok = 0;
        /* after 0..23 ASCII bytes, so the word-at-a-time path runs into it
         * at every offset; then followed by ASCII, which leaves the verdict
         * alone except that a truncated sequence now fails */
        for (pre = 0; pre < 24; pre++) {
            int want = c->kind;
            memset(buf, 'x', pre);
            memcpy(buf + pre, c->s, c->n);
            if (utf8_kind(buf, pre + c->n, 0, 1) != want || ws_utf8_valid(buf, pre + c->n) != (want == VALID))
                ok = 0;
            memset(buf + pre + c->n, 'y', 20);
            want = c->kind == TRUNC ? INVALID : c->kind;
            if (utf8_kind(buf, pre + c->n + 20, pre + 3, 0) != want
                || ws_utf8_valid(buf, pre + c->n + 20) != (want == VALID))
                ok = 0;
        }
        if (!ok) {
            fprintf(stderr, "  utf8 case %lu wrong\n", (unsigned long)i);
            bad++;
        }
    }
    CHECK(bad == 0);

    /* every code point: valid when encoded properly */
    {
        uint32_t cp;
        int badcp = 0;
        for (cp = 0; cp <= 0x10FFFF; cp++) {
            unsigned char e[4];
            size_t n;
            if (cp < 0x80) { e[0] = (unsigned char)cp; n = 1; }
            else if (cp < 0x800) { e[0] = (unsigned char)(0xC0 | cp >> 6); e[1] = (unsigned char)(0x80 | (cp & 0x3F)); n = 2; }
            else if (cp < 0x10000) { e[0] = (unsigned char)(0xE0 | cp >> 12); e[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); e[2] = (unsigned char)(0x80 | (cp & 0x3F)); n = 3; }
            else { e[0] = (unsigned char)(0xF0 | cp >> 18); e[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F)); e[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); e[3] = (unsigned char)(0x80 | (cp & 0x3F)); n = 4; }
            if (ws_utf8_valid(e, n) != !(cp >= 0xD800 && cp <= 0xDFFF))
                badcp++;
        }
        CHECK(badcp == 0);
    }
    /* a long ASCII run with one bad byte anywhere */
    {
        unsigned char s[100];
        int badpos = 0;
        memset(s, 'a', sizeof s);
        CHECK(ws_utf8_valid(s, sizeof s));
        for (i = 0; i < sizeof s; i++) {
            s[i] = 0x80;
            if (ws_utf8_valid(s, sizeof s))
                badpos++;
            s[i] = 0xC3;   /* followed by 'a': not a continuation */
            if (ws_utf8_valid(s, sizeof s))
                badpos++;
            s[i] = 'a';
        }
        CHECK(badpos == 0);
    }
    CHECK(ws_utf8_valid(NULL, 0));
}

/* Each UTF-8 case as a text message: whole, and split across two fragments
 * at every position; both roles. Invalid and truncated -> 1007. */
static void test_reader_utf8(void)
{
    size_t i, cut;
    int role, bad = 0;

    for (role = 0; role < 2; role++) {
        ws_reader_opts o = opts_of(role, 0, 0);
        for (i = 0; i < NCASES; i++) {
            const utf8_case *c = &utf8_cases[i];
            for (cut = 0; cut <= c->n; cut++) {
                vec v = { NULL, 0, 0 };
                result res;
                int ok;
                if (cut == 0 && c->n > 0) {
                    frame(&v, role, 1, 0, WS_OP_TEXT, c->s, c->n);
                } else {
                    frame(&v, role, 0, 0, WS_OP_TEXT, c->s, cut);
                    frame(&v, role, 1, 0, WS_OP_CONT, c->s + cut, c->n - cut);
                }
                run_whole(&o, v.p, v.len, &res);
                if (c->kind == VALID)
                    ok = res.contract && res.rc == WS_READ_NEED && res.nev == 1
                      && event_is(&res, 0, WS_OP_TEXT, c->s, c->n);
                else
                    ok = err_is(&res, 1007, "invalid utf-8") && res.nev == 0;
                result_free(&res);
                /* the same bytes as binary are fine */
                v.p[0] = (unsigned char)((v.p[0] & 0xF0) | WS_OP_BINARY);
                run_whole(&o, v.p, v.len, &res);
                if (!(res.rc == WS_READ_NEED && res.nev == 1))
                    ok = 0;
                result_free(&res);
                vec_free(&v);
                if (!ok) {
                    fprintf(stderr, "  reader utf8 case %lu cut %lu role %d wrong\n",
                            (unsigned long)i, (unsigned long)cut, role);
                    bad++;
                }
            }

            /* failure as soon as the bad byte is in, mid-frame: the frame
             * says 50 more bytes follow, but they never arrive */
            {
                vec v = { NULL, 0, 0 };
                result res;
                char tail[50];
                size_t hl;
                memset(tail, 'z', sizeof tail);
                {
                    vec body = { NULL, 0, 0 };
                    vec_put(&body, c->s, c->n);
                    vec_put(&body, tail, sizeof tail);
                    frame(&v, role, 1, 0, WS_OP_TEXT, body.p, body.len);
                    vec_free(&body);
                }
                hl = v.len - c->n - sizeof tail;
                run_whole(&o, v.p, hl + c->n, &res);
                if (c->kind == INVALID ? !err_is(&res, 1007, "invalid utf-8")
                                       : !(res.contract && res.rc == WS_READ_NEED && res.nev == 0)) {
                    fprintf(stderr, "  early utf8 case %lu role %d wrong\n", (unsigned long)i, role);
                    bad++;
                }
                result_free(&res);
                vec_free(&v);
            }
        }
    }
    CHECK(bad == 0);

    /* a code point split over three fragments, with a ping in between */
    for (role = 0; role < 2; role++) {
        ws_reader_opts o = opts_of(role, 0, 0);
        vec v = { NULL, 0, 0 };
        result res;
        frame_s(&v, role, 0, WS_OP_TEXT, "a\xF0");
        frame_s(&v, role, 0, WS_OP_CONT, "\x9F");
        frame_s(&v, role, 1, WS_OP_PING, "");
        frame_s(&v, role, 0, WS_OP_CONT, "\x98");
        frame_s(&v, role, 1, WS_OP_CONT, "\x80z");
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.nev == 2 && event_is(&res, 0, WS_OP_PING, "", 0)
              && event_is(&res, 1, WS_OP_TEXT, "a\xF0\x9F\x98\x80z", 6));
        CHECK(split_mismatches(&o, v.p, v.len, &res) == 0);
        result_free(&res);
        /* and a message that ends mid code point fails at its last frame */
        v.len = 0;
        frame_s(&v, role, 0, WS_OP_TEXT, "a\xF0");
        frame_s(&v, role, 1, WS_OP_PING, "p");
        frame_s(&v, role, 1, WS_OP_CONT, "\x9F\x98");
        EXPECT_ERROR(&o, &v, 1, 1007, "invalid utf-8");
        vec_free(&v);
    }
}

/* ---- streams split every way ---------------------------------------------- */

/* Several messages: fragmented ones with pings and pongs between fragments,
 * empty ones, a 16-bit length, non-minimal lengths, a close, and data after
 * the close (the caller decides what to do with it). */
static void build_stream(vec *v, int role)
{
    unsigned char bin[300], p125[125];
    size_t i;

    for (i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 7);
    memset(p125, 'p', sizeof p125);
    frame_s(v, role, 1, WS_OP_TEXT, "Hello");
    frame_s(v, role, 0, WS_OP_TEXT, "Hel");
    frame_s(v, role, 1, WS_OP_PING, "p1");
    frame_s(v, role, 0, WS_OP_CONT, "lo wo");
    frame_s(v, role, 1, WS_OP_PONG, "");
    frame_s(v, role, 0, WS_OP_CONT, "rld \xE2\x98");
    frame_s(v, role, 1, WS_OP_CONT, "\x83!");
    frame(v, role, 1, 0, WS_OP_BINARY, bin, sizeof bin);
    frame_s(v, role, 1, WS_OP_TEXT, "");
    frame_s(v, role, 0, WS_OP_BINARY, "");
    frame_s(v, role, 0, WS_OP_CONT, "ab");
    frame_s(v, role, 1, WS_OP_CONT, "");
    frame(v, role, 1, 0, WS_OP_PING, p125, sizeof p125);
    {
        /* "abcde" with a 16-bit and then a 64-bit length */
        static const unsigned char n16[] = { 0x01, 0x7E, 0x00, 0x02 };
        static const unsigned char n64[] = { 0x80, 0x7F, 0, 0, 0, 0, 0, 0, 0, 3 };
        static const unsigned char key[4] = { 0xa1, 0xb2, 0xc3, 0xd4 };
        unsigned char h[sizeof n64], d[3];
        memcpy(h, n16, sizeof n16);
        if (role == WS_ROLE_SERVER)
            h[1] |= 0x80;
        vec_put(v, h, sizeof n16);
        if (role == WS_ROLE_SERVER)
            vec_put(v, key, 4);
        ws_mask(d, (const unsigned char *)"ab", 2, role == WS_ROLE_SERVER ? key : (const unsigned char *)"\0\0\0\0", 0);
        vec_put(v, d, 2);
        memcpy(h, n64, sizeof n64);
        if (role == WS_ROLE_SERVER)
            h[1] |= 0x80;
        vec_put(v, h, sizeof n64);
        if (role == WS_ROLE_SERVER)
            vec_put(v, key, 4);
        ws_mask(d, (const unsigned char *)"cde", 3, role == WS_ROLE_SERVER ? key : (const unsigned char *)"\0\0\0\0", 0);
        vec_put(v, d, 3);
    }
    frame_s(v, role, 1, WS_OP_CLOSE, "\x03\xe8" "bye");
    frame_s(v, role, 1, WS_OP_TEXT, "after");
}

static void test_streams(void)
{
    int role;
    for (role = 0; role < 2; role++) {
        ws_reader_opts o = opts_of(role, 0, 0);
        vec v = { NULL, 0, 0 };
        result whole;
        unsigned char bin[300];
        size_t i;

        for (i = 0; i < sizeof bin; i++)
            bin[i] = (unsigned char)(i * 7);
        build_stream(&v, role);
        run_whole(&o, v.p, v.len, &whole);
        CHECK(whole.contract && whole.rc == WS_READ_NEED && whole.nev == 11);
        CHECK(event_is(&whole, 0, WS_OP_TEXT, "Hello", 5));
        CHECK(event_is(&whole, 1, WS_OP_PING, "p1", 2));
        CHECK(event_is(&whole, 2, WS_OP_PONG, "", 0));
        CHECK(event_is(&whole, 3, WS_OP_TEXT, "Hello world \xE2\x98\x83!", 16));
        CHECK(event_is(&whole, 4, WS_OP_BINARY, bin, sizeof bin));
        CHECK(event_is(&whole, 5, WS_OP_TEXT, "", 0));
        CHECK(event_is(&whole, 6, WS_OP_BINARY, "ab", 2));
        CHECK(whole.nev > 7 && whole.ev[7].op == WS_OP_PING && whole.ev[7].len == 125);
        CHECK(event_is(&whole, 8, WS_OP_TEXT, "abcde", 5));
        CHECK(event_is(&whole, 9, WS_OP_CLOSE, "\x03\xe8" "bye", 5));
        CHECK(whole.nev > 9 && whole.ev[9].code == 1000 && whole.ev[9].rlen == 3
              && memcmp(whole.ev[9].reason, "bye", 3) == 0);
        CHECK(event_is(&whole, 10, WS_OP_TEXT, "after", 5));
        CHECK(split_mismatches(&o, v.p, v.len, &whole) == 0);
        result_free(&whole);

        /* the same stream ending in a failure: same events, same failure */
        frame_s(&v, role, 0, WS_OP_TEXT, "ok");
        frame_s(&v, role, 1, WS_OP_CONT, "then \xC0\x80 bad");
        frame_s(&v, role, 1, WS_OP_TEXT, "never");
        run_whole(&o, v.p, v.len, &whole);
        CHECK(err_is(&whole, 1007, "invalid utf-8") && whole.nev == 11);
        CHECK(split_mismatches(&o, v.p, v.len, &whole) == 0);
        result_free(&whole);
        vec_free(&v);
    }
}

/* ---- every rule broken once --------------------------------------------- */

static void test_rules(void)
{
    int role;
    for (role = 0; role < 2; role++) {
        ws_reader_opts o = opts_of(role, 0, 0);
        ws_reader_opts o_rsv1 = opts_of(role, 0, WS_RSV1);
        vec v = { NULL, 0, 0 };
        result res;
        int op, rsv;

        /* reserved opcodes */
        for (op = 3; op <= 0xF; op++) {
            if (op >= WS_OP_CLOSE && op <= WS_OP_PONG)
                continue;
            v.len = 0;
            frame_s(&v, role, 1, op, "x");
            EXPECT_ERROR(&o, &v, 0, 1002, "reserved opcode");
            /* also in the middle of a fragmented message */
            v.len = 0;
            frame_s(&v, role, 0, WS_OP_TEXT, "a");
            frame_s(&v, role, 1, WS_OP_PING, "");
            frame_s(&v, role, 1, op, "");
            EXPECT_ERROR(&o, &v, 1, 1002, "reserved opcode");
        }

        /* RSV bits without an extension */
        for (rsv = 1; rsv <= 7; rsv++) {
            v.len = 0;
            frame(&v, role, 1, rsv, WS_OP_TEXT, "x", 1);
            EXPECT_ERROR(&o, &v, 0, 1002, "reserved bits set");
            v.len = 0;
            frame(&v, role, 1, rsv, WS_OP_PING, "x", 1);
            EXPECT_ERROR(&o_rsv1, &v, 0, 1002, "reserved bits set");
            v.len = 0;
            frame(&v, role, 1, rsv, WS_OP_CLOSE, "", 0);
            EXPECT_ERROR(&o_rsv1, &v, 0, 1002, "reserved bits set");
            /* continuation frames never carry them, extension or not */
            v.len = 0;
            frame(&v, role, 0, 0, WS_OP_BINARY, "x", 1);
            frame(&v, role, 1, rsv, WS_OP_CONT, "y", 1);
            EXPECT_ERROR(&o_rsv1, &v, 0, 1002, "reserved bits set");
        }
        /* RSV1 with an extension that allows it: on the first frame only;
         * a compressed text message is not checked for UTF-8 here */
        v.len = 0;
        frame(&v, role, 0, WS_RSV1, WS_OP_TEXT, "\xC0", 1);
        frame(&v, role, 1, 0, WS_OP_CONT, "\xFF", 1);
        frame(&v, role, 1, WS_RSV2, WS_OP_BINARY, "b", 1);
        run_whole(&o_rsv1, v.p, v.len, &res);
        CHECK(res.nev == 1 && event_is(&res, 0, WS_OP_TEXT, "\xC0\xFF", 2) && res.ev[0].rsv == WS_RSV1);
        CHECK(err_is(&res, 1002, "reserved bits set"));
        result_free(&res);
        v.len = 0;
        frame(&v, role, 1, WS_RSV1, WS_OP_BINARY, "b", 1);
        frame(&v, role, 1, 0, WS_OP_TEXT, "t", 1);
        run_whole(&o_rsv1, v.p, v.len, &res);
        CHECK(res.contract && res.rc == WS_READ_NEED && res.nev == 2);
        CHECK(res.nev == 2 && res.ev[0].rsv == WS_RSV1 && res.ev[1].rsv == 0);
        result_free(&res);

        /* continuation frames out of place */
        v.len = 0;
        frame_s(&v, role, 1, WS_OP_CONT, "x");
        EXPECT_ERROR(&o, &v, 0, 1002, "unexpected continuation frame");
        v.len = 0;
        frame_s(&v, role, 1, WS_OP_TEXT, "done");
        frame_s(&v, role, 0, WS_OP_CONT, "x");
        EXPECT_ERROR(&o, &v, 1, 1002, "unexpected continuation frame");
        v.len = 0;
        frame_s(&v, role, 0, WS_OP_TEXT, "a");
        frame_s(&v, role, 1, WS_OP_TEXT, "b");
        EXPECT_ERROR(&o, &v, 0, 1002, "expected continuation frame");
        v.len = 0;
        frame_s(&v, role, 0, WS_OP_BINARY, "a");
        frame_s(&v, role, 1, WS_OP_PONG, "");
        frame_s(&v, role, 0, WS_OP_BINARY, "b");
        EXPECT_ERROR(&o, &v, 1, 1002, "expected continuation frame");

        /* control frames: never fragmented, at most 125 bytes */
        for (op = WS_OP_CLOSE; op <= WS_OP_PONG; op++) {
            char p[126];
            memset(p, 'c', sizeof p);
            v.len = 0;
            frame_s(&v, role, 0, op, "");
            EXPECT_ERROR(&o, &v, 0, 1002, "fragmented control frame");
            /* a close payload must start with a valid code */
            memcpy(p, "\x03\xe8", op == WS_OP_CLOSE ? 2 : 0);
            v.len = 0;
            frame(&v, role, 1, 0, op, p, 125);
            run_whole(&o, v.p, v.len, &res);
            CHECK(res.contract && res.rc == WS_READ_NEED && res.nev == 1 && res.ev[0].len == 125);
            result_free(&res);
            v.len = 0;
            frame(&v, role, 1, 0, op, p, 126);
            EXPECT_ERROR(&o, &v, 0, 1002, "control frame too long");
        }
        {
            /* a control frame with a non-minimal 16-bit length of 5: the
             * value counts, not the encoding */
            static const unsigned char key[4] = { 1, 2, 3, 4 };
            unsigned char f[4 + 4 + 5];
            size_t n = 0;
            f[n++] = 0x89;
            f[n++] = role == WS_ROLE_SERVER ? 0xFE : 0x7E;
            f[n++] = 0;
            f[n++] = 5;
            if (role == WS_ROLE_SERVER) {
                memcpy(f + n, key, 4);
                n += 4;
            }
            ws_mask(f + n, (const unsigned char *)"hello", 5,
                    role == WS_ROLE_SERVER ? key : (const unsigned char *)"\0\0\0\0", 0);
            n += 5;
            run_whole(&o, f, n, &res);
            CHECK(res.nev == 1 && event_is(&res, 0, WS_OP_PING, "hello", 5));
            result_free(&res);
        }

        /* masking rule for the role: the other role's frames */
        v.len = 0;
        frame_s(&v, !role, 1, WS_OP_TEXT, "x");
        EXPECT_ERROR(&o, &v, 0, 1002, role == WS_ROLE_SERVER ? "unmasked frame from client"
                                                             : "masked frame from server");
        v.len = 0;
        frame_s(&v, role, 0, WS_OP_TEXT, "x");
        frame_s(&v, !role, 1, WS_OP_CONT, "y");
        EXPECT_ERROR(&o, &v, 0, 1002, role == WS_ROLE_SERVER ? "unmasked frame from client"
                                                             : "masked frame from server");

        /* 64-bit length with the top bit set */
        {
            unsigned char f[14] = { 0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
            if (role == WS_ROLE_SERVER)
                f[1] |= 0x80;
            v.len = 0;
            vec_put(&v, f, role == WS_ROLE_SERVER ? 14 : 10);
            EXPECT_ERROR(&o, &v, 0, 1002, "frame length too large");
            /* known from the third byte */
            v.len = 3;
            EXPECT_ERROR(&o, &v, 0, 1002, "frame length too large");
            f[2] = 0xFF;
            v.len = 0;
            vec_put(&v, f, 3);
            EXPECT_ERROR(&o, &v, 0, 1002, "frame length too large");
        }

        /* invalid UTF-8 in a text message */
        v.len = 0;
        frame_s(&v, role, 1, WS_OP_TEXT, "\xED\xA0\x80");
        EXPECT_ERROR(&o, &v, 0, 1007, "invalid utf-8");
        vec_free(&v);
    }
}

static void test_close(void)
{
    static const unsigned ok_codes[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999 };
    static const unsigned bad_codes[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535 };
    int role;
    size_t i;

    for (role = 0; role < 2; role++) {
        ws_reader_opts o = opts_of(role, 0, 0);
        vec v = { NULL, 0, 0 };
        result res;
        unsigned char p[125];

        /* empty: no status received */
        frame_s(&v, role, 1, WS_OP_CLOSE, "");
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.nev == 1 && res.ev[0].op == WS_OP_CLOSE && res.ev[0].code == 1005
              && res.ev[0].rlen == 0 && res.ev[0].len == 0);
        result_free(&res);
        /* one byte */
        v.len = 0;
        frame_s(&v, role, 1, WS_OP_CLOSE, "\x03");
        EXPECT_ERROR(&o, &v, 0, 1002, "invalid close payload");
        for (i = 0; i < sizeof ok_codes / sizeof ok_codes[0]; i++) {
            p[0] = (unsigned char)(ok_codes[i] >> 8);
            p[1] = (unsigned char)ok_codes[i];
            v.len = 0;
            frame(&v, role, 1, 0, WS_OP_CLOSE, p, 2);
            run_whole(&o, v.p, v.len, &res);
            CHECK(res.contract && res.nev == 1 && res.ev[0].code == ok_codes[i] && res.ev[0].rlen == 0);
            result_free(&res);
        }
        for (i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
            p[0] = (unsigned char)(bad_codes[i] >> 8);
            p[1] = (unsigned char)bad_codes[i];
            v.len = 0;
            frame(&v, role, 1, 0, WS_OP_CLOSE, p, 2);
            EXPECT_ERROR(&o, &v, 0, 1002, "invalid close code");
        }
        /* reason: UTF-8, up to 123 bytes */
        v.len = 0;
        frame_s(&v, role, 1, WS_OP_CLOSE, "\x0f\xa0" "caf\xC3\xA9");
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.nev == 1 && res.ev[0].code == 4000 && res.ev[0].rlen == 5
              && memcmp(res.ev[0].reason, "caf\xC3\xA9", 5) == 0);
        result_free(&res);
        p[0] = 0x03; p[1] = 0xe9;
        memset(p + 2, 'r', 123);
        v.len = 0;
        frame(&v, role, 1, 0, WS_OP_CLOSE, p, 125);
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.nev == 1 && res.ev[0].code == 1001 && res.ev[0].rlen == 123);
        result_free(&res);
        v.len = 0;
        frame_s(&v, role, 1, WS_OP_CLOSE, "\x03\xe8" "bad \xC3");
        EXPECT_ERROR(&o, &v, 0, 1007, "invalid utf-8");
        v.len = 0;
        frame_s(&v, role, 1, WS_OP_CLOSE, "\x03\xe8" "\xED\xA0\x80");
        EXPECT_ERROR(&o, &v, 0, 1007, "invalid utf-8");
        /* a close between fragments does not disturb the message */
        v.len = 0;
        frame_s(&v, role, 0, WS_OP_TEXT, "ab");
        frame_s(&v, role, 1, WS_OP_CLOSE, "\x03\xe8");
        frame_s(&v, role, 1, WS_OP_CONT, "cd");
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.nev == 2 && res.ev[0].op == WS_OP_CLOSE && event_is(&res, 1, WS_OP_TEXT, "abcd", 4));
        result_free(&res);
        vec_free(&v);
    }
}

/* ---- limits and buffers ----------------------------------------------- */

/* An RSV1 (compressed) message may take on the wire what DEFLATE expands
 * max_message incompressible bytes to: for 1000, zlib's worst case is
 * 1000 + 125 + 3 + 1 + 4 (fixed blocks of 9-bit literals), + 1 for the
 * sync flush: 1134 (its inflated size is checked where it is inflated). */
static void test_max_compressed(void)
{
    static unsigned char data[1200];
    int role;

    for (role = 0; role < 2; role++) {
        ws_reader_opts o = opts_of(role, 1000, WS_RSV1);
        vec v = { NULL, 0, 0 };
        result res;
        ws_reader r;
        ws_event ev;
        size_t used;
        int rc;

        frame(&v, role, 1, WS_RSV1, WS_OP_BINARY, data, 1134);
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.contract && res.nev == 1 && res.ev[0].len == 1134 && res.ev[0].rsv == WS_RSV1);
        result_free(&res);
        v.len = 0;
        frame(&v, role, 1, WS_RSV1, WS_OP_BINARY, data, 1135);
        EXPECT_ERROR(&o, &v, 0, 1009, "message too big");
        /* fragmented: the first frame's RSV1 sets the limit of the message,
         * and a frame before the last reserves no more than it */
        v.len = 0;
        frame(&v, role, 0, WS_RSV1, WS_OP_TEXT, data, 600);
        frame(&v, role, 1, 0, WS_OP_CONT, data, 534);
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.contract && res.nev == 1 && res.ev[0].len == 1134);
        result_free(&res);
        ws_reader_init(&r, &o);
        rc = ws_reader_feed(&r, v.p, v.len - 534, &used, &ev);
        CHECK(rc == WS_READ_NEED && r.buf_cap <= 1134);
        ws_reader_free(&r);
        v.len = 0;
        frame(&v, role, 0, WS_RSV1, WS_OP_TEXT, data, 600);
        frame(&v, role, 1, 0, WS_OP_CONT, data, 535);
        EXPECT_ERROR(&o, &v, 0, 1009, "message too big");
        /* an uncompressed message still gets max_message exactly */
        v.len = 0;
        frame(&v, role, 1, 0, WS_OP_BINARY, data, 1001);
        EXPECT_ERROR(&o, &v, 0, 1009, "message too big");
        vec_free(&v);
    }
}

static void test_max_message(void)
{
    char data[64];
    int role;

    memset(data, 'm', sizeof data);
    for (role = 0; role < 2; role++) {
        ws_reader_opts o = opts_of(role, 10, 0);
        vec v = { NULL, 0, 0 };
        result res;
        ws_reader r;
        ws_event ev;
        size_t used;
        int rc;

        /* exactly max is fine, one more is not */
        frame(&v, role, 1, 0, WS_OP_TEXT, data, 10);
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.contract && res.nev == 1 && res.ev[0].len == 10);
        result_free(&res);
        v.len = 0;
        frame(&v, role, 1, 0, WS_OP_BINARY, data, 11);
        EXPECT_ERROR(&o, &v, 0, 1009, "message too big");
        /* refused on the header, before any payload or allocation */
        ws_reader_init(&r, &o);
        rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
        CHECK(rc == WS_READ_ERROR && r.error_code == 1009);
        CHECK(used == ws_frame_header_size(11, role == WS_ROLE_SERVER));
        CHECK(r.buf == NULL && r.buf_cap == 0);
        ws_reader_free(&r);
        /* a huge declared length: no allocation either */
        {
            unsigned char f[14] = { 0x82, 0x7F, 0x7F, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 9, 9, 9, 9 };
            if (role == WS_ROLE_SERVER)
                f[1] |= 0x80;
            ws_reader_init(&r, &o);
            rc = ws_reader_feed(&r, f, role == WS_ROLE_SERVER ? 14 : 10, &used, &ev);
            CHECK(rc == WS_READ_ERROR && r.error_code == 1009 && r.buf == NULL);
            ws_reader_free(&r);
        }
        /* across fragments: 5 + 5 fine, 5 + 6 not; control frames don't count */
        v.len = 0;
        frame(&v, role, 0, 0, WS_OP_TEXT, data, 5);
        frame(&v, role, 1, 0, WS_OP_PING, data, 20);
        frame(&v, role, 1, 0, WS_OP_CONT, data, 5);
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.contract && res.nev == 2 && res.ev[1].len == 10);
        result_free(&res);
        v.len = 0;
        frame(&v, role, 0, 0, WS_OP_TEXT, data, 5);
        frame(&v, role, 0, 0, WS_OP_CONT, data, 0);
        frame(&v, role, 1, 0, WS_OP_CONT, data, 6);
        EXPECT_ERROR(&o, &v, 0, 1009, "message too big");
        ws_reader_init(&r, &o);
        rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
        CHECK(rc == WS_READ_ERROR && r.error_code == 1009);
        CHECK(used == v.len - 6);   /* at the third header */
        CHECK(r.buf_cap <= 10);
        ws_reader_free(&r);
        /* the limit is per message: many messages of max each are fine */
        v.len = 0;
        frame(&v, role, 1, 0, WS_OP_TEXT, data, 10);
        frame(&v, role, 0, 0, WS_OP_TEXT, data, 4);
        frame(&v, role, 1, 0, WS_OP_CONT, data, 6);
        frame(&v, role, 1, 0, WS_OP_BINARY, data, 10);
        run_whole(&o, v.p, v.len, &res);
        CHECK(res.contract && res.rc == WS_READ_NEED && res.nev == 3);
        CHECK(split_mismatches(&o, v.p, v.len, &res) == 0);
        result_free(&res);
        vec_free(&v);
    }
    test_max_compressed();
}

static void test_buffers(void)
{
    size_t n = 100000, used, i, got;
    unsigned char *data = (unsigned char *)malloc(n);
    ws_reader_opts o = opts_of(WS_ROLE_SERVER, 0, 0);
    vec v = { NULL, 0, 0 };
    ws_reader r;
    ws_event ev;
    int rc, ok;

    if (data == NULL)
        exit(2);
    for (i = 0; i < n; i++)
        data[i] = (unsigned char)(i % 251);

    /* one frame whole in the input: the buffer is exactly the message */
    frame(&v, WS_ROLE_SERVER, 1, 0, WS_OP_BINARY, data, 1000);
    ws_reader_init(&r, &o);
    rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
    CHECK(rc == WS_READ_EVENT && ev.len == 1000 && memcmp(ev.data, data, 1000) == 0);
    CHECK(r.buf_cap == 1000);
    /* small buffers are kept for the next message */
    rc = ws_reader_feed(&r, v.p, 0, &used, &ev);
    CHECK(rc == WS_READ_NEED && used == 0 && r.buf != NULL && r.buf_len == 0);

    /* a 100000-byte frame trickled in: grows, never past the frame */
    v.len = 0;
    frame(&v, WS_ROLE_SERVER, 1, 0, WS_OP_BINARY, data, n);
    ok = 1;
    got = 0;
    for (i = 0; i < v.len; i += 777) {
        size_t k = v.len - i < 777 ? v.len - i : 777;
        rc = ws_reader_feed(&r, v.p + i, k, &used, &ev);
        if (r.buf_cap > n)
            ok = 0;
        if (rc == WS_READ_EVENT) {
            got++;
            ok = ok && used == k && ev.len == n && memcmp(ev.data, data, n) == 0;
        } else if (rc != WS_READ_NEED || used != k) {
            ok = 0;
        }
    }
    CHECK(ok && got == 1);
    CHECK(r.buf_cap == n);
    /* a big buffer is released on the next feed */
    rc = ws_reader_feed(&r, v.p, 0, &used, &ev);
    CHECK(rc == WS_READ_NEED && r.buf == NULL && r.buf_cap == 0);

    /* a fragmented message of many small pieces: geometric growth, the
     * data intact; then the buffer goes once the message is delivered */
    v.len = 0;
    for (i = 0; i < n; i += 1000)
        frame(&v, WS_ROLE_SERVER, i + 1000 >= n, 0, i ? WS_OP_CONT : WS_OP_BINARY, data + i, 1000);
    rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
    CHECK(rc == WS_READ_EVENT && used == v.len && ev.len == n && memcmp(ev.data, data, n) == 0);
    CHECK(r.buf_cap >= n && r.buf_cap < 2 * n);
    /* a ping in between keeps a message in progress (and its buffer) */
    v.len = 0;
    frame(&v, WS_ROLE_SERVER, 0, 0, WS_OP_TEXT, data, 100);
    frame(&v, WS_ROLE_SERVER, 1, 0, WS_OP_PING, "", 0);
    frame(&v, WS_ROLE_SERVER, 1, 0, WS_OP_CONT, data, 100);
    rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
    /* (the big buffer went at the start of this call; a small one is new) */
    CHECK(rc == WS_READ_EVENT && ev.opcode == WS_OP_PING && r.buf_len == 100 && r.buf_cap < n);
    i = used;
    rc = ws_reader_feed(&r, v.p + i, v.len - i, &used, &ev);
    CHECK(rc == WS_READ_EVENT && ev.opcode == WS_OP_TEXT && ev.len == 200
          && memcmp(ev.data, data, 100) == 0 && memcmp(ev.data + 100, data, 100) == 0);
    CHECK(i + used == v.len);
    ws_reader_free(&r);

    /* several messages in one input: one event per call, *used says where */
    v.len = 0;
    frame(&v, WS_ROLE_SERVER, 1, 0, WS_OP_TEXT, "one", 3);
    i = v.len;
    frame(&v, WS_ROLE_SERVER, 1, 0, WS_OP_TEXT, "two", 3);
    ws_reader_init(&r, &o);
    rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
    CHECK(rc == WS_READ_EVENT && used == i && ev.len == 3 && memcmp(ev.data, "one", 3) == 0);
    rc = ws_reader_feed(&r, v.p + used, v.len - used, &used, &ev);
    CHECK(rc == WS_READ_EVENT && used == v.len - i && memcmp(ev.data, "two", 3) == 0);
    rc = ws_reader_feed(&r, NULL, 0, &used, &ev);
    CHECK(rc == WS_READ_NEED && used == 0);
    ws_reader_free(&r);
    /* reusable after free + init */
    ws_reader_init(&r, &o);
    rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
    CHECK(rc == WS_READ_EVENT && used == i);
    ws_reader_free(&r);

    /* client side: in place only for whole unmasked single frames */
    {
        ws_reader_opts c = opts_of(WS_ROLE_CLIENT, 0, 0);
        v.len = 0;
        frame(&v, WS_ROLE_CLIENT, 1, 0, WS_OP_BINARY, data, 70000);
        ws_reader_init(&r, &c);
        rc = ws_reader_feed(&r, v.p, v.len, &used, &ev);
        CHECK(rc == WS_READ_EVENT && ev.data == v.p + 10 && r.buf == NULL);
        /* header split off: the payload is still whole in the next input */
        rc = ws_reader_feed(&r, v.p, 5, &used, &ev);
        CHECK(rc == WS_READ_NEED && used == 5);
        rc = ws_reader_feed(&r, v.p + 5, v.len - 5, &used, &ev);
        CHECK(rc == WS_READ_EVENT && ev.data == v.p + 10 && ev.len == 70000 && r.buf == NULL);
        ws_reader_free(&r);
    }
    vec_free(&v);
    free(data);
}

int main(void)
{
    test_rfc_examples();
    test_headers();
    test_mask();
    test_close_codes();
    test_utf8();
    test_reader_utf8();
    test_streams();
    test_rules();
    test_close();
    test_max_message();
    test_buffers();
    return check_report("c codec");
}
