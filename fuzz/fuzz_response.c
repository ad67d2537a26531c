/* libFuzzer target: response parsing as the client does it (obs-folds
 * replaced with SP by ws_http_unfold, in a copy, then the strict parser)
 * and the client-side 101 check.
 * Differential: the reference parser and checker of fuzz/http_ref.h (its
 * own line cutting and unfolding, grammar, SHA-1 and base64) give the same
 * verdict, the same status, minor version, reason and fields (the same
 * offsets into the input), the same end of head (ws_http_head_end) and the
 * same 101 verdict and error text. ws_http_unfold turns only whitespace,
 * CR and LF into SP, and nothing past the head; a head with a fold never
 * parses as it came.
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
    const char *buf;
    char *u;
    size_t i, end, folds;
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
    /* the client's reading: obs-folds replaced with SP (RFC 9112 section
     * 5.2) in a copy, then the strict parser */
    buf = (const char *)data;
    end = ws_http_head_end(buf, size);
    if (end != ref_head_end(buf, size))
        abort();
    u = (char *)malloc(size + 1);
    if (u == NULL)
        abort();
    memcpy(u, data, size);
    folds = ws_http_unfold(u, size);
    /* only whitespace, CR and LF become SP; nothing past the head changes;
     * the head alone unfolds the same; the end of the head stays */
    for (i = 0; i < size; i++)
        if (u[i] != buf[i] && (u[i] != ' ' || !ref_is_field_ws((unsigned char)buf[i]) || (end && i >= end)))
            abort();
    if ((folds == 0) != (memcmp(u, data, size) == 0) || ws_http_head_end(u, size) != end)
        abort();
    if (end != 0) {
        char *head = (char *)malloc(end);
        if (head == NULL)
            abort();
        memcpy(head, data, end);
        if (ws_http_unfold(head, end) != folds || memcmp(head, u, end) != 0)
            abort();
        free(head);
    }

    rc = ws_http_parse_response(u, size, &res, &err);
    same_as_head_alone(ws_http_parse_response, u, end, &res, rc, err);
    /* strict without the unfolding: the same when there was no fold, and
     * a head with a fold never parses as it came */
    {
        ws_http raw;
        const char *rerr = NULL;
        int rrc = ws_http_parse_response(buf, size, &raw, &rerr);
        if ((folds == 0 && rrc != rc) || (folds != 0 && rrc == 0))
            abort();
    }
    want = ref_parse_response(buf, size, &ref);
    if (rc != want)
        abort();
    if (rc != 0) {
        if (err == NULL)
            abort();
        free(u);
        return 0;
    }
    if (res.status < 100 || res.status > 599 || (res.minor != 0 && res.minor != 1) || res.nheaders > WS_MAX_HEADERS
        || res.method != NULL || res.target != NULL)
        abort();
    same_as_reference(&res, u, &ref, buf, 0);
    must_be_inside(res.reason, res.reason_len, (const uint8_t *)u, size);
    for (i = 0; i < res.nheaders; i++) {
        must_be_inside(res.headers[i].name, res.headers[i].name_len, (const uint8_t *)u, size);
        must_be_inside(res.headers[i].value, res.headers[i].value_len, (const uint8_t *)u, size);
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
    free(u);
    return 0;
}
