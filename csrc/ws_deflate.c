#include "ws_deflate.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};

/* memLevel 8 (zlib's default): with a 15-bit window a compressor holds
 * about 256 KiB, a decompressor about 41 KiB (zlib's own figures) */
#define MEM_LEVEL 8

void ws_deflate_init(ws_deflate *d, int level, int out_bits, int in_bits, int out_reset, int in_reset,
                     ws_deflate_shared *shared) {
    memset(d, 0, sizeof *d);
    d->level = level;
    /* zlib makes no raw streams with an 8-bit window, but with 9 bits it
     * never reaches back more than 512 - 262 = 250 bytes (MAX_DIST), so its
     * output fits a peer's 256-byte window; it inflates with 8 bits */
    d->out_bits = out_bits < 9 ? 9 : out_bits;
    d->in_bits = in_bits;
    d->out_reset = out_reset;
    d->in_reset = in_reset;
    d->shared = shared;
}

static void end_streams(z_stream *out, int *out_live, z_stream *in, int *in_live) {
    if (*out_live)
        deflateEnd(out);
    if (*in_live)
        inflateEnd(in);
    *out_live = *in_live = 0;
}

void ws_deflate_free(ws_deflate *d) {
    end_streams(&d->out, &d->out_live, &d->in, &d->in_live);
}

void ws_deflate_shared_free(ws_deflate_shared *s) {
    end_streams(&s->out, &s->out_live, &s->in, &s->in_live);
}

int ws_zbuf_reserve(ws_zbuf *b, size_t need) {
    if (need <= b->cap)
        return 0;
    size_t c = b->cap ? b->cap : 256;
    while (c < need)
        c *= 2;
    unsigned char *p = (unsigned char *)realloc(b->p, c);
    if (!p)
        return -1;
    b->p = p;
    b->cap = c;
    return 0;
}

