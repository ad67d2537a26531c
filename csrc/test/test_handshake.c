/* Unit tests for ws_crypto and ws_handshake: RFC 4648 and RFC 6455 vectors,
 * every failure status of the server check, malformed heads, client check. */
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ws_crypto.h"
#include "ws_handshake.h"

#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define HOST "Host: server.example.com\r\n"
#define UPG  "Upgrade: websocket\r\n"
#define CONN "Connection: Upgrade\r\n"
#define VER  "Sec-WebSocket-Version: 13\r\n"
#define KEY  "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
#define GET  "GET /chat HTTP/1.1\r\n"

/* Parse then check a request; the status a server would answer with, 0 if good. */
static int status_of(const char *head, const char **err)
{
    ws_http req;
    char accept[WS_ACCEPT_LEN + 1];
    int st;

    *err = NULL;
    st = ws_http_parse_request(head, strlen(head), &req, err);
    if (st != 0)
        return st;
    return ws_handshake_check_request(&req, accept, err);
}

static int err_is(const char *err, const char *want)
{
    return err != NULL && strcmp(err, want) == 0;
}

/* the error text is the expected one, when one is expected */
static int text_ok(const char *err, const char *want)
{
    return want == NULL || err_is(err, want);
}

/* status_of() == want, and the error text when one is given */
#define CHECK_STATUS(head, want, text) do { \
    const char *e_; \
    int st_ = status_of((head), &e_); \
    CHECK(st_ == (want)); \
    if (st_ != (want)) fprintf(stderr, "  got %d (%s)\n", st_, e_ ? e_ : "-"); \
    CHECK(text_ok(e_, (text))); \
} while (0)

static int in_buf(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p + n <= buf + len;
}

static int val_is(const ws_header *h, const char *s)
{
    return h != NULL && h->value_len == strlen(s) && memcmp(h->value, s, h->value_len) == 0;
}

static void test_base64(void)
{
    static const char *plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *coded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    static const char *bad[] = {
        "Zg=", "Zg", "Z", "Zh==", "Zm9=", "Zm9v\n", " Zm9", "Zm 9", "Zm9v\r\n  ", "Z=9v",
        "====", "Zg==Zg==", "Zm-v", "Zm_v", "Zm9v=", "Z===", "Zm9v\xff\xff\xff\xff", "Zg=\0",
    };
    unsigned char all[256], back[256];
    char enc[4 * 86 + 1], out[16];
    unsigned char dec[16];
    size_t i;

    for (i = 0; i < sizeof plain / sizeof *plain; i++) {
        size_t pl = strlen(plain[i]), cl = strlen(coded[i]);
        CHECK(ws_base64_encode((const unsigned char *)plain[i], pl, out) == cl);
        CHECK(strcmp(out, coded[i]) == 0);
        CHECK(ws_base64_decode(coded[i], cl, dec, sizeof dec) == pl);
        CHECK_MEM(dec, plain[i], pl);
    }
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = strlen(bad[i]);
        if (i == sizeof bad / sizeof *bad - 1)
            n = 4;                                  /* embedded NUL */
        CHECK(ws_base64_decode(bad[i], n, dec, sizeof dec) == (size_t)-1);
    }
    /* cap is honoured exactly */
    CHECK(ws_base64_decode("Zm9vYmFy", 8, dec, 5) == (size_t)-1);
    CHECK(ws_base64_decode("Zm9vYmFy", 8, dec, 6) == 6);
    CHECK(ws_base64_decode("Zm9vYg==", 8, dec, 3) == (size_t)-1);
    CHECK(ws_base64_decode("Zm9vYg==", 8, dec, 4) == 4);
    CHECK(ws_base64_decode("", 0, NULL, 0) == 0);

    /* every byte value survives a round trip */
    for (i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    CHECK(ws_base64_encode(all, 256, enc) == 4 * 86);
    CHECK(strlen(enc) == 4 * 86);
    CHECK(ws_base64_decode(enc, 4 * 86, back, sizeof back) == 256);
    CHECK_MEM(all, back, 256);
}

static void test_crypto(void)
{
    char acc[WS_ACCEPT_LEN + 1], k1[WS_KEY_LEN + 1], k2[WS_KEY_LEN + 1];
    unsigned char raw[17], r1[32], r2[32];

    CHECK(ws_accept_key(SAMPLE_KEY, strlen(SAMPLE_KEY), acc) == 0);
    CHECK(strcmp(acc, SAMPLE_ACCEPT) == 0);
    CHECK(strlen(acc) == WS_ACCEPT_LEN);

    CHECK(ws_new_key(k1) == 0);
    CHECK(ws_new_key(k2) == 0);
    CHECK(strlen(k1) == WS_KEY_LEN && strlen(k2) == WS_KEY_LEN);
    CHECK(ws_base64_decode(k1, WS_KEY_LEN, raw, sizeof raw) == 16);
    CHECK(ws_base64_decode(k2, WS_KEY_LEN, raw, sizeof raw) == 16);
    CHECK(strcmp(k1, k2) != 0);

    CHECK(ws_random(r1, sizeof r1) == 0);
    CHECK(ws_random(r2, sizeof r2) == 0);
    CHECK(memcmp(r1, r2, sizeof r1) != 0);
    CHECK(ws_random(r1, 0) == 0);
}

