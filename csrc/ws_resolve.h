/* Name resolution that an event loop can wait for: getaddrinfo runs on a
 * detached thread and says it is done on an eventfd (readable then), so a
 * slow or dead resolver (5 s per try) stalls no other connection. Plain C;
 * knows nothing of Lua. */
#ifndef WS_RESOLVE_H
#define WS_RESOLVE_H

#include <stddef.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

#define WS_RESOLVE_MAX 16     /* addresses kept of one answer */
#define WS_ADDR_LEN 64        /* a numeric address, IPv6 with a scope ("fe80::1%eth0") */
#define WS_RESOLVE_THREADS 32 /* lookup threads at most; more requests queue */

typedef struct {
    int family;               /* 4 or 6 */
    char addr[WS_ADDR_LEN];   /* numeric, as getnameinfo(NI_NUMERICHOST) writes it */
} ws_addr;

/* Why a lookup failed: getaddrinfo's code, and errno for EAI_SYSTEM. */
typedef struct {
    int gai;
    int sys;
} ws_resolve_err;

typedef struct ws_resolve ws_resolve;

/* The error text for e: gai_strerror, strerror for EAI_SYSTEM. */
const char *ws_resolve_strerror(ws_resolve_err e);

/* host as a numeric address (AI_NUMERICHOST: no lookup, never blocks):
 * 1 and *out filled, or 0 when host is a name. */
int ws_resolve_numeric(const char *host, ws_addr *out);

/* getaddrinfo(host) on this thread (it blocks): the count of addresses
 * written to out (1..max), in getaddrinfo's order, or 0 with *err. */
int ws_resolve_now(const char *host, ws_addr *out, int max, ws_resolve_err *err);

/* Start resolving host on a thread (all signals blocked in it): a new one
 * while fewer than WS_RESOLVE_THREADS run, else the first one free takes
 * it from a queue. NULL with errno if no eventfd or thread could be made.
 * The request holds two references, the caller's (ws_resolve_release) and
 * the thread's (or the queue's: a request released while queued is never
 * looked up). */
ws_resolve *ws_resolve_start(const char *host);

/* The eventfd (non-blocking, close-on-exec) that becomes readable when the
 * answer is in; -1 once released. */
int ws_resolve_fd(const ws_resolve *r);

/* 0: not done yet. 1: done: *addrs and *n (0: failed, see *err); they stay
 * valid until ws_resolve_release. In a child forked while the lookup ran
 * (its thread stayed in the parent): done at once, failed (ECANCELED). */
int ws_resolve_result(ws_resolve *r, const ws_addr **addrs, int *n, ws_resolve_err *err);

/* Drop the caller's reference (once): the eventfd is closed now; a thread
 * still looking up finishes on its own, signals nothing and frees the
 * request. Returns 1 if the lookup was still running (cancelled). */
int ws_resolve_release(ws_resolve *r);

/* Lookup threads running in this process (at most WS_RESOLVE_THREADS). */
int ws_resolve_threads(void);

/* Requests not freed yet in this process (the caller's or a thread's); a
 * forked child counts only those it started itself. */
long ws_resolve_live(void);

#pragma GCC visibility pop

#endif
