/* The HTTP head parsers' oracles, shared by fuzz_request.c and
 * fuzz_response.c: returned pointers lie inside the input, the head alone,
 * in an exact-size copy (so ASan sees any read past it), parses the same as
 * the whole input, and the reference parser of http_ref.h reads the same
 * fields (same_as_reference). */
#ifndef FUZZ_HTTP_ORACLE_H
#define FUZZ_HTTP_ORACLE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"
#include "http_ref.h"

/* Compared as integers: relational operators on unrelated pointers are UB. */
static void must_be_inside(const char *p, size_t n, const uint8_t *data, size_t size)
{
    uintptr_t lo = (uintptr_t)data, q = (uintptr_t)p;

    if (p == NULL || q < lo || n > size || q - lo > size - n)
        abort();
}

/* p's offset from base, -1 for NULL (no arithmetic on a null pointer) */
static long offset_of(const char *p, const char *base)
{
    return p == NULL ? -1 : (long)(p - base);
}

/* a (parsed from abuf) and b (from bbuf) hold the same fields at the same offsets */
static int same_fields(const ws_http *a, const char *abuf, const ws_http *b, const char *bbuf)
{
    size_t i;

    if (a->nheaders != b->nheaders || a->minor != b->minor || a->status != b->status
        || a->method_len != b->method_len || offset_of(a->method, abuf) != offset_of(b->method, bbuf)
        || a->target_len != b->target_len || offset_of(a->target, abuf) != offset_of(b->target, bbuf)
        || a->path_len != b->path_len || offset_of(a->path, abuf) != offset_of(b->path, bbuf)
        || a->authority_len != b->authority_len
        || offset_of(a->authority, abuf) != offset_of(b->authority, bbuf)
        || a->reason_len != b->reason_len || offset_of(a->reason, abuf) != offset_of(b->reason, bbuf))
        return 0;
    for (i = 0; i < a->nheaders; i++)
        if (a->headers[i].name - abuf != b->headers[i].name - bbuf
            || a->headers[i].name_len != b->headers[i].name_len
            || a->headers[i].value - abuf != b->headers[i].value - bbuf
            || a->headers[i].value_len != b->headers[i].value_len)
            return 0;
    return 1;
}

typedef int (*http_parser)(const char *buf, size_t len, ws_http *h, const char **err);

/* Parse buf[0..end) from its own block with parse: the same result rc,
 * error err and fields as whole, parsed from all of the input. */
static void same_as_head_alone(http_parser parse, const char *buf, size_t end, const ws_http *whole,
                               int rc, const char *err)
{
    ws_http h;
    const char *e2 = NULL;
    char *copy;
    int rc2;

    if (end == 0)
        return;
    copy = (char *)malloc(end);
    if (copy == NULL)
        abort();
    memcpy(copy, buf, end);
    rc2 = parse(copy, end, &h, &e2);
    if (rc2 != rc || (rc != 0 && e2 != err) || (rc == 0 && !same_fields(&h, copy, whole, buf)))
        abort();
    free(copy);
}

/* the span p[0..n) of base, r of rbase: the same offsets */
static int same_span(const char *p, size_t n, const char *base, ref_span r, const char *rbase)
{
    return n == r.n && (n == 0 || p - base == r.p - rbase);
}

/* The parser's fields h (parsed from base) equal the reference's r (from
 * rbase): the same offsets into the input; for a request base and rbase are
 * the input itself, the same bytes by address. With_request: method,
 * target, path and authority too. */
static void same_as_reference(const ws_http *h, const char *base, const ref_http *r, const char *rbase,
                              int with_request)
{
    size_t i;

    if (h->nheaders != r->nfields || h->minor != r->minor)
        abort();
    for (i = 0; i < h->nheaders; i++)
        if (!same_span(h->headers[i].name, h->headers[i].name_len, base, r->name[i], rbase)
            || !same_span(h->headers[i].value, h->headers[i].value_len, base, r->value[i], rbase))
            abort();
    if (!with_request) {
        if (h->status != r->status || !same_span(h->reason, h->reason_len, base, r->reason, rbase))
            abort();
        return;
    }
    if (!same_span(h->method, h->method_len, base, r->method, rbase)
        || !same_span(h->target, h->target_len, base, r->target, rbase)
        || !same_span(h->path, h->path_len, base, r->path, rbase) || (h->authority != NULL) != r->has_authority
        || (h->authority && !same_span(h->authority, h->authority_len, base, r->authority, rbase)))
        abort();
}

#endif
