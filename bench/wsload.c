/* wsload: a single-threaded epoll WebSocket load generator for bench/run.sh.
 *
 *   wsload echo    [opts]  N connections echo messages; every byte is checked
 *   wsload upgrade [opts]  C slots churn connect + handshake + close
 *   wsload fanout  [opts]  connection 0 publishes, the other N-1 receive what
 *                          the server relays (a chat: every message to all the
 *                          others); msgs_per_s counts messages every receiver
 *                          got, deliveries_per_s receipts, latency is publish
 *                          -> last receiver; --depth messages not yet
 *                          everywhere at a time; every byte checked
 *   wsload idle    [opts]  open N connections, print "ready ...", hold them
 *                          until SIGTERM/SIGINT (or EOF when stdin is a pipe/tty)
 *
 * Options: --host 127.0.0.1 --port 8080 --path /ws --conns N --size BYTES
 *          --text|--binary|--json --depth K --secs S --warmup S --timeout S
 *          --deflate takeover|none   offer permessage-deflate (RFC 7692) with
 *                                    context takeover, or with none on both sides
 *          --level N                 our own zlib level (default 1)
 *          --tls                     wss://: TLS 1.3 only, TLS_AES_128_GCM_SHA256 and
 *                                    X25519 (the same for every server), no
 *                                    certificate check, no session resumption
 *          --pid N                   echo: also report server_cpu_us_per_msg, the
 *                                    user + system CPU of process N (the server,
 *                                    all its threads) over the measured seconds
 *                                    per message: on a shared machine a steadier
 *                                    figure than msgs_per_s; upgrade: likewise
 *                                    server_cpu_us_per_upgrade (this client's
 *                                    connect and close cost about what a
 *                                    server's upgrade does, so upgrades_per_s
 *                                    is often this client's limit)
 *          --count N                 echo: stop once N messages were measured;
 *                                    upgrade: once N upgrades were
 *                                    (fixed work, for timing a whole run; --secs caps it)
 * --json: text messages cut from JSON-like records (compressible, like an API's
 * traffic). With --deflate every message is sent compressed and every echoed
 * message, compressed or not, is checked byte for byte (see zmemo: with no
 * context takeover each payload is compressed once, and an echo whose
 * compressed bytes were already inflated and checked is not inflated again).
 *
 * Each run prints one line on stdout:
 *   RESULT mode=echo conns=64 size=32 msgs=... msgs_per_s=... mib_per_s=...
 *          p50_us=... p99_us=... max_us=... errors=0
 * Client frames are masked with keys from the kernel CSPRNG (RFC 6455 5.3),
 * drawn 4 KiB at a time so masking costs no syscall per frame.
 * Build: cc -std=c99 -O2 -Wall -Wextra -Werror wsload.c -lssl -lcrypto -lz */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

enum { M_ECHO, M_UPGRADE, M_IDLE, M_FANOUT };
enum { S_FREE, S_CONNECTING, S_TLS, S_HANDSHAKE, S_OPEN, S_CLOSING };

typedef struct {
    int fd, state, slot;
    SSL *ssl;                      /* --tls */
    unsigned char *tout;           /* TLS records made, not yet sent: [tout_off, tout_len) */
    size_t tout_len, tout_off, tout_cap;
    char key[32], accept[32];
    unsigned char *out;            /* bytes to send: [out_off, out_len) */
    size_t out_len, out_off, out_cap;
    int want_out;                  /* EPOLLOUT registered */
    unsigned char *in;             /* bytes received, not yet consumed */
    size_t in_len, in_cap;
    /* frame reader state */
    int in_frame, frame_fin, in_msg;
    uint64_t frame_left, msg_off;
    /* echo accounting: messages sent and received in order */
    uint64_t sent, recvd;
    uint64_t *send_ns;             /* ring of depth send times */
    /* permessage-deflate, when negotiated */
    int pmd, out_reset, out_bits, in_reset, in_rsv1;
    z_stream zout, zin;
    int zlive;
    unsigned char *zbuf;           /* compressed message being received */
    size_t zbuf_len, zbuf_cap;
} conn;

static struct {
    int mode, port, nconns, depth, text, json, deflate, level, tls, pid;
    size_t size;
    double secs, warmup, timeout;
    uint64_t count;
    const char *host, *path;
} opt = {M_ECHO, 8080, 1, 1, 0, 0, 0, 1, 0, 0, 32, 5, 0.5, 30, 0, "127.0.0.1", "/ws"};
static SSL_CTX *tls_ctx;
enum { PMD_OFF, PMD_TAKEOVER, PMD_NONE };

static int ep;
static conn *conns;
static struct sockaddr_in addr;
static unsigned char *pattern;     /* message payloads are windows of this */
static size_t pattern_len;
static uint64_t errors, done_msgs, done_bytes, upgrades, deliveries;
static int *fan_got;               /* fanout: receivers that have message s, at s % depth */
static uint64_t *lat; static size_t nlat, cap_lat;
static unsigned char *zscratch;    /* compressed out / inflated in, one message */
static size_t zscratch_cap;
static int started, measuring, stopping;
static volatile sig_atomic_t got_signal;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) die("realloc");
    return p;
}

