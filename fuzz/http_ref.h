/* A reference HTTP/1.1 head parser and WebSocket upgrade checker for the
 * fuzz targets (fuzz_request.c, fuzz_response.c), written from the RFCs
 * without csrc/ws_handshake.c's code and built another way: the head is cut
 * into lines first, then each line is read with small helpers that follow
 * the ABNF, and the upgrade checks bring their own SHA-1 and base64.
 *
 *   RFC 9112 section 2.2  lines end with CRLF; a bare CR or LF is an error
 *                         (we take the "invalid" option, not "read LF as
 *                         CRLF"); one empty line before a request is skipped
 *   RFC 9112 section 3    request-line = method SP request-target SP HTTP-version
 *   RFC 9112 section 4    status-line = HTTP-version SP status-code SP [ reason ]
 *   RFC 9112 section 5    field-line = field-name ":" OWS field-value OWS;
 *                         whitespace before the colon refused; obs-fold
 *                         refused in a request, read as SP in a response
 *                         (section 5.2: what a user agent must do)
 *   RFC 9110 section 5.5, 5.6  field values, tokens, lists (#rule)
 *   RFC 6455 section 4.1, 4.2  the client's and the server's checks
 *
 * lua-ws's own policy, where the RFCs leave a choice (documented in
 * csrc/ws_handshake.h and by csrc/test/test_handshake.c):
 *   - at most REF_MAX_FIELDS field lines; one more is a 431
 *   - a request-target is any run of bytes other than controls, SP and DEL
 *     (the router judges it); "scheme://authority..." is split, and an empty
 *     authority, one with userinfo ("@") or one that is no Host value is a 400
 *   - HTTP/1.<n> with n >= 2 is read as 1.1; another major version is a 505
 *     (once the rest of the request line is valid)
 *   - a status line may end right after the code (no SP, empty reason);
 *     codes outside 100..599 are refused; a response parses only HTTP/1.x
 *   - a field value may hold any VCHAR, obs-text, SP and HTAB; the other
 *     controls (and DEL) are refused, not kept
 *   - only the bytes up to the first empty line are read; a head ends at
 *     the first LF LF or LF CR LF (ws_http_head_end), so that one written
 *     with bare LFs ends too, and is refused
 * Header-only, like the other oracles: static, the entry points static
 * inline (each fuzz target uses half of them). */
#ifndef FUZZ_HTTP_REF_H
#define FUZZ_HTTP_REF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define REF_MAX_FIELDS 64

typedef struct {
    const char *p;
    size_t n;
} ref_span;

typedef struct {
    ref_span method, target, path, authority;   /* authority.p NULL: none */
    int has_authority;
    int minor;                                   /* 0 or 1 */
    int status;                                  /* responses */
    ref_span reason;
    size_t nfields;
    ref_span name[REF_MAX_FIELDS], value[REF_MAX_FIELDS];
} ref_http;

/* ---- character classes (RFC 5234 appendix B.1, RFC 9110 section 5.6.2) -- */

static int ref_is_digit(unsigned char c) { return c >= 0x30 && c <= 0x39; }
static int ref_is_alpha(unsigned char c) { return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a); }
static int ref_is_vchar(unsigned char c) { return c >= 0x21 && c <= 0x7e; }
static int ref_is_obs_text(unsigned char c) { return c >= 0x80; }
static int ref_is_ows_char(unsigned char c) { return c == 0x20 || c == 0x09; }

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 *         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static int ref_is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    size_t k;

    if (ref_is_digit(c) || ref_is_alpha(c))
        return 1;
    for (k = 0; k < sizeof extra - 1; k++)
        if ((unsigned char)extra[k] == c)
            return 1;
    return 0;
}

/* token = 1*tchar */
static int ref_is_token(ref_span s)
{
    size_t k;

    if (s.n == 0)
        return 0;
    for (k = 0; k < s.n; k++)
        if (!ref_is_tchar((unsigned char)s.p[k]))
            return 0;
    return 1;
}

