/* Fan-out: one encoded frame written to many connections in one pass, one
 * send(2) each (or TLS writes), for a broadcast to connections whose send
 * queues are empty. Plain C; knows nothing of Lua or of send queues: a
 * target that did not take all of it says how much it took, and the caller
 * queues the rest, so frames on the wire stay whole. */
#ifndef WS_FANOUT_H
#define WS_FANOUT_H

#include <stddef.h>

#include "ws_tls.h"

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

enum {
    WS_FAN_DONE = 0,      /* took all of it */
    WS_FAN_AGAIN = 1,     /* took `sent` bytes (maybe 0); the socket is full (or TLS wants to read) */
    WS_FAN_FAILED = 2     /* the connection broke (or is closed: fd < 0); `sent` bytes went out before */
};

typedef struct {
    int fd;               /* the connected, non-blocking descriptor; < 0: closed */
    ws_tls *tls;          /* NULL: plain TCP; else writes go through it */
    size_t sent;          /* out: bytes of the frame written */
    int result;           /* out: WS_FAN_* */
    int err;              /* out: errno when FAILED on a plain descriptor, else 0 */
} ws_fan_target;

/* Write buf[0..n) to every target: a plain one with a single
 * send(MSG_NOSIGNAL | MSG_DONTWAIT) (a short write means its buffer is
 * full: no second try), a TLS one with writes until done or no progress.
 * Returns how many targets did not take all of it. */
size_t ws_fanout(ws_fan_target *t, size_t count, const void *buf, size_t n);

#pragma GCC visibility pop

#endif
