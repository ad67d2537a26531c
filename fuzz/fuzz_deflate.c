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
 *  - BFINAL: each message compressed on its own with Z_FINISH, as a
 *    zlib-based peer may send it (with the empty block RFC 7692 section
 *    7.2.3.3 asks for after it, or, as python-websockets and Node ws accept,
 *    without), inflates back byte for byte on one decompressor;
 *  - shared streams: directions with no context takeover may borrow one
 *    ws_deflate_shared set (both ends of the round trip use the same one);
 *    between messages, a third connection with another level and window
 *    round-trips its own message through the same set, which must change
 *    nothing for the first two (a shared stream carries no context over).
 * Every message is handed over in its own exact-size heap block; output
 * buffers are reused across calls, as the binding reuses its own.
 *
 * Input byte 0: bits 0-2 window bits 8..15, bit 3 decompressor resets
 * after each message, bit 4 compressor resets, bits 5-6 the limit (1, 100,
 * 4096, 65536), bit 7 level 1 (else 6). Byte 1: where the data splits into
 * the two messages. Byte 2: bit 0 shared streams, bit 1 the third connection
 * (with bit 0). The rest is the data.
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
                      ws_zbuf *buf, size_t *len)
{
    unsigned char *in = copy_of(p, n);
    int rc;

    *len = 0;
    rc = ws_deflate_decompress(d, in, n, max, buf, len);
    free(in);
    if (rc != WS_DEFLATE_OK && rc != WS_DEFLATE_NOMEM && rc != WS_DEFLATE_TOO_BIG
        && rc != WS_DEFLATE_BAD)
        abort();
    if (rc == WS_DEFLATE_OK && buf->p == NULL)
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
    ws_zbuf a = { NULL, 0 }, b = { NULL, 0 };
    int i;

    ws_deflate_init(&free_d, 6, bits, bits, reset, reset, NULL);
    ws_deflate_init(&lim_d, 6, bits, bits, reset, reset, NULL);
    for (i = 0; i < 2; i++) {
        size_t la, lb;
        int ra = decompress(&free_d, msg[i], n[i], 0, &a, &la);
        int rb = decompress(&lim_d, msg[i], n[i], max, &b, &lb);
        int same_state = 1;

        if (ra == WS_DEFLATE_NOMEM || rb == WS_DEFLATE_NOMEM)
            break;
        if (ra == WS_DEFLATE_OK && la <= max) {
            if (rb != WS_DEFLATE_OK || lb != la || (la && memcmp(a.p, b.p, la) != 0))
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
        if (!same_state)
            break;
    }
    free(a.p);
    free(b.p);
    ws_deflate_free(&free_d);
    ws_deflate_free(&lim_d);
}

/* Phase C: every message as one whole DEFLATE stream (Z_FINISH), the first
 * without, the others with a 00 after it; d keeps or forgets its window. */
static void bfinal_oracle(int bits, int reset, const unsigned char *msg[3], const size_t n[3])
{
    ws_deflate d;
    ws_zbuf back = { NULL, 0 };
    z_stream c;
    int i;

    memset(&c, 0, sizeof c);
    if (deflateInit2(&c, 6, Z_DEFLATED, bits < 9 ? -9 : -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return;
    ws_deflate_init(&d, 6, bits, bits, reset, reset, NULL);
    for (i = 0; i < 3; i++) {
        size_t cap = deflateBound(&c, (uLong)n[i]) + 1, bl;
        unsigned char *z = (unsigned char *)malloc(cap), *in = copy_of(msg[i], n[i]);
        int rc;

        if (z == NULL)
            abort();
        c.next_in = in;
        c.avail_in = (uInt)n[i];
        c.next_out = z;
        c.avail_out = (uInt)cap;
        if (deflate(&c, Z_FINISH) != Z_STREAM_END || deflateReset(&c) != Z_OK)
            abort();
        free(in);
        cap -= c.avail_out;
        if (i > 0)
            z[cap++] = 0x00;
        rc = decompress(&d, z, cap, n[i] ? n[i] : 1, &back, &bl);
        free(z);
        if (rc == WS_DEFLATE_NOMEM)
            break;
        if (rc != WS_DEFLATE_OK || bl != n[i] || (bl && memcmp(back.p, msg[i], bl) != 0))
            abort();
    }
    deflateEnd(&c);
    free(back.p);
    ws_deflate_free(&d);
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

/* A message of another connection (level 9, 10-bit window, no context
 * takeover) through the shared set: it must come back whole. */
static void other_connection(ws_deflate_shared *sh, const unsigned char *p, size_t n)
{
    ws_deflate e;
    ws_zbuf z = { NULL, 0 }, back = { NULL, 0 };
    size_t zl = 0, bl = 0;
    unsigned char *in = copy_of(p, n);
    int rc;

    ws_deflate_init(&e, 9, 10, 10, 1, 1, sh);
    rc = ws_deflate_compress(&e, in, n, &z, &zl);
    free(in);
    if (rc == WS_DEFLATE_OK) {
        rc = decompress(&e, z.p, zl, 0, &back, &bl);
        if (rc != WS_DEFLATE_NOMEM && (rc != WS_DEFLATE_OK || bl != n || (n && memcmp(back.p, p, n) != 0)))
            abort();
    } else if (rc != WS_DEFLATE_NOMEM) {
        abort();
    }
    ws_deflate_free(&e);
    free(z.p);
    free(back.p);
}

/* Phase B: compress and decompress the messages on one pair of streams. */
static void round_trip(int level, int bits, int out_reset, int in_reset, ws_deflate_shared *sh,
                       int interleave, const unsigned char *msg[3], const size_t n[3])
{
    ws_deflate c, d;
    ws_zbuf z = { NULL, 0 }, back = { NULL, 0 };
    z_stream w8;
    int i;

    memset(&w8, 0, sizeof w8);
    if (bits == 8 && inflateInit2(&w8, -8) != Z_OK)
        abort();
    ws_deflate_init(&c, level, bits, bits, out_reset, out_reset, sh);
    /* a decompressor may forget its window only if the compressor does */
    ws_deflate_init(&d, level, bits, bits, in_reset, in_reset && out_reset, sh);
    for (i = 0; i < 3; i++) {
        unsigned char *in = copy_of(msg[i], n[i]);
        size_t zl = 0, bl;
        int rc = ws_deflate_compress(&c, in, n[i], &z, &zl);

        free(in);
        if (rc == WS_DEFLATE_NOMEM)
            break;
        if (rc != WS_DEFLATE_OK || z.p == NULL || zl == 0)
            abort();
        /* the sync-flush tail is stripped */
        if (zl >= 4 && memcmp(z.p + zl - 4, "\0\0\xff\xff", 4) == 0)
            abort();
        if (bits == 8 && !inflate_exact(&w8, z.p, zl, msg[i], n[i]))
            abort();
        if (interleave)
            other_connection(sh, msg[1 - i % 2], n[1 - i % 2]);
        rc = decompress(&d, z.p, zl, n[i] ? n[i] : 1, &back, &bl);
        if (rc == WS_DEFLATE_NOMEM)
            break;
        if (rc != WS_DEFLATE_OK || bl != n[i] || (bl && memcmp(back.p, msg[i], bl) != 0))
            abort();
        if (c.msgs_out != (uint64_t)i + 1 || d.msgs_in != (uint64_t)i + 1)
            abort();
        if (interleave)
            other_connection(sh, msg[i % 2], n[i % 2]);
    }
    free(z.p);
    free(back.p);
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
    int bits, in_reset, out_reset, level, use_shared, interleave;
    ws_deflate_shared sh;
    size_t max;

    if (size < 3)
        return 0;
    bits = 8 + (data[0] & 7);
    in_reset = (data[0] >> 3) & 1;
    out_reset = (data[0] >> 4) & 1;
    max = limits[(data[0] >> 5) & 3];
    level = (data[0] & 0x80) ? 1 : 6;
    use_shared = data[2] & 1;
    interleave = use_shared && (data[2] & 2);
    split = size > 3 ? (size_t)data[1] * (size - 3) / 255 : 0;
    data += 3;
    size -= 3;
    if (split > size)
        split = size;
    msg[0] = data;
    n[0] = split;
    msg[1] = data + split;
    n[1] = size - split;
    msg[2] = data;
    n[2] = 0;

    limit_oracle(bits, in_reset, max, msg, n);
    bfinal_oracle(bits, in_reset, msg, n);
    memset(&sh, 0, sizeof sh);
    round_trip(level, bits, out_reset, in_reset, use_shared ? &sh : NULL, interleave, msg, n);
    ws_deflate_shared_free(&sh);
    return 0;
}
