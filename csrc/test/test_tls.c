/* Unit tests for ws_tls: handshakes, reads and writes over a non-blocking
 * socketpair with certificates made here (self-signed, P-256), host name
 * and IP checks (RFC 6125 wildcards), partial writes, and every way the
 * peer can vanish: each must end in WS_TLS_CLOSED or WS_TLS_ERROR, and a
 * dead session must stay dead. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "ws_fanout.h"
#include "ws_tls.h"

static char dir[64];

/* dir/NAME.pem and dir/NAME.key: a self-signed certificate for CN=cn with
 * subjectAltName sans (OpenSSL config syntax). */
static int make_cert(const char *name, const char *cn, const char *sans) {
    char path[128];
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!key || !x)
        return -1;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, sans);
    if (!ext)
        return -1;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (!X509_sign(x, key, EVP_sha256()))
        return -1;
    snprintf(path, sizeof path, "%s/%s.pem", dir, name);
    FILE *f = fopen(path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    f = fopen(path, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    /* and the same key encrypted with the password "secret" */
    snprintf(path, sizeof path, "%s/%s.enc", dir, name);
    f = fopen(path, "w");
    PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(), (unsigned char *)"secret", 6, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    return 0;
}

static const char *file(const char *name, const char *ext) {
    static char buf[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s.%s", dir, name, ext);
    return buf[i];
}

static ws_tls_ctx *server_ctx(const char *cert) {
    char err[256];
    ws_tls_opts o;
    memset(&o, 0, sizeof o);
    o.server = 1;
    o.certificate = file(cert, "pem");
    o.key = file(cert, "key");
    ws_tls_ctx *c = ws_tls_ctx_new(&o, err, sizeof err);
    if (!c)
        fprintf(stderr, "server ctx: %s\n", err);
    return c;
}

/* a client trusting cafile's certificate (NULL: the system store) */
static ws_tls_ctx *client_ctx(const char *ca) {
    char err[256];
    ws_tls_opts o;
    memset(&o, 0, sizeof o);
    o.cafile = ca ? file(ca, "pem") : NULL;
    o.verify = WS_TLS_VERIFY_REQUIRE;
    ws_tls_ctx *c = ws_tls_ctx_new(&o, err, sizeof err);
    if (!c)
        fprintf(stderr, "client ctx: %s\n", err);
    return c;
}

typedef struct {
    int fd[2];               /* [0] server, [1] client */
    ws_tls *s, *c;
} pair;

static int make_pair(pair *p, ws_tls_ctx *sc, ws_tls_ctx *cc, const char *name) {
    char err[256];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        fcntl(p->fd[i], F_SETFL, fcntl(p->fd[i], F_GETFL) | O_NONBLOCK);
    p->s = ws_tls_new(sc, p->fd[0], NULL, err, sizeof err);
    p->c = ws_tls_new(cc, p->fd[1], name, err, sizeof err);
    return p->s && p->c ? 0 : -1;
}

static void free_pair(pair *p) {
    ws_tls_free(p->s);
    ws_tls_free(p->c);
    if (p->fd[0] >= 0)
        close(p->fd[0]);
    if (p->fd[1] >= 0)
        close(p->fd[1]);
}

/* Both handshakes, alternately, at most 50 rounds: the client's result. */
static int handshake(pair *p, int *server_result) {
    int rs = WS_TLS_WANT_READ, rc = WS_TLS_WANT_READ;
    for (int i = 0; i < 50; i++) {
        if (rc > 0)
            rc = ws_tls_handshake(p->c);
        if (rs > 0)
            rs = ws_tls_handshake(p->s);
        if (rc <= 0 && rs <= 0)
            break;
    }
    if (server_result)
        *server_result = rs;
    return rc;
}

static int connects(const char *cert, const char *name) {
    ws_tls_ctx *sc = server_ctx(cert), *cc = client_ctx(cert);
    pair p;
    int r = make_pair(&p, sc, cc, name) == 0 ? handshake(&p, NULL) : -9;
    free_pair(&p);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(cc);
    return r;
}

static void test_contexts(void) {
    char err[256];
    ws_tls_opts o;
    memset(&o, 0, sizeof o);
    o.server = 1;
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    CHECK(strstr(err, "certificate") != NULL);
    o.certificate = "/nonexistent.pem";
    o.key = "/nonexistent.key";
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    /* the file and the system's reason, not OpenSSL's "system lib" */
    CHECK(strcmp(err, "certificate: /nonexistent.pem: No such file or directory") == 0);
    o.certificate = file("host", "pem");
    o.key = file("other", "key");
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    CHECK(strncmp(err, "key", 3) == 0);     /* "key: key values mismatch" */
    o.key = file("host", "key");
    o.ciphers = "NO-SUCH-CIPHER";
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    CHECK(strncmp(err, "ciphers", 7) == 0);
    o.ciphers = NULL;
    ws_tls_ctx *c = ws_tls_ctx_new(&o, err, sizeof err);
    CHECK(c != NULL && ws_tls_ctx_is_server(c));
    ws_tls_ctx_free(c);
    /* an encrypted key: the right password, a wrong one */
    o.key = file("host", "enc");
    o.password = "secret";
    c = ws_tls_ctx_new(&o, err, sizeof err);
    CHECK(c != NULL);
    ws_tls_ctx_free(c);
    o.password = "wrong";
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    CHECK(strncmp(err, "key: ", 5) == 0);
    o.password = NULL;              /* fails, never prompts on a terminal */
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    CHECK(strncmp(err, "key: ", 5) == 0);
    /* a client's CA file: missing, or holding no certificate */
    memset(&o, 0, sizeof o);
    o.verify = WS_TLS_VERIFY_REQUIRE;
    o.cafile = "/nonexistent-ca.pem";
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    CHECK(strcmp(err, "cafile: /nonexistent-ca.pem: No such file or directory") == 0);
    o.cafile = file("host", "key");
    CHECK(ws_tls_ctx_new(&o, err, sizeof err) == NULL);
    CHECK(strncmp(err, "cafile: ", 8) == 0 && strstr(err, "host.key: ") != NULL);
}

static void test_names(void) {
    /* host: DNS:localhost, IP:127.0.0.1, IP:::1 */
    CHECK(connects("host", "localhost") == WS_TLS_DONE);
    CHECK(connects("host", "LOCALHOST") == WS_TLS_DONE);
    CHECK(connects("host", "127.0.0.1") == WS_TLS_DONE);
    CHECK(connects("host", "::1") == WS_TLS_DONE);
    CHECK(connects("host", "0:0:0:0:0:0:0:1") == WS_TLS_DONE);
    CHECK(connects("host", "127.0.0.2") == WS_TLS_ERROR);
    CHECK(connects("host", "example.com") == WS_TLS_ERROR);
    /* wild: DNS:*.example.com, DNS:f*.example.org — a wildcard is one whole
     * left-most label, as the Lua check it replaces accepted */
    CHECK(connects("wild", "a.example.com") == WS_TLS_DONE);
    CHECK(connects("wild", "a.b.example.com") == WS_TLS_ERROR);
    CHECK(connects("wild", "example.com") == WS_TLS_ERROR);
    CHECK(connects("wild", "foo.example.org") == WS_TLS_ERROR);
    /* the error names the problem */
    ws_tls_ctx *sc = server_ctx("host"), *cc = client_ctx("host");
    pair p;
    /* verify on and no name to check: fails closed, never "any name" */
    char err[256];
    int fd[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fd) == 0);
    CHECK(ws_tls_new(cc, fd[1], "", err, sizeof err) == NULL);
    CHECK(strcmp(err, "no server name to check the certificate against") == 0);
    CHECK(ws_tls_new(cc, fd[1], NULL, err, sizeof err) == NULL);
    close(fd[0]);
    close(fd[1]);
    CHECK(make_pair(&p, sc, cc, "example.com") == 0);
    CHECK(handshake(&p, NULL) == WS_TLS_ERROR);
    CHECK(strcmp(ws_tls_error(p.c), "certificate does not match host") == 0);
    CHECK(ws_tls_handshake(p.c) == WS_TLS_ERROR);    /* and stays failed */
    free_pair(&p);
    ws_tls_ctx_free(cc);
    /* an unknown issuer */
    cc = client_ctx("other");
    CHECK(make_pair(&p, sc, cc, "localhost") == 0);
    CHECK(handshake(&p, NULL) == WS_TLS_ERROR);
    CHECK(strncmp(ws_tls_error(p.c), "certificate verify failed: ", 27) == 0);
    free_pair(&p);
    ws_tls_ctx_free(cc);
    ws_tls_ctx_free(sc);
}

/* Client certificates: a server with cafile and verify REQUIRE accepts a
 * client presenting a certificate signed by it, refuses one without. */
static void test_client_certificates(void) {
    char err[256];
    ws_tls_opts o;
    memset(&o, 0, sizeof o);
    o.server = 1;
    o.certificate = file("host", "pem");
    o.key = file("host", "key");
    o.cafile = file("wild", "pem");
    o.verify = WS_TLS_VERIFY_REQUIRE;
    ws_tls_ctx *sc = ws_tls_ctx_new(&o, err, sizeof err);
    CHECK(sc != NULL);
    memset(&o, 0, sizeof o);
    o.cafile = file("host", "pem");
    o.verify = WS_TLS_VERIFY_REQUIRE;
    ws_tls_ctx *anon = ws_tls_ctx_new(&o, err, sizeof err);
    o.certificate = file("wild", "pem");
    o.key = file("wild", "key");
    ws_tls_ctx *signed_ = ws_tls_ctx_new(&o, err, sizeof err);
    CHECK(anon != NULL && signed_ != NULL);
    pair p;
    int rs;
    char buf[8];
    size_t n;
    ws_tls_cert cert;
    char name[64];
    CHECK(make_pair(&p, sc, signed_, "localhost") == 0);
    CHECK(ws_tls_peer_cert(p.s, &cert) == 0);              /* none before the handshake */
    CHECK(handshake(&p, &rs) == WS_TLS_DONE && rs == WS_TLS_DONE);
    /* each side sees the other's certificate, verified */
    CHECK(ws_tls_peer_cert(p.s, &cert) == 1 && cert.verified);
    CHECK(strcmp(cert.subject, "CN=wild") == 0 && strcmp(cert.issuer, "CN=wild") == 0);
    CHECK(strlen(cert.sha256) == 64 && cert.not_after - cert.not_before == 3660);
    CHECK(ws_tls_peer_name(p.s, 0, name, sizeof name) == 1 && strcmp(name, "*.example.com") == 0);
    CHECK(ws_tls_peer_name(p.s, 1, name, sizeof name) == 1 && strcmp(name, "f*.example.org") == 0);
    CHECK(ws_tls_peer_name(p.s, 2, name, sizeof name) == 0);
    CHECK(ws_tls_peer_cert(p.c, &cert) == 1 && cert.verified && strcmp(cert.subject, "CN=localhost") == 0);
    CHECK(ws_tls_peer_name(p.c, 2, name, sizeof name) == 2 && strcmp(name, "::1") == 0);
    free_pair(&p);
    CHECK(make_pair(&p, sc, anon, "localhost") == 0);
    handshake(&p, &rs);
    /* (TLS 1.3: the client learns of the refusal on its first read) */
    CHECK(rs == WS_TLS_ERROR);
    CHECK(ws_tls_read(p.c, buf, sizeof buf, &n) != WS_TLS_DONE);
    free_pair(&p);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(anon);
    ws_tls_ctx_free(signed_);
}

/* Plain HTTP instead of a ClientHello: its own error, and nothing sent */
static void test_plain_http(void) {
    ws_tls_ctx *sc = server_ctx("host"), *cc = client_ctx("host");
    pair p;
    char buf[64];
    CHECK(make_pair(&p, sc, cc, "localhost") == 0);
    CHECK(write(p.fd[1], "GET / HTTP/1.1\r\n\r\n", 18) == 18);
    CHECK(ws_tls_handshake(p.s) == WS_TLS_ERROR);
    CHECK(strcmp(ws_tls_error(p.s), WS_TLS_HTTP_REQUEST) == 0);
    CHECK(read(p.fd[1], buf, sizeof buf) < 0 && errno == EAGAIN);
    free_pair(&p);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(cc);
}

/* TLS 1.2 (a client of OpenSSL's own, capped at 1.2): close_notify ends
 * both directions, and ours is owed at once */
static void test_close_tls12(void) {
    ws_tls_ctx *sc = server_ctx("host");
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    pair p = {{-1, -1}, NULL, NULL};
    char buf[64], err[256];
    size_t n;
    CHECK(cctx && SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION));
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    for (int i = 0; i < 2; i++)
        fcntl(p.fd[i], F_SETFL, fcntl(p.fd[i], F_GETFL) | O_NONBLOCK);
    p.s = ws_tls_new(sc, p.fd[0], NULL, err, sizeof err);
    SSL *c = SSL_new(cctx);
    CHECK(p.s && c && SSL_set_fd(c, p.fd[1]));
    SSL_set_connect_state(c);
    int rs = WS_TLS_WANT_READ, rc = -1;
    for (int i = 0; i < 50 && (rs > 0 || rc != 1); i++) {
        if (rc != 1)
            rc = SSL_do_handshake(c);
        if (rs > 0)
            rs = ws_tls_handshake(p.s);
    }
    CHECK(rc == 1 && rs == WS_TLS_DONE && SSL_version(c) == TLS1_2_VERSION);
    SSL_shutdown(c);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_CLOSED);
    CHECK(ws_tls_write(p.s, "late", 4, &n) == WS_TLS_CLOSED);
    ws_tls_shutdown(p.s);
    CHECK(SSL_read(c, buf, sizeof buf) == 0 && SSL_get_error(c, 0) == SSL_ERROR_ZERO_RETURN);
    SSL_free(c);
    SSL_CTX_free(cctx);
    free_pair(&p);
    ws_tls_ctx_free(sc);
}