static int err_log(conn *c, const char *msg) {
    if (errors++ < 5)
        fprintf(stderr, "wsload: conn %d: %s\n", c->slot, msg);
    return -1;
}

/* ---- randomness, masking ------------------------------------------------ */
static unsigned char rnd_buf[4096];
static size_t rnd_pos = sizeof rnd_buf;

static void rnd(unsigned char *dst, size_t n) {
    while (n) {
        if (rnd_pos == sizeof rnd_buf) {
            if (getrandom(rnd_buf, sizeof rnd_buf, 0) != (ssize_t)sizeof rnd_buf) die("getrandom");
            rnd_pos = 0;
        }
        size_t k = sizeof rnd_buf - rnd_pos < n ? sizeof rnd_buf - rnd_pos : n;
        memcpy(dst, rnd_buf + rnd_pos, k);
        rnd_pos += k, dst += k, n -= k;
    }
}

static void mask_copy(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char k[4]) {
    uint32_t k32;
    memcpy(&k32, k, 4);
    uint64_t k64 = ((uint64_t)k32 << 32) | k32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ k[i & 3];
}

/* ---- transport: plain TCP or TLS ------------------------------------------ */
/* TLS records are written through a BIO of ours that gathers them in
 * c->tout, sent by tls_flush: OpenSSL's socket BIO writes each 16 KiB record
 * with its own write(2), and this side must cost less than the servers it
 * measures (1 MiB echo: 64 writes per message -> 4). */
static BIO_METHOD *gather_meth;

/* Send what c->tout holds: 0 when it is empty, -1 with errno (EAGAIN). */
static int tls_flush(conn *c) {
    while (c->tout_off < c->tout_len) {
        ssize_t w = send(c->fd, c->tout + c->tout_off, c->tout_len - c->tout_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c->tout_off += (size_t)w;
    }
    c->tout_off = c->tout_len = 0;
    return 0;
}

static int gather_write(BIO *b, const char *p, int n) {
    conn *c = BIO_get_data(b);
    if (c->tout_len + (size_t)n > c->tout_cap) {
        c->tout_cap = (c->tout_len + (size_t)n) * 2;
        c->tout = xrealloc(c->tout, c->tout_cap);
    }
    memcpy(c->tout + c->tout_len, p, (size_t)n);
    c->tout_len += (size_t)n;
    return n;
}

static long gather_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num, (void)ptr;
    if (cmd == BIO_CTRL_DUP) return 1;
    if (cmd != BIO_CTRL_FLUSH) return 0;
    BIO_clear_retry_flags(b);
    if (tls_flush(BIO_get_data(b)) == 0) return 1;
    if (errno == EAGAIN) BIO_set_retry_write(b);
    return -1;
}

/* Both return bytes moved, 0 on EOF (recv), -1 with errno (EAGAIN: try after
 * the next event). A TLS send makes up to 16 records of what it is given
 * and sends them; what the socket did not take waits in c->tout, sent
 * first by the next call (flush_out waits for EPOLLOUT while it is there). */
static ssize_t io_send(conn *c, const void *p, size_t n) {
    if (!c->ssl) return send(c->fd, p, n, MSG_NOSIGNAL);
    if (tls_flush(c) < 0) return -1;
    size_t done = 0;
    for (int k = 0; k < 16 && done < n; k++) {
        size_t left = n - done;
        int w = SSL_write(c->ssl, (const char *)p + done, left > INT32_MAX ? INT32_MAX : (int)left);
        if (w <= 0) {
            int e = SSL_get_error(c->ssl, w);
            ERR_clear_error();
            if (done) break;
            errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPROTO;
            return -1;
        }
        done += (size_t)w;
    }
    if (tls_flush(c) < 0 && errno != EAGAIN) return -1;
    return (ssize_t)done;
}

static ssize_t io_recv(conn *c, void *p, size_t n) {
    if (!c->ssl) return recv(c->fd, p, n, 0);
    int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL && errno == 0) return 0;   /* EOF without close_notify */
    if (e != SSL_ERROR_SYSCALL) errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPROTO;
    return -1;
}

static void tls_init(void) {
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx ||
        !SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(tls_ctx, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set1_groups_list(tls_ctx, "X25519")) die("SSL_CTX");
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* read ahead into a 256 KiB buffer: many records per read(2), not a
     * record's header and then its body (1 MiB echo: 128 -> 5 reads) */
    SSL_CTX_set_read_ahead(tls_ctx, 1);
    SSL_CTX_set_default_read_buffer_len(tls_ctx, 256 * 1024);
    if (!(gather_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gather")) ||
        !BIO_meth_set_write(gather_meth, gather_write) || !BIO_meth_set_ctrl(gather_meth, gather_ctrl))
        die("BIO_meth_new");
}

/* A TLS session on c->fd: OpenSSL's socket BIO reads, ours writes. */
static void tls_open(conn *c) {
    BIO *r = BIO_new_socket(c->fd, BIO_NOCLOSE), *w = BIO_new(gather_meth);
    if (!(c->ssl = SSL_new(tls_ctx)) || !r || !w) die("SSL_new");
    BIO_set_data(w, c);
    BIO_set_init(w, 1);
    SSL_set0_rbio(c->ssl, r);
    SSL_set0_wbio(c->ssl, w);
    c->tout_off = c->tout_len = 0;
}

/* ---- output ------------------------------------------------------------- */
static void out_reserve(conn *c, size_t n) {
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + n <= c->out_cap) return;
    /* compact before growing, unless that would move much: with 1 MiB
     * messages in flight it moved most of a message per message sent */
    if (c->out_off && c->out_len - c->out_off <= c->out_cap / 4) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off, c->out_off = 0;
        if (c->out_len + n <= c->out_cap) return;
    }
    while (c->out_cap < c->out_len + n) c->out_cap = c->out_cap ? c->out_cap * 2 : 4096;
    c->out = xrealloc(c->out, c->out_cap);
}

