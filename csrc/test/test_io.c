/* ws_fd_accept (ws_io.c) over real loopback TCP: the peer's address comes
 * from accept4 itself ("ip:port", "[ip]:port" for IPv6), the connection is
 * non-blocking with TCP_NODELAY, set per connection or inherited from a
 * listener that has it (ws_fd_nodelay), and EAGAIN says none is pending.
 * ws_poll_wait's spin: polls first, within the timeout, never past it.
 * ws_fd_send2 / ws_fd_sendv: the bytes arrive whole and in order on both
 * paths (copied up to 1 KiB, gathered past it), and a closed peer is an
 * error (EPIPE), not SIGPIPE. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ws_io.h"

/* A non-blocking listener on the loopback address of family fam, or -1. */
static int listen_on(int fam, struct sockaddr_storage *a, socklen_t *len) {
    int l = socket(fam, SOCK_STREAM, 0);
    if (l < 0)
        return -1;
    memset(a, 0, sizeof *a);
    if (fam == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)a;
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *v4;
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)a;
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = in6addr_loopback;
        *len = sizeof *v6;
    }
    if (bind(l, (struct sockaddr *)a, *len) != 0 || listen(l, 8) != 0 ||
        getsockname(l, (struct sockaddr *)a, len) != 0) {
        close(l);
        return -1;
    }
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0);
    return l;
}

static int nodelay_of(int fd) {
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0);
    return v;
}

/* One connection through ws_fd_accept(l, inherited); checks its flags
 * and that peer names the client's end. */