static void test_io(void) {
    ws_tls_ctx *sc = server_ctx("host"), *cc = client_ctx("host");
    pair p;
    char buf[4096];
    size_t n;
    CHECK(make_pair(&p, sc, cc, "localhost") == 0);
    int rs;
    CHECK(handshake(&p, &rs) == WS_TLS_DONE);
    CHECK(rs == WS_TLS_DONE);
    CHECK(ws_tls_ready(p.c) && ws_tls_ready(p.s));
    /* nothing to read yet */
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_WANT_READ && n == 0);
    CHECK(ws_tls_write(p.c, "hello world", 11, &n) == WS_TLS_DONE && n == 11);
    /* a short read leaves the rest of the record pending in OpenSSL */
    CHECK(ws_tls_read(p.s, buf, 5, &n) == WS_TLS_DONE && n == 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(ws_tls_pending(p.s));
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 6);
    CHECK(!ws_tls_pending(p.s));
    /* a full socket: writes stop with WANT_WRITE and no progress, then
     * resume with the same bytes once the peer reads */
    static char big[1 << 20];
    memset(big, 'x', sizeof big);
    size_t sent = 0, got = 0;
    int r = WS_TLS_DONE, rounds = 0;
    while (sent < sizeof big && rounds++ < 10000) {
        r = ws_tls_write(p.s, big + sent, sizeof big - sent, &n);
        if (r != WS_TLS_DONE)
            break;
        CHECK(n > 0);
        sent += n;
    }
    CHECK(r == WS_TLS_WANT_WRITE && n == 0 && sent < sizeof big);
    rounds = 0;
    while (got < sizeof big && rounds++ < 100000) {
        if (ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_DONE) {
            got += n;
            continue;
        }
        if (sent < sizeof big && ws_tls_write(p.s, big + sent, sizeof big - sent, &n) == WS_TLS_DONE)
            sent += n;
    }
    CHECK(got == sizeof big && sent == sizeof big);
    /* close_notify (TLS 1.3): the peer reads "closed"; the sender can
     * still read, and the peer still write until it closes too (RFC 8446
     * section 6.1): what it answers after the close_notify arrives */
    ws_tls_shutdown(p.c);
    CHECK(ws_tls_write(p.c, "x", 1, &n) == WS_TLS_CLOSED && n == 0);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_CLOSED);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_CLOSED && !ws_tls_pending(p.s));
    CHECK(ws_tls_write(p.s, "late", 4, &n) == WS_TLS_DONE && n == 4);
    CHECK(ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_DONE && n == 4 && memcmp(buf, "late", 4) == 0);
    CHECK(ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_WANT_READ);
    ws_tls_shutdown(p.s);
    CHECK(ws_tls_write(p.s, "x", 1, &n) == WS_TLS_CLOSED);
    CHECK(ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_CLOSED && n == 0);
    CHECK(strcmp(ws_tls_error(p.c), "closed") == 0);
    free_pair(&p);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(cc);
}