static void queue_frame_rsv(conn *c, int op, int rsv1, const unsigned char *p, size_t n) {
    out_reserve(c, n + 14);
    unsigned char *h = c->out + c->out_len, key[4];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | op);
    if (n < 126) h[1] = (unsigned char)(0x80 | n);
    else if (n < 65536) { h[1] = 0x80 | 126; h[2] = (unsigned char)(n >> 8); h[3] = (unsigned char)n; hl = 4; }
    else { h[1] = 0x80 | 127; for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i)); hl = 10; }
    rnd(key, 4);
    memcpy(h + hl, key, 4);
    mask_copy(h + hl + 4, p, n, key);
    c->out_len += hl + 4 + n;
}

static void queue_frame(conn *c, int op, const unsigned char *p, size_t n) { queue_frame_rsv(c, op, 0, p, n); }

/* ---- permessage-deflate ------------------------------------------------- */
/* Message s of connection c is pattern[off .. off+size): distinct per message,
 * checked with one memcmp; text patterns are printable ASCII. */
/* With no context takeover a message's compressed form depends on its bytes
 * alone, so echo mode compresses each of the NOFF payloads once, and an echo
 * whose compressed bytes equal ones already inflated and checked for that
 * payload is that payload (inflate from a reset state is a function of its
 * input). The load generator then costs the server's peers less than the
 * servers it measures; every echoed byte is still verified. */
#define NOFF 4093
typedef struct { unsigned char *z; size_t len; int bits; } zmemo;
static zmemo zsent[NOFF], zseen[NOFF];
static size_t zmemo_bytes;
static const unsigned char *zmemo_find(const zmemo *m, int bits, size_t *len) {
    if (!m->z || m->bits != bits) return NULL;
    *len = m->len;
    return m->z;
}
static void zmemo_put(zmemo *m, int bits, const unsigned char *z, size_t len) {
    if (m->z || zmemo_bytes + len > ((size_t)256 << 20)) return;   /* bounded */
    m->z = xrealloc(NULL, len ? len : 1), memcpy(m->z, z, len);
    m->len = len, m->bits = bits, zmemo_bytes += len;
}

static size_t msg_off(const conn *c, uint64_t s) { return (size_t)((s * 97 + (uint64_t)c->slot * 31) % NOFF); }

/* The message c receives next: its own echoed, or (fanout) the publisher's. */
static const unsigned char *expected(conn *c);

static void zscratch_reserve(size_t n) {
    if (n > zscratch_cap) zscratch = xrealloc(zscratch, zscratch_cap = n);
}

