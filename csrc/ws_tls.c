/* TLS sessions on non-blocking descriptors over OpenSSL's libssl.
 *
 * Why not LuaSec: its send reports SSL_ERROR_SYSCALL with errno 0 (the peer
 * vanished and OpenSSL already failed the session, so no system call set
 * errno) as "0 bytes sent, no error", and LuaSocket's send loop then spins
 * forever. Here every call makes one attempt, and result() decides, once,
 * what an OpenSSL failure means; a dead session is never handed to OpenSSL
 * again. */
#define _POSIX_C_SOURCE 200809L
#include "ws_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct ws_tls_ctx {
    SSL_CTX *ctx;
    int server;
    int verify;
};

struct ws_tls {
    SSL *ssl;
    int dead;                 /* a fatal result was seen: OpenSSL is not called again */
    int ready;                /* handshake complete */
    int sent_close;           /* close_notify sent */
    char err[200];
};

/* "what: OpenSSL's reason" (just the reason when what is NULL) into
 * err[cap], and an empty error queue. */
static void set_err(char *err, size_t cap, const char *what) {
    unsigned long e = ERR_peek_last_error();
    char buf[160];
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (!reason && e) {
        ERR_error_string_n(e, buf, sizeof buf);
        reason = buf;
    }
    if (!reason)
        reason = "failed";
    if (what)
        snprintf(err, cap, "%s: %s", what, reason);
    else
        snprintf(err, cap, "%s", reason);
    ERR_clear_error();
}

static int is_ip(const char *name) {
    unsigned char buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* ---- contexts ---------------------------------------------------------- */

/* The key's password from the options; without one, an encrypted key
 * fails instead of OpenSSL prompting on the terminal. */
static int password_cb(char *buf, int size, int rwflag, void *u) {
    (void)rwflag;
    const char *pw = (const char *)u;
    size_t n = pw ? strlen(pw) : 0;
    if (!pw || n > (size_t)size)
        return -1;
    memcpy(buf, pw, n);
    return (int)n;
}

ws_tls_ctx *ws_tls_ctx_new(const ws_tls_opts *o, char *err, size_t errcap) {
    ERR_clear_error();
    ws_tls_ctx *c = (ws_tls_ctx *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "not enough memory");
        return NULL;
    }
    c->server = o->server;
    c->verify = o->verify;
    c->ctx = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
    if (!c->ctx) {
        set_err(err, errcap, "SSL_CTX_new");
        goto fail;
    }
    SSL_CTX *ctx = c->ctx;
    if (!SSL_CTX_set_min_proto_version(ctx, o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION)) {
        set_err(err, errcap, "minimum TLS version");
        goto fail;
    }
    /* a client renegotiating TLS 1.2 costs the server a handshake each time */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* partial writes: SSL_write reports each record it wrote, so a full
     * socket costs no progress; the caller's buffer may move between
     * retries (it is a Lua string or a queue entry); idle sessions give
     * their 34 KiB of record buffers back */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    /* read ahead: one read(2) takes what fits in the record buffer (a whole
     * record and the start of the next) instead of a record's header, then
     * its body: half the reads on a large message. A larger buffer would
     * take several records per read, but OpenSSL moves what is left of it
     * to the front before each record (measured: 1.5 extra copies of a
     * 1 MiB message with a 64 KiB buffer). A read that reports want-read
     * has used every whole record it holds, so what stays buffered is part
     * of a record whose rest the socket will announce, as before; the
     * buffer is given back once empty (RELEASE_BUFFERS). */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* one TLS 1.3 session ticket per handshake, as Go's crypto/tls sends,
     * not OpenSSL's two: each costs the server about 6% of a full
     * handshake (encrypting and sending it) and the client parsing it */
    if (o->server)
        SSL_CTX_set_num_tickets(ctx, 1);
    if (o->ciphers && !SSL_CTX_set_cipher_list(ctx, o->ciphers)) {
        set_err(err, errcap, "ciphers");
        goto fail;
    }
    if (o->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, o->ciphersuites)) {
        set_err(err, errcap, "ciphersuites");
        goto fail;
    }
    if (o->certificate) {
        SSL_CTX_set_default_passwd_cb(ctx, password_cb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)o->password);
        int ok = SSL_CTX_use_certificate_chain_file(ctx, o->certificate) == 1;
        if (!ok)
            set_err(err, errcap, "certificate");
        else if (SSL_CTX_use_PrivateKey_file(ctx, o->key ? o->key : o->certificate, SSL_FILETYPE_PEM) != 1) {
            set_err(err, errcap, "key");
            ok = 0;
        } else if (SSL_CTX_check_private_key(ctx) != 1) {
            set_err(err, errcap, "key does not match the certificate");
            ok = 0;
        }
        /* the password is the caller's string: forget it now */
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        if (!ok)
            goto fail;
    } else if (o->server) {
        snprintf(err, errcap, "a server needs a certificate and a key");
        goto fail;
    }
    if (o->cafile || o->capath) {
        if (SSL_CTX_load_verify_locations(ctx, o->cafile, o->capath) != 1) {
            set_err(err, errcap, o->cafile ? "cafile" : "capath");
            goto fail;
        }
        if (o->server && o->cafile) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->cafile);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
        }
    } else if (!o->server && o->verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        set_err(err, errcap, "system trust store");
        goto fail;
    }
    int mode = SSL_VERIFY_NONE;
    if (o->verify == WS_TLS_VERIFY_PEER)
        mode = SSL_VERIFY_PEER;
    else if (o->verify == WS_TLS_VERIFY_REQUIRE)
        mode = SSL_VERIFY_PEER | (o->server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(ctx, mode, NULL);
    ERR_clear_error();
    return c;
fail:
    ws_tls_ctx_free(c);
    return NULL;
}