/* Read ahead: three records written together are taken from the socket by
 * the first read and all decrypted by it (up to the buffer's size, the rest
 * by the next read); want-read comes only once they are all used, with the
 * socket drained, and a record split across the socket waits for its rest
 * (no "pending" for a part), also behind a whole record. A flood of tiny
 * records takes more than one read; close_notify after data comes after it. */
static void test_read_ahead(void) {
    ws_tls_ctx *sc = server_ctx("host"), *cc = client_ctx("host");
    pair p;
    char buf[64], peek[8];
    size_t n;
    CHECK(make_pair(&p, sc, cc, "localhost") == 0 && handshake(&p, NULL) == WS_TLS_DONE);
    /* (the server's session ticket, read by the client first) */
    CHECK(ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_WANT_READ);
    for (int round = 0; round < 2; round++) {
        CHECK(ws_tls_write(p.c, "one", 3, &n) == WS_TLS_DONE && n == 3);
        CHECK(ws_tls_write(p.c, "two", 3, &n) == WS_TLS_DONE && n == 3);
        CHECK(ws_tls_write(p.c, "three", 5, &n) == WS_TLS_DONE && n == 5);
        if (round == 0) {
            CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 11 &&
                  memcmp(buf, "onetwothree", 11) == 0);
        } else {   /* a short buffer: the records' bytes in order, over two reads */
            CHECK(ws_tls_read(p.s, buf, 5, &n) == WS_TLS_DONE && n == 5 && memcmp(buf, "onetw", 5) == 0);
            CHECK(ws_tls_pending(p.s));
            CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 6 &&
                  memcmp(buf, "othree", 6) == 0);
        }
        /* all three records left the socket in that one read */
        CHECK(recv(p.fd[0], peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN);
        CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_WANT_READ && n == 0);
        CHECK(!ws_tls_pending(p.s));
    }
    /* a record whose first bytes came alone, first alone, then behind a
     * whole record: want-read (or the whole record only), nothing pending,
     * then the record once its rest came (taken off the server's socket
     * raw, and written back through the client's end in pieces) */
    char rec[256];
    CHECK(ws_tls_write(p.c, "split", 5, &n) == WS_TLS_DONE && n == 5);
    ssize_t len = recv(p.fd[0], rec, sizeof rec, MSG_DONTWAIT);
    CHECK(len > 10 && send(p.fd[1], rec, 8, 0) == 8);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_WANT_READ && n == 0);
    CHECK(!ws_tls_pending(p.s));
    CHECK(send(p.fd[1], rec + 8, (size_t)len - 8, 0) == len - 8);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 5 && memcmp(buf, "split", 5) == 0);
    CHECK(ws_tls_write(p.c, "whole", 5, &n) == WS_TLS_DONE && n == 5);
    CHECK(ws_tls_write(p.c, "split", 5, &n) == WS_TLS_DONE && n == 5);
    len = recv(p.fd[0], rec, sizeof rec, MSG_DONTWAIT);
    CHECK(len > 30 && send(p.fd[1], rec, (size_t)len - 8, 0) == len - 8);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 5 && memcmp(buf, "whole", 5) == 0);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_WANT_READ && n == 0);
    CHECK(!ws_tls_pending(p.s));
    CHECK(send(p.fd[1], rec + len - 8, 8, 0) == 8);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 5 && memcmp(buf, "split", 5) == 0);
    /* a flood of tiny records: WS_TLS_READ_RECORDS per read, in order */
    char many[WS_TLS_READ_RECORDS + 36], back[sizeof many];
    for (size_t i = 0; i < sizeof many; i++) {
        many[i] = (char)('a' + i % 26);
        CHECK(ws_tls_write(p.c, many + i, 1, &n) == WS_TLS_DONE && n == 1);
    }
    CHECK(ws_tls_read(p.s, back, sizeof back, &n) == WS_TLS_DONE && n == WS_TLS_READ_RECORDS);
    /* the other 36 came in the same socket read: pending, as readiness
     * will not announce them */
    CHECK(recv(p.fd[0], peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN);
    CHECK(ws_tls_pending(p.s));
    CHECK(ws_tls_read(p.s, back + n, sizeof back - n, &n) == WS_TLS_DONE && n == 36);
    CHECK(memcmp(back, many, sizeof many) == 0);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_WANT_READ && n == 0);
    /* the last data and close_notify in one socket read: the data, then "closed" */
    CHECK(ws_tls_write(p.c, "bye", 3, &n) == WS_TLS_DONE && n == 3);
    ws_tls_shutdown(p.c);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 3 && memcmp(buf, "bye", 3) == 0);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_CLOSED && n == 0);
    free_pair(&p);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(cc);
}

