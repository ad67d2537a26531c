/* libFuzzer target: response parsing and the client-side 101 check.
 * Properties: no crash or UB; every returned pointer lies inside the input;
 * a failure always names itself; success only with the right accept value.
 * Parsing stops at the empty line: the head alone, in an exact-size copy
 * (so ASan sees any read past it), parses the same as the whole input.
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short). */
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

/* Parse buf[0..end) from its own block: same result, error and fields. */
static void same_as_head_alone(const char *buf, size_t end, const ws_http *whole,
                               int rc, const char *err)
{
    ws_http h;
    const char *e2 = NULL;
    char *copy;
    size_t i;
    int rc2;

    if (end == 0)
        return;
    copy = (char *)malloc(end);
    if (copy == NULL)
        abort();
    memcpy(copy, buf, end);
    rc2 = ws_http_parse_response(copy, end, &h, &e2);
    if (rc2 != rc || (rc != 0 && e2 != err))
        abort();
    if (rc == 0) {
        if (h.nheaders != whole->nheaders || h.status != whole->status
            || h.reason_len != whole->reason_len || h.reason - copy != whole->reason - buf)
            abort();
        for (i = 0; i < h.nheaders; i++)
            if (h.headers[i].name - copy != whole->headers[i].name - buf
                || h.headers[i].name_len != whole->headers[i].name_len
                || h.headers[i].value - copy != whole->headers[i].value - buf
                || h.headers[i].value_len != whole->headers[i].value_len)
                abort();
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *err = NULL;
    const ws_header *acc;
    ws_http res;
    size_t i;
    int rc;

    rc = ws_http_parse_response((const char *)data, size, &res, &err);
    same_as_head_alone((const char *)data, ws_http_head_end((const char *)data, size),
                       &res, rc, err);
    if (rc != 0) {
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
