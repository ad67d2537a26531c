/* HTTP/1.1 upgrade handshake of RFC 6455 section 4, with the message syntax
 * of RFC 9112. Strict on purpose: anything a smuggling-prone proxy might read
 * differently (bare CR or LF, whitespace before a colon, folded lines) is
 * refused rather than guessed at. */
#include "ws_handshake.h"

#include <string.h>

/* ASCII only: the C library's versions depend on the locale. */
static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static int eq_nocase(const char *a, const char *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* byte classes: 1 tchar (RFC 9110 section 5.6.2), 2 field-value text
 * (VCHAR, obs-text, SP, HTAB) */
static const unsigned char byte_class[256] = {
    0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    2,3,2,3,3,3,3,3,2,2,3,3,2,3,3,2,3,3,3,3,3,3,3,3,3,3,2,2,2,2,2,2,
    2,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,2,2,2,3,3,
    3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,2,3,2,3,0,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
};

/* tchar of RFC 9110 section 5.6.2 */
static int is_tchar(unsigned char c)
{
    return byte_class[c] & 1;
}

/* Bytes allowed in a field value or reason phrase: VCHAR, obs-text, SP, HTAB. */
static int is_text(unsigned char c)
{
    return (byte_class[c] & 2) != 0;
}

/* request-target bytes: anything but controls and SP; the router decides
 * what a path may hold. */
static int is_target_char(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 3986 section 2.3 unreserved, section 2.2 sub-delims */
static int is_unreserved(unsigned char c)
{
    return is_alpha(c) || is_digit((char)c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int is_sub_delim(unsigned char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

static int is_hex(unsigned char c)
{
    return is_digit((char)c) || (lower(c) >= 'a' && lower(c) <= 'f');
}

/* A Host value, Host = uri-host [ ":" port ] (RFC 9110 section 7.2; the
 * host of RFC 3986 section 3.2.2, port = *DIGIT): a reg-name (unreserved,
 * sub-delims, %XX; an IPv4 address is one; empty too) or an IP-literal
 * "[...]", of whose IPv6address or IPvFuture only the characters are checked
 * (unreserved, sub-delims, ':'). No '/', '?', '#', '@', space or other byte
 * that would make it a different URI than the one it names. */
static int host_ok(const char *s, size_t n)
{
    size_t i = 0;

    if (n > 0 && s[0] == '[') {
        for (i = 1; i < n && s[i] != ']'; i++)
            if (!is_unreserved((unsigned char)s[i]) && !is_sub_delim((unsigned char)s[i]) && s[i] != ':')
                return 0;
        if (i == 1 || i == n)
            return 0;
        i++;                            /* the ']' */
    } else {
        while (i < n && s[i] != ':') {
            if (s[i] == '%') {
                if (n - i < 3 || !is_hex((unsigned char)s[i + 1]) || !is_hex((unsigned char)s[i + 2]))
                    return 0;
                i += 3;
            } else if (is_unreserved((unsigned char)s[i]) || is_sub_delim((unsigned char)s[i])) {
                i++;
            } else {
                return 0;
            }
        }
    }
    if (i == n)
        return 1;
    if (s[i] != ':')
        return 0;
    for (i++; i < n; i++)
        if (!is_digit(s[i]))
            return 0;
    return 1;
}

int ws_http_field_value_ok(const char *s, size_t n)
{
    size_t i;

    if (n > 0 && (is_ows(s[0]) || is_ows(s[n - 1])))
        return 0;
    for (i = 0; i < n; i++)
        if (!is_text((unsigned char)s[i]))
            return 0;
    return 1;
}

/* The first LF followed by an empty line, LF or CR LF: CRLF CRLF in a valid
 * head, and a head that ends in a bare-LF form (LF LF, LF CR LF) ends there
 * too, so that the parser refuses it at once (bare lf, a 400) rather than a
 * reader waiting for a CRLF CRLF that never comes. */
size_t ws_http_head_end(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Find the line starting at *pos: returns its length and moves *pos past the
 * CRLF, or returns (size_t)-1 for a bare CR or LF or a missing CRLF. Any CR
 * or LF inside a line is an error, so the callers never see them. */
static size_t next_line(const char *buf, size_t len, size_t *pos, const char **err)
{
    size_t i;

    for (i = *pos; i < len; i++) {
        if (buf[i] == '\n') {
            *err = "bare lf";
            return (size_t)-1;
        }
        if (buf[i] == '\r') {
            size_t n = i - *pos;
            if (i + 1 >= len || buf[i + 1] != '\n') {
                *err = "bare cr";
                return (size_t)-1;
            }
            *pos = i + 2;
            return n;
        }
    }
    *err = "incomplete head";
    return (size_t)-1;
}

static void http_init(ws_http *h)
{
    h->method = NULL;  h->method_len = 0;
    h->target = NULL;  h->target_len = 0;
    h->path = NULL;    h->path_len = 0;
    h->authority = NULL; h->authority_len = 0;
    h->status = 0;
    h->reason = NULL;  h->reason_len = 0;
    h->minor = 0;
    h->nheaders = 0;
}

/* Header lines up to and including the empty line. Returns 0, 400 or 431.
 * Bytes after the empty line are not looked at: they belong to the body or,
 * after a 101, to the first WebSocket frames. */
static int parse_headers(const char *buf, size_t len, size_t pos, ws_http *h, const char **err)
{
    for (;;) {
        const char *line = buf + pos;
        size_t n = next_line(buf, len, &pos, err);
        size_t colon, start, end, i;
        ws_header *hd;

        if (n == (size_t)-1)
            return 400;
        if (n == 0)
            return 0;
        if (is_ows(line[0])) {
            *err = "obsolete line folding";
            return 400;
        }
        for (colon = 0; colon < n && is_tchar((unsigned char)line[colon]); colon++)
            ;
        /* also catches whitespace before the colon (RFC 9112 section 5.1) */
        if (colon == 0 || colon == n || line[colon] != ':') {
            *err = "malformed header";
            return 400;
        }
        for (i = colon + 1; i < n; i++)
            if (!is_text((unsigned char)line[i])) {
                *err = "malformed header value";
                return 400;
            }
        for (start = colon + 1; start < n && is_ows(line[start]); start++)
            ;
        for (end = n; end > start && is_ows(line[end - 1]); end--)
            ;
        if (h->nheaders == WS_MAX_HEADERS) {
            *err = "too many headers";
            return 431;
        }
        hd = &h->headers[h->nheaders++];
        hd->name = line;
        hd->name_len = colon;
        hd->value = line + start;
        hd->value_len = end - start;
    }
}

/* path and authority of req's target: the origin form "/p?q" is its own
 * path; the absolute form "scheme://authority[/p][?q]" (RFC 9112 section
 * 3.2.2) splits, and -1 refuses one whose authority is empty, carries
 * userinfo (RFC 9110 section 4.2.4) or is otherwise no host [":" port]
 * (it stands for the Host header: "http://h#x/" or "http://[/" named hosts
 * "h#x" and "["); other forms ("*", "host:port") are left whole as the
 * path, for routing to refuse. */
static int split_target(ws_http *req)
{
    const char *t = req->target;
    size_t n = req->target_len, i = 0, a;

    req->path = t;
    req->path_len = n;
    if (!is_alpha((unsigned char)t[0]))
        return 0;
    while (i < n && (is_alpha((unsigned char)t[i]) || is_digit(t[i]) || t[i] == '+'
                     || t[i] == '-' || t[i] == '.'))
        i++;
    if (n - i < 3 || memcmp(t + i, "://", 3) != 0)
        return 0;
    a = i + 3;
    for (i = a; i < n && t[i] != '/' && t[i] != '?'; i++)
        ;
    /* host_ok refuses userinfo's '@' too */
    if (i == a || !host_ok(t + a, i - a))
        return -1;
    req->authority = t + a;
    req->authority_len = i - a;
    req->path = t + i;
    req->path_len = n - i;
    return 0;
}

int ws_http_parse_request(const char *buf, size_t len, ws_http *req, const char **err)
{
    const char *line, *v;
    size_t pos = 0, n, i, j;

    http_init(req);
    /* RFC 9112 section 2.2: ignore at least one empty line before the
     * request line; one, since a second would end the head (a reader
     * stops at the first CRLF CRLF) */
    if (len >= 2 && buf[0] == '\r' && buf[1] == '\n')
        pos = 2;
    line = buf + pos;
    n = next_line(buf, len, &pos, err);
    if (n == (size_t)-1)
        return 400;

    /* method: a non-empty token */
    for (i = 0; i < n && is_tchar((unsigned char)line[i]); i++)
        ;
    if (i == 0 || i == n || line[i] != ' ') {
        *err = "malformed request line";
        return 400;
    }
    req->method = line;
    req->method_len = i;

    /* request-target: non-empty, no controls, no spaces */
    for (j = ++i; j < n && is_target_char((unsigned char)line[j]); j++)
        ;
    if (j == i || j == n || line[j] != ' ') {
        *err = "malformed request line";
        return 400;
    }
    req->target = line + i;
    req->target_len = j - i;
    if (split_target(req) != 0) {
        *err = "malformed request target";
        return 400;
    }

    /* HTTP-version: "HTTP/" DIGIT "." DIGIT, then the end of the line */
    v = line + j + 1;
    if (n - (j + 1) != 8 || memcmp(v, "HTTP/", 5) != 0 || !is_digit(v[5])
        || v[6] != '.' || !is_digit(v[7])) {
        *err = "malformed request line";
        return 400;
    }
    /* RFC 9110 section 2.5: a later minor version is read as the highest we
     * speak, 1.1 */
    if (v[5] != '1') {
        *err = "unsupported http version";
        return 505;
    }
    req->minor = v[7] == '0' ? 0 : 1;

    return parse_headers(buf, len, pos, req, err);
}

int ws_http_parse_response(const char *buf, size_t len, ws_http *res, const char **err)
{
    const char *line = buf;
    size_t pos = 0, n, i;

    http_init(res);
    n = next_line(buf, len, &pos, err);
    if (n == (size_t)-1)
        return -1;
    /* "HTTP/1." DIGIT SP 3DIGIT, then end of line or SP reason: a refusal
     * from an HTTP/1.0 server is read too (RFC 9110 section 2.5) */
    if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || !is_digit(line[7]) || line[8] != ' '
        || !is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11])
        || (n > 12 && line[12] != ' ')) {
        *err = "malformed status line";
        return -1;
    }
    res->minor = line[7] == '0' ? 0 : 1;
    res->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (res->status < 100 || res->status > 599) {
        *err = "malformed status line";
        return -1;
    }
    for (i = 13; i < n; i++)
        if (!is_text((unsigned char)line[i])) {
            *err = "malformed status line";
            return -1;
        }
    res->reason = line + (n > 12 ? 13 : 12);
    res->reason_len = n > 12 ? n - 13 : 0;

    return parse_headers(buf, len, pos, res, err) == 0 ? 0 : -1;
}

size_t ws_http_unfold(char *buf, size_t len)
{
    size_t i, first, count = 0;

    for (first = 0; first < len && buf[first] != '\n'; first++)
        ;
    for (i = first; i < len; i++) {
        size_t from, to;

        if (buf[i] != '\n')
            continue;
        /* the empty line: the head ends (what follows is not ours) */
        if (i + 1 < len && (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')))
            break;
        /* OWS CRLF RWS ending a field line (not the start line) */
        if (i == first || buf[i - 1] != '\r' || i + 1 == len || !is_ows(buf[i + 1]))
            continue;
        for (from = i - 1; from > 0 && is_ows(buf[from - 1]); from--)
            ;
        for (to = i + 1; to < len && is_ows(buf[to]); to++)
            ;
        memset(buf + from, ' ', to - from);
        count++;
        i = to - 1;
    }
    return count;
}

static int name_is(const ws_header *hd, const char *name, size_t len)
{
    return hd->name_len == len && eq_nocase(hd->name, name, len);
}

const ws_header *ws_http_header(const ws_http *h, const char *name)
{
    size_t i, len = strlen(name);

    for (i = 0; i < h->nheaders; i++)
        if (name_is(&h->headers[i], name, len))
            return &h->headers[i];
    return NULL;
}

static size_t header_count(const ws_http *h, const char *name)
{
    size_t i, count = 0, len = strlen(name);

    for (i = 0; i < h->nheaders; i++)
        if (name_is(&h->headers[i], name, len))
            count++;
    return count;
}

/* Whether one field's value, a comma-separated list, holds token (any
 * case); each element trimmed, empty elements allowed. */
static int value_has_token(const ws_header *hd, const char *token, size_t tlen)
{
    size_t p = 0;

    while (p <= hd->value_len) {
        size_t s = p, e;
        while (p < hd->value_len && hd->value[p] != ',')
            p++;
        e = p;
        while (s < e && is_ows(hd->value[s]))
            s++;
        while (e > s && is_ows(hd->value[e - 1]))
            e--;
        if (e - s == tlen && eq_nocase(hd->value + s, token, tlen))
            return 1;
        p++;                            /* past the comma, or past the end */
    }
    return 0;
}

int ws_http_has_token(const ws_http *h, const char *name, const char *token)
{
    size_t i, nlen = strlen(name), tlen = strlen(token);

    for (i = 0; i < h->nheaders; i++)
        if (name_is(&h->headers[i], name, nlen) && value_has_token(&h->headers[i], token, tlen))
            return 1;
    return 0;
}

int ws_handshake_check_request(const ws_http *req, char *accept, const char **err)
{
    const ws_header *host = NULL, *version = NULL, *key = NULL;
    size_t i, nhost = 0, nversion = 0, nkey = 0;
    int upgrade = 0, connection = 0, body = 0;
    unsigned char nonce[17];            /* one spare byte to notice 17 */

    if (req->method == NULL || req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
        *err = "method not allowed";
        return 405;
    }
    if (req->minor < 1) {
        *err = "http/1.1 required";
        return 400;
    }
    /* the fields checked below, found in one pass (by length first) */
    for (i = 0; i < req->nheaders; i++) {
        const ws_header *hd = &req->headers[i];
        switch (hd->name_len) {
        case 4:
            if (name_is(hd, "Host", 4) && nhost++ == 0)
                host = hd;
            break;
        case 7:
            if (!upgrade && name_is(hd, "Upgrade", 7))
                upgrade = value_has_token(hd, "websocket", 9);
            break;
        case 10:
            if (!connection && name_is(hd, "Connection", 10))
                connection = value_has_token(hd, "upgrade", 7);
            break;
        case 14:
            if (name_is(hd, "Content-Length", 14))
                body |= hd->value_len != 1 || hd->value[0] != '0';
            break;
        case 17:
            if (name_is(hd, "Sec-WebSocket-Key", 17)) {
                if (nkey++ == 0)
                    key = hd;
            } else if (name_is(hd, "Transfer-Encoding", 17)) {
                body = 1;
            }
            break;
        case 21:
            if (name_is(hd, "Sec-WebSocket-Version", 21) && nversion++ == 0)
                version = hd;
            break;
        default:
            break;
        }
    }
    /* what follows the head is frames: a body there would be read as
     * frames here and as the body by a proxy in front (smuggling) */
    if (body) {
        *err = "request body not allowed";
        return 400;
    }
    /* RFC 9112 section 3.2: a missing or repeated Host is a 400 */
    if (nhost == 0) {
        *err = "missing host header";
        return 400;
    }
    if (nhost > 1) {
        *err = "duplicate host header";
        return 400;
    }
    /* and one whose value is no Host = uri-host [ ":" port ] */
    if (!host_ok(host->value, host->value_len)) {
        *err = "invalid host header";
        return 400;
    }
    if (!upgrade) {
        *err = "missing upgrade: websocket";
        return 400;
    }
    if (!connection) {
        *err = "missing connection: upgrade";
        return 400;
    }
    /* RFC 6455 section 4.1: exactly one, exactly "13" */
    if (version == NULL || nversion != 1
        || version->value_len != 2 || memcmp(version->value, "13", 2) != 0) {
        *err = "unsupported websocket version";
        return 426;
    }
    if (key == NULL || nkey != 1
        || ws_base64_decode(key->value, key->value_len, nonce, sizeof nonce) != 16) {
        *err = "invalid sec-websocket-key";
        return 400;
    }
    if (ws_accept_key(key->value, key->value_len, accept) != 0) {
        *err = "internal error";
        return 500;
    }
    return 0;
}

int ws_handshake_check_response(const ws_http *res, const char *key, const char **err)
{
    const ws_header *hd;
    char expect[WS_ACCEPT_LEN + 1];

    if (res->status != 101) {
        *err = "unexpected status";
        return -1;
    }
    if (res->minor < 1) {              /* HTTP/1.0 has no Upgrade */
        *err = "http/1.1 required";
        return -1;
    }
    /* RFC 6455 section 4.1, client step 2: the answer's Upgrade is
     * "websocket" itself (any case), not a list holding it (a request's
     * Upgrade is a list of protocols it would take; a 101 chose one) */
    hd = ws_http_header(res, "Upgrade");
    if (hd == NULL) {
        *err = "missing upgrade: websocket";
        return -1;
    }
    if (header_count(res, "Upgrade") != 1 || hd->value_len != 9 || !eq_nocase(hd->value, "websocket", 9)) {
        *err = "upgrade is not websocket";
        return -1;
    }
    if (!ws_http_has_token(res, "Connection", "upgrade")) {
        *err = "missing connection: upgrade";
        return -1;
    }
    hd = ws_http_header(res, "Sec-WebSocket-Accept");
    if (hd == NULL) {
        *err = "missing sec-websocket-accept";
        return -1;
    }
    if (key == NULL || ws_accept_key(key, strlen(key), expect) != 0) {
        *err = "internal error";
        return -1;
    }
    if (header_count(res, "Sec-WebSocket-Accept") != 1 || hd->value_len != WS_ACCEPT_LEN
        || memcmp(hd->value, expect, WS_ACCEPT_LEN) != 0) {
        *err = "wrong sec-websocket-accept";
        return -1;
    }
    return 0;
}
