/* TLS sessions on non-blocking descriptors over OpenSSL's libssl.
 *
 * Why not LuaSec: its send reports SSL_ERROR_SYSCALL with errno 0 (the peer
 * vanished and OpenSSL already failed the session, so no system call set
 * errno) as "0 bytes sent, no error", and LuaSocket's send loop then spins
 * forever. Here every call makes one attempt, and result() decides, once,
 * what an OpenSSL failure means; a dead session is never handed to OpenSSL
 * again, but for the close_notify owed to a peer that sent one. */
#define _POSIX_C_SOURCE 200809L
#include "ws_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ws_io.h"

struct ws_tls_ctx {
    SSL_CTX *ctx;
    int server;
    int verify;
};

/* Records one ws_tls_write encrypts before it writes them, and their most
 * bytes (OpenSSL's socket BIO writes each 16 KiB record with its own
 * write(2), and each wakes the reader). */
#define WRITE_RECORDS 16
#define WRITE_BYTES (256 * 1024)
/* Bytes one read(2) asks for (OpenSSL's read-ahead took about one record) */
#define READ_BYTES (256 * 1024)
/* Records one ws_tls_read hands to OpenSSL at most: records that carry no
 * data (renegotiations refused, key updates) are all taken inside one
 * SSL_read for as long as more come, which held the caller's loop for as
 * long as a peer's burst of them lasted (100,000 key updates: 1.5 s) */
#define READ_RECORDS_MAX (4 * WS_TLS_READ_RECORDS)
/* A TLS record's most bytes: header, 16 KiB and the cipher's expansion */
#define RECORD_MAX (5 + 16384 + 256)

struct ws_tls {
    SSL *ssl;
    int fd;
    int dead;                 /* a fatal result was seen: OpenSSL is not called again */
    int ready;                /* handshake complete */
    int sent_close;           /* close_notify sent */
    int got_close;            /* close_notify received: reads end; TLS 1.2: dead too,
                               * TLS 1.3: writes go on until ours (RFC 8446 6.1) */
    int eof;                  /* read(2) returned 0 (BIO_CTRL_EOF) */
    int werr;                 /* errno of a failed write(2), 0 if none */
    /* the records handed to OpenSSL since the handshake (see track): the
     * header's bytes so far, then the body's bytes still to go */
    unsigned char hdr[5];
    size_t hdr_n, body_left;
    int records;              /* records this ws_tls_read may still start (-1: any) */
    int paused;               /* it stopped between two: they were its share */
    /* bytes read from the socket, not yet taken by OpenSSL: in[in_pos, in_len) */
    unsigned char *in;
    size_t in_pos, in_len, in_cap;
    /* encrypted bytes not yet on the socket: out[out_pos, out_len) */
    unsigned char *out;
    size_t out_pos, out_len, out_cap;
    /* the records ws_tls_write made into out (only once out was empty):
     * where each ends in out, and its plaintext bytes; [rec_sent, rec_made)
     * are not yet wholly written */
    size_t rec_end[WRITE_RECORDS], rec_plain[WRITE_RECORDS];
    int rec_sent, rec_made;
    size_t flushed;           /* plaintext of records written since the last report */
    size_t read_out;          /* bytes OpenSSL wrote into out while ws_tls_read ran
                               * (alerts, key updates), since out was last empty */
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

/* "what: path: why" for a file OpenSSL could not use: why is the system's
 * reason (the errno of its fopen) when there is one, which says more than
 * OpenSSL's last entry ("system lib"); the error queue is left empty. */
static void set_file_err(char *err, size_t cap, const char *what, const char *path) {
    unsigned long e, sys = 0, pem = 0, last = ERR_peek_last_error();
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) == ERR_LIB_SYS && !sys)
            sys = e;
        else if (ERR_GET_LIB(e) == ERR_LIB_PEM && !pem)
            pem = e;
    if (sys) {
        snprintf(err, cap, "%s: %s: %s", what, path, strerror(ERR_GET_REASON(sys)));
        return;
    }
    /* (OpenSSL opens a directory, then reads no PEM from it) */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, cap, "%s: %s: %s", what, path, strerror(EISDIR));
        return;
    }
    /* the PEM reader's own reason ("no start line": the wrong file, or an
     * empty one; "bad end line": cut short): OpenSSL's last is "PEM lib" */
    if (pem) {
        const char *r = ERR_reason_error_string(pem);
        snprintf(err, cap, "%s: %s: not a PEM %s (%s)", what, path, what, r ? r : "unreadable");
        return;
    }
    /* (a key goes through OpenSSL 3's decoders: nothing more precise) */
    if (last && ERR_GET_REASON(last) == ERR_R_PEM_LIB) {
        snprintf(err, cap, "%s: %s: cannot read a PEM %s from it (the wrong file, cut short, or a wrong password)",
                 what, path, what);
        return;
    }
    /* (OpenSSL's own reason: "bad decrypt") */
    const char *reason = last ? ERR_reason_error_string(last) : NULL;
    snprintf(err, cap, "%s: %s: %s", what, path, reason ? reason : "failed");
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

