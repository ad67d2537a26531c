/* PROXY protocol v1 (text) and v2 (binary) header parser, as HAProxy's
 * spec describes it (doc/proxy-protocol.txt): the header a trusted load
 * balancer sends before anything else on a connection (before TLS and
 * HTTP) to say who the real client is. Plain C, no I/O. */
#ifndef WS_PROXY_H
#define WS_PROXY_H

#include <stddef.h>

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

/* the longest header accepted: v1 is at most 107 bytes; v2 is 16 bytes
 * plus its length field, capped here (TLVs beyond it are refused) */
#define WS_PROXY_V1_MAX 107
#define WS_PROXY_MAX 4096

typedef struct {
    int version;          /* 1 or 2 */
    int family;           /* 4, 6, or 0: no address (v1 UNKNOWN, v2 LOCAL or UNSPEC/unix) */
    char src[46], dst[46];/* text addresses when family is 4 or 6 */
    int src_port, dst_port;
} ws_proxy_info;

/* Parse a header at the start of p[n]. Returns the header's length (> 0)
 * with *out filled, 0 when more bytes are needed, or -1 when p does not
 * start with a valid header (*why set to a short reason). */
int ws_proxy_parse(const unsigned char *p, size_t n, ws_proxy_info *out, const char **why);

#pragma GCC visibility pop

#endif
