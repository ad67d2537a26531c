/* File-descriptor I/O for the hot path: epoll readiness and gathered
 * writes. Linux only (WS_HAVE_EPOLL); callers fall back to LuaSocket. */
#ifndef WS_IO_H
#define WS_IO_H

#include <stddef.h>
#include <sys/uio.h>
#include <sys/types.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

#if defined(__linux__)
#define WS_HAVE_EPOLL 1
#endif

/* The one errno-to-token table: "timeout" (EAGAIN), "closed" (EPIPE,
 * ECONNRESET, ENOTCONN, EBADF), "address already in use", else strerror. */
const char *ws_errno_token(int err);

typedef struct {
    int fd;
    int readable;     /* also set on hang-up and error, so a reader finds out */
    int writable;
    int hangup;       /* EPOLLRDHUP, EPOLLHUP or EPOLLERR: the peer's FIN (or an
                         error) came by the time of the wait, maybe behind data */
} ws_poll_event;

/* epoll instance; -1 with errno on failure */
int ws_poll_open(void);

/* Watch fd for reading and writing, edge-triggered: one registration for
 * the socket's life, no system call per wait. 0 or -1 with errno. */
int ws_poll_watch(int ep, int fd);
int ws_poll_unwatch(int ep, int fd);

/* Wait up to timeout_ms (-1: forever). Returns the number of events, or -1.
 * spin_us > 0: before sleeping, poll without sleeping for up to spin_us
 * microseconds (of the timeout): an event that comes meanwhile costs no
 * wake-up of a sleeping thread, which on a VM can take longer than the
 * work it brings. waited_us (may be NULL): how long the call took. */
int ws_poll_wait(int ep, ws_poll_event *ev, int max, int timeout_ms, int spin_us, long long *waited_us);

/* accept4(2) a non-blocking, close-on-exec connection with TCP_NODELAY set:
 * the descriptor, or -1 with errno (EAGAIN when none is pending).
 * inherited: the listener has TCP_NODELAY (ws_fd_nodelay), which Linux
 * passes on to what it accepts, so no setsockopt per connection there.
 * peer (peercap >= 64 bytes, or NULL): the peer as "ip:port", "[ip]:port"
 * for IPv6, or "?" (another family), from accept4's own address. */
int ws_fd_accept(int listen_fd, int inherited, char *peer, size_t peercap);

/* Set TCP_NODELAY on fd (a listener: see ws_fd_accept): 0 or -1 with errno. */
int ws_fd_nodelay(int fd);

/* Make fd non-blocking: 0 or -1 with errno. */
int ws_fd_nonblock(int fd);

/* A non-blocking, close-on-exec duplicate of fd (TCP_NODELAY set where it
 * applies), so a socket another event loop accepted can be taken over while
 * the loop closes its own handle: the duplicate, or -1 with errno. */
int ws_fd_adopt(int fd);

/* send(2) without SIGPIPE, retried on EINTR: bytes sent or -1 with errno. */
ssize_t ws_fd_send(int fd, const void *buf, size_t n);

/* Peer address as text into ip[ipcap] and its port: the family (4 or 6), or -1. */
int ws_fd_peer(int fd, char *ip, size_t ipcap, int *port);

/* read(2) retried on EINTR: >0 bytes, 0 end of stream, -1 with errno. */
ssize_t ws_fd_read(int fd, void *buf, size_t n);

/* Raise the soft limit on open descriptors to the hard limit, as Go's
 * runtime does at start: a server's connections should not stop at a
 * shell's default of 1024. Returns the soft limit in force, or -1. */
long ws_fd_raise_limit(void);

/* Two pieces (b may be empty) in one system call, no SIGPIPE, retried on
 * EINTR: bytes written or -1 with errno. Up to 1 KiB in all they are copied
 * and sent with send(2) (cheaper in the kernel), else gathered with sendmsg(2). */
