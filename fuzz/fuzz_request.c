/* libFuzzer target: request parsing and the server-side upgrade check.
 * Differential: the reference parser and checker of fuzz/http_ref.h (its
 * own line cutting, grammar, SHA-1 and base64) give the same status, the
 * same fields (the same bytes of the input), the same end of head
 * (ws_http_head_end) and the same upgrade verdict, error text and accept
 * value.
 * Properties: no crash or UB; every returned pointer lies inside the input;
 * a failure always names itself; a success yields a 28-char accept value.
 * Parsing stops at the empty line: the head alone, in an exact-size copy
 * (so ASan sees any read past it), parses the same as the whole input.
 * Also checks that the strict base64 decoder only accepts canonical text,
 * and ws_http_field_value_ok against the reference's field-value rule.
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_oracle.h"

static void check_base64(const uint8_t *data, size_t size)
{
    unsigned char dec[96];
    char enc[4 * 32 + 1];
    size_t n = ws_base64_decode((const char *)data, size, dec, sizeof dec);

    if (n == (size_t)-1)
        return;
    if (n > sizeof dec || size != 4 * ((n + 2) / 3))
        abort();
    /* canonical: re-encoding gives back exactly the input */
    if (ws_base64_encode(dec, n, enc) != size || memcmp(enc, data, size) != 0)
        abort();
}

/* ws_http_field_value_ok: RFC 9110 field-value, the reference's rule for a
 * value as read, with no OWS left at either end */
static void check_field_value(const uint8_t *data, size_t size)
{
    ref_span v;
    int want;

    v.p = (const char *)data;
    v.n = size;
    want = ref_field_value_ok(v) && (size == 0 || (!ref_is_ows_char(data[0]) && !ref_is_ows_char(data[size - 1])));
    if (ws_http_field_value_ok((const char *)data, size) != want)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const char *err = NULL;
    char accept[WS_ACCEPT_LEN + 1];
    char want_accept[29];
    const char *why = NULL;
    ws_http req;
    ref_http ref;
    size_t i, end;
    int st, want;

#if WS_MAX_HEADERS != REF_MAX_FIELDS
#error "the reference's field limit is not the parser's"
#endif

    check_base64(data, size);
    check_field_value(data, size);

    end = ws_http_head_end(buf, size);
    /* the shortest head is "\n\n", an empty line in bare-LF form */
    if (end > size || (end != 0 && end < 2) || end != ref_head_end(buf, size))
        abort();

    st = ws_http_parse_request(buf, size, &req, &err);
    same_as_head_alone(ws_http_parse_request, buf, end, &req, st, err);
    want = ref_parse_request(buf, size, &ref);
    if (st != want)
        abort();
    if (st != 0) {
        if (err == NULL || (st != 400 && st != 431 && st != 505))
            abort();
        return 0;
    }
    same_as_reference(&req, buf, &ref, buf, 1);
    /* a parsed head has its terminating empty line */
    if (end == 0)
        abort();
    must_be_inside(req.method, req.method_len, data, size);
    must_be_inside(req.target, req.target_len, data, size);
    /* path and authority are pieces of the target: the path its tail, the
     * authority between "://" and the path */
    must_be_inside(req.path, req.path_len, (const uint8_t *)req.target, req.target_len);
    if (req.path + req.path_len != req.target + req.target_len)
        abort();
    if (req.authority) {
        must_be_inside(req.authority, req.authority_len, (const uint8_t *)req.target, req.target_len);
        if (req.authority_len == 0 || req.authority + req.authority_len != req.path
            || memchr(req.authority, '@', req.authority_len) || req.authority < req.target + 4
            || memcmp(req.authority - 3, "://", 3) != 0)
            abort();
    } else if (req.path != req.target) {
        abort();
    }
    if (req.method_len == 0 || req.target_len == 0 || req.minor < 0 || req.minor > 1
        || req.nheaders > WS_MAX_HEADERS)
        abort();
    for (i = 0; i < req.nheaders; i++) {
        const ws_header *h = &req.headers[i];
        must_be_inside(h->name, h->name_len, data, size);
        must_be_inside(h->value, h->value_len, data, size);
        if (h->name_len == 0 || (size_t)(h->value - buf) >= end)
            abort();
    }
    (void)ws_http_has_token(&req, "Connection", "upgrade");
    (void)ws_http_header(&req, "Sec-WebSocket-Key");

    err = NULL;
    st = ws_handshake_check_request(&req, accept, &err);
    want = ref_check_request(&ref, want_accept, &why);
    if (st != want || (st != 0 && strcmp(err, why) != 0) || (st == 0 && strcmp(accept, want_accept) != 0))
        abort();
    if (st == 0) {
        unsigned char digest[21];
        if (strlen(accept) != WS_ACCEPT_LEN
            || ws_base64_decode(accept, WS_ACCEPT_LEN, digest, sizeof digest) != 20)
            abort();
    } else if (err == NULL || (st != 400 && st != 405 && st != 426)) {
        abort();
    }
    return 0;
}
