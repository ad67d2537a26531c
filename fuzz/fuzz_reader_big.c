/* libFuzzer target for ws_reader with big messages: the input describes
 * frames instead of being them, so a few bytes make messages of hundreds of
 * KiB. That reaches what fuzz_reader's short inputs cannot: the buffer
 * growing by doubling up to max_message, the 8 KiB unmask-and-validate
 * chunks, the buffer above 64 KiB freed after its message, and limits of
 * realistic size. The oracles are fuzz_reader's (reader_oracle.h), with
 * piece sizes scaled up.
 *
 * Input byte 0: bit 0 role (client when set), bits 1-2 max_message (none,
 * 100, 70000, 300000), bit 3 RSV1 allowed, bits 4-7 the alternating piece
 * size (1 + 1000 * value). Then up to 16 records of 4 bytes, one frame each:
 *   r0  bit 7 FIN, bits 4-6 RSV, bits 0-3 opcode
 *   r1  r2  payload length: r1 bit 7 clear: r1 r2 (< 32 KiB); set: 16 * (r1 & 0x7f) r2
 *   r3  bits 0-1 payload pattern ("a", U+00E9, U+2603, U+1F600, repeated and
 *       continued across the frames of one message, so a fragment may end
 *       inside a character), bit 2 one 0xFF byte at 1/8 * (bits 5-7) of the
 *       payload, bit 3 the mask bit inverted (wrong for the role), bit 4 the
 *       length field 1 larger than the payload sent (a lie; the next frame's
 *       header is then read as payload)
 * Whatever follows the records is appended to the stream as it is.
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short).
 */
#include <stdint.h>
#include <string.h>

#include "reader_oracle.h"

#define MAX_RECORDS 16
#define MAX_STREAM (1u << 20)

static const char *const patterns[4] = { "a", "\xC3\xA9", "\xE2\x98\x83", "\xF0\x9F\x98\x80" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[4] = { 0, 100, 70000, 300000 };
    ws_reader_opts o;
    vec s = { NULL, 0, 0 };
    size_t i, nrec, msg_off = 0, ctl_off;

    if (size < 1)
        return 0;
    memset(&o, 0, sizeof o);
    o.role = (data[0] & 1) ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    o.max_message = limits[(data[0] >> 1) & 3];
    o.rsv_allowed = (data[0] & 8) ? WS_RSV1 : 0;

    nrec = (size - 1) / 4;
    if (nrec > MAX_RECORDS)
        nrec = MAX_RECORDS;
    for (i = 0; i < nrec; i++) {
        const uint8_t *r = data + 1 + 4 * i;
        int fin = r[0] >> 7, rsv = (r[0] >> 4) & 7, op = r[0] & 15;
        size_t len = (r[1] & 0x80) ? 16 * ((size_t)(r[1] & 0x7f) << 8 | r[2])
                                   : ((size_t)r[1] << 8 | r[2]);
        const char *pat = patterns[r[3] & 3];
        size_t plen = strlen(pat), j, *off;
        int masked = (o.role == WS_ROLE_SERVER) ^ ((r[3] >> 3) & 1);
        uint64_t declared = len + ((r[3] >> 4) & 1);
        unsigned char head[WS_MAX_HEADER], key[4];
        size_t hl, at;

        if (s.len + len + WS_MAX_HEADER > MAX_STREAM)
            break;
        key[0] = r[3];
        key[1] = r[1];
        key[2] = r[2];
        key[3] = r[0];
        hl = ws_frame_write_header(head, fin, rsv, op, declared, masked ? key : NULL);
        put(&s, head, hl);
        /* a data frame continues its message's pattern; a new message restarts it */
        if (op == WS_OP_TEXT || op == WS_OP_BINARY)
            msg_off = 0;
        ctl_off = 0;
        off = op >= WS_OP_CLOSE ? &ctl_off : &msg_off;
        at = s.len;
        if (len) {
            unsigned char *pay = (unsigned char *)malloc(len);
            if (pay == NULL)
                abort();
            for (j = 0; j < len; j++, ++*off)
                pay[j] = (unsigned char)pat[*off % plen];
            put(&s, pay, len);
            free(pay);
        }
        if (((r[3] >> 2) & 1) && len)
            s.p[at + len * (r[3] >> 5) / 8] = 0xFF;
        if (masked)
            for (j = 0; j < len; j++)
                s.p[at + j] ^= key[j % 4];
    }
    /* the rest of the input, as raw bytes */
    if (1 + 4 * nrec < size)
        put(&s, data + 1 + 4 * nrec, size - 1 - 4 * nrec);

    check_stream(&o, s.p ? s.p : (const unsigned char *)"", s.len,
                 1 + 1000 * (size_t)(data[0] >> 4), fnv1a(data, size), 256);
    free(s.p);
    return 0;
}
