/* permessage-deflate (RFC 7692) message transforms on zlib. No Lua, no I/O.
 *
 * zlib state is never allocated per message. A connection with context
 * takeover keeps its own streams (created on first use); one with no context
 * takeover borrows a ws_deflate_shared set for the length of one call (a
 * message is compressed or inflated whole in one call), so any number of such
 * connections share one deflater and one inflater and an idle one holds no
 * zlib state. Streams are reset, not freed, between messages. */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

/* Streams shared by the connections with no context takeover of one thread. */
typedef struct {
    z_stream out, in;
    int out_live, in_live;
    int out_level, out_bits;   /* what out was made for */
} ws_deflate_shared;

typedef struct {
    z_stream out, in;          /* own compressor and decompressor */
    int out_live, in_live;     /* initialised? */
    int out_bits, in_bits;     /* LZ77 window bits, 9..15 and 8..15 */
    int out_reset, in_reset;   /* no context takeover: forget the window after each message */
    int level;                 /* compression level */
    ws_deflate_shared *shared; /* borrowed on reset directions; NULL: own streams */
    uint64_t msgs_out, wire_out, msgs_in, wire_in;   /* messages and compressed bytes */
} ws_deflate;

/* An output buffer the caller keeps between calls (p == NULL, cap == 0 to
 * start; free(p) when done). Results are written from p[0]. */
typedef struct {
    unsigned char *p;
    size_t cap;
} ws_zbuf;

/* Make b hold at least need bytes (contents kept): 0, or -1 out of memory. */
int ws_zbuf_reserve(ws_zbuf *b, size_t need);

enum { WS_DEFLATE_OK = 0, WS_DEFLATE_NOMEM = -1, WS_DEFLATE_TOO_BIG = -2, WS_DEFLATE_BAD = -3 };

void ws_deflate_init(ws_deflate *d, int level, int out_bits, int in_bits, int out_reset, int in_reset,
                     ws_deflate_shared *shared);
void ws_deflate_free(ws_deflate *d);          /* own streams only */
void ws_deflate_shared_free(ws_deflate_shared *s);

/* Compress one whole message into out->p[0 .. *out_len), without the
 * 00 00 ff ff tail the RFC strips. */
int ws_deflate_compress(ws_deflate *d, const unsigned char *in, size_t n, ws_zbuf *out, size_t *out_len);

/* Decompress one whole message (tail appended here) into out->p[0 .. *out_len).
 * Never produces more than max bytes (0: no limit): a bomb is refused with
 * WS_DEFLATE_TOO_BIG before it is inflated into memory. */
int ws_deflate_decompress(ws_deflate *d, const unsigned char *in, size_t n, size_t max,
                          ws_zbuf *out, size_t *out_len);

#pragma GCC visibility pop

#endif
