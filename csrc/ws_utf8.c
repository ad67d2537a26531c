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

/* Any byte of a word outside ASCII. */
#define HIGH_BITS UINT64_C(0x8080808080808080)

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
        /* at a boundary */
        while (i < n) {
            unsigned b = p[i];
            size_t need;
            if (b < 0x80) {
                /* ASCII comes in runs: go on 16, then 8, bytes at a time
                 * while every high bit is clear */
                i++;
                while (n - i >= 16) {
                    uint64_t w, x;
                    memcpy(&w, p + i, 8);
                    memcpy(&x, p + i + 8, 8);
                    if ((w | x) & HIGH_BITS)
                        break;
                    i += 16;
                }
                while (n - i >= 8) {
                    uint64_t w;
                    memcpy(&w, p + i, 8);
                    if (w & HIGH_BITS)
                        break;
                    i += 8;
                }
                /* the rest of the run: fewer than 8 bytes */
                while (i < n && p[i] < 0x80)
                    i++;
                continue;
            }
            st = lead_state(b);
            if (st == 0)
                goto bad;
            need = st & 3;
            if (n - i <= need)
                break;   /* cut off by the end of the input: step through it */
            /* the whole sequence is here: check it in place; only the first
             * continuation byte has a special range */
            b = p[i + 1];
            if (b < ((st >> 8) & 0xff) || b > (st >> 16))
                goto bad;
            if (need >= 2 && (p[i + 2] & 0xC0) != 0x80)
                goto bad;
            if (need == 3 && (p[i + 3] & 0xC0) != 0x80)
                goto bad;
            i += need + 1;
            st = 0;
        }
        if (i == n) {
            u->state = 0;
            return 0;
        }
        i++;   /* past the lead byte; the loop above takes the rest */
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
