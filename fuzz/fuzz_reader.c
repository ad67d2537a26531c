/* libFuzzer target for ws_reader: the events (and the final failure, if
 * any) must not depend on how the input is split, and every event must keep
 * the reader's promises.
 *
 * Input byte 0: bit 0 role (client when set), bit 1 max_message 100,
 * bit 2 RSV1 allowed, bits 3-7 a piece size 1..32. The rest is the stream.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icsrc fuzz/fuzz_reader.c \
 *       csrc/ws_reader.c csrc/ws_frame.c csrc/ws_utf8.c -o /tmp/fuzz_reader
 *   /tmp/fuzz_reader fuzz/corpus/reader
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_reader.h"

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

/* Check an event against the contract and append it to the log. */
static void log_event(vec *log, const ws_reader_opts *o, const ws_event *ev)
{
    uint64_t n = ev->len, rl = ev->reason_len;
    unsigned char head[3];

    if (ev->data == NULL || ev->reason == NULL)
        abort();
    switch (ev->opcode) {
    case WS_OP_TEXT:
        if (!(ev->rsv & WS_RSV1) && !ws_utf8_valid(ev->data, ev->len))
            abort();
        /* fall through */
    case WS_OP_BINARY:
        if (o->max_message && ev->len > o->max_message)
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
    head[0] = (unsigned char)ev->opcode;
    head[1] = (unsigned char)ev->rsv;
    head[2] = 0;
    put(log, head, 3);
    put(log, &n, sizeof n);
    put(log, ev->data, ev->len);
    put(log, &ev->close_code, sizeof ev->close_code);
    put(log, &rl, sizeof rl);
    put(log, ev->reason, ev->reason_len);
}

/* Feed data in pieces (sizes alternate between piece and 1; piece 0 means
 * all at once). Returns the final status; the log gets the events and the
 * failure. */
static int run(const ws_reader_opts *o, const unsigned char *data, size_t n,
               size_t piece, vec *log)
{
    ws_reader r;
    size_t start = 0, k = 0;
    int rc = WS_READ_NEED;

    ws_reader_init(&r, o);
    while (start < n && rc == WS_READ_NEED) {
        size_t len = piece == 0 ? n : (k++ & 1) ? 1 : piece;
        size_t off = start, end;
        if (len > n - start)
            len = n - start;
        end = start + len;
        for (;;) {
            ws_event ev;
            size_t used = (size_t)-1;
            rc = ws_reader_feed(&r, data + off, end - off, &used, &ev);
            if (used > end - off)
                abort();
            off += used;
            if (rc == WS_READ_EVENT) {
                log_event(log, o, &ev);
                rc = WS_READ_NEED;
                if (off == end)
                    break;
                continue;
            }
            if (rc == WS_READ_NEED && off != end)
                abort();
            break;
        }
        start = end;
    }
    if (rc != WS_READ_NEED) {
        const char *err = r.error;
        unsigned code = r.error_code;
        ws_event ev;
        size_t used = 1;
        if (rc != WS_READ_ERROR || err == NULL
            || (code != 1002 && code != 1007 && code != 1009))
            abort();
        /* failed for good */
        if (ws_reader_feed(&r, data, n, &used, &ev) != WS_READ_ERROR || used != 0
            || r.error != err || r.error_code != code)
            abort();
        put(log, &code, sizeof code);
        put(log, &err, sizeof err);
    }
    /* a delivered buffer is never larger than the limit allows */
    if (o->max_message && r.buf_cap > o->max_message)
        abort();
    ws_reader_free(&r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_reader_opts o;
    vec whole = { NULL, 0, 0 }, split = { NULL, 0, 0 };
    size_t piece;

    if (size < 1)
        return 0;
    memset(&o, 0, sizeof o);
    o.role = (data[0] & 1) ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    o.max_message = (data[0] & 2) ? 100 : 0;
    o.rsv_allowed = (data[0] & 4) ? WS_RSV1 : 0;
    piece = (size_t)(data[0] >> 3) + 1;

    if (run(&o, data + 1, size - 1, 0, &whole) != run(&o, data + 1, size - 1, piece, &split))
        abort();
    if (whole.len != split.len || (whole.len && memcmp(whole.p, split.p, whole.len) != 0))
        abort();
    free(whole.p);
    free(split.p);
    return 0;
}
