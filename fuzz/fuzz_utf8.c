/* libFuzzer target for ws_utf8: differential against a plain decoder that
 * computes each code point and checks it, fed whole and in pieces.
 *
 * Input byte 0: piece size 1..256. The rest is the text.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icsrc fuzz/fuzz_utf8.c \
 *       csrc/ws_utf8.c -o /tmp/fuzz_utf8
 *   /tmp/fuzz_utf8 fuzz/corpus/utf8
 */
#include <stdint.h>
#include <stdlib.h>

#include "ws_utf8.h"

enum { VALID, INVALID, TRUNC };   /* TRUNC: valid so far, ends mid code point */

/* Decode code point by code point. A sequence cut off by the end of input
 * is TRUNC when some continuation would make it valid: the completions
 * cover one interval of code points, which must meet the valid ones. */
static int ref_kind(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned b = p[i];
        size_t len, k;
        uint32_t cp, min;

        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; min = 0x80; }
        else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; min = 0x800; }
        else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; min = 0x10000; }
        else return INVALID;
        for (k = 1; k < len && i + k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return INVALID;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (k < len) {
            uint32_t lo = cp, hi = cp;
            for (; k < len; k++) {
                lo = lo << 6;
                hi = hi << 6 | 0x3F;
            }
            if (lo < min)
                lo = min;
            if (hi > 0x10FFFF)
                hi = 0x10FFFF;
            if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF))
                return INVALID;
            return TRUNC;
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return INVALID;
        i += len;
    }
    return VALID;
}

static int kind_of(const ws_utf8 *u, int rc)
{
    if (rc != 0)
        return INVALID;
    return ws_utf8_done(u) ? VALID : TRUNC;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *p;
    size_t n, piece, at;
    ws_utf8 u;
    int rc = 0, want;

    if (size < 1)
        return 0;
    piece = (size_t)data[0] + 1;
    p = data + 1;
    n = size - 1;
    want = ref_kind(p, n);

    if (ws_utf8_valid(p, n) != (want == VALID))
        abort();
    ws_utf8_init(&u);
    if (kind_of(&u, ws_utf8_feed(&u, p, n)) != want)
        abort();

    /* in pieces; on short inputs also check every prefix on the way */
    ws_utf8_init(&u);
    for (at = 0; at < n; at += piece) {
        size_t k = n - at < piece ? n - at : piece;
        rc = ws_utf8_feed(&u, p + at, k);
        if (n <= 512 && kind_of(&u, rc) != ref_kind(p, at + k))
            abort();
    }
    if (kind_of(&u, rc) != want)
        abort();
    /* a failure is final */
    if (want == INVALID && (ws_utf8_feed(&u, (const unsigned char *)"a", 1) != -1
                            || ws_utf8_done(&u)))
        abort();
    return 0;
}
