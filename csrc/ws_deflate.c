#include "ws_deflate.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};

void ws_deflate_init(ws_deflate *d, int level, int out_bits, int in_bits, int out_reset, int in_reset) {
    memset(d, 0, sizeof *d);
    d->level = level;
    /* zlib makes no raw streams with an 8-bit window, but with 9 bits it
     * never reaches back more than 512 - 262 = 250 bytes (MAX_DIST), so its
     * output fits a peer's 256-byte window; inflating needs no more than 9 */
    d->out_bits = out_bits < 9 ? 9 : out_bits;
    d->in_bits = in_bits < 9 ? 9 : in_bits;
    d->out_reset = out_reset;
    d->in_reset = in_reset;
}

void ws_deflate_free(ws_deflate *d) {
    if (d->out_live)
        deflateEnd(&d->out);
    if (d->in_live)
        inflateEnd(&d->in);
    d->out_live = d->in_live = 0;
}

static int grow(unsigned char **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    unsigned char *p = (unsigned char *)realloc(*buf, c);
    if (!p)
        return -1;
    *buf = p;
    *cap = c;
    return 0;
}

int ws_deflate_compress(ws_deflate *d, const unsigned char *in, size_t n,
                        unsigned char **out, size_t *out_len) {
    if (!d->out_live) {
        memset(&d->out, 0, sizeof d->out);
        /* memLevel 8 with a 15-bit window costs about 256 KiB while live */
        if (deflateInit2(&d->out, d->level, Z_DEFLATED, -d->out_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return WS_DEFLATE_NOMEM;
        d->out_live = 1;
    }
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    if (grow(&buf, &cap, deflateBound(&d->out, (uLong)n) + 16) != 0)
        return WS_DEFLATE_NOMEM;
    d->out.next_in = (Bytef *)in;
    d->out.avail_in = (uInt)n;
    for (;;) {
        d->out.next_out = buf + len;
        d->out.avail_out = (uInt)(cap - len);
        int rc = deflate(&d->out, Z_SYNC_FLUSH);
        len = cap - d->out.avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            free(buf);
            return WS_DEFLATE_NOMEM;
        }
        if (d->out.avail_in == 0 && d->out.avail_out > 0)
            break;
        if (grow(&buf, &cap, cap * 2) != 0) {
            free(buf);
            return WS_DEFLATE_NOMEM;
        }
    }
    /* a sync flush ends with the empty stored block 00 00 ff ff: strip it */
    if (len >= 4 && memcmp(buf + len - 4, tail, 4) == 0)
        len -= 4;
    /* zlib writes nothing for an empty message after a flush; the peer
     * appends 00 00 ff ff, which needs a stored block header before it:
     * send one (RFC 7692 section 7.2.3.6), else its inflater is left
     * inside a block and misreads the next message */
    if (len == 0)
        buf[len++] = 0x00;
    if (d->out_reset) {
        deflateEnd(&d->out);
        d->out_live = 0;
    }
    *out = buf;
    *out_len = len;
    return WS_DEFLATE_OK;
}

/* A DEFLATE block with BFINAL set ended the stream inside a message, which
 * RFC 7692 section 7.2.3.3 allows: start a new stream on the same LZ77
 * window, so what follows (at least the 00 00 ff ff tail) and later
 * messages may still refer back to it. */
static int restart(ws_deflate *d) {
    unsigned char win[1 << 15];
    uInt n = 0;
    if (inflateGetDictionary(&d->in, win, &n) != Z_OK || inflateReset(&d->in) != Z_OK)
        return WS_DEFLATE_BAD;
    if (n && inflateSetDictionary(&d->in, win, n) != Z_OK)
        return WS_DEFLATE_BAD;
    return WS_DEFLATE_OK;
}

/* Feed src to the inflater, appending output to *buf; refuse past max.
 * *restarts: how many more BFINAL blocks this message may have (each costs
 * two copies of the window, so a stream of empty final blocks is bounded). */
static int inflate_some(ws_deflate *d, const unsigned char *src, size_t n, size_t max,
                        unsigned char **buf, size_t *cap, size_t *len, size_t *restarts) {
    d->in.next_in = (Bytef *)src;
    d->in.avail_in = (uInt)n;
    for (;;) {
        if (*len == *cap) {
            size_t want = *cap * 2;
            if (max && want > max + 1)
                want = max + 1;   /* one byte past max proves "too big" */
            if (want <= *cap || grow(buf, cap, want) != 0)
                return *len > max && max ? WS_DEFLATE_TOO_BIG : WS_DEFLATE_NOMEM;
        }
        d->in.next_out = *buf + *len;
        d->in.avail_out = (uInt)(*cap - *len);
        int rc = inflate(&d->in, Z_SYNC_FLUSH);
        *len = *cap - d->in.avail_out;
        if (max && *len > max)
            return WS_DEFLATE_TOO_BIG;
        if (rc == Z_STREAM_END) {
            if (*restarts == 0)
                return WS_DEFLATE_BAD;
            --*restarts;
            int r = restart(d);
            if (r != WS_DEFLATE_OK)
                return r;
            if (d->in.avail_in == 0)
                return WS_DEFLATE_OK;
            continue;
        }
        if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR)
            return WS_DEFLATE_BAD;
        if (rc == Z_MEM_ERROR)
            return WS_DEFLATE_NOMEM;
        if (d->in.avail_in == 0 && d->in.avail_out > 0)
            return WS_DEFLATE_OK;
        if (rc == Z_BUF_ERROR && d->in.avail_out > 0)
            return WS_DEFLATE_OK;
    }
}

int ws_deflate_decompress(ws_deflate *d, const unsigned char *in, size_t n, size_t max,
                          unsigned char **out, size_t *out_len) {
    if (!d->in_live) {
        memset(&d->in, 0, sizeof d->in);
        if (inflateInit2(&d->in, -d->in_bits) != Z_OK)
            return WS_DEFLATE_NOMEM;
        d->in_live = 1;
    }
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    size_t first = n * 4 + 64;
    if (max && first > max + 1)
        first = max + 1;
    size_t restarts = 4 + n / 4096;
    int rc = grow(&buf, &cap, first) != 0 ? WS_DEFLATE_NOMEM : WS_DEFLATE_OK;
    if (rc == WS_DEFLATE_OK)
        rc = inflate_some(d, in, n, max, &buf, &cap, &len, &restarts);
    if (rc == WS_DEFLATE_OK)
        rc = inflate_some(d, tail, sizeof tail, max, &buf, &cap, &len, &restarts);
    /* the tail completes an empty stored block: the inflater must now be
     * between blocks, else the message was cut short (or empty) and the
     * next one would be read from the middle of a block */
    if (rc == WS_DEFLATE_OK && !(d->in.data_type & 128))
        rc = WS_DEFLATE_BAD;
    if (rc != WS_DEFLATE_OK || d->in_reset) {
        /* after an error the stream state is unusable anyway */
        inflateEnd(&d->in);
        d->in_live = 0;
    }
    if (rc != WS_DEFLATE_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return WS_DEFLATE_OK;
}
