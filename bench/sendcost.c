/* sendcost: what one small frame's write costs on loopback TCP, written as
 * ws_fd_send2 wrote it before (sendmsg of header and payload) and as it
 * does now (both copied into one buffer, send).
 *
 *   cc -O2 -Wall -Wextra -Werror bench/sendcost.c -o build/bench/sendcost
 *   taskset -c 0 build/bench/sendcost [frames=300000] [payload=32, at most 4096] [rounds=3]
 *
 * Prints ns per frame for each way, alternating. The receiving end is
 * drained every 16 frames in the same process, so both ways pay the same
 * receive work; the difference is the send path's own. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double run(int copy, int s, int c, long frames, size_t n) {
    static unsigned char pay[4096], buf[4100], sink[65536];
    unsigned char head[4] = {0x82, (unsigned char)n, 0, 0};
    size_t hl = 2;
    if (n > 125)
        head[1] = 126, head[2] = (unsigned char)(n >> 8), head[3] = (unsigned char)n, hl = 4;
    memset(pay, 'x', sizeof pay);
    double t0 = now();
    for (long i = 0; i < frames; i++) {
        if (copy) {
            memcpy(buf, head, hl);
            memcpy(buf + hl, pay, n);
            if (send(s, buf, n + hl, MSG_NOSIGNAL) < 0)
                return -1;
        } else {
            struct iovec iov[2] = {{head, hl}, {pay, n}};
            struct msghdr m;
            memset(&m, 0, sizeof m);
            m.msg_iov = iov;
            m.msg_iovlen = 2;
            if (sendmsg(s, &m, MSG_NOSIGNAL) < 0)
                return -1;
        }
        if ((i & 15) == 15)
            while (recv(c, sink, sizeof sink, MSG_DONTWAIT) > 0) {}
    }
    return (now() - t0) * 1e9 / (double)frames;
}

int main(int argc, char **argv) {
    long frames = argc > 1 ? atol(argv[1]) : 300000;
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 32;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    if (frames <= 0 || n > 4096 || rounds <= 0) {
        fprintf(stderr, "usage: sendcost [frames>0] [payload 0..4096] [rounds>0]\n");
        return 2;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) != 0) {
        perror("listen");
        return 1;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        return 1;
    }
    int s = accept(l, NULL, NULL);
    if (s < 0 || setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        perror("accept");
        return 1;
    }
    for (int r = 0; r < rounds; r++) {
        double g = run(0, s, c, frames, n), p = run(1, s, c, frames, n);
        if (g < 0 || p < 0) {
            perror("send");
            return 1;
        }
        printf("%zu-byte payload: sendmsg of 2 pieces %.0f ns, copy + send %.0f ns (%.2fx)\n", n, g, p, p / g);
    }
    return 0;
}