static void accept_one(int fam, int listener_nodelay, int inherited) {
    struct sockaddr_storage a, c;
    socklen_t len, clen = sizeof c;
    int l = listen_on(fam, &a, &len);
    if (l < 0) {
        printf("(no %s loopback: skipped)\n", fam == AF_INET ? "IPv4" : "IPv6");
        return;
    }
    if (listener_nodelay)
        CHECK(ws_fd_nodelay(l) == 0);
    char peer[64];
    errno = 0;
    CHECK(ws_fd_accept(l, inherited, peer, sizeof peer) == -1 && errno == EAGAIN);
    int client = socket(fam, SOCK_STREAM, 0);
    if (fam == AF_INET) {   /* from 127.10.200.3 (all of 127/8 is local): digits of every width */
        struct sockaddr_in from = {0};
        from.sin_family = AF_INET;
        from.sin_addr.s_addr = htonl(0x7f0ac803);
        CHECK(bind(client, (struct sockaddr *)&from, sizeof from) == 0);
    }
    CHECK(connect(client, (struct sockaddr *)&a, len) == 0);
    CHECK(getsockname(client, (struct sockaddr *)&c, &clen) == 0);
    int fd = ws_fd_accept(l, inherited, peer, sizeof peer);
    CHECK(fd >= 0);
    char want[64];
    if (fam == AF_INET)
        snprintf(want, sizeof want, "127.10.200.3:%d", ntohs(((struct sockaddr_in *)&c)->sin_port));
    else
        snprintf(want, sizeof want, "[::1]:%d", ntohs(((struct sockaddr_in6 *)&c)->sin6_port));
    CHECK(strcmp(peer, want) == 0);
    if (strcmp(peer, want) != 0)
        fprintf(stderr, "peer %s, want %s\n", peer, want);
    CHECK(nodelay_of(fd) == 1);
    CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    close(fd);
    /* no peer buffer wanted */
    int client2 = socket(fam, SOCK_STREAM, 0);
    CHECK(connect(client2, (struct sockaddr *)&a, len) == 0);
    fd = ws_fd_accept(l, inherited, NULL, 0);
    CHECK(fd >= 0 && nodelay_of(fd) == 1);
    close(fd);
    close(client2);
    close(client);
    close(l);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* CPU time (user + system) of this process, ms */
static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void spin_wait(void) {
#ifdef __linux__
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    int ep = ws_poll_open();
    CHECK(ep >= 0 && ws_poll_watch(ep, sv[0]) == 0);
    ws_poll_event ev[4];
    /* the writable edge of a new socket: at once, spin or not */
    CHECK(ws_poll_wait(ep, ev, 4, 1000, 50000, NULL) == 1 && ev[0].writable);
    /* nothing comes: the spin is part of the timeout (60 ms), not added to it */
    double t0 = now_ms(), c0 = cpu_ms();
    CHECK(ws_poll_wait(ep, ev, 4, 60, 30000, NULL) == 0);
    double dt = now_ms() - t0, dc = cpu_ms() - c0;
    CHECK(dt >= 55 && dt < 1000);
    /* it did poll (30 ms of spin; 1 ms of CPU even on a loaded machine,
     * about none for a sleep), then slept (CPU time <= wall time) */
    CHECK(dc >= 1 && dc < 55);
    if (!(dt >= 55 && dt < 1000) || dc < 1 || dc >= 55)
        fprintf(stderr, "spin wait: %.1f ms, %.1f ms of CPU\n", dt, dc);
    /* a spin longer than the timeout stops at the timeout */
    t0 = now_ms();
    CHECK(ws_poll_wait(ep, ev, 4, 20, 500000, NULL) == 0);
    dt = now_ms() - t0;
    CHECK(dt >= 15 && dt < 1000);
    /* timeout 0 never spins */
    t0 = now_ms();
    CHECK(ws_poll_wait(ep, ev, 4, 0, 500000, NULL) == 0);
    CHECK(now_ms() - t0 < 20);
    /* an event during the spin ends it */
    pid_t pid = fork();
    if (pid == 0) {
        usleep(10000);
        _exit(write(sv[1], "x", 1) == 1 ? 0 : 1);
    }
    t0 = now_ms();
    CHECK(ws_poll_wait(ep, ev, 4, 5000, 2000000, NULL) == 1 && ev[0].readable);
    dt = now_ms() - t0;
    CHECK(dt < 1000);
    /* waited_us: how long the call took */
    long long waited = -1;
    t0 = now_ms();
    CHECK(ws_poll_wait(ep, ev, 4, 30, 0, &waited) == 0);
    dt = now_ms() - t0;
    CHECK(waited >= 25000 && (double)waited <= dt * 1000 + 1000);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(ep);
    close(sv[0]);
    close(sv[1]);
#endif
}

/* What arrives on fd: exactly want[0..n), read until it is all there. */
static int arrives(int fd, const unsigned char *want, size_t n) {
    unsigned char got[4096];
    size_t have = 0;
    while (have < n) {
        ssize_t r = read(fd, got + have, sizeof got - have);
        if (r <= 0)
            return 0;
        have += (size_t)r;
    }
    return have == n && memcmp(got, want, n) == 0;
}

static void send_pieces(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    unsigned char a[14], b[3000], want[3014];
    for (size_t i = 0; i < sizeof a; i++) a[i] = (unsigned char)(0xA0 + i);
    for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)(i * 7 + 1);
    /* either side of the copy limit (1 KiB in all), and b empty */
    static const size_t bns[] = {0, 32, 1024 - 14, 1024 - 13, 3000};
    for (size_t k = 0; k < sizeof bns / sizeof bns[0]; k++) {
        size_t bn = bns[k];
        memcpy(want, a, sizeof a);
        memcpy(want + sizeof a, b, bn);
        CHECK(ws_fd_send2(sv[0], a, sizeof a, b, bn) == (ssize_t)(sizeof a + bn));
        CHECK(arrives(sv[1], want, sizeof a + bn));
    }
    struct iovec one = {b, 100}, three[3] = {{b, 10}, {a, 14}, {b + 10, 5}};
    CHECK(ws_fd_sendv(sv[0], &one, 1) == 100 && arrives(sv[1], b, 100));
    memcpy(want, b, 10), memcpy(want + 10, a, 14), memcpy(want + 24, b + 10, 5);
    CHECK(ws_fd_sendv(sv[0], three, 3) == 29 && arrives(sv[1], want, 29));
    close(sv[1]);   /* SIGPIPE would end this process: it must be EPIPE */
    CHECK(ws_fd_send2(sv[0], a, sizeof a, b, 32) == -1 && errno == EPIPE);
    CHECK(ws_fd_send2(sv[0], a, sizeof a, b, 3000) == -1 && errno == EPIPE);
    close(sv[0]);
}

/* ws_fd_hungup: bytes still queued do not hide the peer's FIN */
static void hungup(void) {
    int sv[2];
    char c;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(ws_fd_hungup(sv[1]) == 0);
    CHECK(write(sv[0], "PROXY", 5) == 5);
    CHECK(ws_fd_hungup(sv[1]) == 0);
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    CHECK(ws_fd_hungup(sv[1]) == 1);
    CHECK(ws_fd_peek(sv[1], &c, 1) == 1 && c == 'P');
    close(sv[0]);
    close(sv[1]);
}

int main(void) {
    signal(SIGPIPE, SIG_DFL);
    send_pieces();
    hungup();
    spin_wait();
    accept_one(AF_INET, 0, 0);   /* set per connection */
    accept_one(AF_INET, 1, 1);   /* inherited from the listener */
    accept_one(AF_INET6, 1, 1);
    accept_one(AF_INET6, 0, 0);
    return check_report("test_io");
}