/* Mask keys: drawn 4 bytes at a time across refills; a forked child does
 * not reuse the bytes left in its parent's buffer. */
static void test_mask_keys(void)
{
    static ws_mask_keys k;
    unsigned char key[4], prev[4] = {0, 0, 0, 0}, parent[4];
    int same = 0, i, fds[2], status;

    k.pos = sizeof k.buf;
    for (i = 0; i < 3000; i++) {   /* three refills */
        CHECK(ws_mask_key(&k, key) == 0);
        same += memcmp(key, prev, 4) == 0;
        memcpy(prev, key, 4);
    }
    CHECK(same < 3);   /* 2^-32 each by chance */
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (ws_mask_key(&k, key) != 0 || write(fds[1], key, 4) != 4)
            _exit(1);
        _exit(0);
    }
    CHECK(ws_mask_key(&k, parent) == 0);
    CHECK(read(fds[0], key, 4) == 4);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(key, parent, 4) != 0);
    close(fds[0]);
    close(fds[1]);
}

static void test_head_end(void)
{
    CHECK(ws_http_head_end("", 0) == 0);
    CHECK(ws_http_head_end("\r\n\r", 3) == 0);
    CHECK(ws_http_head_end("\r\n\r\n", 4) == 4);
    CHECK(ws_http_head_end("GET / HTTP/1.1\r\nHost: a\r\n", 25) == 0);
    CHECK(ws_http_head_end("GET / HTTP/1.1\r\n\r\nxx\r\n\r\n", 24) == 18);
    /* a head ending in bare-LF form ends there too (and is refused) */
    CHECK(ws_http_head_end("a\n\n\r\n\r\n", 7) == 3);
    CHECK(ws_http_head_end("GET / HTTP/1.1\nHost: x\n\n", 24) == 24);
    CHECK(ws_http_head_end("GET / HTTP/1.1\nHost: x\n\r\n", 25) == 25);
    CHECK(ws_http_head_end("GET / HTTP/1.1\r\nHost: x\r\n\n", 26) == 26);
    CHECK(ws_http_head_end("GET / HTTP/1.1\nHost: x\n\r", 24) == 0);
    CHECK(ws_http_head_end("GET / HTTP/1.1\nHost: x\n", 23) == 0);
    CHECK(ws_http_head_end("a\r\r\n", 4) == 0);
    CHECK(ws_http_head_end("\n\n", 2) == 2);
}

static void test_sample_request(void)
{
    static const char head[] =
        "GET /chat HTTP/1.1\r\n"
        "Host: server.example.com\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n"
        "Origin: http://example.com\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n";
    size_t len = sizeof head - 1, i;
    const char *err = NULL;
    char accept[WS_ACCEPT_LEN + 1];
    ws_http req;

    CHECK(ws_http_head_end(head, len) == len);
    CHECK(ws_http_parse_request(head, len, &req, &err) == 0);
    CHECK(req.method_len == 3 && memcmp(req.method, "GET", 3) == 0);
    CHECK(req.target_len == 5 && memcmp(req.target, "/chat", 5) == 0);
    CHECK(req.minor == 1);
    CHECK(req.nheaders == 7);
    CHECK(req.headers[0].name_len == 4 && memcmp(req.headers[0].name, "Host", 4) == 0);
    CHECK(val_is(&req.headers[0], "server.example.com"));
    for (i = 0; i < req.nheaders; i++) {
        CHECK(in_buf(req.headers[i].name, req.headers[i].name_len, head, len));
        CHECK(in_buf(req.headers[i].value, req.headers[i].value_len, head, len));
    }
    /* names are case-insensitive */
    CHECK(val_is(ws_http_header(&req, "sec-websocket-key"), SAMPLE_KEY));
    CHECK(val_is(ws_http_header(&req, "SEC-WEBSOCKET-PROTOCOL"), "chat, superchat"));
    CHECK(val_is(ws_http_header(&req, "origin"), "http://example.com"));
    CHECK(ws_http_header(&req, "Cookie") == NULL);
    CHECK(ws_http_header(&req, "Hos") == NULL);
    CHECK(ws_http_has_token(&req, "sec-websocket-protocol", "superchat"));
    CHECK(ws_http_has_token(&req, "Sec-WebSocket-Protocol", "CHAT"));
    CHECK(!ws_http_has_token(&req, "Sec-WebSocket-Protocol", "chat, superchat"));

    CHECK(ws_handshake_check_request(&req, accept, &err) == 0);
    CHECK(strcmp(accept, SAMPLE_ACCEPT) == 0);

    /* bytes after the head (a pipelined frame) are not part of it */
    {
        char more[sizeof head + 4];
        memcpy(more, head, len);
        memcpy(more + len, "\x81\n\r\0", 4);
        CHECK(ws_http_parse_request(more, len + 4, &req, &err) == 0);
        CHECK(req.nheaders == 7);
    }
}

