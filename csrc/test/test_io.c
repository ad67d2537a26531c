/* ws_fd_accept (ws_io.c) over real loopback TCP: the peer's address comes
 * from accept4 itself ("ip:port", "[ip]:port" for IPv6), the connection is
 * non-blocking with TCP_NODELAY, set per connection or inherited from a
 * listener that has it (ws_fd_nodelay), and EAGAIN says none is pending. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
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

int main(void) {
    accept_one(AF_INET, 0, 0);   /* set per connection */
    accept_one(AF_INET, 1, 1);   /* inherited from the listener */
    accept_one(AF_INET6, 1, 1);
    accept_one(AF_INET6, 0, 0);
    return check_report("test_io");
}