/* Gathered writes: one ws_tls_write encrypts several 16 KiB records and
 * writes them together (OpenSSL alone writes each with its own write(2)).
 * Progress counts whole records only; records made but not yet on the
 * socket are reported by a later call with the same bytes, never encrypted
 * twice; a peer gone while records wait ends in CLOSED. */
static void test_gathered_writes(void) {
    ws_tls_ctx *sc = server_ctx("host"), *cc = client_ctx("host");
    pair p;
    char buf[4096];
    size_t n;
    CHECK(make_pair(&p, sc, cc, "localhost") == 0 && handshake(&p, NULL) == WS_TLS_DONE);
    CHECK(ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_WANT_READ);   /* (the ticket) */
    static unsigned char big[1 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 7 + i / 5003);
    /* the socket pair takes about 200 KiB: several records in the first
     * call, and what it reports is exactly the whole records on the wire
     * (the peer can read those and no more) */
    CHECK(ws_tls_write(p.s, big, sizeof big, &n) == WS_TLS_DONE);
    CHECK(n % 16384 == 0 && n >= 2 * 16384 && n <= 16 * 16384);
    size_t sent = n, got = 0;
    int ok = 1, rounds = 0;
    while (ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_DONE && rounds++ < 1000) {
        ok &= memcmp(buf, big + got, n) == 0;
        got += n;
    }
    CHECK(ok && got == sent);
    /* until the socket is full: then no progress, and the records made
     * meanwhile wait; each later report is whole records, every byte
     * arrives once and in order */
    int r = WS_TLS_DONE;
    rounds = 0;
    while (r == WS_TLS_DONE && rounds++ < 100) {
        r = ws_tls_write(p.s, big + sent, sizeof big - sent, &n);
        CHECK(n % 16384 == 0);
        sent += n;
    }
    CHECK(r == WS_TLS_WANT_WRITE && n == 0 && sent < sizeof big);
    rounds = 0;
    while (got < sizeof big && rounds++ < 100000) {
        if (ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_DONE) {
            ok &= memcmp(buf, big + got, n) == 0;
            got += n;
            continue;
        }
        if (sent < sizeof big && ws_tls_write(p.s, big + sent, sizeof big - sent, &n) == WS_TLS_DONE) {
            ok &= n % 16384 == 0 || sent + n == sizeof big;
            sent += n;
        }
    }
    CHECK(ok && got == sizeof big && sent == sizeof big);
    CHECK(ws_tls_read(p.c, buf, sizeof buf, &n) == WS_TLS_WANT_READ);   /* nothing twice */
    /* records waiting for a full socket when the peer goes: CLOSED, then dead */
    sent = 0;
    while (ws_tls_write(p.s, big + sent, sizeof big - sent, &n) == WS_TLS_DONE && sent + n < sizeof big)
        sent += n;
    close(p.fd[1]);
    p.fd[1] = -1;
    CHECK(ws_tls_write(p.s, big + sent, sizeof big - sent, &n) == WS_TLS_CLOSED && n == 0);
    CHECK(strncmp(ws_tls_error(p.s), "closed: ", 8) == 0);
    CHECK(ws_tls_write(p.s, big, 1, &n) == WS_TLS_CLOSED && n == 0);
    CHECK(!ws_tls_ready(p.s));
    free_pair(&p);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(cc);
}

