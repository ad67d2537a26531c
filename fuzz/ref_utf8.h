/* Reference UTF-8 classifier for the fuzz targets: decodes code point by
 * code point and checks each value, the plain way, sharing nothing with
 * csrc/ws_utf8.c. Header-only (static), for fuzz_utf8.c and fuzz_reader.c. */
#ifndef FUZZ_REF_UTF8_H
#define FUZZ_REF_UTF8_H

#include <stddef.h>
#include <stdint.h>

enum { REF_VALID, REF_INVALID, REF_TRUNC };  /* TRUNC: valid so far, ends mid code point */

/* A sequence cut off by the end of input is TRUNC when some continuation
 * would make it valid: the completions cover one interval of code points,
 * which must meet the valid ones. */
static int ref_utf8_kind(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned b = p[i];
        size_t len, k;
        uint32_t cp, min;

        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; min = 0x80; }
        else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; min = 0x800; }
        else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; min = 0x10000; }
        else return REF_INVALID;
        for (k = 1; k < len && i + k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return REF_INVALID;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (k < len) {
            uint32_t lo = cp, hi = cp;
            for (; k < len; k++) {
                lo = lo << 6;
                hi = hi << 6 | 0x3F;
            }
            if (lo < min)
                lo = min;
            if (hi > 0x10FFFF)
                hi = 0x10FFFF;
            if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF))
                return REF_INVALID;
            return REF_TRUNC;
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return REF_INVALID;
        i += len;
    }
    return REF_VALID;
}

#endif
