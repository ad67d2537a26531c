/* libFuzzer target: response parsing and the client-side 101 check.
 * Differential: the reference parser and checker of fuzz/http_ref.h (its
 * own line cutting, grammar, SHA-1 and base64) give the same verdict, the
 * same status, minor version, reason and fields (the same bytes of the
 * input), the same end of head (ws_http_head_end) and the same 101
 * verdict and error text.
 * Properties: no crash or UB; every returned pointer lies inside the input;
 * a failure always names itself; success only with the right accept value.
 * Parsing stops at the empty line: the head alone, in an exact-size copy
 * (so ASan sees any read past it), parses the same as the whole input.
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_oracle.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static int oracle_checked;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *err = NULL, *why = NULL;
    const ws_header *acc;
    ws_http res;
    ref_http ref;
    size_t i;
    int rc, want;

    if (!oracle_checked) {
        /* the reference's SHA-1 and base64 against RFC 6455's example */
        char a[29];
        ref_span k;
        k.p = KEY;
        k.n = strlen(KEY);
        ref_accept_of(k, a);
        if (strcmp(a, ACCEPT) != 0)
            abort();
        oracle_checked = 1;
    }
    if (ws_http_head_end((const char *)data, size) != ref_head_end((const char *)data, size))
        abort();
    rc = ws_http_parse_response((const char *)data, size, &res, &err);
    same_as_head_alone(ws_http_parse_response, (const char *)data, ws_http_head_end((const char *)data, size),
                       &res, rc, err);
    want = ref_parse_response((const char *)data, size, &ref);
    if (rc != want)
        abort();
    if (rc != 0) {
        if (err == NULL)
            abort();
        return 0;
    }
    if (res.status < 100 || res.status > 599 || (res.minor != 0 && res.minor != 1) || res.nheaders > WS_MAX_HEADERS
        || res.method != NULL || res.target != NULL)
        abort();
    same_as_reference(&res, &ref, 0);
    must_be_inside(res.reason, res.reason_len, data, size);
    for (i = 0; i < res.nheaders; i++) {
        must_be_inside(res.headers[i].name, res.headers[i].name_len, data, size);
        must_be_inside(res.headers[i].value, res.headers[i].value_len, data, size);
    }

    err = NULL;
    rc = ws_handshake_check_response(&res, KEY, &err);
    want = ref_check_response(&ref, KEY, &why);
    if (rc != want || (rc != 0 && strcmp(err, why) != 0))
        abort();
    if (rc == 0) {
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
