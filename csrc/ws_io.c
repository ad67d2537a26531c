#define _GNU_SOURCE
#include "ws_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* errno in the words LuaSocket uses, where it has some; strerror otherwise */
static const struct {
    int err;
    const char *token;
} TOKENS[] = {
    {EAGAIN, "timeout"},              /* wait for the descriptor */
    {EWOULDBLOCK, "timeout"},
    {EPIPE, "closed"},                /* the peer or we closed it */
    {ECONNRESET, "closed"},
    {ENOTCONN, "closed"},
    {EBADF, "closed"},
    {EADDRINUSE, "address already in use"},
};

const char *ws_errno_token(int err) {
    for (size_t i = 0; i < sizeof TOKENS / sizeof TOKENS[0]; i++)
        if (TOKENS[i].err == err)
            return TOKENS[i].token;
    return strerror(err);
}

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

static long long mono_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int ws_poll_wait(int ep, ws_poll_event *ev, int max, int timeout_ms, int spin_us, long long *waited_us) {
    struct epoll_event raw[256];
    if (max > 256)
        max = 256;
    int n = 0;
    long long t0 = waited_us || spin_us > 0 ? mono_us() : 0;
    if (timeout_ms != 0 && spin_us > 0) {
        if (timeout_ms > 0 && (long long)spin_us > (long long)timeout_ms * 1000)
            spin_us = timeout_ms * 1000;
        long long spent = 0;
        while ((n = epoll_wait(ep, raw, max, 0)) == 0 && (spent = mono_us() - t0) < spin_us)
            ;
        if (n == 0 && timeout_ms > 0)   /* what is left of the timeout */
            timeout_ms = spent / 1000 >= timeout_ms ? 0 : timeout_ms - (int)(spent / 1000);
    }
    if (n == 0 || (n < 0 && errno == EINTR)) {
        do
            n = epoll_wait(ep, raw, max, timeout_ms);
        while (n < 0 && errno == EINTR);
    }
    if (waited_us)
        *waited_us = mono_us() - t0;
    for (int i = 0; i < n; i++) {
        unsigned m = raw[i].events;
        unsigned bad = EPOLLERR | EPOLLHUP;
        ev[i].fd = raw[i].data.fd;
        ev[i].readable = (m & (EPOLLIN | EPOLLRDHUP | bad)) != 0;
        ev[i].writable = (m & (EPOLLOUT | bad)) != 0;
        ev[i].hangup = (m & (EPOLLRDHUP | bad)) != 0;
    }
    return n;
}
#endif

/* Decimal n at p; returns the end. */
static char *put_uint(char *p, unsigned n) {
    char d[10];
    int k = 0;
    do
        d[k++] = (char)('0' + n % 10);
    while ((n /= 10) != 0);
    while (k > 0)
        *p++ = d[--k];
    return p;
}

/* ip (no brackets) and port of an IPv4 / IPv6 address: 4 or 6, or -1 */
static int addr_text(const struct sockaddr_storage *a, char *ip, size_t ipcap, int *port) {
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        *port = ntohs(v4->sin_port);
        return inet_ntop(AF_INET, &v4->sin_addr, ip, (socklen_t)ipcap) ? 4 : -1;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
        *port = ntohs(v6->sin6_port);
        return inet_ntop(AF_INET6, &v6->sin6_addr, ip, (socklen_t)ipcap) ? 6 : -1;
    }
    errno = EAFNOSUPPORT;
    return -1;
}

/* "ip:port" ("[ip]:port" for IPv6, "?" for another family) into out[cap]
 * (cap >= 64). IPv4 by hand: inet_ntop formats it with sprintf, which cost
 * more than the rest of accepting a connection in user space. */
