/* Incremental UTF-8 validator (RFC 3629): no overlongs, no surrogates,
 * nothing above U+10FFFF. State survives across calls, so a text message
 * split into fragments is validated as it arrives and failed at the first
 * bad byte. */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

typedef struct {
    uint32_t state;   /* 0: at a code point boundary; WS_UTF8_BAD: failed */
} ws_utf8;

#define WS_UTF8_BAD 0xffffffffu

void ws_utf8_init(ws_utf8 *u);

/* Feed n bytes. Returns 0 while the input so far is a valid prefix,
 * -1 once an invalid byte has been seen (and for every call after). */
int ws_utf8_feed(ws_utf8 *u, const unsigned char *p, size_t n);

/* 1 when the input fed so far ends on a code point boundary. */
int ws_utf8_done(const ws_utf8 *u);

/* One-shot check of a whole string: 1 valid, 0 invalid. */
int ws_utf8_valid(const unsigned char *p, size_t n);

#pragma GCC visibility pop

#endif