/* ws_fanout over TLS: an idle session and a plain descriptor take a frame
 * whole in one call; a session whose peer does not read takes part of a
 * big one (AGAIN), and the rest goes out later from offset `sent` with the
 * same bytes, as the Lua queue writes it; the peer reads it all, in order. */
static void test_fanout(void) {
    ws_tls_ctx *sc = server_ctx("host"), *cc = client_ctx("host");
    pair idle, full;
    CHECK(make_pair(&idle, sc, cc, "localhost") == 0 && handshake(&idle, NULL) == WS_TLS_DONE);
    CHECK(make_pair(&full, sc, cc, "localhost") == 0 && handshake(&full, NULL) == WS_TLS_DONE);
    int plain[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, plain) == 0);
    fcntl(plain[0], F_SETFL, fcntl(plain[0], F_GETFL) | O_NONBLOCK);
    char buf[4096];
    size_t n;
    ws_fan_target t[3] = {{idle.fd[0], idle.s, 0, 0, 0}, {full.fd[0], full.s, 0, 0, 0}, {plain[0], NULL, 0, 0, 0}};
    CHECK(ws_fanout(t, 3, "frame", 5) == 0);
    CHECK(t[0].sent == 5 && t[1].sent == 5 && t[2].sent == 5);
    CHECK(ws_tls_read(idle.c, buf, sizeof buf, &n) == WS_TLS_DONE && n == 5 && memcmp(buf, "frame", 5) == 0);
    CHECK(ws_tls_read(full.c, buf, sizeof buf, &n) == WS_TLS_DONE && n == 5 && memcmp(buf, "frame", 5) == 0);
    CHECK(read(plain[1], buf, sizeof buf) == 5 && memcmp(buf, "frame", 5) == 0);

    static unsigned char big[1 << 21];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 13 + i / 4093);
    CHECK(ws_fanout(&t[1], 1, big, sizeof big) == 1);
    CHECK(t[1].result == WS_FAN_AGAIN && t[1].sent > 0 && t[1].sent < sizeof big && t[1].err == 0);
    size_t sent = t[1].sent, got = 0;
    int ok = 1, rounds = 0;
    while (got < sizeof big && rounds++ < 100000) {
        if (ws_tls_read(full.c, buf, sizeof buf, &n) == WS_TLS_DONE) {
            ok &= memcmp(buf, big + got, n) == 0;
            got += n;
            continue;
        }
        if (sent < sizeof big && ws_tls_write(full.s, big + sent, sizeof big - sent, &n) == WS_TLS_DONE)
            sent += n;
    }
    CHECK(ok && got == sizeof big && sent == sizeof big);
    /* a dead session (an EOF without close_notify) fails without
     * reaching OpenSSL */
    close(idle.fd[1]);
    idle.fd[1] = -1;
    CHECK(ws_tls_read(idle.s, buf, sizeof buf, &n) == WS_TLS_CLOSED);
    CHECK(ws_fanout(&t[0], 1, "late", 4) == 1 && t[0].result == WS_FAN_FAILED && t[0].sent == 0);
    close(plain[0]);
    close(plain[1]);
    free_pair(&idle);
    free_pair(&full);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(cc);
}