#define SERVER_CIPHERS                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

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
    /* one TLS 1.3 session ticket per handshake, as Go's crypto/tls sends,
     * not OpenSSL's two: each costs the server about 6% of a full
     * handshake (encrypting and sending it) and the client parsing it */
    if (o->server) {
        SSL_CTX_set_num_tickets(ctx, 1);
        /* a session may be resumed only where it was made: without a
         * context id, OpenSSL refuses every resumption once it verifies
         * clients (internal_error: "session id context uninitialized") */
        static const unsigned char sid_ctx[] = "lua-ws";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    }
    /* a server's TLS 1.2 default: forward-secret AEAD suites only, as
     * Mozilla's "intermediate" profile (OpenSSL's own default still takes
     * CBC with SHA-1 and static RSA key exchange); a client keeps OpenSSL's,
     * to reach older servers */
    const char *ciphers = o->ciphers ? o->ciphers : o->server ? SERVER_CIPHERS : NULL;
    if (ciphers && !SSL_CTX_set_cipher_list(ctx, ciphers)) {
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
            set_file_err(err, errcap, "certificate", o->certificate);
        else if (SSL_CTX_use_PrivateKey_file(ctx, o->key ? o->key : o->certificate, SSL_FILETYPE_PEM) != 1) {
            set_file_err(err, errcap, "key", o->key ? o->key : o->certificate);
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
            set_file_err(err, errcap, o->cafile ? "cafile" : "capath", o->cafile ? o->cafile : o->capath);
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

/* ---- the socket under OpenSSL -------------------------------------------
 * A BIO of our own instead of OpenSSL's socket BIO, so that one system call
 * moves many records: reads take up to READ_BYTES into t->in, which OpenSSL
 * then takes record by record; writes are gathered in t->out and written by
 * flush(), after ws_tls_write made up to WRITE_RECORDS records, or when
 * OpenSSL flushes (the handshake's flights, alerts). 1 MiB wss:// echo:
 * 144 system calls per message before, 19 after. */

/* Write out[out_pos..] until done or the socket is full; whole records
 * count as written (t->flushed). 0, or -1 with t->werr on a failed write. */
static int flush(ws_tls *t) {
    while (t->out_pos < t->out_len) {
        ssize_t w = ws_fd_send(t->fd, t->out + t->out_pos, t->out_len - t->out_pos);
        if (w > 0) {
            t->out_pos += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        t->werr = w < 0 ? errno : EPIPE;
        return -1;
    }
    for (; t->rec_sent < t->rec_made && t->rec_end[t->rec_sent] <= t->out_pos; t->rec_sent++)
        t->flushed += t->rec_plain[t->rec_sent];
    if (t->out_pos == t->out_len) {
        /* an idle session holds no buffer */
        free(t->out);
        t->out = NULL;
        t->out_pos = t->out_len = t->out_cap = 0;
        t->rec_sent = t->rec_made = 0;
        t->read_out = 0;
    }
    return 0;
}

static int bio_write(BIO *b, const char *data, int len) {
    ws_tls *t = (ws_tls *)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t n = (size_t)len;
    if (n > t->out_cap - t->out_len) {
        size_t cap = t->out_cap ? t->out_cap * 2 : 4096;
        while (cap < t->out_len + n)
            cap *= 2;
        unsigned char *p = (unsigned char *)realloc(t->out, cap);
        if (!p)
            return -1;
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, data, n);
    t->out_len += n;
    if (t->records >= 0)
        t->read_out += n;
    return len;
}

/* Follow the records in the bytes handed to OpenSSL, so that ws_tls_read
 * can stop between two of them. */
static void track(ws_tls *t, const unsigned char *p, size_t n) {
    while (n > 0) {
        if (t->body_left > 0) {
            size_t k = n < t->body_left ? n : t->body_left;
            t->body_left -= k;
            p += k;
            n -= k;
            continue;
        }
        if (t->hdr_n == 0 && t->records > 0)
            t->records--;
        t->hdr[t->hdr_n++] = *p++;
        n--;
        if (t->hdr_n == 5) {
            t->body_left = (size_t)t->hdr[3] << 8 | t->hdr[4];
            t->hdr_n = 0;
        }
    }
}

/* OpenSSL reads each record's header, then its body: both come from
 * t->in, which one read(2) refills once it is used up. */
static int bio_read(BIO *b, char *data, int len) {
    ws_tls *t = (ws_tls *)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->records >= 0 && t->hdr_n == 0 && t->body_left == 0) {
        /* between two records in ws_tls_read: what OpenSSL wrote on its
         * own while reading (an alert for each renegotiation refused) must
         * not pile up for a peer that does not read it, growing with every
         * record that comes: the peer is dropped */
        if (t->read_out > WRITE_BYTES && (flush(t) != 0 || t->read_out > WRITE_BYTES)) {
            errno = t->werr ? t->werr : ENOBUFS;
            return -1;
        }
        /* and the caller's turn after its share of records */
        if (t->records == 0) {
            t->paused = 1;
            BIO_set_retry_read(b);
            return -1;
        }
    }
    if (t->in_pos == t->in_len) {
        if (t->in_cap < READ_BYTES) {
            free(t->in);
            t->in_cap = 0;
            if (!(t->in = (unsigned char *)malloc(READ_BYTES)))
                return -1;
            t->in_cap = READ_BYTES;
        }
        ssize_t r = ws_fd_read(t->fd, t->in, READ_BYTES);
        if (r <= 0) {
            t->in_pos = t->in_len = 0;
            if (r == 0)
                t->eof = 1;
            else if (errno == EAGAIN || errno == EWOULDBLOCK)
                BIO_set_retry_read(b);
            return (int)r;
        }
        t->in_pos = 0;
        t->in_len = (size_t)r;
    }
    size_t n = t->in_len - t->in_pos;
    if (n > (size_t)len)
        n = (size_t)len;
    memcpy(data, t->in + t->in_pos, n);
    t->in_pos += n;
    track(t, (const unsigned char *)data, n);
    return (int)n;
}

/* After a call that read: an empty input buffer is given back. What is
 * left is either whole records beyond the caller's limits, which it reads
 * next (kept in place: moving them at each call would cost a flood of tiny
 * records 256 KiB per 64 of them), or the start of a record whose rest is
 * still on its way: that moves into a buffer of its own size, so a slow or
 * stalled peer holds no more than it sent. */
static void settle_input(ws_tls *t) {
    size_t left = t->in_len - t->in_pos;
    if (left == 0) {
        free(t->in);
        t->in = NULL;
        t->in_pos = t->in_len = t->in_cap = 0;
    } else if (left < RECORD_MAX && t->in_cap > left) {
        memmove(t->in, t->in + t->in_pos, left);
        unsigned char *p = (unsigned char *)realloc(t->in, left);
        if (p) {
            t->in = p;
            t->in_cap = left;
        }
        t->in_pos = 0;
        t->in_len = left;
    }
}

/* A whole record waits in t->in (OpenSSL takes records from its start: a
 * call ends with OpenSSL between records, or with t->in used up). */
static int record_waiting(const ws_tls *t) {
    size_t left = t->in_len - t->in_pos;
    if (left < 5)
        return 0;
    const unsigned char *h = t->in + t->in_pos;
    return left - 5 >= ((size_t)h[3] << 8 | h[4]);
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    ws_tls *t = (ws_tls *)BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        BIO_clear_retry_flags(b);
        if (flush(t) != 0) {
            errno = t->werr;
            return -1;
        }
        if (t->out_pos < t->out_len) {
            BIO_set_retry_write(b);
            return -1;
        }
        return 1;
    case BIO_CTRL_EOF:
        return t->eof;
    case BIO_CTRL_WPENDING:
        return (long)(t->out_len - t->out_pos);
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static BIO_METHOD *bio_method;
static CRYPTO_ONCE bio_once = CRYPTO_ONCE_STATIC_INIT;

static void bio_init(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ws_tls socket");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl))
        bio_method = m;
    else
        BIO_meth_free(m);
}

/* ---- sessions ---------------------------------------------------------- */

ws_tls *ws_tls_new(ws_tls_ctx *c, int fd, const char *name, char *err, size_t errcap) {
    ERR_clear_error();
    ws_tls *t = (ws_tls *)calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errcap, "not enough memory");
        return NULL;
    }
    t->fd = fd;
    t->records = -1;
    t->ssl = SSL_new(c->ctx);
    BIO *b = NULL;
    if (!t->ssl || !CRYPTO_THREAD_run_once(&bio_once, bio_init) || !bio_method ||
        !(b = BIO_new(bio_method))) {
        set_err(err, errcap, "SSL_new");
        goto fail;
    }
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
    SSL_set_bio(t->ssl, b, b);   /* (one reference, for both directions) */
    if (c->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        /* a check against no name passes any trusted certificate: with
         * verify on, a missing name fails here instead */
        if (c->verify && !(name && *name)) {
            snprintf(err, errcap, "no server name to check the certificate against");
            goto fail;
        }
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
    free(t->in);
    free(t->out);
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
        /* close_notify received: the peer will send nothing more. TLS 1.3
         * closes only its write side, so ours stays open: what we queued
         * before we saw it (an answer, an echo, our close frame) still
         * goes out. TLS 1.2 wants close_notify at once, discarding writes. */
        snprintf(t->err, sizeof t->err, "closed");
        t->got_close = 1;
        t->dead = !t->ready || SSL_version(t->ssl) < TLS1_3_VERSION;
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
        } else if (!t->ready && ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_SSL &&
                   (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_HTTP_REQUEST ||
                    ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_HTTPS_PROXY_REQUEST)) {
            /* (OpenSSL sends no alert for it: the wire is still clean) */
            snprintf(t->err, sizeof t->err, "%s", WS_TLS_HTTP_REQUEST);
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
    settle_input(t);
    if (rc == 1) {
        t->ready = 1;
        /* OpenSSL took whole records: the next byte starts one (track) */
        t->hdr_n = t->body_left = 0;
        return WS_TLS_DONE;
    }
    int r = result(t, rc);
    if (r == WS_TLS_CLOSED && !t->ready) {
        /* the peer vanished mid-handshake: an error to the caller, with a reason */
        return WS_TLS_ERROR;
    }
    return r;
}

/* One SSL_read of up to n bytes: WS_TLS_DONE with *done > 0, or a result
 * without progress. */
static int read_once(ws_tls *t, void *buf, size_t n, size_t *done) {
    *done = 0;
    if (t->dead || t->got_close)
        return WS_TLS_CLOSED;
    if (n == 0)
        return WS_TLS_DONE;
    if (n > INT_MAX)
        n = INT_MAX;
    prepare();
    int rc = SSL_read(t->ssl, buf, (int)n);
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

/* A write(2) of gathered records failed: the peer is gone. */
static int write_failed(ws_tls *t) {
    t->dead = 1;
    snprintf(t->err, sizeof t->err, "closed: %s", strerror(t->werr));
    return WS_TLS_CLOSED;
}

int ws_tls_read(ws_tls *t, void *buf, size_t n, size_t *got) {
    t->records = READ_RECORDS_MAX;
    t->paused = 0;
    int r = read_once(t, buf, n, got);
    /* SSL_read returns one record; decrypt the whole records the same
     * socket read brought too, so the caller sees all the messages that came
     * in it (and can answer them in one write). At most
     * WS_TLS_READ_RECORDS: a peer's flood of tiny records must not hold the
     * caller. A failure here is left for the next call, which meets it
     * again (t->dead). */
    for (int k = 1; k < WS_TLS_READ_RECORDS && r == WS_TLS_DONE && *got < n &&
                    record_waiting(t); k++) {
        size_t more;
        if (read_once(t, (char *)buf + *got, n - *got, &more) != WS_TLS_DONE)
            break;
        *got += more;
    }
    t->records = -1;
    settle_input(t);
    if (r == WS_TLS_WANT_READ && t->paused)
        r = WS_TLS_AGAIN;
    return r;
}

/* Encrypts up to WRITE_RECORDS records into t->out, then writes them with
 * one flush. Progress is the plaintext of the records wholly written, as
 * with OpenSSL's own writes: the rest is committed (encrypted, numbered),
 * so the caller's next call starts with those bytes again and is answered
 * from the records already made. */
int ws_tls_write(ws_tls *t, const void *buf, size_t n, size_t *put) {
    *put = 0;
    if (t->dead || t->sent_close)
        return WS_TLS_CLOSED;
    if (n == 0)
        return WS_TLS_DONE;
    if (t->out_pos < t->out_len || t->flushed) {
        if (flush(t) != 0)
            return write_failed(t);
        if (t->flushed) {
            *put = t->flushed < n ? t->flushed : n;
            t->flushed -= *put;
            return WS_TLS_DONE;
        }
        if (t->out_pos < t->out_len)
            return WS_TLS_WANT_WRITE;
    }
    size_t done = 0;
    int r = WS_TLS_DONE;
    prepare();
    while (done < n && t->rec_made < WRITE_RECORDS && t->out_len < WRITE_BYTES) {
        size_t want = n - done < INT_MAX ? n - done : INT_MAX;
        int rc = SSL_write(t->ssl, (const char *)buf + done, (int)want);
        if (rc <= 0) {
            r = result(t, rc);
            if (r == WS_TLS_DONE) {
                t->dead = 1;
                r = WS_TLS_CLOSED;
            }
            break;
        }
        t->ready = 1;
        done += (size_t)rc;
        t->rec_end[t->rec_made] = t->out_len;
        t->rec_plain[t->rec_made++] = (size_t)rc;
    }
    if (t->dead)
        return r;
    if (flush(t) != 0)
        return write_failed(t);
    if (t->flushed) {
        *put = t->flushed;
        t->flushed = 0;
        return WS_TLS_DONE;
    }
    /* never "done" without progress */
    return t->out_pos < t->out_len || r == WS_TLS_DONE ? WS_TLS_WANT_WRITE : r;
}

int ws_tls_pending(const ws_tls *t) {
    /* decrypted bytes, or a whole record read from the socket; the start
     * of a record waits for its rest, which readiness does announce */
    return !t->dead && !t->got_close && (SSL_pending(t->ssl) > 0 || record_waiting(t));
}

void ws_tls_shutdown(ws_tls *t) {
    /* after the peer's close_notify the session reads nothing more, but
     * ours is owed in reply (RFC 8446 section 6.1), under TLS 1.2 too */
    if ((t->dead && !t->got_close) || !t->ready || t->sent_close)
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

/* ---- the peer's certificate --------------------------------------------- */

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#define SSL_get1_peer_certificate SSL_get_peer_certificate
#endif

/* name as one RFC 2253 line into buf[cap]; 0, or -1 if it does not fit
 * (cut short, a name could pass for another) */
static int name_line(X509_NAME *name, char *buf, size_t cap) {
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n = -1;
    if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0)
        n = BIO_get_mem_data(b, &p);
    if (n >= 0 && (size_t)n < cap) {
        memcpy(buf, p, (size_t)n);
        buf[n] = 0;
    } else {
        n = -1;
    }
    BIO_free(b);
    return n < 0 ? -1 : 0;
}

/* Unix seconds of an ASN.1 time (ASN1_TIME_diff: no timegm in C99) */
static long long unix_time(const ASN1_TIME *when) {
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    int ok = epoch && ASN1_TIME_diff(&days, &secs, epoch, when);
    ASN1_TIME_free(epoch);
    return ok ? (long long)days * 86400 + secs : 0;
}

int ws_tls_peer_cert(const ws_tls *t, ws_tls_cert *c) {
    X509 *x = SSL_get1_peer_certificate(t->ssl);
    if (!x)
        return 0;
    int r = 1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    memset(c, 0, sizeof *c);
    if (name_line(X509_get_subject_name(x), c->subject, sizeof c->subject) != 0 ||
        name_line(X509_get_issuer_name(x), c->issuer, sizeof c->issuer) != 0 ||
        !X509_digest(x, EVP_sha256(), md, &len) || len != 32) {
        r = -1;
    } else {
        for (unsigned int i = 0; i < len; i++)
            snprintf(c->sha256 + 2 * i, 3, "%02x", md[i]);
        c->not_before = unix_time(X509_get0_notBefore(x));
        c->not_after = unix_time(X509_get0_notAfter(x));
        c->verified = SSL_get_verify_result(t->ssl) == X509_V_OK;
    }
    X509_free(x);
    ERR_clear_error();
    return r;
}

int ws_tls_peer_name(const ws_tls *t, int i, char *buf, size_t cap) {
    X509 *x = SSL_get1_peer_certificate(t->ssl);
    GENERAL_NAMES *names = x ? (GENERAL_NAMES *)X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
    int kind = 0;
    for (int k = 0; names && k < sk_GENERAL_NAME_num(names) && !kind; k++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, k);
        if (g->type != GEN_DNS && g->type != GEN_IPADD)
            continue;
        const unsigned char *d = ASN1_STRING_get0_data(g->d.ia5);
        size_t n = (size_t)ASN1_STRING_length(g->d.ia5);
        /* a malformed name is left out (a DNS name holding a NUL could
         * pass for another): the rest keep their places */
        if (g->type == GEN_DNS ? memchr(d, 0, n) != NULL || n >= cap : n != 4 && n != 16)
            continue;
        if (i-- > 0)
            continue;
        if (g->type == GEN_DNS) {
            memcpy(buf, d, n);
            buf[n] = 0;
            kind = 1;
        } else if (inet_ntop(n == 4 ? AF_INET : AF_INET6, d, buf, (socklen_t)cap)) {
            kind = 2;
        }
    }
    GENERAL_NAMES_free(names);
    X509_free(x);
    ERR_clear_error();
    return kind;
}

const char *ws_tls_error(const ws_tls *t) {
    return t->err;
}
