/* RFC 6455 crypto on OpenSSL 3 libcrypto: randomness, the accept key, and a
 * strict base64 of our own (OpenSSL's EVP_DecodeBlock is lenient about
 * whitespace and padding, and we want non-canonical keys rejected). */
/* SHA1_Init/Update/Final are deprecated in OpenSSL 3 (for EVP) but kept:
 * see ws_accept_key */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "ws_crypto.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

/* RFC 6455 section 1.3 */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int ws_random(unsigned char *buf, size_t n)
{
    /* RAND_bytes takes an int, so feed very large requests in pieces */
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(buf, chunk) != 1) {
            ERR_clear_error();
            return -1;
        }
        buf += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

/* bumped in a forked child: its buffered key bytes are its parent's too */
static volatile unsigned fork_gen;
static int atfork_set;

static void forked(void)
{
    fork_gen++;
}

int ws_mask_key(ws_mask_keys *k, unsigned char key[4])
{
    if (!atfork_set)
        atfork_set = pthread_atfork(NULL, NULL, forked) == 0;
    if (k->pos + 4 > sizeof k->buf || k->gen != fork_gen) {
        if (ws_random(k->buf, sizeof k->buf) != 0)
            return -1;
        k->pos = 0;
        k->gen = fork_gen;
    }
    memcpy(key, k->buf + k->pos, 4);
    /* used bytes are wiped: nothing later reads them back */
    memset(k->buf + k->pos, 0, 4);
    k->pos += 4;
    return 0;
}

int ws_accept_key(const char *key, size_t len, char *out)
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    /* SHA1_*: a context on the stack, where EVP made and freed one and
     * looked the digest up again for every upgrade (about 5,000
     * instructions, more than the hash). Key and GUID in two updates, with
     * no copy, whatever the key length. */
    SHA_CTX ctx;
    if (SHA1_Init(&ctx) != 1 || SHA1_Update(&ctx, key, len) != 1 ||
        SHA1_Update(&ctx, ws_guid, sizeof ws_guid - 1) != 1 || SHA1_Final(digest, &ctx) != 1) {
        ERR_clear_error();
        return -1;
    }
    ws_base64_encode(digest, SHA_DIGEST_LENGTH, out);
    return 0;
}

int ws_new_key(char *out)
{
    unsigned char nonce[16];

    if (ws_random(nonce, sizeof nonce) != 0)
        return -1;
    ws_base64_encode(nonce, sizeof nonce, out);
    return 0;
}

/* Caller provides 4*ceil(n/3) + 1 bytes; returns the length without the NUL. */
size_t ws_base64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0, o = 0;

    for (; n - i >= 3; i += 3) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* Value of one base64 digit, or -1. Ranges rather than a table: no state,
 * and the compiler turns it into a few compares. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

size_t ws_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t pad = 0, outlen, i, o = 0;

    if (n == 0)
        return 0;
    if (n % 4 != 0)
        return (size_t)-1;
    /* '=' may only end the last quantum, at most twice */
    if (s[n - 1] == '=') {
        pad = 1;
        if (s[n - 2] == '=')
            pad = 2;
    }
    outlen = n / 4 * 3 - pad;
    if (outlen > cap)
        return (size_t)-1;

    for (i = 0; i < n; i += 4) {
        int a = b64_value(s[i]), b = b64_value(s[i + 1]);
        int c, d;
        unsigned long v;

        if (a < 0 || b < 0)
            return (size_t)-1;
        if (i + 4 == n && pad == 2) {
            if (b & 0x0f)                   /* non-canonical: stray bits */
                return (size_t)-1;
            out[o++] = (unsigned char)((a << 2) | (b >> 4));
            break;
        }
        c = b64_value(s[i + 2]);
        if (c < 0)
            return (size_t)-1;
        if (i + 4 == n && pad == 1) {
            if (c & 0x03)                   /* non-canonical: stray bits */
                return (size_t)-1;
            v = ((unsigned long)a << 18) | ((unsigned long)b << 12) | ((unsigned long)c << 6);
            out[o++] = (unsigned char)(v >> 16);
            out[o++] = (unsigned char)(v >> 8);
            break;
        }
        d = b64_value(s[i + 3]);
        if (d < 0)
            return (size_t)-1;
        v = ((unsigned long)a << 18) | ((unsigned long)b << 12) | ((unsigned long)c << 6) | (unsigned long)d;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    return o;
}