static void z_open(conn *c) {
    memset(&c->zout, 0, sizeof c->zout);
    memset(&c->zin, 0, sizeof c->zin);
    if (deflateInit2(&c->zout, opt.level, Z_DEFLATED, -c->out_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK ||
        inflateInit2(&c->zin, -15) != Z_OK) die("zlib init");
    c->zlive = 1;
}

static void z_close(conn *c) {
    if (!c->zlive) return;
    deflateEnd(&c->zout);
    inflateEnd(&c->zin);
    c->zlive = 0;
}

/* One message compressed as RFC 7692 says: sync flush, 00 00 ff ff cut off. */
static void send_compressed(conn *c, int op, size_t off, size_t n) {
    const unsigned char *p = pattern + off;
    zmemo *m = opt.mode == M_ECHO && c->out_reset ? &zsent[off] : NULL;
    size_t len;
    const unsigned char *z = m ? zmemo_find(m, c->out_bits, &len) : NULL;
    if (z) {
        queue_frame_rsv(c, op, 1, z, len);
        return;
    }
    zscratch_reserve(deflateBound(&c->zout, (uLong)n) + 64);
    c->zout.next_in = (Bytef *)p, c->zout.avail_in = (uInt)n;
    c->zout.next_out = zscratch, c->zout.avail_out = (uInt)zscratch_cap;
    if (deflate(&c->zout, Z_SYNC_FLUSH) != Z_OK || c->zout.avail_in) die("deflate");
    len = zscratch_cap - c->zout.avail_out;
    if (len >= 4 && !memcmp(zscratch + len - 4, "\0\0\xff\xff", 4)) len -= 4;
    if (c->out_reset) deflateReset(&c->zout);
    if (m) zmemo_put(m, c->out_bits, zscratch, len);
    queue_frame_rsv(c, op, 1, zscratch, len);
}

/* Inflate the compressed message gathered in c->zbuf and check it. */
static int check_compressed(conn *c) {
    static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
    zmemo *m = opt.mode == M_ECHO && c->in_reset ? &zseen[msg_off(c, c->recvd)] : NULL;
    size_t zlen;
    const unsigned char *z = m ? zmemo_find(m, 0, &zlen) : NULL;
    if (z && zlen == c->zbuf_len && memcmp(z, c->zbuf, zlen) == 0) {
        c->zbuf_len = 0, c->msg_off = opt.size;
        return 0;
    }
    if (m) inflateReset(&c->zin);   /* no takeover: nothing may refer back */
    zscratch_reserve(opt.size + 1);
    c->zin.next_out = zscratch, c->zin.avail_out = (uInt)opt.size + 1;
    for (int i = 0; i < 2; i++) {
        c->zin.next_in = i ? (Bytef *)tail : c->zbuf;
        c->zin.avail_in = i ? 4 : (uInt)c->zbuf_len;
        int rc = inflate(&c->zin, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR) return err_log(c, "echo does not inflate");
        if (c->zin.avail_in) return err_log(c, "inflated echo too long");
    }
    size_t n = opt.size + 1 - c->zin.avail_out;
    c->zbuf_len = 0;
    if (n != opt.size) return err_log(c, "echoed message has the wrong size");
    if (memcmp(zscratch, expected(c), n) != 0) return err_log(c, "echoed bytes differ");
    if (m) zmemo_put(m, 0, c->zbuf, c->zbuf_len);
    c->msg_off = n;
    return 0;
}

static void set_events(conn *c, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = want_out;
}

/* Write what we can; wait for EPOLLOUT only while something is left. */
static int flush_out(conn *c) {
    if (c->ssl && tls_flush(c) < 0 && errno != EAGAIN) return err_log(c, strerror(errno));
    while (c->out_off < c->out_len && !(c->ssl && c->tout_len)) {
        ssize_t w = io_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            return err_log(c, strerror(errno));
        }
        c->out_off += (size_t)w;
    }
    int want = c->out_off < c->out_len || (c->ssl && c->tout_len);
    if (want != c->want_out) set_events(c, want);
    return 0;
}

/* ---- echo payloads -------------------------------------------------------- */
static void make_pattern(void) {
    pattern_len = opt.size + 4096;
    pattern = xrealloc(NULL, pattern_len + 256);
    uint32_t x = 2463534242u;
    if (opt.json) {   /* records like an API's: same keys, varying values */
        static const char *const names[] = {"alice", "bob", "carol", "dave", "erin", "frank"};
        size_t i = 0;
        for (unsigned id = 1000; i < pattern_len; id++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            i += (size_t)snprintf((char *)pattern + i, 256,
                "{\"id\":%u,\"user\":\"%s\",\"score\":%u.%02u,\"active\":%s,\"tags\":[\"t%u\",\"ws\"],"
                "\"updated\":\"2026-11-%02uT%02u:%02u:00Z\"},", id, names[x % 6], x % 1000, (x >> 10) % 100,
                x & 1 ? "true" : "false", (x >> 4) % 50, 1 + (x >> 8) % 28, (x >> 12) % 24, (x >> 16) % 60);
        }
        return;
    }
    for (size_t i = 0; i < pattern_len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        pattern[i] = opt.text ? (unsigned char)(' ' + x % 95) : (unsigned char)(x >> 24);
    }
}

static void send_msg(conn *c) {
    c->send_ns[c->sent % (uint64_t)opt.depth] = now_ns();
    if (c->pmd) send_compressed(c, opt.text ? 1 : 2, msg_off(c, c->sent), opt.size);
    else queue_frame(c, opt.text ? 1 : 2, pattern + msg_off(c, c->sent), opt.size);
    c->sent++;
}

static void record_latency(uint64_t ns) {
    if (nlat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
        lat = xrealloc(lat, cap_lat * sizeof *lat);
    }
    lat[nlat++] = ns;
}

/* ---- connections -------------------------------------------------------- */
static void b64(char *dst, const unsigned char *src, int n) { EVP_EncodeBlock((unsigned char *)dst, src, n); }

static void conn_close(conn *c) {
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);  /* close() also drops it from epoll */
    c->fd = -1;
    z_close(c);
    c->state = S_FREE;
}

static int conn_open(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return err_log(c, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = S_CONNECTING;
    c->in_len = c->out_len = c->out_off = 0;
    c->in_frame = c->in_msg = 0;
    c->sent = c->recvd = 0;
    c->want_out = 1;
    c->pmd = 0, c->zbuf_len = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        err_log(c, strerror(errno));
        conn_close(c);
        return -1;
    }
    unsigned char raw[20];
    rnd(raw, 16);
    b64(c->key, raw, 16);
    /* the accept value we must get back: base64(sha1(key + GUID)) */
    char buf[96];
    int n = snprintf(buf, sizeof buf, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    unsigned int dl;
    EVP_Digest(buf, (size_t)n, raw, &dl, EVP_sha1(), NULL);
    b64(c->accept, raw, 20);
    char req[512];
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                 opt.path, opt.host, opt.port, c->key,
                 opt.deflate == PMD_OFF ? "" :
                 opt.deflate == PMD_TAKEOVER ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" :
                 "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; "
                 "server_no_context_takeover; client_no_context_takeover\r\n");
    out_reserve(c, (size_t)n);
    memcpy(c->out, req, (size_t)n);
    c->out_len = (size_t)n;
    return 0;
}

