/* libFuzzer target for ws_utf8: differential against a plain decoder that
 * computes each code point and checks it, fed whole and in pieces.
 *
 * Input byte 0: piece size 1..256. The rest is the text.
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_utf8.h"

#include "ref_utf8.h"

enum { VALID = REF_VALID, INVALID = REF_INVALID, TRUNC = REF_TRUNC };
#define ref_kind ref_utf8_kind

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
        /* each piece in its own exact-size block, so ASan sees a read past it */
        unsigned char *piece_copy = (unsigned char *)malloc(k ? k : 1);
        if (piece_copy == NULL)
            abort();
        memcpy(piece_copy, p + at, k);
        rc = ws_utf8_feed(&u, piece_copy, k);
        free(piece_copy);
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
