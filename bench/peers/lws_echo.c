/* libwebsockets (Debian libwebsockets-dev) echo server on /ws:  lws_echo PORT
 * One service thread, default event loop (poll), no extensions (so no
 * compression). A message is gathered whole (up to 16 MiB), queued, and
 * written back with its type when the socket is writable.
 * Build: cc -O2 lws_echo.c -lwebsockets */
#include <libwebsockets.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE (16u << 20)

struct msg {
    struct msg *next;
    size_t len;
    int binary;
    unsigned char buf[];   /* LWS_PRE bytes of headroom, then the payload */
};

struct session {
    unsigned char *rx;
    size_t rx_len, rx_cap;
    int rx_binary;
    struct msg *head, *tail;
};

static volatile int stop;

static int echo_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    struct session *s = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0 || strcmp(uri, "/ws") != 0)
            return 1;   /* refuse the upgrade */
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (lws_is_first_fragment(wsi)) {
            s->rx_len = 0;
            s->rx_binary = lws_frame_is_binary(wsi);
        }
        if (s->rx_len + len > MAX_MESSAGE)
            return -1;
        if (s->rx_len + len > s->rx_cap) {
            size_t cap = s->rx_cap ? s->rx_cap : 4096;
            while (cap < s->rx_len + len) cap *= 2;
            unsigned char *p = realloc(s->rx, cap);
            if (!p) return -1;
            s->rx = p, s->rx_cap = cap;
        }
        memcpy(s->rx + s->rx_len, in, len);
        s->rx_len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            struct msg *m = malloc(sizeof *m + LWS_PRE + s->rx_len);
            if (!m) return -1;
            m->next = NULL, m->len = s->rx_len, m->binary = s->rx_binary;
            memcpy(m->buf + LWS_PRE, s->rx, s->rx_len);
            if (s->tail) s->tail->next = m; else s->head = m;
            s->tail = m;
            s->rx_len = 0;
            lws_callback_on_writable(wsi);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        struct msg *m = s->head;
        if (!m) return 0;
        /* lws keeps whatever the kernel does not take and sends it before
         * the next writable callback, so a short write cannot happen here */
        if (lws_write(wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)m->len)
            return -1;
        s->head = m->next;
        if (!s->head) s->tail = NULL;
        free(m);
        if (s->head) lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
        while (s->head) {
            struct msg *m = s->head;
            s->head = m->next;
            free(m);
        }
        free(s->rx);
        memset(s, 0, sizeof *s);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    /* first in the list: used by upgrades that ask for no subprotocol */
    {"echo", echo_cb, sizeof(struct session), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = argc > 1 ? atoi(argv[1]) : 8080;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.count_threads = 1;
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    lwsl_err("lws echo on %d\n", info.port);
    while (!stop && lws_service(ctx, 0) >= 0) {}
    lws_context_destroy(ctx);
    return 0;
}