ssize_t ws_fd_send2(int fd, const void *a, size_t an, const void *b, size_t bn);

/* One gathered sendmsg(2) of n pieces (at most IOV_MAX; one: send(2)), as ws_fd_send2. */
ssize_t ws_fd_sendv(int fd, struct iovec *iov, int n);

/* shutdown(2); how: WS_SHUT_BOTH, WS_SHUT_SEND or WS_SHUT_RECEIVE. 0 or -1. */
enum { WS_SHUT_BOTH, WS_SHUT_SEND, WS_SHUT_RECEIVE };
int ws_fd_shutdown(int fd, int how);

/* close(2) a descriptor (a connection, a poller) */
void ws_fd_close(int fd);

/* ---- processes, listeners, signals (deployment; Linux) --------------------- */

/* A non-blocking, close-on-exec listening TCP socket on host:port, made for
 * the family host resolves to, with SO_REUSEADDR (and SO_REUSEPORT when
 * reuseport: several processes share the port, the kernel spreads
 * connections by a hash). The fd, or -1 with errno, or with *gai_err set
 * when host does not resolve (getaddrinfo's code, for gai_strerror). */
int ws_fd_listen(const char *host, int port, int backlog, int reuseport, int *gai_err);

/* Take over an inherited listening socket (systemd's LISTEN_FDS): checks
 * SO_ACCEPTCONN (EINVAL if not listening), sets O_NONBLOCK and FD_CLOEXEC. */
int ws_fd_adopt_listener(int fd);

/* Local address of fd as text and its port: the family (4 or 6), or -1. */
int ws_fd_sockname(int fd, char *ip, size_t ipcap, int *port);

/* recv(2) with MSG_PEEK (the bytes stay queued), retried on EINTR. */
ssize_t ws_fd_peek(int fd, void *buf, size_t n);

/* 1 when the peer has shut down its sending side or the connection failed
 * (poll(2) POLLRDHUP/POLLHUP/POLLERR, without waiting): no more bytes will
 * come; 0 otherwise. */
int ws_fd_hungup(int fd);

/* Block sigs[n] and return a signalfd(2) that reads them (close-on-exec,
 * non-blocking when nonblock), or -1 with errno. */
int ws_signals_block(const int *sigs, int n, int nonblock);

/* The next signal from a signalfd, waiting up to timeout_ms (-1: forever,
 * 0: not at all): the signal number, 0 when none came, or -1 with errno. */
int ws_signals_next(int sfd, int timeout_ms);

/* Close sfd; discard what is pending of sigs[n] and unblock them. */
void ws_signals_release(int sfd, const int *sigs, int n);

/* fork(2): the child's pid in the parent, 0 in the child, -1 with errno.
 * die_with_parent: the child gets SIGTERM when the parent dies. */
long ws_fork(int die_with_parent);

/* waitpid(-1, WNOHANG): the pid of a child that ended, with *how 'e'
 * (exited, *code its status) or 's' (killed, *code the signal); 0 when none
 * has ended, -1 with errno (ECHILD: no children). */
long ws_reap(int *how, int *code);

int ws_kill(long pid, int sig);
/* the CPUs this process may run on (its affinity mask) */
long ws_cpu_count(void);
long ws_getpid(void);

/* glibc: blocks up to min(bytes, 32 MiB) (at least glibc's default 128 KiB)
 * come from the heap, and up to
 * bytes of free heap top are kept instead of trimmed, so a server that
 * handles large messages reuses its pages instead of faulting them in for
 * every message. 1 when applied, 0 elsewhere (or when glibc refused). */
int ws_heap_keep(size_t bytes);
/* glibc: when more than keep bytes of the heap are free, give free pages
 * back to the kernel (wherever they are), keeping keep bytes; returns 1 if
 * any went back (0 elsewhere) */
int ws_heap_trim(size_t keep);

#pragma GCC visibility pop

#endif