static void on_open(conn *c) {
    c->state = S_OPEN;
    if (opt.mode == M_UPGRADE) {
        static const unsigned char bye[2] = {0x03, 0xe8};   /* 1000 */
        queue_frame(c, 8, bye, 2);
        c->state = S_CLOSING;
    }
}

/* Returns bytes consumed (the response head), 0 if incomplete, -1 on error. */
static long parse_handshake(conn *c) {
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return c->in_len > 8192 ? err_log(c, "response head too long") : 0;
    *end = 0;
    char *s = (char *)c->in;
    if (strncmp(s, "HTTP/1.1 101", 12) != 0) return err_log(c, "status is not 101");
    int ok = 0, pmd = 0;
    for (char *line = strstr(s, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (strncasecmp(h, "sec-websocket-accept:", 21) == 0) {
            h += 21;
            while (*h == ' ' || *h == '\t') h++;
            size_t n = strlen(c->accept);
            ok = strncmp(h, c->accept, n) == 0 && (h[n] == '\r' || h[n] == ' ' || h[n] == 0);
        } else if (strncasecmp(h, "sec-websocket-extensions:", 25) == 0) {
            char *eol = strstr(h, "\r\n"), save = 0;
            if (eol) save = *eol, *eol = 0;
            pmd = strstr(h, "permessage-deflate") != NULL;
            /* our window: what the server allows (zlib's 9 bits stay within 256 bytes) */
            char *wb = strstr(h, "client_max_window_bits=");
            c->out_bits = wb ? atoi(wb + 23) : 15;
            if (c->out_bits < 8 || c->out_bits > 15) pmd = -1;
            if (c->out_bits == 8) c->out_bits = 9;
            c->out_reset = opt.deflate == PMD_NONE || strstr(h, "client_no_context_takeover") != NULL;
            c->in_reset = strstr(h, "server_no_context_takeover") != NULL;
            if (eol) *eol = save;
        }
    }
    if (!ok) return err_log(c, "bad Sec-WebSocket-Accept");
    if (pmd < 0) return err_log(c, "bad client_max_window_bits");
    if (opt.deflate && !pmd) return err_log(c, "server declined permessage-deflate");
    if (pmd && !opt.deflate) return err_log(c, "server chose an extension we did not offer");
    if (pmd) c->pmd = 1, z_open(c);
    return (long)(end + 4 - c->in);
}

static const unsigned char *expected(conn *c) {
    return pattern + msg_off(opt.mode == M_FANOUT ? &conns[0] : c, c->recvd);
}

static void echo_fill(conn *c) {
    while (started && !stopping && c->sent - c->recvd < (uint64_t)opt.depth) send_msg(c);
}

/* fanout: a receiver has the next message; the last one completes it */
static int fan_received(conn *c) {
    conn *pub = &conns[0];
    if (c == pub || c->recvd >= pub->sent) return err_log(c, "unexpected message");
    deliveries += measuring;
    int *got = &fan_got[c->recvd % (uint64_t)opt.depth];
    c->recvd++;
    c->in_msg = 0;
    if (++*got < opt.nconns - 1) return 0;
    *got = 0;
    if (measuring) {
        record_latency(now_ns() - pub->send_ns[pub->recvd % (uint64_t)opt.depth]);
        done_msgs++;
        done_bytes += opt.size;
    }
    pub->recvd++;                      /* the publisher's "recvd": messages complete */
    echo_fill(pub);
    return flush_out(pub);
}

static int on_message_done(conn *c) {
    if (opt.mode != M_ECHO && opt.mode != M_FANOUT) return err_log(c, "unexpected data message");
    if (c->msg_off != opt.size) return err_log(c, "echoed message has the wrong size");
    if (opt.mode == M_FANOUT) return fan_received(c);
    uint64_t t = now_ns();
    if (measuring) {
        record_latency(t - c->send_ns[c->recvd % (uint64_t)opt.depth]);
        done_msgs++;
        done_bytes += opt.size;
    }
    c->recvd++;
    c->in_msg = 0;
    echo_fill(c);
    return 0;
}

/* Consume frames from c->in; payloads are verified as they arrive, so a
 * 1 MiB message never needs to sit whole in the buffer. */
static int process_frames(conn *c) {
    size_t pos = 0;
    for (;;) {
        size_t avail = c->in_len - pos;
        unsigned char *p = c->in + pos;
        if (!c->in_frame) {
            if (avail < 2) break;
            int fin = p[0] >> 7, op = p[0] & 15, len7 = p[1] & 127;
            size_t hl = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
            if (p[1] & 0x80) return err_log(c, "server frame is masked");
            int rsv1 = (p[0] & 0x40) != 0;
            if (p[0] & 0x30 || (rsv1 && (!c->pmd || (p[0] & 15) == 0 || (p[0] & 15) >= 8)))
                return err_log(c, "bad RSV bits");
            if (avail < hl) break;
            uint64_t n = (uint64_t)len7;
            if (len7 == 126) n = (uint64_t)p[2] << 8 | p[3];
            else if (len7 == 127) { n = 0; for (int i = 0; i < 8; i++) n = n << 8 | p[2 + i]; }
            if (op >= 8) {                         /* control: handle whole */
                if (n > 125 || !fin) return err_log(c, "bad control frame");
                if (avail < hl + n) break;
                if (op == 8) {                     /* close: the exchange is over */
                    if (c->state != S_CLOSING) return err_log(c, "server closed the connection");
                    if (opt.mode == M_UPGRADE) upgrades += measuring;
                    return 1;
                }
                if (op == 9) queue_frame(c, 10, p + hl, (size_t)n);   /* ping -> pong */
                pos += hl + (size_t)n;
                continue;
            }
            if ((op == 0) != c->in_msg) return err_log(c, "bad continuation");
            if (op && op != (opt.text ? 1 : 2)) return err_log(c, "echo has the wrong type");
            if (op) c->in_msg = 1, c->msg_off = 0, c->in_rsv1 = rsv1, c->zbuf_len = 0;
            c->in_frame = 1, c->frame_fin = fin, c->frame_left = n;
            pos += hl;
            avail -= hl, p += hl;
        }
        size_t k = c->frame_left < avail ? (size_t)c->frame_left : avail;
        if (k && c->in_rsv1) {           /* compressed: gather, check when whole */
            if (c->zbuf_len + k > opt.size + 4096) return err_log(c, "compressed echo too long");
            if (c->zbuf_len + k > c->zbuf_cap) c->zbuf = xrealloc(c->zbuf, c->zbuf_cap = opt.size + 4096);
            memcpy(c->zbuf + c->zbuf_len, p, k);
            c->zbuf_len += k, c->frame_left -= k, pos += k;
        } else if (k) {
            if (!pattern || c->msg_off + k > opt.size) return err_log(c, "echoed message too long");
            if (memcmp(p, expected(c) + c->msg_off, k) != 0)
                return err_log(c, "echoed bytes differ");
            c->msg_off += k, c->frame_left -= k, pos += k;
        }
        if (c->frame_left) break;
        c->in_frame = 0;
        if (c->frame_fin && c->in_rsv1 && check_compressed(c) < 0) return -1;
        if (c->frame_fin && on_message_done(c) < 0) return -1;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return 0;
}

/* Bytes one connection may read per wakeup before the others get a turn:
 * a server that answers as fast as this side reads never lets a read say
 * EAGAIN, and one connection then held the loop for seconds (1 MiB over
 * TLS: measured windows of 5 s for --secs 2, 3 s delays on the others). */
#define READ_TURN (256u * 1024u)

/* Returns 0 to keep the connection, nonzero when it is finished. */
static int on_readable(conn *c) {
    size_t turn = 0;
    for (;;) {
        if (c->in_len == c->in_cap) return err_log(c, "input buffer full");
        ssize_t r = io_recv(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (r < 0) {
            if (errno == EAGAIN) return 0;
            if (errno == EINTR) continue;
            return err_log(c, strerror(errno));
        }
        if (r == 0) return err_log(c, c->state == S_CLOSING ? "EOF before the close frame" : "EOF");
        c->in_len += (size_t)r;
        if (c->state == S_HANDSHAKE) {
            long used = parse_handshake(c);
            if (used < 0) return -1;
            if (used == 0) continue;
            memmove(c->in, c->in + used, c->in_len - (size_t)used);
            c->in_len -= (size_t)used;
            on_open(c);
            if (opt.mode == M_ECHO) echo_fill(c);
        }
        int rc = process_frames(c);
        if (rc) return rc;
        if (flush_out(c) < 0) return -1;
        /* likely drained: back to epoll (TLS: OpenSSL may hold more records) */
        if (!c->ssl && (size_t)r < c->in_cap / 2) return 0;
        /* its turn is over; epoll (level-triggered) reports the rest. Not
         * while OpenSSL holds bytes (read ahead), which epoll cannot see */
        turn += (size_t)r;
        if (turn >= READ_TURN && (!c->ssl || !SSL_has_pending(c->ssl))) return 0;
    }
}

static void on_event(conn *c, uint32_t ev) {
    int rc = 0;
    if (ev & (EPOLLERR | EPOLLHUP) && !(ev & EPOLLIN)) {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        rc = err_log(c, e ? strerror(e) : "hangup");
    }
    if (!rc && c->state == S_CONNECTING && (ev & EPOLLOUT)) {
        c->state = S_HANDSHAKE;
        if (opt.tls) {
            c->state = S_TLS;
            tls_open(c);
        }
    }
    if (!rc && c->state == S_TLS) {
        int r = SSL_connect(c->ssl);
        if (r == 1) {
            c->state = S_HANDSHAKE;
            ev |= EPOLLOUT;            /* the request is waiting */
        } else {
            int e = SSL_get_error(c->ssl, r);
            ERR_clear_error();
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                if ((e == SSL_ERROR_WANT_WRITE) != c->want_out) set_events(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            rc = err_log(c, "TLS handshake failed");
        }
    }
    if (!rc && (ev & EPOLLOUT)) rc = flush_out(c);
    if (!rc && (ev & EPOLLIN)) rc = on_readable(c);
    if (rc) conn_close(c);
}

static int poll_once(int ms) {
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    return n;
}

static int count_state(int s) {
    int n = 0;
    for (int i = 0; i < opt.nconns; i++) n += conns[i].state == s;
    return n;
}

/* Open the connections at most `window` handshakes at a time (so a server's
 * accept backlog never overflows) until all are open or the deadline. */
static void open_all(int window, uint64_t deadline) {
    int next = 0;
    while (now_ns() < deadline && !got_signal) {
        int pending = count_state(S_CONNECTING) + count_state(S_TLS) + count_state(S_HANDSHAKE);
        while (next < opt.nconns && pending < window) {
            if (conn_open(&conns[next++]) == 0) pending++;
        }
        if (next == opt.nconns && pending == 0) break;
        poll_once(10);
    }
}

/* ---- modes -------------------------------------------------------------- */
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q) {
    if (!nlat) return 0;
    size_t i = (size_t)(q * (double)(nlat - 1) + 0.5);
    return (double)lat[i] / 1e3;
}

/* CPU seconds (user + system, every thread) of process pid so far; -1 if gone */
static double proc_cpu(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');   /* the name may hold spaces */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c" " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s" " %llu %llu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void run_echo(void) {
    open_all(256, now_ns() + (uint64_t)(opt.timeout * 1e9));
    int open = count_state(S_OPEN);
    if (open < opt.nconns) {   /* a server that stops answering handshakes fails the run */
        fprintf(stderr, "wsload: only %d of %d connections opened\n", open, opt.nconns);
        errors += (uint64_t)(opt.nconns - open);
    }
    /* the load starts on all connections at once, after every handshake:
     * a server busy echoing must not be left to starve later handshakes */
    started = 1;
    for (int i = 0; i < (opt.mode == M_FANOUT ? 1 : opt.nconns); i++) {
        conn *c = &conns[i];
        if (c->state != S_OPEN) continue;
        echo_fill(c);
        if (flush_out(c) < 0) conn_close(c);
    }
    uint64_t t0 = now_ns(), t_meas = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t t_end = t_meas + (uint64_t)(opt.secs * 1e9);
    double cpu0 = -1;
    while (!got_signal) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_meas) measuring = 1, t_meas = t, cpu0 = opt.pid ? proc_cpu(opt.pid) : -1;
        if (t >= t_end || count_state(S_OPEN) == 0 || (opt.count && done_msgs >= opt.count)) break;
        poll_once(5);
    }
    double elapsed = (double)(now_ns() - t_meas) / 1e9;
    double cpu1 = cpu0 >= 0 ? proc_cpu(opt.pid) : -1;
    measuring = 0;
    /* Stop sending and drain what is in flight, then close cleanly, so the
     * server is idle again before the next run (bounded waits). */
    stopping = 1;
    uint64_t lim = now_ns() + 3000000000u;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < (opt.mode == M_FANOUT ? 1 : opt.nconns); i++)
            busy += conns[i].state == S_OPEN && conns[i].sent != conns[i].recvd;
        if (!busy || now_ns() > lim) break;
        poll_once(5);
    }
    static const unsigned char bye[2] = {0x03, 0xe8};
    for (int i = 0; i < opt.nconns; i++) {
        conn *c = &conns[i];
        if (c->state != S_OPEN) continue;
        queue_frame(c, 8, bye, 2);
        c->state = S_CLOSING;
        if (flush_out(c) < 0) conn_close(c);
    }
    lim = now_ns() + 2000000000u;
    while (count_state(S_CLOSING) && now_ns() < lim) poll_once(5);
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    printf("RESULT mode=%s conns=%d size=%zu type=%s depth=%d secs=%.2f msgs=%llu msgs_per_s=%.0f "
           "deliveries_per_s=%.0f mib_per_s=%.2f p50_us=%.1f p99_us=%.1f max_us=%.1f open=%d errors=%llu",
           opt.mode == M_FANOUT ? "fanout" : "echo", opt.nconns, opt.size, opt.text ? "text" : "binary", opt.depth, elapsed,
           (unsigned long long)done_msgs, (double)done_msgs / elapsed, (double)deliveries / elapsed,
           (double)done_bytes / elapsed / 1048576.0, pct_us(0.5), pct_us(0.99), pct_us(1.0), open,
           (unsigned long long)errors);
    if (cpu1 >= 0 && done_msgs) printf(" server_cpu_us_per_msg=%.2f", (cpu1 - cpu0) * 1e6 / (double)done_msgs);
    printf("\n");
}

