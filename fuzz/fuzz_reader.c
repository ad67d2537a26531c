/* libFuzzer target for ws_reader.
 *
 * Oracles:
 *  - split invariance: the events (and the final failure, if any) must not
 *    depend on how the input is split: whole, alternating pieces of a fixed
 *    size and 1 byte, and arbitrary pieces (including empty feeds) drawn
 *    from a generator seeded by the input itself;
 *  - a reference decoder (reader_oracle.h: whole input, byte-wise
 *    unmasking, the rules of RFC 6455 section 5 written out plainly,
 *    reference UTF-8 from ref_utf8.h) must produce the same events and the
 *    same close code;
 *  - every event keeps the reader's promises (UTF-8 text, max_message or
 *    for RSV1 its DEFLATE bound, control frames <= 125 bytes, valid close
 *    codes), a failure is final, and the message buffer never grows past
 *    that limit.
 * Every piece is fed from its own exact-size heap block, so ASan catches a
 * read past the bytes the reader was given.
 *
 * Input byte 0: bit 0 role (client when set), bit 1 max_message (bit 6
 * clear: 100, set: 1), bit 2 RSV1 allowed, bits 3-7 a piece size 1..32.
 * The rest is the stream.
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short).
 */
#include <stdint.h>
#include <string.h>

#include "reader_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_reader_opts o;

    if (size < 1)
        return 0;
    memset(&o, 0, sizeof o);
    o.role = (data[0] & 1) ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    o.max_message = (data[0] & 2) ? ((data[0] & 0x40) ? 1 : 100) : 0;
    o.rsv_allowed = (data[0] & 4) ? WS_RSV1 : 0;
    check_stream(&o, data + 1, size - 1, (size_t)(data[0] >> 3) + 1, fnv1a(data, size), 1);
    return 0;
}