static void test_fields(void)
{
    static const char head[] =
        "GET /x?a=b%20c HTTP/1.0\r\n"
        "X-Empty:\r\n"
        "X-Spaces: \t  padded value \t \r\n"
        "connection: keep-alive, Upgrade\r\n"
        "Upgrade: websocket\r\n"
        "X-List: Upgrade,keep-alive\r\n"
        "X-Sub: notupgrade, upgrades, up grade\r\n"
        "X-Empties: ,, ,\tfoo ,\r\n"
        "Connection: close\r\n"
        "CONNECTION: upgrade\r\n"
        "X-Obs: caf\xc3\xa9\r\n"
        "\r\n";
    const char *err = NULL;
    ws_http req;

    CHECK(ws_http_parse_request(head, sizeof head - 1, &req, &err) == 0);
    CHECK(req.minor == 0);
    CHECK(req.target_len == 10 && memcmp(req.target, "/x?a=b%20c", 10) == 0);
    CHECK(req.nheaders == 10);
    CHECK(val_is(ws_http_header(&req, "x-empty"), ""));
    CHECK(val_is(ws_http_header(&req, "x-spaces"), "padded value"));
    CHECK(val_is(ws_http_header(&req, "Connection"), "keep-alive, Upgrade"));
    CHECK(val_is(ws_http_header(&req, "x-obs"), "caf\xc3\xa9"));

    CHECK(ws_http_has_token(&req, "Connection", "upgrade"));
    CHECK(ws_http_has_token(&req, "Connection", "keep-alive"));
    CHECK(ws_http_has_token(&req, "Connection", "close"));   /* second header */
    CHECK(ws_http_has_token(&req, "Upgrade", "WebSocket"));
    CHECK(ws_http_has_token(&req, "X-List", "upgrade"));
    CHECK(ws_http_has_token(&req, "X-List", "keep-alive"));
    CHECK(!ws_http_has_token(&req, "X-Sub", "upgrade"));
    CHECK(!ws_http_has_token(&req, "X-Sub", "up"));
    CHECK(ws_http_has_token(&req, "X-Sub", "up grade"));
    CHECK(ws_http_has_token(&req, "X-Empties", "foo"));
    CHECK(ws_http_has_token(&req, "X-Empties", ""));
    CHECK(!ws_http_has_token(&req, "X-Missing", "foo"));
    CHECK(!ws_http_has_token(&req, "X-Empty", "foo"));

    /* token found only in the third Connection header */
    {
        static const char h2[] =
            GET HOST UPG "Connection: keep-alive\r\nConnection: close\r\nConnection: Upgrade\r\n"
            VER KEY "\r\n";
        CHECK_STATUS(h2, 0, NULL);
    }
}

