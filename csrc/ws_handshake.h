/* HTTP/1.1 opening handshake of RFC 6455 section 4: parse request and
 * response heads, validate them, build the replies. No I/O, no Lua. */
#ifndef WS_HANDSHAKE_H
#define WS_HANDSHAKE_H

#include <stddef.h>
#include "ws_crypto.h"

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

#define WS_MAX_HEADERS 64

typedef struct {
    const char *name;  size_t name_len;
    const char *value; size_t value_len;  /* surrounding whitespace stripped */
} ws_header;

typedef struct {
    const char *method;  size_t method_len;
    const char *target;  size_t target_len;
    /* the target without "scheme://authority" (absolute form); path_len 0
     * means "/" ("http://host" or "http://host?q"); authority NULL for the
     * origin form "/path?query" */
    const char *path;    size_t path_len;
    const char *authority; size_t authority_len;
    int status;                          /* responses only */
    const char *reason;  size_t reason_len;
    int minor;                           /* HTTP/1.<minor> */
    ws_header headers[WS_MAX_HEADERS];
    size_t nheaders;
} ws_http;

/* Offset just past the empty line ending a head in buf, or 0 if none yet:
 * the first LF followed by LF or CR LF. That is the "\r\n\r\n" of a valid
 * head; a head ending in bare-LF form ("\n\n", "\n\r\n") ends there too,
 * and the parsers refuse it (bare lf): RFC 9112 section 2.2 lets a recipient
 * reject a bare LF, and lua-ws does so promptly instead of waiting. */
size_t ws_http_head_end(const char *buf, size_t len);

/* Parse a complete request head (request line, headers, empty line).
 * Returns 0, or an HTTP status to answer with: 400 malformed, 431 too many
 * headers, 505 not HTTP/1.x; *err names the problem. Pointers refer into buf.
 * Parsing stops at the empty line: bytes after it are not looked at.
 * As RFC 9112 asks: an empty line before the request line is skipped
 * (section 2.2), HTTP/1.2 and later minors are read as 1.1 (minor 1), and
 * an absolute-form target ("http://host/ws", which RFC 6455 section 4.1
 * allows too) gives path and authority (an authority with userinfo, or
 * otherwise no host [":" port] as in a Host header, is a 400). */
int ws_http_parse_request(const char *buf, size_t len, ws_http *req, const char **err);

/* Parse a complete response head ("HTTP/1.1 101 Switching Protocols" ...).
 * Returns 0, or -1 with *err set. As above, bytes after the empty line (the
 * server's first frames) are not looked at. method and target are NULL.
 * An obs-fold is refused, as in a request: a user agent unfolds the head
 * with ws_http_unfold first. */
int ws_http_parse_response(const char *buf, size_t len, ws_http *res, const char **err);

/* RFC 9112 section 5.2: a user agent replaces each obs-fold in a response
 * (OWS CRLF RWS: a field line continued by a line starting with SP or HTAB)
 * with SP octets before interpreting the field value. Done in place, the
 * length kept, in the field lines of buf[0..len): after the start line (a
 * line starting with SP or HTAB right after it is no fold, and stays for
 * the parser to refuse) and up to the empty line (the bytes after it are
 * not touched). Returns how many obs-folds were replaced. */
size_t ws_http_unfold(char *buf, size_t len);

/* 1 if s[0..n) may be written as a header field value: RFC 9110 section 5.5
 * field-value, that is visible characters and obs-text (0x80-0xFF), with SP
 * and HTAB only between them (the empty value too). CR, LF, NUL, the other
 * controls and DEL are refused, so nothing can be smuggled into a head.
 * The one rule for every head lua-ws writes (Lua's ws.http uses it too). */
int ws_http_field_value_ok(const char *s, size_t n);

/* First header with that name (case-insensitive), or NULL. */
const ws_header *ws_http_header(const ws_http *h, const char *name);

/* 1 if the comma-separated list value contains token (case-insensitive),
 * summed over every header of that name: "Connection: keep-alive, Upgrade". */
int ws_http_has_token(const ws_http *h, const char *name, const char *token);

/* Validate a request as a WebSocket upgrade and compute the accept value into
 * accept[WS_ACCEPT_LEN + 1]. Returns 0, or the HTTP status to answer:
 * 405 not GET, 400 HTTP/1.0, missing/bad Host (missing, two, or a value
 * that is no uri-host [":" port]: RFC 9112 section 3.2), Upgrade, Connection
 * or Sec-WebSocket-Key (exactly one, must decode to 16 bytes),
 * 426 Sec-WebSocket-Version missing, repeated or other than 13 (answer with
 * "Sec-WebSocket-Version: 13"), 500 if libcrypto fails. Checked in that
 * order. *err names the problem. */
int ws_handshake_check_request(const ws_http *req, char *accept, const char **err);

/* Validate a response to our request sent with key: status 101, Upgrade
 * websocket, Connection upgrade, Sec-WebSocket-Accept matching.
 * Returns 0 or -1 with *err set. */
int ws_handshake_check_response(const ws_http *res, const char *key, const char **err);

#pragma GCC visibility pop

#endif
