#define _GNU_SOURCE
#include "ws_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef WS_HAVE_EPOLL
#include <sys/epoll.h>

int ws_poll_open(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int ws_poll_watch(int ep, int fd) {
    struct epoll_event e;
    e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    e.data.fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0)
        return 0;
    /* a closed socket's fd may be reused: take the registration over */
    return errno == EEXIST ? epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) : -1;
}

int ws_poll_unwatch(int ep, int fd) {
    struct epoll_event e = {0};
    return epoll_ctl(ep, EPOLL_CTL_DEL, fd, &e);
}

int ws_poll_wait(int ep, ws_poll_event *ev, int max, int timeout_ms) {
    struct epoll_event raw[256];
    if (max > 256)
        max = 256;
    int n;
    do
        n = epoll_wait(ep, raw, max, timeout_ms);
    while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        unsigned m = raw[i].events;
        unsigned bad = EPOLLERR | EPOLLHUP;
        ev[i].fd = raw[i].data.fd;
        ev[i].readable = (m & (EPOLLIN | EPOLLRDHUP | bad)) != 0;
        ev[i].writable = (m & (EPOLLOUT | bad)) != 0;
    }
    return n;
}
#endif

int ws_fd_accept(int listen_fd) {
    int fd;
    do
        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int ws_fd_adopt(int fd) {
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return -1;
    int fl = fcntl(d, F_GETFL);
    if (fl < 0 || fcntl(d, F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = errno;
        close(d);
        errno = e;
        return -1;
    }
    int one = 1;   /* not a TCP socket (a pipe, a Unix socket): no matter */
    setsockopt(d, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return d;
}

ssize_t ws_fd_send(int fd, const void *buf, size_t n) {
    ssize_t r;
    do
        r = send(fd, buf, n, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r;
}

int ws_fd_peer(int fd, char *ip, size_t ipcap, int *port) {
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    if (a.ss_family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&a;
        *port = ntohs(v4->sin_port);
        return inet_ntop(AF_INET, &v4->sin_addr, ip, (socklen_t)ipcap) ? 4 : -1;
    }
    if (a.ss_family == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a;
        *port = ntohs(v6->sin6_port);
        return inet_ntop(AF_INET6, &v6->sin6_addr, ip, (socklen_t)ipcap) ? 6 : -1;
    }
    return -1;
}

ssize_t ws_fd_read(int fd, void *buf, size_t n) {
    ssize_t r;
    do
        r = read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

long ws_fd_raise_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return -1;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0 && getrlimit(RLIMIT_NOFILE, &r) != 0)
            return -1;
    }
    return r.rlim_cur == RLIM_INFINITY || r.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX : (long)r.rlim_cur;
}

ssize_t ws_fd_write2(int fd, const void *a, size_t an, const void *b, size_t bn) {
    struct iovec iov[2];
    iov[0].iov_base = (void *)a;
    iov[0].iov_len = an;
    iov[1].iov_base = (void *)b;
    iov[1].iov_len = bn;
    ssize_t r;
    do
        r = writev(fd, iov, bn ? 2 : 1);
    while (r < 0 && errno == EINTR);
    return r;
}