static void test_request_status(void)
{
    static char many[64 + 66 * 16];
    const char *err;
    size_t n, i;

    CHECK_STATUS(GET HOST UPG CONN VER KEY "\r\n", 0, NULL);
    CHECK_STATUS(GET KEY VER CONN UPG HOST "\r\n", 0, NULL);          /* order is free */
    CHECK_STATUS(GET "host: h\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
                 "sec-websocket-version: 13\r\nsec-websocket-key:" SAMPLE_KEY " \r\n\r\n", 0, NULL);
    /* a request's Upgrade is a list of the protocols it would take (RFC 9110 section 7.8) */
    CHECK_STATUS(GET HOST "Upgrade: h2c, websocket\r\n" CONN VER KEY "\r\n", 0, NULL);

    /* 405 */
    CHECK_STATUS("POST /chat HTTP/1.1\r\n" HOST UPG CONN VER KEY "\r\n", 405, "method not allowed");
    CHECK_STATUS("get /chat HTTP/1.1\r\n" HOST UPG CONN VER KEY "\r\n", 405, "method not allowed");
    CHECK_STATUS("GETS /chat HTTP/1.1\r\n" HOST UPG CONN VER KEY "\r\n", 405, "method not allowed");
    CHECK_STATUS("POST /chat HTTP/1.0\r\n\r\n", 405, "method not allowed");   /* 405 wins */

    /* 400: HTTP/1.0 upgrade and each missing or bad header */
    CHECK_STATUS("GET /chat HTTP/1.0\r\n" HOST UPG CONN VER KEY "\r\n", 400, "http/1.1 required");
    CHECK_STATUS(GET UPG CONN VER KEY "\r\n", 400, "missing host header");
    CHECK_STATUS(GET HOST HOST UPG CONN VER KEY "\r\n", 400, "duplicate host header");
    /* a body: what follows the head must be frames */
    CHECK_STATUS(GET HOST UPG CONN VER KEY "Content-Length: 5\r\n\r\n", 400, "request body not allowed");
    CHECK_STATUS(GET HOST UPG CONN VER KEY "content-length: 00\r\n\r\n", 400, "request body not allowed");
    CHECK_STATUS(GET HOST UPG CONN VER KEY "Transfer-Encoding: chunked\r\n\r\n", 400,
                 "request body not allowed");
    CHECK_STATUS(GET UPG CONN VER KEY "Transfer-Encoding: identity\r\n\r\n", 400,
                 "request body not allowed");                     /* before the Host checks */
    CHECK_STATUS(GET HOST UPG CONN VER KEY "Content-Length: 0\r\n\r\n", 0, NULL);
    /* RFC 9112 section 3.2: a Host value that is no uri-host [":" port] is a 400 too */
    {
        static const char *bad_hosts[] = {
            "a b", "evil.com/x", "evil.com?x", "h#f", "user@h", "user:pw@h:80", "h:80x", "h:8 0",
            "h:80:80", "[::1", "[]", "[::1]x", "[::1]:8a", "::1", "h%zz", "h%4", "\"h\"", "h<x>",
            "caf\xc3\xa9.example", "a\tb", "h\\x", "h{x}", "[::1/x]",
        };
        static const char *good_hosts[] = {
            "", "h", "server.example.com", "127.0.0.1:8080", "127.0.0.1:", "[::1]", "[::1]:443",
            "[v1.x]", ":80", "xn--caf-dma.example", "a_b-c~d.example:443", "h%41", "!$&'()*+,;=",
        };
        char head[256];
        size_t k;

        for (k = 0; k < sizeof bad_hosts / sizeof *bad_hosts; k++) {
            snprintf(head, sizeof head, GET "Host: %s\r\n" UPG CONN VER KEY "\r\n", bad_hosts[k]);
            CHECK_STATUS(head, 400, "invalid host header");
        }
        for (k = 0; k < sizeof good_hosts / sizeof *good_hosts; k++) {
            snprintf(head, sizeof head, GET "Host: %s\r\n" UPG CONN VER KEY "\r\n", good_hosts[k]);
            CHECK_STATUS(head, 0, NULL);
        }
        /* the Host checks come before the Upgrade check */
        CHECK_STATUS(GET "Host: a/b\r\n" VER "\r\n", 400, "invalid host header");
    }
    CHECK_STATUS(GET HOST CONN VER KEY "\r\n", 400, "missing upgrade: websocket");
    CHECK_STATUS(GET HOST "Upgrade: h2c\r\n" CONN VER KEY "\r\n", 400, "missing upgrade: websocket");
    CHECK_STATUS(GET HOST "Upgrade: websockets\r\n" CONN VER KEY "\r\n", 400, "missing upgrade: websocket");
    CHECK_STATUS(GET HOST UPG VER KEY "\r\n", 400, "missing connection: upgrade");
    CHECK_STATUS(GET HOST UPG "Connection: keep-alive\r\n" VER KEY "\r\n", 400, "missing connection: upgrade");
    CHECK_STATUS(GET HOST UPG "Connection: notupgrade\r\n" VER KEY "\r\n", 400, "missing connection: upgrade");
    CHECK_STATUS(GET HOST UPG "Connection: upgrade-insecure\r\n" VER KEY "\r\n", 400, "missing connection: upgrade");
    CHECK_STATUS(GET HOST UPG CONN VER "\r\n", 400, "invalid sec-websocket-key");
    CHECK_STATUS(GET HOST UPG CONN VER "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n\r\n",
                 400, "invalid sec-websocket-key");          /* 15 bytes */
    CHECK_STATUS(GET HOST UPG CONN VER "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                 400, "invalid sec-websocket-key");          /* 17 bytes */
    CHECK_STATUS(GET HOST UPG CONN VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n\r\n",
                 400, "invalid sec-websocket-key");          /* stray bits */
    CHECK_STATUS(GET HOST UPG CONN VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n\r\n",
                 400, "invalid sec-websocket-key");          /* unpadded */
    CHECK_STATUS(GET HOST UPG CONN VER "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n\r\n",
                 400, "invalid sec-websocket-key");
    CHECK_STATUS(GET HOST UPG CONN VER "Sec-WebSocket-Key:\r\n\r\n", 400, "invalid sec-websocket-key");
    CHECK_STATUS(GET HOST UPG CONN VER KEY KEY "\r\n", 400, "invalid sec-websocket-key");

    /* 426 */
    CHECK_STATUS(GET HOST UPG CONN "Sec-WebSocket-Version: 8\r\n" KEY "\r\n", 426, "unsupported websocket version");
    CHECK_STATUS(GET HOST UPG CONN KEY "\r\n", 426, "unsupported websocket version");
    CHECK_STATUS(GET HOST UPG CONN "Sec-WebSocket-Version: 13, 8\r\n" KEY "\r\n", 426, "unsupported websocket version");
    CHECK_STATUS(GET HOST UPG CONN "Sec-WebSocket-Version: 013\r\n" KEY "\r\n", 426, "unsupported websocket version");
    CHECK_STATUS(GET HOST UPG CONN VER VER KEY "\r\n", 426, "unsupported websocket version");
    /* the check order: version before key, upgrade before version */
    CHECK_STATUS(GET HOST UPG CONN "Sec-WebSocket-Version: 8\r\n\r\n", 426, "unsupported websocket version");
    CHECK_STATUS(GET HOST CONN "Sec-WebSocket-Version: 8\r\n\r\n", 400, "missing upgrade: websocket");

    /* 505 */
    CHECK_STATUS("GET /chat HTTP/2.0\r\n" HOST UPG CONN VER KEY "\r\n", 505, "unsupported http version");
    CHECK_STATUS("GET /chat HTTP/0.9\r\n\r\n", 505, "unsupported http version");
    /* a later HTTP/1 minor is read as 1.1 (RFC 9110 section 2.5) */
    CHECK_STATUS("GET /chat HTTP/1.2\r\n" HOST UPG CONN VER KEY "\r\n", 0, NULL);
    CHECK_STATUS("GET /chat HTTP/1.9\r\n" HOST UPG CONN VER KEY "\r\n", 0, NULL);
    /* an empty line before the request line is skipped (RFC 9112 section 2.2) */
    CHECK_STATUS("\r\n" GET HOST UPG CONN VER KEY "\r\n", 0, NULL);
    /* two would end the head where a reader stops (ws_http_head_end) */
    CHECK_STATUS("\r\n\r\n" GET HOST UPG CONN VER KEY "\r\n", 400, "malformed request line");

    /* 431: 64 headers are fine, 65 are not */
    n = (size_t)sprintf(many, GET HOST UPG CONN VER KEY);
    for (i = 5; i < 64; i++)
        n += (size_t)sprintf(many + n, "X-H%02u: v\r\n", (unsigned)i);
    strcpy(many + n, "\r\n");
    CHECK_STATUS(many, 0, NULL);
    strcpy(many + n, "X-Last: v\r\n\r\n");
    CHECK_STATUS(many, 431, "too many headers");
    (void)err;
}

static void test_target_forms(void)
{
    static const struct { const char *target, *path, *authority; int status; } cases[] = {
        {"/chat?x=1", "/chat?x=1", NULL, 0},
        {"http://example.com/chat?x=1", "/chat?x=1", "example.com", 0},
        {"HTTPS://example.com:8443/chat", "/chat", "example.com:8443", 0},
        {"ws://[::1]:80/a/b", "/a/b", "[::1]:80", 0},
        {"http://example.com", "", "example.com", 0},     /* path_len 0: "/" */
        {"http://example.com?q", "?q", "example.com", 0},
        {"*", "*", NULL, 0},                               /* other forms: left whole */
        {"example.com:443", "example.com:443", NULL, 0},
        {"1http://h/x", "1http://h/x", NULL, 0},
        {"http:/h/x", "http:/h/x", NULL, 0},
        {"http://:80/x", "/x", ":80", 0},                 /* an empty host, a port */
        {"ws://[v1.x]/", "/", "[v1.x]", 0},
        {"http://user@example.com/chat", NULL, NULL, 400}, /* userinfo */
        /* an authority that is no host [":" port], as in a Host header */
        {"http://h#f/x", NULL, NULL, 400},
        {"http://h\"x/", NULL, NULL, 400},
        {"s://[", NULL, NULL, 400},
        {"http://[::1/x", NULL, NULL, 400},
        {"http://h:80x/", NULL, NULL, 400},
        {"http://h%zz/", NULL, NULL, 400},
        {"http://caf\xc3\xa9/", NULL, NULL, 400},
        {"http:///chat", NULL, NULL, 400},                 /* empty authority */
        {"http://", NULL, NULL, 400},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char head[256];
        const char *err = NULL;
        ws_http req;
        int n = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].target);
        int st = ws_http_parse_request(head, (size_t)n, &req, &err);

        CHECK(st == cases[i].status);
        if (st != 0) {
            CHECK(text_ok(err, "malformed request target"));
            continue;
        }
        CHECK(req.path_len == strlen(cases[i].path) && memcmp(req.path, cases[i].path, req.path_len) == 0);
        if (cases[i].authority)
            CHECK(req.authority && req.authority_len == strlen(cases[i].authority)
                  && memcmp(req.authority, cases[i].authority, req.authority_len) == 0);
        else
            CHECK(req.authority == NULL);
        CHECK(req.target_len == strlen(cases[i].target));
    }
}