/* The compressor for d's next message, clean or holding d's context. */
static z_stream *out_stream(ws_deflate *d) {
    z_stream *z = &d->out;
    int *live = &d->out_live;
    ws_deflate_shared *s = d->out_reset ? d->shared : NULL;
    if (s) {
        z = &s->out;
        live = &s->out_live;
        if (*live && (s->out_level != d->level || s->out_bits != d->out_bits)) {
            deflateEnd(z);
            *live = 0;
        }
    }
    if (!*live) {
        memset(z, 0, sizeof *z);
        if (deflateInit2(z, d->level, Z_DEFLATED, -d->out_bits, MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
            return NULL;
        *live = 1;
        if (s)
            s->out_level = d->level, s->out_bits = d->out_bits;
    }
    return z;
}

int ws_deflate_compress(ws_deflate *d, const unsigned char *in, size_t n, ws_zbuf *out, size_t *out_len) {
    z_stream *z = out_stream(d);
    if (!z)
        return WS_DEFLATE_NOMEM;
    size_t len = 0;
    int rc = ws_zbuf_reserve(out, deflateBound(z, (uLong)n) + 16) != 0 ? WS_DEFLATE_NOMEM : WS_DEFLATE_OK;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    while (rc == WS_DEFLATE_OK) {
        z->next_out = out->p + len;
        z->avail_out = (uInt)(out->cap - len);
        int zr = deflate(z, Z_SYNC_FLUSH);
        len = out->cap - z->avail_out;
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            rc = WS_DEFLATE_NOMEM;
        else if (z->avail_in == 0 && z->avail_out > 0)
            break;
        else if (ws_zbuf_reserve(out, out->cap * 2) != 0)
            rc = WS_DEFLATE_NOMEM;
    }
    /* a failed stream is unusable; a reset one starts the next message clean */
    if (rc != WS_DEFLATE_OK || d->out_reset)
        deflateReset(z);
    if (rc != WS_DEFLATE_OK)
        return rc;
    /* a sync flush ends with the empty stored block 00 00 ff ff: strip it */
    if (len >= 4 && memcmp(out->p + len - 4, tail, 4) == 0)
        len -= 4;
    /* zlib writes nothing for an empty message after a flush; the peer
     * appends 00 00 ff ff, which needs a stored block header before it:
     * send one (RFC 7692 section 7.2.3.6), else its inflater is left
     * inside a block and misreads the next message */
    if (len == 0)
        out->p[len++] = 0x00;
    d->msgs_out++;
    d->wire_out += len;
    *out_len = len;
    return WS_DEFLATE_OK;
}

/* A DEFLATE block with BFINAL set ended the stream inside a message, which
 * RFC 7692 section 7.2.3.3 allows: start a new stream on the same LZ77
 * window, so what follows (at least the 00 00 ff ff tail) and later
 * messages may still refer back to it. */
enum { STREAM_END = 1 };   /* inflate_some: the stream ended with its input */
static int restart(z_stream *z) {
    unsigned char win[1 << 15];
    uInt n = 0;
    if (inflateGetDictionary(z, win, &n) != Z_OK || inflateReset(z) != Z_OK)
        return WS_DEFLATE_BAD;
    if (n && inflateSetDictionary(z, win, n) != Z_OK)
        return WS_DEFLATE_BAD;
    return WS_DEFLATE_OK;
}

/* Feed src to the inflater, appending output to out at *len; refuse past max.
 * *restarts: how many more BFINAL blocks this message may have (each costs
 * two copies of the window, so a stream of empty final blocks is bounded).
 * STREAM_END: a final block ended exactly at the end of src. */
static int inflate_some(z_stream *z, const unsigned char *src, size_t n, size_t max,
                        ws_zbuf *out, size_t *len, size_t *restarts) {
    z->next_in = (Bytef *)src;
    z->avail_in = (uInt)n;
    for (;;) {
        if (*len == out->cap) {
            size_t want = out->cap * 2;
            if (max && want > max + 1)
                want = max + 1;   /* one byte past max proves "too big" */
            if (want <= out->cap || ws_zbuf_reserve(out, want) != 0)
                return *len > max && max ? WS_DEFLATE_TOO_BIG : WS_DEFLATE_NOMEM;
        }
        z->next_out = out->p + *len;
        z->avail_out = (uInt)(out->cap - *len);
        int rc = inflate(z, Z_SYNC_FLUSH);
        *len = out->cap - z->avail_out;
        if (max && *len > max)
            return WS_DEFLATE_TOO_BIG;
        if (rc == Z_STREAM_END) {
            if (*restarts == 0)
                return WS_DEFLATE_BAD;
            --*restarts;
            int r = restart(z);
            if (r != WS_DEFLATE_OK)
                return r;
            if (z->avail_in == 0)
                return STREAM_END;
            continue;
        }
        if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR)
            return WS_DEFLATE_BAD;
        if (rc == Z_MEM_ERROR)
            return WS_DEFLATE_NOMEM;
        if (z->avail_in == 0 && z->avail_out > 0)
            return WS_DEFLATE_OK;
        if (rc == Z_BUF_ERROR && z->avail_out > 0)
            return WS_DEFLATE_OK;
    }
}

/* The decompressor for d's next message. The shared one has a 15-bit
 * window: a larger window than the peer's reads its stream all the same. */
static z_stream *in_stream(ws_deflate *d) {
    ws_deflate_shared *s = d->in_reset ? d->shared : NULL;
    z_stream *z = s ? &s->in : &d->in;
    int *live = s ? &s->in_live : &d->in_live;
    if (!*live) {
        memset(z, 0, sizeof *z);
        if (inflateInit2(z, s ? -15 : -d->in_bits) != Z_OK)
            return NULL;
        *live = 1;
    }
    return z;
}

int ws_deflate_decompress(ws_deflate *d, const unsigned char *in, size_t n, size_t max,
                          ws_zbuf *out, size_t *out_len) {
    z_stream *z = in_stream(d);
    if (!z)
        return WS_DEFLATE_NOMEM;
    size_t len = 0;
    size_t first = n * 4 + 64;
    if (max && first > max + 1)
        first = max + 1;
    size_t restarts = 4 + n / 4096;
    int rc = out->cap < first && ws_zbuf_reserve(out, first) != 0 ? WS_DEFLATE_NOMEM : WS_DEFLATE_OK;
    if (rc == WS_DEFLATE_OK)
        rc = inflate_some(z, in, n, max, out, &len, &restarts);
    /* the tail completes an empty stored block: the inflater must now be
     * between blocks, else the message was cut short (or empty) and the
     * next one would be read from the middle of a block. A payload that
     * ends its stream (Z_FINISH, without the empty block section 7.2.3.3
     * asks for) is whole without it, as python-websockets and Node ws
     * (both on zlib) take it. */
    if (rc == WS_DEFLATE_OK) {
        rc = inflate_some(z, tail, sizeof tail, max, out, &len, &restarts);
        if (rc == WS_DEFLATE_OK && !(z->data_type & 128))
            rc = WS_DEFLATE_BAD;
    }
    if (rc == STREAM_END)
        rc = WS_DEFLATE_OK;
    /* after an error the window is unusable anyway */
    if (rc != WS_DEFLATE_OK || d->in_reset)
        inflateReset(z);
    if (rc != WS_DEFLATE_OK)
        return rc;
    d->msgs_in++;
    d->wire_in += n;
    *out_len = len;
    return WS_DEFLATE_OK;
}
