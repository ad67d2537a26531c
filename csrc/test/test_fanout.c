/* ws_fanout (ws_fanout.c) over real loopback TCP connections: an idle
 * peer takes the whole frame, a full one takes part of it (and says how
 * much, the bytes being the frame's first ones), a closed or broken one
 * fails, and one call serves them all. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "ws_fanout.h"

static int listener;
static struct sockaddr_in addr;

static void listen_any(void) {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    CHECK(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(listener, 16) == 0);
    CHECK(getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
}

/* A connected pair: *server (non-blocking, the fan-out side, with a send
 * buffer of sndbuf bytes if > 0) and *client (blocking). */
static void pair(int *server, int *client, int sndbuf) {
    *client = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(*client, (struct sockaddr *)&addr, sizeof addr) == 0);
    *server = accept(listener, NULL, NULL);
    CHECK(*server >= 0);
    if (sndbuf > 0)
        CHECK(setsockopt(*server, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0);
    CHECK(fcntl(*server, F_SETFL, O_NONBLOCK) == 0);
}

/* Read exactly n bytes from a blocking socket. */
static int read_all(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void test_mixed(void) {
    enum { BIG = 1 << 20 };
    unsigned char *frame = malloc(BIG), *in = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        frame[i] = (unsigned char)(i * 7 + i / 251);
    int s_idle, c_idle, s_full, c_full, s_shut, c_shut;
    pair(&s_idle, &c_idle, 0);
    pair(&s_full, &c_full, 4096);   /* its peer never reads: 1 MiB cannot fit */
    pair(&s_shut, &c_shut, 0);
    CHECK(shutdown(s_shut, SHUT_WR) == 0);   /* our sending side gone: EPIPE */
    /* a small frame to the idle one only, in one call with a closed target */
    ws_fan_target t[4] = {{s_idle, NULL, 99, 99, 99}, {-1, NULL, 99, 99, 99}};
    CHECK(ws_fanout(t, 2, frame, 100) == 1);
    CHECK(t[0].result == WS_FAN_DONE && t[0].sent == 100 && t[0].err == 0);
    CHECK(t[1].result == WS_FAN_FAILED && t[1].sent == 0);
    CHECK(read_all(c_idle, in, 100) == 0);
    CHECK_MEM(in, frame, 100);

    /* 1 MiB to all: the full one takes part of it (the idle one may too);
     * whatever each took is the frame's first bytes */
    ws_fan_target all[3] = {{s_idle, NULL, 0, 0, 0}, {s_full, NULL, 0, 0, 0}, {s_shut, NULL, 0, 0, 0}};
    size_t missed = ws_fanout(all, 3, frame, BIG);
    CHECK(all[1].result == WS_FAN_AGAIN);
    CHECK(all[1].sent > 0 && all[1].sent < BIG);
    CHECK(all[2].result == WS_FAN_FAILED && all[2].err == EPIPE && all[2].sent == 0);
    CHECK(missed == 2 + (all[0].result != WS_FAN_DONE));
    for (int k = 0; k < 2; k++) {
        int c = k == 0 ? c_idle : c_full;
        CHECK(read_all(c, in, all[k].sent) == 0);
        CHECK_MEM(in, frame, all[k].sent);
    }
    /* full again with nothing free: a plain target takes nothing, no error */
    ws_fan_target again = {s_full, NULL, 0, 0, 0};
    for (int spins = 0; spins < 1000; spins++)   /* (its peer reads nothing: it fills) */
        if (ws_fanout(&again, 1, frame, BIG) == 1 && again.sent == 0)
            break;
    CHECK(again.result == WS_FAN_AGAIN && again.sent == 0 && again.err == 0);
    close(s_idle), close(c_idle), close(s_full), close(c_full), close(s_shut), close(c_shut);
    free(frame);
    free(in);
}

int main(void) {
    listen_any();
    test_mixed();
    close(listener);
    return check_report("test_fanout");
}
