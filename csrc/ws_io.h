/* File-descriptor I/O for the hot path: epoll readiness and gathered
 * writes. Linux only (WS_HAVE_EPOLL); callers fall back to LuaSocket. */
#ifndef WS_IO_H
#define WS_IO_H

#include <stddef.h>
#include <sys/types.h>

#if defined(__linux__)
#define WS_HAVE_EPOLL 1
#endif

typedef struct {
    int fd;
    int readable;     /* also set on hang-up and error, so a reader finds out */
    int writable;
} ws_poll_event;

/* epoll instance; -1 with errno on failure */
int ws_poll_open(void);

/* Watch fd for reading and writing, edge-triggered: one registration for
 * the socket's life, no system call per wait. 0 or -1 with errno. */
int ws_poll_watch(int ep, int fd);
int ws_poll_unwatch(int ep, int fd);

/* Wait up to timeout_ms (-1: forever). Returns the number of events, or -1. */
int ws_poll_wait(int ep, ws_poll_event *ev, int max, int timeout_ms);

/* accept4(2) a non-blocking, close-on-exec connection with TCP_NODELAY set:
 * the descriptor, or -1 with errno (EAGAIN when none is pending). */
int ws_fd_accept(int listen_fd);

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

/* writev(2) of two pieces, retried on EINTR: bytes written or -1 with errno. */
ssize_t ws_fd_write2(int fd, const void *a, size_t an, const void *b, size_t bn);

#endif