/* Issue 11: the peer sends its last bytes and closes at once; our reads and
 * writes must all end in CLOSED, and a dead session must not reach OpenSSL. */
static void test_vanish(void) {
    ws_tls_ctx *sc = server_ctx("host"), *cc = client_ctx("host");
    char buf[256];
    size_t n;
    for (int variant = 0; variant < 3; variant++) {
        pair p;
        CHECK(make_pair(&p, sc, cc, "localhost") == 0);
        CHECK(handshake(&p, NULL) == WS_TLS_DONE);
        CHECK(ws_tls_write(p.c, "close", 5, &n) == WS_TLS_DONE);
        if (variant == 1)
            ws_tls_shutdown(p.c);         /* with close_notify */
        close(p.fd[1]);                   /* the client vanishes */
        p.fd[1] = -1;
        CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_DONE && n == 5);
        int r = WS_TLS_DONE;
        if (variant == 2) {
            /* write first: EPIPE */
            r = ws_tls_write(p.s, "reply", 5, &n);
        } else {
            r = ws_tls_read(p.s, buf, sizeof buf, &n);
            CHECK(r == WS_TLS_CLOSED);
            r = ws_tls_write(p.s, "reply", 5, &n);
        }
        CHECK(r == WS_TLS_CLOSED && n == 0);
        /* dead: every later call says so at once, none makes "progress" */
        for (int i = 0; i < 3; i++) {
            CHECK(ws_tls_write(p.s, "reply", 5, &n) == WS_TLS_CLOSED && n == 0);
            CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_CLOSED && n == 0);
        }
        CHECK(!ws_tls_pending(p.s) && !ws_tls_ready(p.s));
        ws_tls_shutdown(p.s);             /* harmless on a dead session */
        free_pair(&p);
    }
    /* the peer vanishes mid-handshake: an error, not a wait */
    pair p;
    CHECK(make_pair(&p, sc, cc, "localhost") == 0);
    CHECK(ws_tls_handshake(p.c) == WS_TLS_WANT_READ);   /* ClientHello sent */
    close(p.fd[1]);
    p.fd[1] = -1;
    int r = WS_TLS_WANT_READ;
    for (int i = 0; i < 5 && r > 0; i++)
        r = ws_tls_handshake(p.s);
    CHECK(r == WS_TLS_ERROR);
    CHECK(ws_tls_read(p.s, buf, sizeof buf, &n) == WS_TLS_CLOSED);
    CHECK(ws_tls_write(p.s, "x", 1, &n) == WS_TLS_CLOSED);
    free_pair(&p);
    ws_tls_ctx_free(sc);
    ws_tls_ctx_free(cc);
}

int main(void) {
    /* SIGPIPE left as it is: a write to a vanished peer (test_vanish,
     * test_gathered_writes) must give EPIPE, not end this process */
    snprintf(dir, sizeof dir, "/tmp/ws-tls-test-XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    if (make_cert("host", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1") != 0 ||
        make_cert("wild", "wild", "DNS:*.example.com,DNS:f*.example.org") != 0 ||
        make_cert("other", "localhost", "DNS:localhost") != 0) {
        fprintf(stderr, "could not make certificates\n");
        return 2;
    }
    test_contexts();
    test_names();
    test_client_certificates();
    test_plain_http();
    test_io();
    test_close_tls12();
    test_read_ahead();
    test_gathered_writes();
    test_fanout();
    test_vanish();
    const char *names[] = {"host", "wild", "other"};
    for (int i = 0; i < 3; i++) {
        unlink(file(names[i], "pem"));
        unlink(file(names[i], "key"));
        unlink(file(names[i], "enc"));
    }
    rmdir(dir);
    return check_report("test_tls");
}