void ws_tls_ctx_free(ws_tls_ctx *c) {
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

int ws_tls_ctx_is_server(const ws_tls_ctx *c) {
    return c->server;
}

/* ---- sessions ---------------------------------------------------------- */

ws_tls *ws_tls_new(ws_tls_ctx *c, int fd, const char *name, char *err, size_t errcap) {
    ERR_clear_error();
    ws_tls *t = (ws_tls *)calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errcap, "not enough memory");
        return NULL;
    }
    t->ssl = SSL_new(c->ctx);
    if (!t->ssl || !SSL_set_fd(t->ssl, fd)) {
        set_err(err, errcap, "SSL_new");
        goto fail;
    }
    if (c->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (name && *name) {
            int ip = is_ip(name);
            if (!ip && !SSL_set_tlsext_host_name(t->ssl, name)) {
                set_err(err, errcap, "server name");
                goto fail;
            }
            if (c->verify) {
                X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
                /* as RFC 6125 section 6.4.3: a wildcard is a whole left-most label */
                X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (ip ? !X509_VERIFY_PARAM_set1_ip_asc(p, name) : !X509_VERIFY_PARAM_set1_host(p, name, 0)) {
                    set_err(err, errcap, "host name");
                    goto fail;
                }
            }
        }
    }
    return t;
fail:
    ws_tls_free(t);
    return NULL;
}