static void run_upgrade(void) {
    double cpu0 = -1;
    uint64_t t0 = now_ns(), t_meas = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t t_end = t_meas + (uint64_t)(opt.secs * 1e9);
    for (int i = 0; i < opt.nconns; i++) conn_open(&conns[i]);
    while (!got_signal) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_meas) measuring = 1, t_meas = t, cpu0 = opt.pid ? proc_cpu(opt.pid) : -1;
        if (t >= t_end || (opt.count && upgrades >= opt.count)) break;
        poll_once(5);
        for (int i = 0; i < opt.nconns; i++)   /* a finished slot starts over */
            if (conns[i].state == S_FREE && errors < 1000) conn_open(&conns[i]);
    }
    double elapsed = (double)(now_ns() - t_meas) / 1e9;
    double cpu1 = cpu0 >= 0 ? proc_cpu(opt.pid) : -1;
    for (int i = 0; i < opt.nconns; i++) conn_close(&conns[i]);
    if (!upgrades && errors++ < 5) fprintf(stderr, "wsload: no upgrade completed\n");
    printf("RESULT mode=upgrade conns=%d secs=%.2f upgrades=%llu upgrades_per_s=%.0f errors=%llu",
           opt.nconns, elapsed, (unsigned long long)upgrades, (double)upgrades / elapsed,
           (unsigned long long)errors);
    if (cpu1 >= 0 && upgrades) printf(" server_cpu_us_per_upgrade=%.1f", (cpu1 - cpu0) * 1e6 / (double)upgrades);
    printf("\n");
}

