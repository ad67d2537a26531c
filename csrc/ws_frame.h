/* RFC 6455 section 5.2 frame headers and masking. */
#ifndef WS_FRAME_H
#define WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

enum {
    WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA
};

#define WS_RSV1 0x4
#define WS_RSV2 0x2
#define WS_RSV3 0x1
#define WS_MAX_HEADER 14          /* 2 + 8 (length) + 4 (mask key) */
#define WS_MAX_CONTROL 125

typedef struct {
    int fin;                      /* 0 or 1 */
    int rsv;                      /* WS_RSV1|WS_RSV2|WS_RSV3 bits as in byte 0 >> 4 */
    int opcode;                   /* 0..15, not validated here */
    int masked;                   /* 0 or 1 */
    unsigned char key[4];         /* valid when masked */
    uint64_t length;              /* payload length */
    size_t header_len;            /* 2..14 */
} ws_frame_header;

enum {
    WS_FRAME_OK = 1,              /* header parsed, h filled */
    WS_FRAME_NEED = 0,            /* *need = bytes still missing for the header */
    WS_FRAME_BAD_LENGTH = -1      /* 64-bit length with the most significant bit set */
};

/* Parse a frame header from the start of buf. Non-minimal length encodings
 * are accepted (RFC 6455 does not require minimal ones of a receiver). */
int ws_frame_parse_header(const unsigned char *buf, size_t len,
                          ws_frame_header *h, size_t *need);

/* Size of the header for a payload of len bytes. */
size_t ws_frame_header_size(uint64_t len, int masked);

/* Write a header into out (at least WS_MAX_HEADER bytes); key NULL means
 * unmasked. Returns the number of bytes written. */
size_t ws_frame_write_header(unsigned char *out, int fin, int rsv, int opcode,
                             uint64_t len, const unsigned char *key);

/* XOR len bytes of src with key into dst (dst may equal src), starting at
 * key position pos (0..3). Returns the key position after the last byte,
 * so a payload can be unmasked in pieces. Word-at-a-time; any alignment. */
size_t ws_mask(unsigned char *dst, const unsigned char *src, size_t len,
               const unsigned char key[4], size_t pos);

/* 1 for a close code a peer may send (1000-1003, 1007-1014, 3000-4999). */
int ws_close_code_valid(unsigned code);

#pragma GCC visibility pop

#endif
