/* TLS on a non-blocking descriptor, driven by OpenSSL's libssl.
 * Every call makes at most one attempt and never blocks; SSL_get_error is
 * read in one place (ws_tls.c: result()), and after any fatal result the
 * session is dead: later calls return WS_TLS_CLOSED without calling OpenSSL.
 * Knows nothing of Lua. Records go through a BIO of ours: many records
 * per read(2) and per send(2) (MSG_NOSIGNAL). */
#ifndef WS_TLS_H
#define WS_TLS_H

#include <stddef.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

typedef struct ws_tls_ctx ws_tls_ctx;
typedef struct ws_tls ws_tls;

enum {
    WS_TLS_DONE = 0,
    WS_TLS_WANT_READ = 1,     /* retry once the descriptor is readable */
    WS_TLS_WANT_WRITE = 2,    /* retry once it is writable */
    WS_TLS_AGAIN = 3,         /* ws_tls_read: it read its share, records with no
                               * data; retry soon without waiting (the socket may
                               * hold more, which readiness will not announce) */
    WS_TLS_CLOSED = -1,       /* peer gone (close_notify, EOF, reset, broken session) */
    WS_TLS_ERROR = -2         /* ws_tls_error() says why; the session is dead too */
};

enum { WS_TLS_VERIFY_NONE = 0, WS_TLS_VERIFY_PEER = 1, WS_TLS_VERIFY_REQUIRE = 2 };

typedef struct {
    int server;               /* 1: accept connections; 0: connect */
    const char *certificate;  /* PEM chain file (server: required) */
    const char *key;          /* PEM private key file */
    const char *password;     /* for an encrypted key, or NULL */
    const char *cafile;       /* PEM trust anchors, or NULL */
    const char *capath;       /* hashed directory of trust anchors, or NULL */
    int verify;               /* WS_TLS_VERIFY_*: client default REQUIRE, server NONE */
    const char *ciphers;      /* TLS 1.2 cipher list, or NULL for OpenSSL's default */
    const char *ciphersuites; /* TLS 1.3 suites, or NULL */
    int min_version;          /* 12 or 13 (TLS 1.2 / 1.3); 0: 12 */
} ws_tls_opts;

/* A context; NULL with a message in err[errcap] on failure (bad file, key
 * that does not match the certificate, unknown cipher...). A client without
 * cafile or capath trusts the system store. */
ws_tls_ctx *ws_tls_ctx_new(const ws_tls_opts *o, char *err, size_t errcap);
void ws_tls_ctx_free(ws_tls_ctx *c);
int ws_tls_ctx_is_server(const ws_tls_ctx *c);

/* A session on connected descriptor fd (not owned: the caller closes it).
 * Client: name is sent as SNI unless it is an IP address, and when the
 * context verifies, the certificate must match it (a verifying context
 * with a NULL or empty name fails: nothing to match; RFC 6125: DNS
 * names, one whole left-most wildcard label; IP addresses against iPAddress
 * names). NULL with a message in err on failure. */
ws_tls *ws_tls_new(ws_tls_ctx *c, int fd, const char *name, char *err, size_t errcap);
void ws_tls_free(ws_tls *t);

/* WS_TLS_DONE once the handshake is complete, or a WANT/CLOSED/ERROR
 * result. A failed certificate check reads "certificate verify failed: ..."
 * or "certificate does not match host". */
int ws_tls_handshake(ws_tls *t);

/* ws_tls_error() after a server's handshake met plain HTTP (or a proxy's
 * CONNECT) instead of a ClientHello; nothing was sent to the peer. */
#define WS_TLS_HTTP_REQUEST "http request"

/* Records one ws_tls_read decrypts at most */
#define WS_TLS_READ_RECORDS 64

/* Up to n decrypted bytes into buf: WS_TLS_DONE with *got > 0, or another
 * result. Decrypts the whole records one socket read brought, up to
 * WS_TLS_READ_RECORDS of them. It hands OpenSSL a few times that many
 * records at most: a flood of records that carry no data gets WS_TLS_AGAIN;
 * one whose answers (alerts) pile up unread, WS_TLS_CLOSED. */
int ws_tls_read(ws_tls *t, void *buf, size_t n, size_t *got);
/* After the peer's close_notify reads return WS_TLS_CLOSED; under TLS 1.3
 * (a half-close, RFC 8446 section 6.1) writes go on until
 * ws_tls_shutdown, under TLS 1.2 they return WS_TLS_CLOSED too. */

/* One write of up to n bytes: WS_TLS_DONE with 0 < *put <= n, or another
 * result (no progress). The records it makes may wait for the socket;
 * *put counts only those sent whole. So the next call must start with the
 * bytes after *put (after WANT_*, the same bytes; the buffer may move, it
 * may have grown): what was made of them goes first. */
int ws_tls_write(ws_tls *t, const void *buf, size_t n, size_t *put);

/* 1 when OpenSSL holds decrypted bytes that the descriptor's readiness
 * will not announce. */
int ws_tls_pending(const ws_tls *t);

/* Send close_notify once, best effort, never blocking; reading stays
 * possible, writing does not. */
void ws_tls_shutdown(ws_tls *t);

/* 1 once the handshake is complete and the session is not dead */
int ws_tls_ready(const ws_tls *t);

/* The peer's certificate (a server's, or a client's if it sent one): its
 * subject and issuer as RFC 2253 lines, SHA-256 of its DER as hex, validity
 * in Unix seconds, and whether it verified (SSL_get_verify_result is
 * X509_V_OK: against the trust anchors, and the host on a verifying
 * client). 1, 0 when none was sent, -1 when a name is too long. */
typedef struct {
    char subject[2048], issuer[2048];
    char sha256[65];
    long long not_before, not_after;
    int verified;
} ws_tls_cert;
int ws_tls_peer_cert(const ws_tls *t, ws_tls_cert *c);

/* Its i-th (from 0) subjectAltName DNS name or IP address into buf[cap]:
 * 1 (DNS), 2 (IP), 0 when there are no more. */
int ws_tls_peer_name(const ws_tls *t, int i, char *buf, size_t cap);

/* The message of the last WS_TLS_ERROR (or of the failure that killed the
 * session), "" if none. */
const char *ws_tls_error(const ws_tls *t);

#pragma GCC visibility pop

#endif
