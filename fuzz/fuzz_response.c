/* libFuzzer target: response parsing and the client-side 101 check.
 * Properties: no crash or UB; every returned pointer lies inside the input;
 * a failure always names itself; success only with the right accept value.
 *
 * clang -fsanitize=fuzzer,address,undefined -Icsrc csrc/ws_crypto.c \
 *     csrc/ws_handshake.c fuzz/fuzz_response.c -lcrypto -o /tmp/fuzz_response */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Compared as integers: relational operators on unrelated pointers are UB. */
static void must_be_inside(const char *p, size_t n, const uint8_t *data, size_t size)
{
    uintptr_t lo = (uintptr_t)data, q = (uintptr_t)p;

    if (p == NULL || q < lo || n > size || q - lo > size - n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *err = NULL;
    const ws_header *acc;
    ws_http res;
    size_t i;

    if (ws_http_parse_response((const char *)data, size, &res, &err) != 0) {
        if (err == NULL)
            abort();
        return 0;
    }
    if (res.status < 100 || res.status > 599 || res.minor != 1 || res.nheaders > WS_MAX_HEADERS
        || res.method != NULL || res.target != NULL)
        abort();
    must_be_inside(res.reason, res.reason_len, data, size);
    for (i = 0; i < res.nheaders; i++) {
        must_be_inside(res.headers[i].name, res.headers[i].name_len, data, size);
        must_be_inside(res.headers[i].value, res.headers[i].value_len, data, size);
    }

    err = NULL;
    if (ws_handshake_check_response(&res, KEY, &err) == 0) {
        /* success means the one accept header carries exactly the right value */
        acc = ws_http_header(&res, "Sec-WebSocket-Accept");
        if (res.status != 101 || acc == NULL || acc->value_len != WS_ACCEPT_LEN
            || memcmp(acc->value, ACCEPT, WS_ACCEPT_LEN) != 0)
            abort();
    } else if (err == NULL) {
        abort();
    }
    return 0;
}