static int ref_lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* ASCII case-insensitive equality of a span and a C string */
static int ref_ieq(ref_span s, const char *lit)
{
    size_t k, n = strlen(lit);

    if (s.n != n)
        return 0;
    for (k = 0; k < n; k++)
        if (ref_lower((unsigned char)s.p[k]) != ref_lower((unsigned char)lit[k]))
            return 0;
    return 1;
}

static int ref_eq(ref_span s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static ref_span ref_sub(ref_span s, size_t from, size_t to)
{
    ref_span r;
    r.p = s.p + from;
    r.n = to - from;
    return r;
}

/* ---- a cursor over one line, for the start lines' ABNF ------------------ */

typedef struct {
    ref_span line;
    size_t at;
} ref_cur;

static int ref_end(const ref_cur *c) { return c->at == c->line.n; }

/* the literal, case-sensitively (HTTP-name is "HTTP", %s"HTTP") */
static int ref_take_lit(ref_cur *c, const char *lit)
{
    size_t n = strlen(lit);
    if (c->line.n - c->at < n || memcmp(c->line.p + c->at, lit, n) != 0)
        return 0;
    c->at += n;
    return 1;
}

static int ref_take_digit(ref_cur *c, int *d)
{
    if (ref_end(c) || !ref_is_digit((unsigned char)c->line.p[c->at]))
        return 0;
    *d = c->line.p[c->at++] - '0';
    return 1;
}

/* the bytes up to the next SP or the end */
static ref_span ref_take_word(ref_cur *c)
{
    size_t from = c->at;
    while (!ref_end(c) && c->line.p[c->at] != ' ')
        c->at++;
    return ref_sub(c->line, from, c->at);
}

/* HTTP-version = HTTP-name "/" DIGIT "." DIGIT */
static int ref_take_version(ref_cur *c, int *major, int *minor)
{
    return ref_take_lit(c, "HTTP/") && ref_take_digit(c, major) && ref_take_lit(c, ".")
           && ref_take_digit(c, minor);
}

/* ---- Host (RFC 9110 section 7.2) and authority (RFC 3986 section 3.2) --- */

static int ref_is_hexdig(unsigned char c)
{
    return ref_is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" */
static int ref_is_unreserved(unsigned char c)
{
    return ref_is_alpha(c) || ref_is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "=" */
static int ref_is_sub_delim(unsigned char c)
{
    return c != 0 && strchr("!$&'()*+,;=", c) != NULL;
}

/* Host = uri-host [ ":" port ], uri-host = IP-literal / IPv4address /
 * reg-name, port = *DIGIT. lua-ws's policy for an IP-literal: its
 * characters only (IPv6address and IPvFuture are made of unreserved,
 * sub-delims and ":"), not the IPv6 structure; an IPv4address is a reg-name.
 * The empty host is a valid reg-name. */
static int ref_host_ok(ref_span v)
{
    ref_cur c;

    c.line = v;
    c.at = 0;
    if (ref_take_lit(&c, "[")) {
        size_t from = c.at;
        while (!ref_end(&c) && (ref_is_unreserved((unsigned char)v.p[c.at])
                                || ref_is_sub_delim((unsigned char)v.p[c.at]) || v.p[c.at] == ':'))
            c.at++;
        if (c.at == from || !ref_take_lit(&c, "]"))
            return 0;
    } else {
        /* reg-name = *( unreserved / pct-encoded / sub-delims ) */
        while (!ref_end(&c)) {
            unsigned char ch = (unsigned char)v.p[c.at];
            if (ref_is_unreserved(ch) || ref_is_sub_delim(ch))
                c.at++;
            else if (ch == '%' && v.n - c.at >= 3 && ref_is_hexdig((unsigned char)v.p[c.at + 1])
                     && ref_is_hexdig((unsigned char)v.p[c.at + 2]))
                c.at += 3;
            else
                break;
        }
    }
    if (ref_take_lit(&c, ":")) {
        int d;
        while (ref_take_digit(&c, &d))
            ;
    }
    return ref_end(&c);
}

/* Where a reader stops: just past the first empty line, 0 if none
 * (ws_http_head_end's contract). An empty line is one ending in the LF
 * that follows a line's LF, with nothing or a CR between them: "\r\n\r\n"
 * in a valid head, "\n\n" or "\n\r\n" in one written with bare LFs (lua-ws
 * stops there to refuse it at once, rather than wait for a CRLF CRLF).
 * Found from each LF looking back at the one before it. */
static size_t ref_head_end(const char *buf, size_t len)
{
    const char *lf = buf;

    while ((lf = memchr(lf, '\n', len - (size_t)(lf - buf))) != NULL) {
        size_t at = (size_t)(lf - buf);
        if ((at >= 1 && lf[-1] == '\n') || (at >= 2 && lf[-1] == '\r' && lf[-2] == '\n'))
            return at + 1;
        lf++;
    }
    return 0;
}

/* ---- step 1: the head cut into lines ----------------------------------- */

enum { REF_LINES_EMPTY, REF_LINES_BAD, REF_LINES_FULL };

typedef struct {
    ref_span line[REF_MAX_FIELDS + 2];   /* start line, fields, one spare */
    size_t n;
    int end;   /* after line[n-1]: the empty line, a bad ending or no room */
} ref_lines;

/* Cut buf[0..len) into CRLF-ended lines until an empty one (not stored), a
 * line that does not end in CRLF (a bare CR or LF inside it, or the end of
 * the input first), or no room. A line holds no CR or LF, except with
 * unfold (a response, read as a user agent reads it: RFC 9112 section 5.2):
 * a line starting with SP or HTAB after a field line is an obs-fold, and
 * joins that field line, CRLF and all (never the start line: after it, such
 * a line stays one of its own, for the grammar to refuse). */
static void ref_cut_lines(const char *buf, size_t len, ref_lines *out, int unfold)
{
    size_t start = 0;

    out->n = 0;
    for (;;) {
        const char *cr, *lf;
        size_t rest = len - start, k;

        if (out->n == sizeof out->line / sizeof out->line[0]) {
            out->end = REF_LINES_FULL;
            return;
        }
        cr = memchr(buf + start, '\r', rest);
        lf = memchr(buf + start, '\n', rest);
        /* the line ends at the first CR; an LF before it, or no LF right
         * after it, and the line has no proper end */
        if (cr == NULL || (lf != NULL && lf < cr) || (size_t)(cr - buf) + 1 >= len || cr[1] != '\n') {
            out->end = REF_LINES_BAD;
            return;
        }
        k = (size_t)(cr - (buf + start));
        if (k == 0) {
            out->end = REF_LINES_EMPTY;
            return;
        }
        if (unfold && out->n >= 2 && ref_is_ows_char((unsigned char)buf[start])) {
            ref_span *prev = &out->line[out->n - 1];
            prev->n = (size_t)(buf + start + k - prev->p);
        } else {
            out->line[out->n].p = buf + start;
            out->line[out->n].n = k;
            out->n++;
        }
        start += k + 2;
    }
}

/* ---- step 2: the lines read with the grammar --------------------------- */

/* field-value = *field-content, with OWS stripped around it: every byte
 * VCHAR, obs-text, SP or HTAB */
static int ref_field_value_ok(ref_span v)
{
    size_t k;
    for (k = 0; k < v.n; k++) {
        unsigned char c = (unsigned char)v.p[k];
        if (!ref_is_vchar(c) && !ref_is_obs_text(c) && !ref_is_ows_char(c))
            return 0;
    }
    return 1;
}

/* Whitespace in a field line: SP and HTAB, and the CR LF of an obs-fold
 * (only a line joined by ref_cut_lines holds CR or LF: each CR LF there is
 * followed by SP or HTAB, and reads as SP) */
static int ref_is_field_ws(unsigned char c)
{
    return ref_is_ows_char(c) || c == '\r' || c == '\n';
}

/* A field value as read: field-value, where an obs-fold may come between
 * its bytes too */
static int ref_read_value_ok(ref_span v)
{
    size_t k;
    for (k = 0; k < v.n; k++) {
        unsigned char c = (unsigned char)v.p[k];
        if (!ref_is_vchar(c) && !ref_is_obs_text(c) && !ref_is_field_ws(c))
            return 0;
    }
    return 1;
}

/* field-line = field-name ":" OWS field-value OWS, each obs-fold (in a
 * response) read as SP */
static int ref_field_line(ref_span line, ref_span *name, ref_span *value)
{
    const char *colon = memchr(line.p, ':', line.n);
    size_t c, a, b;

    if (colon == NULL)
        return 0;
    c = (size_t)(colon - line.p);
    *name = ref_sub(line, 0, c);
    if (!ref_is_token(*name))       /* obs-fold, " Host", "Host :" all land here */
        return 0;
    a = c + 1;
    b = line.n;
    while (a < b && ref_is_field_ws((unsigned char)line.p[a]))
        a++;
    while (b > a && ref_is_field_ws((unsigned char)line.p[b - 1]))
        b--;
    *value = ref_sub(line, a, b);
    return ref_read_value_ok(*value);
}

/* The field lines lines->line[1..]: 0, 400 or 431. */
static int ref_fields(const ref_lines *lines, ref_http *h)
{
    size_t i;

    h->nfields = 0;
    for (i = 1;; i++) {
        ref_span name, value;

        if (i == lines->n)
            /* the empty line, or a line with no proper end (with room for
             * REF_MAX_FIELDS + 1 fields, "no room" cannot be reached) */
            return lines->end == REF_LINES_EMPTY ? 0 : 400;
        if (!ref_field_line(lines->line[i], &name, &value))
            return 400;
        if (h->nfields == REF_MAX_FIELDS)
            return 431;
        h->name[h->nfields] = name;
        h->value[h->nfields] = value;
        h->nfields++;
    }
}

static void ref_clear(ref_http *h)
{
    memset(h, 0, sizeof *h);
}

/* request-target: no CTL, SP or DEL; then the absolute form's split:
 * scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1),
 * "//" authority up to "/", "?" or the end. 0 or 400. */
static int ref_target(ref_http *h)
{
    ref_span t = h->target;
    size_t k, s;

    if (t.n == 0)
        return 400;
    for (k = 0; k < t.n; k++) {
        unsigned char c = (unsigned char)t.p[k];
        if (c <= 0x20 || c == 0x7f)
            return 400;
    }
    h->path = t;
    h->has_authority = 0;
    for (s = 0; s < t.n; s++) {
        unsigned char c = (unsigned char)t.p[s];
        if (!(ref_is_alpha(c) || (s > 0 && (ref_is_digit(c) || c == '+' || c == '-' || c == '.'))))
            break;
    }
    if (s == 0 || t.n - s < 3 || memcmp(t.p + s, "://", 3) != 0)
        return 0;                              /* origin form and the others */
    for (k = s + 3; k < t.n && t.p[k] != '/' && t.p[k] != '?'; k++)
        ;
    h->authority = ref_sub(t, s + 3, k);
    h->path = ref_sub(t, k, t.n);
    h->has_authority = 1;
    /* authority = [ userinfo "@" ] host [ ":" port ]: userinfo refused (RFC
     * 9110 section 4.2.4), the rest is a Host value, not empty */
    if (h->authority.n == 0 || memchr(h->authority.p, '@', h->authority.n) != NULL
        || !ref_host_ok(h->authority))
        return 400;
    return 0;
}

/* A request head: 0, 400, 431 or 505 (ws_http_parse_request's contract). */
static inline int ref_parse_request(const char *buf, size_t len, ref_http *h)
{
    ref_lines lines;
    ref_cur c;
    int major, minor, st;

    ref_clear(h);
    /* RFC 9112 section 2.2: one empty line before the request line */
    if (len >= 2 && buf[0] == '\r' && buf[1] == '\n') {
        buf += 2;
        len -= 2;
    }
    ref_cut_lines(buf, len, &lines, 0);
    if (lines.n == 0)                       /* no line, or an empty one */
        return 400;

    /* method SP request-target SP HTTP-version, each one word */
    c.line = lines.line[0];
    c.at = 0;
    h->method = ref_take_word(&c);
    if (!ref_is_token(h->method) || !ref_take_lit(&c, " "))
        return 400;
    h->target = ref_take_word(&c);
    if (!ref_take_lit(&c, " "))
        return 400;
    st = ref_target(h);
    if (st != 0)
        return st;
    if (!ref_take_version(&c, &major, &minor) || !ref_end(&c))
        return 400;
    if (major != 1)
        return 505;
    h->minor = minor >= 1 ? 1 : 0;      /* RFC 9110 section 2.5 */
    return ref_fields(&lines, h);
}

/* A response head, read as a user agent reads it: 0 or -1 (the contract of
 * ws_http_unfold then ws_http_parse_response, at the same offsets; a value
 * here may hold the CR LF of an obs-fold, where the unfolded copy has SP). */
static inline int ref_parse_response(const char *buf, size_t len, ref_http *h)
{
    ref_lines lines;
    ref_cur c;
    int major, minor, d1, d2, d3;

    ref_clear(h);
    ref_cut_lines(buf, len, &lines, 1);
    if (lines.n == 0)
        return -1;
    c.line = lines.line[0];
    c.at = 0;
    if (!ref_take_version(&c, &major, &minor) || major != 1 || !ref_take_lit(&c, " ")
        || !ref_take_digit(&c, &d1) || !ref_take_digit(&c, &d2) || !ref_take_digit(&c, &d3))
        return -1;
    h->status = d1 * 100 + d2 * 10 + d3;
    if (h->status < 100 || h->status > 599)
        return -1;
    h->minor = minor >= 1 ? 1 : 0;
    if (ref_end(&c)) {
        h->reason = ref_sub(c.line, c.at, c.at);     /* "HTTP/1.1 101" */
    } else {
        /* SP reason-phrase, reason-phrase = *( HTAB / SP / VCHAR / obs-text ) */
        if (!ref_take_lit(&c, " "))
            return -1;
        h->reason = ref_sub(c.line, c.at, c.line.n);
        if (!ref_field_value_ok(h->reason))
            return -1;
    }
    return ref_fields(&lines, h) == 0 ? 0 : -1;
}

/* ---- field lookups ------------------------------------------------------ */

static size_t ref_count(const ref_http *h, const char *name)
{
    size_t i, n = 0;
    for (i = 0; i < h->nfields; i++)
        if (ref_ieq(h->name[i], name))
            n++;
    return n;
}

static const ref_span *ref_first(const ref_http *h, const char *name)
{
    size_t i;
    for (i = 0; i < h->nfields; i++)
        if (ref_ieq(h->name[i], name))
            return &h->value[i];
    return NULL;
}

/* a Content-Length field whose value is anything but "0": a body follows */
static int ref_body_length(const ref_http *h)
{
    size_t i;
    for (i = 0; i < h->nfields; i++)
        if (ref_ieq(h->name[i], "content-length") && !ref_eq(h->value[i], "0"))
            return 1;
    return 0;
}

/* RFC 9110 section 5.6.1: #element lists, empty elements allowed, OWS
 * around the commas; across every field line of that name (section 5.3) */
static int ref_list_has(const ref_http *h, const char *name, const char *elem)
{
    size_t i;

    for (i = 0; i < h->nfields; i++) {
        ref_span v = h->value[i];
        size_t k = 0;

        if (!ref_ieq(h->name[i], name))
            continue;
        while (k <= v.n) {
            const char *comma = k < v.n ? memchr(v.p + k, ',', v.n - k) : NULL;
            size_t stop = comma ? (size_t)(comma - v.p) : v.n, a = k, b = stop;
            while (a < b && ref_is_field_ws((unsigned char)v.p[a]))
                a++;
            while (b > a && ref_is_field_ws((unsigned char)v.p[b - 1]))
                b--;
            if (ref_ieq(ref_sub(v, a, b), elem))
                return 1;
            k = stop + 1;
        }
    }
    return 0;
}

/* ---- SHA-1 (FIPS 180-4) and base64 (RFC 4648), for the accept value ---- */

static uint32_t ref_rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void ref_sha1(const unsigned char *msg, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    size_t total = ((len + 8) / 64 + 1) * 64, blk;
    unsigned char block[64];
    uint64_t bits = (uint64_t)len * 8;
    int i;

    for (blk = 0; blk < total; blk += 64) {
        uint32_t w[80], a, b, c, d, e;

        /* the padded message, built one block at a time */
        for (i = 0; i < 64; i++) {
            size_t at = blk + (size_t)i;
            if (at < len)
                block[i] = msg[at];
            else if (at == len)
                block[i] = 0x80;
            else if (at >= total - 8)
                block[i] = (unsigned char)(bits >> (8 * (total - 1 - at)));
            else
                block[i] = 0;
        }
        for (i = 0; i < 16; i++)
            w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16
                   | (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
        for (i = 16; i < 80; i++)
            w[i] = ref_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4];
        for (i = 0; i < 80; i++) {
            uint32_t f, k, t;
            if (i < 20)      { f = (b & c) | (~b & d);          k = 0x5A827999u; }
            else if (i < 40) { f = b ^ c ^ d;                   k = 0x6ED9EBA1u; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
            else             { f = b ^ c ^ d;                   k = 0xCA62C1D6u; }
            t = ref_rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = ref_rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    for (i = 0; i < 20; i++)
        out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static const char ref_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int ref_b64_index(unsigned char c)
{
    const char *p = c ? strchr(ref_b64, c) : NULL;
    return p ? (int)(p - ref_b64) : -1;
}

/* RFC 6455 section 4.1: the key is base64 of 16 bytes, so exactly 22
 * alphabet characters then "==", the last character's 4 spare bits zero
 * (RFC 4648 section 3.5: canonical encoding) */
static int ref_key_ok(ref_span v)
{
    size_t k;

    if (v.n != 24 || v.p[22] != '=' || v.p[23] != '=')
        return 0;
    for (k = 0; k < 22; k++)
        if (ref_b64_index((unsigned char)v.p[k]) < 0)
            return 0;
    return (ref_b64_index((unsigned char)v.p[21]) & 15) == 0;
}

/* base64(SHA-1(key + GUID)), 28 characters and a NUL */
static void ref_accept_of(ref_span key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[256], d[21];
    size_t n = key.n < sizeof buf - 36 ? key.n : sizeof buf - 36, i, o = 0;

    memcpy(buf, key.p, n);
    memcpy(buf + n, guid, 36);
    ref_sha1(buf, n + 36, d);
    d[20] = 0;
    for (i = 0; i < 21; i += 3) {       /* 20 bytes: six whole groups, one of two */
        uint32_t g = (uint32_t)d[i] << 16 | (uint32_t)(i + 1 < 20 ? d[i + 1] : 0) << 8
                     | (uint32_t)(i + 2 < 20 ? d[i + 2] : 0);
        out[o++] = ref_b64[g >> 18 & 63];
        out[o++] = ref_b64[g >> 12 & 63];
        out[o++] = i + 1 < 20 ? ref_b64[g >> 6 & 63] : '=';
        out[o++] = i + 2 < 20 ? ref_b64[g & 63] : '=';
    }
    out[28] = '\0';
}

/* ---- the upgrade checks --------------------------------------------------- */

/* RFC 6455 section 4.2.1 as lua-ws answers it, in this order: 405 not GET,
 * 400 HTTP/1.0, a body (Transfer-Encoding, or a Content-Length not "0"), not exactly one Host value no uri-host [ ":" port ] (RFC 9112 section 3.2), no "websocket"
 * in Upgrade, no "upgrade" in Connection, 426 Sec-WebSocket-Version not one
 * field "13", 400 Sec-WebSocket-Key not one field of 16 bytes. 0 with the
 * accept value, or the status; *why the ws_handshake error text. */
static inline int ref_check_request(const ref_http *h, char accept[29], const char **why)
{
    const ref_span *v;

    if (!ref_eq(h->method, "GET")) {       /* methods are case-sensitive */
        *why = "method not allowed";
        return 405;
    }
    if (h->minor != 1) {
        *why = "http/1.1 required";
        return 400;
    }
    if (ref_count(h, "transfer-encoding") > 0 || ref_body_length(h)) {
        *why = "request body not allowed";
        return 400;
    }
    if (ref_count(h, "host") != 1) {
        *why = ref_count(h, "host") == 0 ? "missing host header" : "duplicate host header";
        return 400;
    }
    if (!ref_host_ok(*ref_first(h, "host"))) {         /* RFC 9112 section 3.2 */
        *why = "invalid host header";
        return 400;
    }
    if (!ref_list_has(h, "upgrade", "websocket")) {
        *why = "missing upgrade: websocket";
        return 400;
    }
    if (!ref_list_has(h, "connection", "upgrade")) {
        *why = "missing connection: upgrade";
        return 400;
    }
    v = ref_first(h, "sec-websocket-version");
    if (ref_count(h, "sec-websocket-version") != 1 || !ref_eq(*v, "13")) {
        *why = "unsupported websocket version";
        return 426;
    }
    v = ref_first(h, "sec-websocket-key");
    if (ref_count(h, "sec-websocket-key") != 1 || !ref_key_ok(*v)) {
        *why = "invalid sec-websocket-key";
        return 400;
    }
    ref_accept_of(*v, accept);
    return 0;
}

/* RFC 6455 section 4.1, the client's steps 1 to 4, for our request's key:
 * 0 or -1 with *why the ws_handshake error text. */
static inline int ref_check_response(const ref_http *h, const char *key, const char **why)
{
    char want[29];
    ref_span k;

    if (h->status != 101) {
        *why = "unexpected status";
        return -1;
    }
    if (h->minor != 1) {
        *why = "http/1.1 required";
        return -1;
    }
    /* the 101 names the one protocol chosen: "websocket", any case */
    if (ref_count(h, "upgrade") == 0) {
        *why = "missing upgrade: websocket";
        return -1;
    }
    if (ref_count(h, "upgrade") != 1 || !ref_ieq(*ref_first(h, "upgrade"), "websocket")) {
        *why = "upgrade is not websocket";
        return -1;
    }
    if (!ref_list_has(h, "connection", "upgrade")) {
        *why = "missing connection: upgrade";
        return -1;
    }
    if (ref_count(h, "sec-websocket-accept") == 0) {
        *why = "missing sec-websocket-accept";
        return -1;
    }
    k.p = key;
    k.n = strlen(key);
    ref_accept_of(k, want);
    if (ref_count(h, "sec-websocket-accept") != 1 || !ref_eq(*ref_first(h, "sec-websocket-accept"), want)) {
        *why = "wrong sec-websocket-accept";
        return -1;
    }
    return 0;
}

#endif
