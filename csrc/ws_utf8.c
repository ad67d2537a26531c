/* Incremental UTF-8 validator (RFC 3629 section 4).
 *
 * Inside a multi-byte sequence the state packs what the next byte must be:
 *   bits 0-1   continuation bytes still expected (1..3)
 *   bits 8-15  lowest allowed value of the next byte
 *   bits 16-23 highest allowed value of the next byte
 * The range is narrower than 80..BF only for the first continuation byte
 * after E0 (overlongs), ED (surrogates), F0 (overlongs) and F4 (> U+10FFFF),
 * so those rules cost nothing beyond the range check every byte gets. */
#include <string.h>

#include "ws_utf8.h"

#define ST(need, lo, hi) \
    ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

/* The state after a lead byte, or 0 when b cannot start a sequence
 * (ASCII is handled by the caller; 80..BF lone continuation; C0 C1 always
 * overlong; F5..FF beyond U+10FFFF). */
static uint32_t lead_state(unsigned b)
{
    if (b < 0xC2) return 0;
    if (b < 0xE0) return ST(1, 0x80, 0xBF);
    if (b == 0xE0) return ST(2, 0xA0, 0xBF);
    if (b == 0xED) return ST(2, 0x80, 0x9F);
    if (b < 0xF0) return ST(2, 0x80, 0xBF);
    if (b == 0xF0) return ST(3, 0x90, 0xBF);
    if (b < 0xF4) return ST(3, 0x80, 0xBF);
    if (b == 0xF4) return ST(3, 0x80, 0x8F);
    return 0;
}

void ws_utf8_init(ws_utf8 *u)
{
    u->state = 0;
}

int ws_utf8_feed(ws_utf8 *u, const unsigned char *p, size_t n)
{
    uint32_t st = u->state;
    size_t i = 0;

    if (st == WS_UTF8_BAD)
        return -1;
    for (;;) {
        /* finish the sequence in progress (possibly begun in an earlier call) */
        while (st != 0) {
            unsigned b;
            if (i == n) {
                u->state = st;
                return 0;
            }
            b = p[i++];
            if (b < ((st >> 8) & 0xff) || b > (st >> 16))
                goto bad;
            st = (st & 3) == 1 ? 0 : ST((st & 3) - 1, 0x80, 0xBF);
        }
        /* at a boundary: ASCII runs go 8 bytes at a time */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        while (i < n && p[i] < 0x80)
            i++;
        if (i == n) {
            u->state = 0;
            return 0;
        }
        st = lead_state(p[i++]);
        if (st == 0)
            goto bad;
    }
bad:
    u->state = WS_UTF8_BAD;
    return -1;
}

int ws_utf8_done(const ws_utf8 *u)
{
    return u->state == 0;
}

int ws_utf8_valid(const unsigned char *p, size_t n)
{
    ws_utf8 u;
    ws_utf8_init(&u);
    return ws_utf8_feed(&u, p, n) == 0 && ws_utf8_done(&u);
}