static void run_idle(void) {
    open_all(128, now_ns() + (uint64_t)(opt.timeout * 1e9));
    int open = count_state(S_OPEN);
    printf("ready conns=%d errors=%llu\n", open, (unsigned long long)errors);
    fflush(stdout);
    /* stdin EOF ends the hold only when stdin is a pipe or a terminal: a
     * background job of sh gets /dev/null, which must not end it at once */
    struct stat st;
    int watch_stdin = fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || isatty(0));
    if (watch_stdin) {
        static conn in = {.fd = 0, .slot = -1};
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &in};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) watch_stdin = 0;
    }
    uint64_t t_end = now_ns() + (uint64_t)(opt.secs * 1e9);
    while (!got_signal && now_ns() < t_end) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->fd == 0 && c->slot == -1) {
                char b[256];
                if (read(0, b, sizeof b) <= 0) got_signal = 1;
                continue;
            }
            on_event(c, evs[i].events);
        }
    }
    printf("RESULT mode=idle conns=%d still_open=%d errors=%llu\n", open, count_state(S_OPEN),
           (unsigned long long)errors);
}

/* ---- main --------------------------------------------------------------- */
static void on_signal(int s) { (void)s; got_signal = 1; }

static void usage(void) {
    fprintf(stderr, "usage: wsload echo|upgrade|idle|fanout [--host H] [--port P] [--path /ws] [--conns N]\n"
                    "       [--size BYTES] [--text|--binary|--json] [--deflate takeover|none] [--level N] [--count N] [--pid N] [--tls] [--depth K] [--secs S] [--warmup S] [--timeout S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "echo")) opt.mode = M_ECHO;
    else if (!strcmp(argv[1], "upgrade")) opt.mode = M_UPGRADE;
    else if (!strcmp(argv[1], "idle")) opt.mode = M_IDLE;
    else if (!strcmp(argv[1], "fanout")) opt.mode = M_FANOUT;
    else usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--text")) { opt.text = 1; continue; }
        if (!strcmp(a, "--binary")) { opt.text = 0; continue; }
        if (!strcmp(a, "--json")) { opt.text = opt.json = 1; continue; }
        if (!strcmp(a, "--tls")) { opt.tls = 1; continue; }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "--conns")) opt.nconns = atoi(v);
        else if (!strcmp(a, "--size")) opt.size = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(a, "--depth")) opt.depth = atoi(v);
        else if (!strcmp(a, "--secs")) opt.secs = atof(v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--timeout")) opt.timeout = atof(v);
        else if (!strcmp(a, "--level")) opt.level = atoi(v);
        else if (!strcmp(a, "--pid")) opt.pid = atoi(v);
        else if (!strcmp(a, "--count")) opt.count = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--deflate"))
            opt.deflate = !strcmp(v, "takeover") ? PMD_TAKEOVER : !strcmp(v, "none") ? PMD_NONE : (usage(), 0);
        else usage();
    }
    if (opt.nconns < 1 || opt.depth < 1 || opt.port < 1) usage();
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt.port);

    /* 10k sockets need more than the usual 1024 descriptors */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)opt.nconns + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = want;
            if (rl.rlim_max < want) rl.rlim_max = want;   /* works as root */
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0) perror("wsload: setrlimit");
        }
    }
    struct sigaction sa = {.sa_handler = on_signal};   /* no SA_RESTART: wake epoll */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (opt.tls) tls_init();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    int loaded = opt.mode == M_ECHO || opt.mode == M_FANOUT;
    if (loaded) make_pattern();
    if (opt.mode == M_FANOUT && (opt.nconns < 2 || !(fan_got = calloc((size_t)opt.depth, sizeof *fan_got)))) usage();
    conns = calloc((size_t)opt.nconns, sizeof *conns);
    if (!conns) die("calloc");
    size_t in_cap = loaded ? (opt.size > 16384 ? 262144 : 65536) : 8192;
    for (int i = 0; i < opt.nconns; i++) {
        conn *c = &conns[i];
        c->fd = -1, c->slot = i, c->in_cap = in_cap;
        c->in = xrealloc(NULL, in_cap);
        if (loaded) c->send_ns = xrealloc(NULL, (size_t)opt.depth * sizeof *c->send_ns);
    }
    if (loaded) run_echo();
    else if (opt.mode == M_UPGRADE) run_upgrade();
    else run_idle();
    return errors ? 1 : 0;
}