static void test_malformed(void)
{
    static const char *heads[] = {
        "GET /chat HTTP/1.1\r\nHost : h\r\n\r\n",               /* space before colon */
        "GET /chat HTTP/1.1\r\nHost\t: h\r\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",     /* obs-fold */
        "GET /chat HTTP/1.1\r\n\tHost: h\r\n\r\n",
        "GET /chat HTTP/1.1\nHost: h\r\n\r\n",                  /* bare LF */
        "GET /chat HTTP/1.1\r\nHost: h\n\r\n",
        "GET /chat HTTP/1.1\r\nHost: h\r\n\n",
        "GET /chat HTTP/1.1\r\nHost: h\rx\r\n\r\n",             /* bare CR */
        "GET /chat HTTP/1.1\r\nHost: h\r",
        "GET /chat HTTP/1.1\r\nX: a\x01z\r\n\r\n",              /* control in value */
        "GET /chat HTTP/1.1\r\nX: a\x7fz\r\n\r\n",
        "GET /chat HTTP/1.1\r\nX: a\x1b\r\n\r\n",
        "GET /chat HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET /chat HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET /chat HTTP/1.1\r\nX(y): z\r\n\r\n",               /* name not a token */
        "GET /chat HTTP/1.1\r\nHost: h\r\n",                    /* no empty line */
        "GET /chat HTTP/1.1\r\n",
        "",
        " /chat HTTP/1.1\r\n\r\n",                              /* empty method */
        "GET HTTP/1.1\r\n\r\n",                                 /* missing target */
        "GET  HTTP/1.1\r\n\r\n",
        "GET /chat  HTTP/1.1\r\n\r\n",
        "GET /chat HTTP/1.1 \r\n\r\n",
        " GET /chat HTTP/1.1\r\n\r\n",
        "GET /c\x01hat HTTP/1.1\r\n\r\n",                       /* control in target */
        "GET /c\x7fhat HTTP/1.1\r\n\r\n",
        "GET /chat\tHTTP/1.1\r\n\r\n",
        "G(T /chat HTTP/1.1\r\n\r\n",
        "GET /chat http/1.1\r\n\r\n",                           /* garbage versions */
        "GET /chat HTTP/1.1x\r\n\r\n",
        "GET /chat HTTP/11\r\n\r\n",
        "GET /chat HTTP/1.\r\n\r\n",
        "GET /chat HTTP/a.1\r\n\r\n",
        "GET /chat HTTPS/1.1\r\n\r\n",
        "GET /chat\r\n\r\n",
        "GET\r\n\r\n",
        "\r\n\r\n",
    };
    size_t i;

    for (i = 0; i < sizeof heads / sizeof *heads; i++) {
        ws_http req;
        const char *err = NULL;
        int st = ws_http_parse_request(heads[i], strlen(heads[i]), &req, &err);
        CHECK(st == 400 && err != NULL);
        if (st != 400)
            fprintf(stderr, "  head %u: got %d\n", (unsigned)i, st);
    }
    /* a NUL is a control character too */
    {
        static const char nul[] = "GET /chat HTTP/1.1\r\nX: a\0b\r\n\r\n";
        ws_http req;
        const char *err = NULL;
        CHECK(ws_http_parse_request(nul, sizeof nul - 1, &req, &err) == 400);
        CHECK(err_is(err, "malformed header value"));
    }
    {
        const char *err;
        CHECK_STATUS("GET /chat HTTP/1.1\r\nHost : h\r\n\r\n", 400, "malformed header");
        CHECK_STATUS("GET /chat HTTP/1.1\r\nHost: h\r\n x\r\n\r\n", 400, "obsolete line folding");
        CHECK_STATUS("GET /chat HTTP/1.1\nHost: h\r\n\r\n", 400, "bare lf");
        /* heads in bare-LF form, as ws_http_head_end cuts them */
        CHECK_STATUS("GET /chat HTTP/1.1\nHost: h\n\n", 400, "bare lf");
        CHECK_STATUS("GET /chat HTTP/1.1\nHost: h\n\r\n", 400, "bare lf");
        CHECK_STATUS("GET /chat HTTP/1.1\r\nHost: h\r\n\n", 400, "bare lf");
        CHECK_STATUS("GET /chat HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400, "bare lf");
        CHECK_STATUS("GET /chat HTTP/1.1\r\nHost: h\rx\r\n\r\n", 400, "bare cr");
        CHECK_STATUS(" /chat HTTP/1.1\r\n\r\n", 400, "malformed request line");
        (void)err;
    }
}

static const char sample_response[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"
    "\r\n";

/* Parse and check a response to SAMPLE_KEY; 0 or -1. */
static int response_of(const char *head, const char **err)
{
    ws_http res;

    *err = NULL;
    if (ws_http_parse_response(head, strlen(head), &res, err) != 0)
        return -1;
    return ws_handshake_check_response(&res, SAMPLE_KEY, err);
}

static void test_response(void)
{
    ws_http res;
    const char *err = NULL;
    char key[WS_KEY_LEN + 1], acc[WS_ACCEPT_LEN + 1], head[256];

    CHECK(ws_http_parse_response(sample_response, sizeof sample_response - 1, &res, &err) == 0);
    CHECK(res.status == 101 && res.minor == 1);
    CHECK(res.reason_len == 19 && memcmp(res.reason, "Switching Protocols", 19) == 0);
    CHECK(res.method == NULL && res.target == NULL);
    CHECK(res.nheaders == 3);
    CHECK(ws_handshake_check_response(&res, SAMPLE_KEY, &err) == 0);
    CHECK(ws_handshake_check_response(&res, "x3JJHMbDL1EzLkh9GBhXDw==", &err) == -1);
    CHECK(err_is(err, "wrong sec-websocket-accept"));

    /* short status lines */
    CHECK(response_of("HTTP/1.1 101\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == 0);
    CHECK(ws_http_parse_response("HTTP/1.1 101 \r\n\r\n", 17, &res, &err) == 0);
    CHECK(res.reason_len == 0);
    CHECK(ws_http_parse_response("HTTP/1.1 101\r\n\r\n", 16, &res, &err) == 0);
    CHECK(res.reason_len == 0 && res.status == 101);

    /* a fresh key, end to end */
    CHECK(ws_new_key(key) == 0);
    CHECK(ws_accept_key(key, strlen(key), acc) == 0);
    sprintf(head, "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
    CHECK(ws_http_parse_response(head, strlen(head), &res, &err) == 0);
    CHECK(ws_handshake_check_response(&res, key, &err) == 0);

    CHECK(response_of("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "unexpected status"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "missing upgrade: websocket"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "missing connection: upgrade"));
    /* a 101's Upgrade is "websocket" alone, any case (RFC 6455 section 4.1) */
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == 0);
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "upgrade is not websocket"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: websocket,\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "upgrade is not websocket"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "upgrade is not websocket"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "missing sec-websocket-accept"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "wrong sec-websocket-accept"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "wrong sec-websocket-accept"));
    CHECK(response_of("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "wrong sec-websocket-accept"));

    /* an HTTP/1.0 refusal is read; a 101 needs HTTP/1.1 */
    CHECK(ws_http_parse_response("HTTP/1.0 404 Not Found\r\n\r\n", 28, &res, &err) == 0);
    CHECK(res.status == 404 && res.minor == 0);
    CHECK(ws_http_parse_response("HTTP/1.2 404 x\r\n\r\n", 19, &res, &err) == 0);
    CHECK(res.minor == 1);
    CHECK(response_of("HTTP/1.0 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n\r\n", &err) == -1);
    CHECK(err_is(err, "http/1.1 required"));

    /* malformed response heads */
    {
        static const char *bad[] = {
            "HTTP/2.0 101 OK\r\n\r\n",
            "HTTP/1.x 101 OK\r\n\r\n",
            "HTTP/1.10 101 OK\r\n\r\n",
            "HTTP/1.1 10 OK\r\n\r\n",
            "HTTP/1.1 1011 OK\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 099 OK\r\n\r\n",
            "HTTP/1.1  101 OK\r\n\r\n",
            "http/1.1 101 OK\r\n\r\n",
            "HTTP/1.1 101 O\x01K\r\n\r\n",
            "HTTP/1.1 101 OK\n\r\n",
            "HTTP/1.1 101 OK\r\nUpgrade : websocket\r\n\r\n",
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n folded\r\n\r\n",
            "HTTP/1.1 101 OK\r\n",
            "HTTP/1.1\r\n\r\n",
            "",
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof *bad; i++) {
            err = NULL;
            CHECK(ws_http_parse_response(bad[i], strlen(bad[i]), &res, &err) == -1 && err != NULL);
        }
    }
}

/* RFC 9112 section 5.2: a user agent replaces each obs-fold with SP. */
static void test_unfold(void)
{
    static const struct { const char *in, *out; size_t n; } cases[] = {
        /* a fold, with the whitespace around it */
        {"HTTP/1.1 101 OK\r\nA: b\r\n c\r\n\r\n", "HTTP/1.1 101 OK\r\nA: b   c\r\n\r\n", 1},
        {"HTTP/1.1 101 OK\r\nA: b \t\r\n\t c\r\n\r\n", "HTTP/1.1 101 OK\r\nA: b      c\r\n\r\n", 1},
        /* two, and a value that starts on the next line */
        {"HTTP/1.1 101 OK\r\nA:\r\n b\r\n\tc\r\nD: e\r\n\r\n", "HTTP/1.1 101 OK\r\nA:   b   c\r\nD: e\r\n\r\n", 2},
        /* a line of whitespace alone continues the field too */
        {"HTTP/1.1 101 OK\r\nA: b\r\n \r\n\r\n", "HTTP/1.1 101 OK\r\nA: b   \r\n\r\n", 1},
        /* not after the start line; not after the empty line; not after a bare LF */
        {"HTTP/1.1 101 OK\r\n A: b\r\n\r\n", "HTTP/1.1 101 OK\r\n A: b\r\n\r\n", 0},
        {"HTTP/1.1 101 OK\r\nA: b\r\n\r\n x\r\n y", "HTTP/1.1 101 OK\r\nA: b\r\n\r\n x\r\n y", 0},
        {"HTTP/1.1 101 OK\r\nA: b\n c\r\n\r\n", "HTTP/1.1 101 OK\r\nA: b\n c\r\n\r\n", 0},
        {"HTTP/1.1 101 OK\r\nA: b\n\r\n c\r\n", "HTTP/1.1 101 OK\r\nA: b\n\r\n c\r\n", 0},
        {"", "", 0},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[128];
        size_t len = strlen(cases[i].in);
        int right;
        memcpy(buf, cases[i].in, len + 1);
        right = ws_http_unfold(buf, len) == cases[i].n && strcmp(buf, cases[i].out) == 0;
        if (!right)
            fprintf(stderr, "unfold case %u: \"%s\"\n", (unsigned)i, buf);
        CHECK(right);
    }
    /* an unfolded 101 passes the client's checks; its values read as one */
    {
        char head[] = "HTTP/1.1 101 OK\r\nUpgrade:\r\n websocket\r\nConnection: keep-alive,\r\n\tUpgrade\r\n"
                      "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n \r\nX: a\r\n b\r\n\r\n";
        const char *err = NULL;
        ws_http res;
        CHECK(ws_http_parse_response(head, sizeof head - 1, &res, &err) == -1);
        CHECK(err_is(err, "obsolete line folding"));
        CHECK(ws_http_unfold(head, sizeof head - 1) == 4);
        CHECK(ws_http_parse_response(head, sizeof head - 1, &res, &err) == 0);
        CHECK(ws_handshake_check_response(&res, SAMPLE_KEY, &err) == 0);
        CHECK(res.nheaders == 4 && val_is(&res.headers[0], "websocket") && val_is(&res.headers[2], SAMPLE_ACCEPT)
              && val_is(&res.headers[3], "a   b"));
    }
}

/* The one rule for header values lua-ws writes: RFC 9110 field-value. */
static void test_field_value(void)
{
#define V(lit, ok) {lit, sizeof lit - 1, ok}
    static const struct { const char *s; size_t n; int ok; } cases[] = {
        V("", 1),
        V("chat", 1),
        V("a b", 1),
        V("a\tb", 1),                 /* HTAB inside: allowed */
        V("a \t b", 1),
        V("\x80\xff caf\xc3\xa9", 1),  /* obs-text */
        V("~!\"#", 1),
        V(" a", 0),                   /* no leading or trailing SP/HTAB */
        V("a ", 0),
        V("\ta", 0),
        V("a\t", 0),
        V(" ", 0),
        V("\t", 0),
        V("a\r\nX-Evil: 1", 0),
        V("a\nb", 0),
        V("a\rb", 0),
        V("a\0b", 0),
        V("a\x01" "b", 0),
        V("a\x1f" "b", 0),
        V("a\x7f", 0),                /* DEL */
        V("\x0b", 0),
    };
#undef V
    size_t i;

    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        int right = ws_http_field_value_ok(cases[i].s, cases[i].n) == cases[i].ok;
        if (!right)
            fprintf(stderr, "field value case %u\n", (unsigned)i);
        CHECK(right);
    }
}

int main(void)
{
    test_base64();
    test_crypto();
    test_mask_keys();
    test_head_end();
    test_sample_request();
    test_fields();
    test_request_status();
    test_target_forms();
    test_malformed();
    test_response();
    test_unfold();
    test_field_value();
    return check_report("c handshake");
}