void ws_tls_free(ws_tls *t) {
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

/* What an OpenSSL call's return value means, decided here only. */
static int result(ws_tls *t, int rc) {
    int saved = errno;
    int e = SSL_get_error(t->ssl, rc);
    switch (e) {
    case SSL_ERROR_NONE:
        return WS_TLS_DONE;
    case SSL_ERROR_WANT_READ:
        return WS_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return WS_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        /* close_notify received: the peer will send nothing more */
        snprintf(t->err, sizeof t->err, "closed");
        t->dead = 1;
        ERR_clear_error();
        return WS_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        /* EOF, a reset, or (errno 0) a session OpenSSL had already failed:
         * the peer is gone either way */
        snprintf(t->err, sizeof t->err, "closed%s%s", saved ? ": " : "", saved ? strerror(saved) : "");
        t->dead = 1;
        ERR_clear_error();
        return WS_TLS_CLOSED;
    default: {
        t->dead = 1;
        long v = SSL_get_verify_result(t->ssl);
        if (!t->ready && (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)) {
            snprintf(t->err, sizeof t->err, "certificate does not match host");
            ERR_clear_error();
        } else if (!t->ready && v != X509_V_OK) {
            snprintf(t->err, sizeof t->err, "certificate verify failed: %s",
                     X509_verify_cert_error_string(v));
            ERR_clear_error();
        } else {
            set_err(t->err, sizeof t->err, NULL);
        }
        /* a broken session after the handshake (a bad record, an EOF
         * without close_notify) means the peer is gone */
        return t->ready ? WS_TLS_CLOSED : WS_TLS_ERROR;
    }
    }
}

/* Before each OpenSSL call: SSL_get_error reads the thread's error queue,
 * and errno tells SSL_ERROR_SYSCALL's EOF from a reset. */
static void prepare(void) {
    ERR_clear_error();
    errno = 0;
}

int ws_tls_handshake(ws_tls *t) {
    if (t->dead)
        return t->ready ? WS_TLS_CLOSED : WS_TLS_ERROR;
    if (t->ready)
        return WS_TLS_DONE;
    prepare();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->ready = 1;
        return WS_TLS_DONE;
    }
    int r = result(t, rc);
    if (r == WS_TLS_CLOSED && !t->ready) {
        /* the peer vanished mid-handshake: an error to the caller, with a reason */
        return WS_TLS_ERROR;
    }
    return r;
}

/* One SSL_read or SSL_write of up to n bytes: WS_TLS_DONE with *done > 0,
 * or a result without progress. */
static int transfer(ws_tls *t, int writing, void *buf, size_t n, size_t *done) {
    *done = 0;
    if (t->dead || (writing && t->sent_close))
        return WS_TLS_CLOSED;
    if (n == 0)
        return WS_TLS_DONE;
    if (n > INT_MAX)
        n = INT_MAX;
    prepare();
    int rc = writing ? SSL_write(t->ssl, buf, (int)n) : SSL_read(t->ssl, buf, (int)n);
    if (rc > 0) {
        t->ready = 1;
        *done = (size_t)rc;
        return WS_TLS_DONE;
    }
    int r = result(t, rc);
    /* never "done" without progress: a caller looping on it would spin */
    if (r == WS_TLS_DONE) {
        t->dead = 1;
        return WS_TLS_CLOSED;
    }
    return r;
}

int ws_tls_read(ws_tls *t, void *buf, size_t n, size_t *got) {
    int r = transfer(t, 0, buf, n, got);
    /* SSL_read returns one record; decrypt the records read-ahead already
     * holds too, so the caller sees all the messages that came in one
     * socket read (and can answer them in one write). At most
     * WS_TLS_READ_RECORDS: a peer's flood of tiny records must not hold the
     * caller. A failure here is left for the next call, which meets it
     * again (t->dead). */
    for (int k = 1; k < WS_TLS_READ_RECORDS && r == WS_TLS_DONE && *got < n &&
                    SSL_has_pending(t->ssl); k++) {
        size_t more;
        if (transfer(t, 0, (char *)buf + *got, n - *got, &more) != WS_TLS_DONE)
            break;
        *got += more;
    }
    return r;
}

int ws_tls_write(ws_tls *t, const void *buf, size_t n, size_t *put) {
    return transfer(t, 1, (void *)buf, n, put);
}

int ws_tls_pending(const ws_tls *t) {
    /* decrypted bytes only: a partial record OpenSSL holds waits for the
     * rest of it from the socket, which readiness does announce */
    return !t->dead && SSL_pending(t->ssl) > 0;
}

void ws_tls_shutdown(ws_tls *t) {
    if (t->dead || !t->ready || t->sent_close)
        return;
    t->sent_close = 1;
    prepare();
    /* one attempt; the result does not matter: the descriptor is about to
     * be shut or closed, and the peer may already be gone */
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int ws_tls_ready(const ws_tls *t) {
    return t->ready && !t->dead;
}

const char *ws_tls_error(const ws_tls *t) {
    return t->err;
}