static void format_peer(const struct sockaddr_storage *a, char *out, size_t cap) {
    char ip[INET6_ADDRSTRLEN];
    if (cap < 64) {
        if (cap > 0)
            out[0] = '\0';
        return;
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        const unsigned char *b = (const unsigned char *)&v4->sin_addr;
        char *p = out;
        for (int i = 0; i < 4; i++) {
            p = put_uint(p, b[i]);
            *p++ = i < 3 ? '.' : ':';
        }
        *put_uint(p, ntohs(v4->sin_port)) = '\0';
        return;
    }
    int port;
    if (addr_text(a, ip, sizeof ip, &port) == 6) {
        size_t n = strlen(ip);
        out[0] = '[';
        memcpy(out + 1, ip, n);
        out[n + 1] = ']';
        out[n + 2] = ':';
        *put_uint(out + n + 3, (unsigned)port) = '\0';
        return;
    }
    strcpy(out, "?");
}

int ws_fd_accept(int listen_fd, int inherited, char *peer, size_t peercap) {
    struct sockaddr_storage a;
    socklen_t len;
    int fd;
    do {
        len = sizeof a;
        fd = accept4(listen_fd, (struct sockaddr *)&a, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return fd;
#ifdef __linux__
    if (!inherited)
#endif
    {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    (void)inherited;
    if (peer && peercap > 0) {
        if (len > sizeof a)
            a.ss_family = AF_UNSPEC;
        format_peer(&a, peer, peercap);
    }
    return fd;
}

int ws_fd_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int ws_fd_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ? -1 : 0;
}

int ws_fd_adopt(int fd) {
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return -1;
    if (ws_fd_nonblock(d) != 0) {
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
    return addr_text(&a, ip, ipcap, port);
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

/* Up to this many bytes, two pieces are copied together and sent with
 * send(2): sendmsg(2) costs the kernel about 250 ns more per call (its
 * iovec array copied in and checked, bench/sendcost.c), the copy tens. */
#define SEND_COPY_MAX 1024

ssize_t ws_fd_send2(int fd, const void *a, size_t an, const void *b, size_t bn) {
    if (an + bn <= SEND_COPY_MAX) {
        unsigned char buf[SEND_COPY_MAX];
        memcpy(buf, a, an);
        if (bn)
            memcpy(buf + an, b, bn);
        return ws_fd_send(fd, buf, an + bn);
    }
    struct iovec iov[2] = {{(void *)a, an}, {(void *)b, bn}};
    return ws_fd_sendv(fd, iov, bn ? 2 : 1);
}

ssize_t ws_fd_sendv(int fd, struct iovec *iov, int n) {
    if (n == 1)
        return ws_fd_send(fd, iov[0].iov_base, iov[0].iov_len);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    ssize_t r;
    do
        r = sendmsg(fd, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r;
}

int ws_fd_shutdown(int fd, int how) {
    static const int flags[] = {SHUT_RDWR, SHUT_WR, SHUT_RD};
    return shutdown(fd, flags[how]);
}

void ws_fd_close(int fd) {
    close(fd);                /* Linux frees fd even on EINTR: never retried */
}

/* ---- processes, listeners, signals (deployment) ---------------------------- */

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

int ws_fd_listen(const char *host, int port, int backlog, int reuseport, int *gai_err) {
    struct addrinfo hints, *res = NULL;
    char service[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    *gai_err = getaddrinfo(host, service, &hints, &res);
    if (*gai_err != 0)
        return -1;
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        /* the socket is made for the family of the address, so options set
         * before bind stay on it */
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            (!reuseport || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0) &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        errno = err;
    return fd;
}

int ws_fd_adopt_listener(int fd) {
    int on = 0;
    socklen_t len = sizeof on;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0)
        return -1;
    if (!on) {
        errno = EINVAL;
        return -1;
    }
    if (ws_fd_nonblock(fd) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        return -1;
    return 0;
}

int ws_fd_sockname(int fd, char *ip, size_t ipcap, int *port) {
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    return addr_text(&a, ip, ipcap, port);
}

ssize_t ws_fd_peek(int fd, void *buf, size_t n) {
    ssize_t r;
    do
        r = recv(fd, buf, n, MSG_PEEK);
    while (r < 0 && errno == EINTR);
    return r;
}

int ws_fd_hungup(int fd) {
    struct pollfd p = {fd, POLLRDHUP, 0};
    int r;
    do
        r = poll(&p, 1, 0);
    while (r < 0 && errno == EINTR);
    return r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

int ws_signals_block(const int *sigs, int n, int nonblock) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++)
        sigaddset(&set, sigs[i]);
    /* blocked, the signals wait in the signalfd instead of killing us */
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | (nonblock ? SFD_NONBLOCK : 0));
}

int ws_signals_next(int sfd, int timeout_ms) {
    if (timeout_ms != 0) {
        struct pollfd p = {sfd, POLLIN, 0};
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            return 0;
        if (r <= 0)
            return r;
    }
    struct signalfd_siginfo si;
    ssize_t r = read(sfd, &si, sizeof si);
    if (r == (ssize_t)sizeof si)
        return (int)si.ssi_signo;
    return r < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
}

void ws_signals_release(int sfd, const int *sigs, int n) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++)
        sigaddset(&set, sigs[i]);
    /* consume what is pending so unblocking does not deliver it now (a
     * second SIGTERM after a drain must not kill a process that is about
     * to exit 0) */
    struct timespec zero = {0, 0};
    while (n > 0 && sigtimedwait(&set, NULL, &zero) > 0) {
    }
    close(sfd);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

long ws_fork(int die_with_parent) {
    pid_t parent = getpid();
    pid_t pid = fork();
    /* a worker whose supervisor was killed outright must not go on serving
     * (an orphan holds the port beside the next supervisor's workers):
     * SIGTERM, which the child keeps blocked, then drains it. getppid()
     * catches a parent that died before prctl took effect. */
    if (pid == 0 && die_with_parent &&
        (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent))
        kill(getpid(), SIGTERM);
    return (long)pid;
}

long ws_reap(int *how, int *code) {
    int st;
    pid_t pid;
    do
        pid = waitpid(-1, &st, WNOHANG);
    while (pid < 0 && errno == EINTR);
    if (pid <= 0)
        return pid;
    if (WIFSIGNALED(st)) {
        *how = 's';
        *code = WTERMSIG(st);
    } else {
        *how = 'e';
        *code = WEXITSTATUS(st);
    }
    return (long)pid;
}

int ws_kill(long pid, int sig) {
    return kill((pid_t)pid, sig);
}

long ws_cpu_count(void) {
    /* the CPUs this process may run on (taskset, a container's cpuset), not
     * every one online: a worker per CPU it cannot use only competes */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    return sysconf(_SC_NPROCESSORS_ONLN);   /* (more than CPU_SETSIZE CPUs) */
}

long ws_getpid(void) {
    return (long)getpid();
}

#ifdef __GLIBC__
#include <malloc.h>
#endif

int ws_heap_trim(size_t keep) {
#ifdef __GLIBC__
    /* (the trim threshold only ever trims the top of the heap: freed
     * memory below a block still in use stays mapped; malloc_trim gives
     * back free pages anywhere, keep bytes at the top) */
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks <= keep)
        return 0;
#endif
    return malloc_trim(keep);
#else
    (void)keep;
    return 0;
#endif
}

int ws_heap_keep(size_t bytes) {
#ifdef __GLIBC__
    /* glibc's own rule raises the mmap threshold to the largest block freed
     * (up to 32 MiB) but trims the heap top above twice that, so blocks of a
     * large message go back to the kernel and are faulted in again for the
     * next one. Setting either value turns that rule off: set both. */
    size_t lo = (size_t)128 << 10, hi = (size_t)32 << 20;   /* glibc's default, and its rule's cap */
    int m = (int)(bytes < lo ? lo : bytes > hi ? hi : bytes);
    int t = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
    return mallopt(M_MMAP_THRESHOLD, m) == 1 && mallopt(M_TRIM_THRESHOLD, t) == 1;
#else
    (void)bytes;
    return 0;
#endif
}
