/* The few cryptographic pieces of RFC 6455, on OpenSSL's libcrypto. */
#ifndef WS_CRYPTO_H
#define WS_CRYPTO_H

#include <stddef.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

#define WS_ACCEPT_LEN 28          /* base64 of a 20-byte SHA-1 */
#define WS_KEY_LEN 24             /* base64 of 16 bytes */

/* Fill buf with n unpredictable bytes (RAND_bytes). 0 ok, -1 failure. */
int ws_random(unsigned char *buf, size_t n);

/* Client mask keys drawn from a buffer of RAND_bytes output, refilled 1,024
 * keys at a time (one RAND_bytes call per frame cost more than the frame).
 * Start with pos = sizeof buf (empty); a forked child refills before using
 * bytes its parent may use too. */
typedef struct {
    unsigned char buf[4096];
    size_t pos;
    unsigned gen;             /* fork generation of the buffer's bytes */
} ws_mask_keys;

/* 0 ok, -1 failure (key untouched). */
int ws_mask_key(ws_mask_keys *k, unsigned char key[4]);

/* base64(SHA-1(key .. GUID)) into out[WS_ACCEPT_LEN + 1], NUL-terminated. 0 ok, -1 failure. */
int ws_accept_key(const char *key, size_t len, char *out);

/* A fresh Sec-WebSocket-Key into out[WS_KEY_LEN + 1]. 0 ok, -1 failure. */
int ws_new_key(char *out);

/* Standard base64 with padding: encode n bytes into out (4*ceil(n/3) + 1 bytes). */
size_t ws_base64_encode(const unsigned char *in, size_t n, char *out);

/* Strict decode (canonical padding, no whitespace). Returns decoded length,
 * or (size_t)-1 if invalid or longer than cap. Never writes past cap, but
 * out may be partly written when the input turns out invalid. */
size_t ws_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

#pragma GCC visibility pop

#endif
