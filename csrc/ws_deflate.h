/* permessage-deflate (RFC 7692) message transforms on zlib. No Lua, no I/O.
 * Streams are created on first use and, with no context takeover, released
 * after each message, so an idle connection holds no zlib state. */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#include <stddef.h>
#include <zlib.h>

typedef struct {
    z_stream out, in;          /* compressor and decompressor */
    int out_live, in_live;     /* initialised? */
    int out_bits, in_bits;     /* LZ77 window bits, 9..15 */
    int out_reset, in_reset;   /* no context takeover: forget the window after each message */
    int level;                 /* compression level */
} ws_deflate;

enum { WS_DEFLATE_OK = 0, WS_DEFLATE_NOMEM = -1, WS_DEFLATE_TOO_BIG = -2, WS_DEFLATE_BAD = -3 };

void ws_deflate_init(ws_deflate *d, int level, int out_bits, int in_bits, int out_reset, int in_reset);
void ws_deflate_free(ws_deflate *d);

/* Compress one whole message into *out (malloc'd, caller frees), without the
 * 00 00 ff ff tail the RFC strips. */
int ws_deflate_compress(ws_deflate *d, const unsigned char *in, size_t n,
                        unsigned char **out, size_t *out_len);

/* Decompress one whole message (tail appended here) into *out (malloc'd).
 * Never produces more than max bytes (0: no limit): a bomb is refused with
 * WS_DEFLATE_TOO_BIG before it is inflated into memory. */
int ws_deflate_decompress(ws_deflate *d, const unsigned char *in, size_t n, size_t max,
                          unsigned char **out, size_t *out_len);

#endif
