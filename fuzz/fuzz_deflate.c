/* libFuzzer target for ws_deflate (permessage-deflate, RFC 7692).
 *
 * Oracles:
 *  - the decompression limit: arbitrary bytes, as two messages on one
 *    stream, are inflated without a limit and with one. A limited result
 *    is never longer than the limit; it is the unlimited result when that
 *    fits, and "too big" when it does not (the bomb check can neither cut a
 *    message short nor let one through);
 *  - round trip: the input, as two messages and an empty one, compressed and
 *    decompressed on one pair of streams (with and without context
 *    takeover, any window size), comes back byte for byte; with an 8-bit
 *    window, a plain zlib inflater whose window really is 256 bytes reads
 *    it too (one inflate() call a message, so nothing reaches back further
 *    than that window into an earlier message).
 * Every message is handed over in its own exact-size heap block.
 *
 * Input byte 0: bits 0-2 window bits 8..15, bit 3 decompressor resets
 * after each message, bit 4 compressor resets, bits 5-6 the limit (1, 100,
 * 4096, 65536), bit 7 level 1 (else 6). Byte 1: where the data splits into
 * the two messages. The rest is the data.
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

static unsigned char *copy_of(const unsigned char *p, size_t n)
{
    unsigned char *c = (unsigned char *)malloc(n ? n : 1);
    if (c == NULL)
        abort();
    if (n)
        memcpy(c, p, n);
    return c;
}

static int decompress(ws_deflate *d, const unsigned char *p, size_t n, size_t max,
                      unsigned char **out, size_t *len)
{
    unsigned char *in = copy_of(p, n);
    int rc;

    *out = NULL;
    *len = 0;
    rc = ws_deflate_decompress(d, in, n, max, out, len);
    free(in);
    if (rc != WS_DEFLATE_OK && rc != WS_DEFLATE_NOMEM && rc != WS_DEFLATE_TOO_BIG
        && rc != WS_DEFLATE_BAD)
        abort();
    if (rc == WS_DEFLATE_OK && *out == NULL)
        abort();
    if (rc == WS_DEFLATE_TOO_BIG && max == 0)
        abort();
    if (rc == WS_DEFLATE_OK && max && *len > max)
        abort();
    return rc;
}

/* Phase A: the same two messages through an unlimited and a limited stream. */
static void limit_oracle(int bits, int reset, size_t max, const unsigned char *msg[2],
                         const size_t n[2])
{
    ws_deflate free_d, lim_d;
    int i;

    ws_deflate_init(&free_d, 6, bits, bits, reset, reset);
    ws_deflate_init(&lim_d, 6, bits, bits, reset, reset);
    for (i = 0; i < 2; i++) {
        unsigned char *a, *b;
        size_t la, lb;
        int ra = decompress(&free_d, msg[i], n[i], 0, &a, &la);
        int rb = decompress(&lim_d, msg[i], n[i], max, &b, &lb);
        int same_state = 1;

        if (ra == WS_DEFLATE_NOMEM || rb == WS_DEFLATE_NOMEM) {
            free(a);
            free(b);
            break;
        }
        if (ra == WS_DEFLATE_OK && la <= max) {
            if (rb != WS_DEFLATE_OK || lb != la || (la && memcmp(a, b, la) != 0))
                abort();
        } else if (ra == WS_DEFLATE_OK) {
            if (rb != WS_DEFLATE_TOO_BIG)
                abort();
            same_state = 0;   /* the limited stream was dropped, the other goes on */
        } else {
            /* BAD: the limited one may have hit the limit first; both reset */
            if (rb != WS_DEFLATE_BAD && rb != WS_DEFLATE_TOO_BIG)
                abort();
        }
        free(a);
        free(b);
        if (!same_state)
            break;
    }
    ws_deflate_free(&free_d);
    ws_deflate_free(&lim_d);
}

/* Inflate one message (tail appended) on a bare zlib stream in one call:
 * what the peer that asked for the window does. */
static int inflate_exact(z_stream *z, const unsigned char *p, size_t n, const unsigned char *want,
                         size_t want_n)
{
    unsigned char *in = (unsigned char *)malloc(n + 4), *out = (unsigned char *)malloc(want_n + 1);
    int rc, same;

    if (in == NULL || out == NULL)
        abort();
    memcpy(in, p, n);
    memcpy(in + n, "\0\0\xff\xff", 4);
    z->next_in = in;
    z->avail_in = (uInt)(n + 4);
    z->next_out = out;
    z->avail_out = (uInt)(want_n + 1);
    rc = inflate(z, Z_SYNC_FLUSH);
    same = (rc == Z_OK || rc == Z_BUF_ERROR) && z->avail_in == 0
        && want_n + 1 - z->avail_out == want_n && (want_n == 0 || memcmp(out, want, want_n) == 0);
    free(in);
    free(out);
    return same;
}

/* Phase B: compress and decompress the messages on one pair of streams. */
static void round_trip(int level, int bits, int out_reset, int in_reset,
                       const unsigned char *msg[3], const size_t n[3])
{
    ws_deflate c, d;
    z_stream w8;
    int i;

    memset(&w8, 0, sizeof w8);
    if (bits == 8 && inflateInit2(&w8, -8) != Z_OK)
        abort();
    ws_deflate_init(&c, level, bits, bits, out_reset, out_reset);
    /* a decompressor may forget its window only if the compressor does */
    ws_deflate_init(&d, level, bits, bits, in_reset, in_reset && out_reset);
    for (i = 0; i < 3; i++) {
        unsigned char *in = copy_of(msg[i], n[i]), *z = NULL, *back;
        size_t zl = 0, bl;
        int rc = ws_deflate_compress(&c, in, n[i], &z, &zl);

        free(in);
        if (rc == WS_DEFLATE_NOMEM)
            break;
        if (rc != WS_DEFLATE_OK || z == NULL || zl == 0)
            abort();
        /* the sync-flush tail is stripped */
        if (zl >= 4 && memcmp(z + zl - 4, "\0\0\xff\xff", 4) == 0)
            abort();
        if (bits == 8 && !inflate_exact(&w8, z, zl, msg[i], n[i]))
            abort();
        rc = decompress(&d, z, zl, n[i] ? n[i] : 1, &back, &bl);
        free(z);
        if (rc == WS_DEFLATE_NOMEM)
            break;
        if (rc != WS_DEFLATE_OK || bl != n[i] || (bl && memcmp(back, msg[i], bl) != 0))
            abort();
        free(back);
    }
    ws_deflate_free(&c);
    ws_deflate_free(&d);
    if (bits == 8)
        inflateEnd(&w8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[4] = { 1, 100, 4096, 65536 };
    const unsigned char *msg[3];
    size_t n[3], split;
    int bits, in_reset, out_reset, level;
    size_t max;

    if (size < 2)
        return 0;
    bits = 8 + (data[0] & 7);
    in_reset = (data[0] >> 3) & 1;
    out_reset = (data[0] >> 4) & 1;
    max = limits[(data[0] >> 5) & 3];
    level = (data[0] & 0x80) ? 1 : 6;
    data += 2;
    size -= 2;
    split = size ? (size_t)data[-1] * size / 255 : 0;
    if (split > size)
        split = size;
    msg[0] = data;
    n[0] = split;
    msg[1] = data + split;
    n[1] = size - split;
    msg[2] = data;
    n[2] = 0;

    limit_oracle(bits, in_reset, max, msg, n);
    round_trip(level, bits, out_reset, in_reset, msg, n);
    return 0;
}
