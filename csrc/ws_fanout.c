#define _GNU_SOURCE
#include "ws_fanout.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

static void plain(ws_fan_target *t, const void *buf, size_t n) {
    ssize_t w;
    do
        w = send(t->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w >= 0) {
        t->sent = (size_t)w;
        t->result = (size_t)w == n ? WS_FAN_DONE : WS_FAN_AGAIN;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
        t->result = WS_FAN_AGAIN;
    } else {
        t->result = WS_FAN_FAILED;
        t->err = errno;
    }
}

static void tls(ws_fan_target *t, const unsigned char *buf, size_t n) {
    while (t->sent < n) {
        size_t put = 0;
        int r = ws_tls_write(t->tls, buf + t->sent, n - t->sent, &put);
        if (r != WS_TLS_DONE || put == 0) {
            /* after WANT_*, OpenSSL needs the same bytes again: the caller's
             * queue holds the frame at offset `sent`, as ws.fd:send expects */
            t->result = r == WS_TLS_WANT_READ || r == WS_TLS_WANT_WRITE ? WS_FAN_AGAIN : WS_FAN_FAILED;
            return;
        }
        t->sent += put;
    }
    t->result = WS_FAN_DONE;
}

size_t ws_fanout(ws_fan_target *t, size_t count, const void *buf, size_t n) {
    size_t missed = 0;
    for (size_t i = 0; i < count; i++) {
        t[i].sent = 0;
        t[i].err = 0;
        if (t[i].fd < 0)
            t[i].result = WS_FAN_FAILED;
        else if (t[i].tls)
            tls(&t[i], (const unsigned char *)buf, n);
        else
            plain(&t[i], buf, n);
        missed += t[i].result != WS_FAN_DONE;
    }
    return missed;
}
