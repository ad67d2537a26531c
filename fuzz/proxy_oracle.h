/* An independent PROXY protocol header parser for the fuzzer and the C
 * tests: written from HAProxy's doc/proxy-protocol.txt without ws_proxy.c's
 * code, with its own address parsing (no inet_pton/inet_ntop), giving
 * addresses as bytes. Returns the header length, 0 (incomplete) or -1. */
#ifndef WS_PROXY_ORACLE_H
#define WS_PROXY_ORACLE_H

#include <stddef.h>
#include <string.h>

typedef struct {
    int version, family;              /* family 4, 6 or 0 (no address) */
    unsigned char src[16], dst[16];
    int src_port, dst_port;
} ref_proxy;

static int ref_hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* dotted quad s[0..n) -> 4 bytes: exactly 4 decimal parts 0..255, no leading zero */
static int ref_ipv4(const char *s, size_t n, unsigned char *out) {
    int part = 0;
    size_t i = 0;
    while (part < 4) {
        size_t start = i;
        int v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 4) v = v * 10 + (s[i++] - '0');
        size_t len = i - start;
        if (len == 0 || len > 3 || v > 255 || (len > 1 && s[start] == '0')) return 0;
        out[part++] = (unsigned char)v;
        if (part < 4) {
            if (i >= n || s[i] != '.') return 0;
            i++;
        }
    }
    return i == n;
}

/* RFC 4291 section 2.2 text -> 16 bytes: hex groups of 1-4 digits, one
 * "::" standing for at least one zero group, a dotted quad as the last 32 bits */
static int ref_ipv6(const char *s, size_t n, unsigned char *out) {
    unsigned short g[8];
    int ng = 0, gap = -1;
    size_t i = 0;
    if (n >= 2 && s[0] == ':' && s[1] == ':') { gap = 0; i = 2; }
    else if (n >= 1 && s[0] == ':') return 0;
    while (i < n) {
        /* a dotted quad ends the address */
        size_t j = i;
        while (j < n && s[j] != ':' && s[j] != '.') j++;
        if (j < n && s[j] == '.') {
            unsigned char v4[4];
            if (ng > 6 || !ref_ipv4(s + i, n - i, v4)) return 0;
            g[ng++] = (unsigned short)(v4[0] << 8 | v4[1]);
            g[ng++] = (unsigned short)(v4[2] << 8 | v4[3]);
            i = n;
            break;
        }
        if (j == i || j - i > 4 || ng == 8) return 0;
        unsigned v = 0;
        for (size_t k = i; k < j; k++) {
            int h = ref_hex(s[k]);
            if (h < 0) return 0;
            v = v * 16 + (unsigned)h;
        }
        g[ng++] = (unsigned short)v;
        i = j;
        if (i == n) break;
        i++;                                  /* the ':' */
        if (i < n && s[i] == ':') {
            if (gap >= 0) return 0;
            gap = ng;
            i++;
        } else if (i == n) {
            return 0;                         /* a single trailing ':' */
        }
    }
    if (gap < 0 ? ng != 8 : ng > 7) return 0;
    memset(out, 0, 16);
    int tail = gap < 0 ? 0 : ng - gap;
    for (int k = 0; k < ng - tail; k++) { out[2 * k] = (unsigned char)(g[k] >> 8); out[2 * k + 1] = (unsigned char)g[k]; }
    for (int k = 0; k < tail; k++) {
        int at = 8 - tail + k;
        out[2 * at] = (unsigned char)(g[gap + k] >> 8);
        out[2 * at + 1] = (unsigned char)g[gap + k];
    }
    return 1;
}

static int ref_port(const char *s, size_t n) {
    if (n < 1 || n > 5 || (n > 1 && s[0] == '0')) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v > 65535 ? -1 : v;
}

static int ref_proxy_v1(const unsigned char *p, size_t n, ref_proxy *r) {
    size_t lim = n < 107 ? n : 107, cr = 0;
    int found = 0;
    for (size_t i = 0; i < lim && !found; i++) {
        if (p[i] == '\n') return -1;
        if (p[i] == '\r') { cr = i; found = 1; }
    }
    if (!found) {
        if (n >= 107) return -1;
        size_t k = n < 6 ? n : 6;
        return memcmp(p, "PROXY ", k) == 0 ? 0 : -1;
    }
    if (cr + 1 == n) return 0;
    if (p[cr + 1] != '\n' || cr + 2 > 107) return -1;
    const char *s = (const char *)p;
    if (cr < 6 || memcmp(s, "PROXY ", 6) != 0) return -1;
    memset(r, 0, sizeof *r);
    r->version = 1;
    if (cr >= 13 && memcmp(s + 6, "UNKNOWN", 7) == 0 && (cr == 13 || s[13] == ' ')) return (int)cr + 2;
    int fam = 0;
    if (cr > 11 && memcmp(s + 6, "TCP4 ", 5) == 0) fam = 4;
    else if (cr > 11 && memcmp(s + 6, "TCP6 ", 5) == 0) fam = 6;
    else return -1;
    /* exactly four fields separated by single spaces */
    size_t at[4], len[4], i = 11;
    for (int f = 0; f < 4; f++) {
        at[f] = i;
        while (i < cr && s[i] != ' ') i++;
        len[f] = i - at[f];
        if (len[f] == 0) return -1;
        if (f < 3) { if (i == cr) return -1; i++; }
    }
    if (i != cr) return -1;
    int ok = fam == 4 ? ref_ipv4(s + at[0], len[0], r->src) && ref_ipv4(s + at[1], len[1], r->dst)
                      : len[0] < 46 && len[1] < 46 && ref_ipv6(s + at[0], len[0], r->src) && ref_ipv6(s + at[1], len[1], r->dst);
    if (!ok) return -1;
    r->src_port = ref_port(s + at[2], len[2]);
    r->dst_port = ref_port(s + at[3], len[3]);
    if (r->src_port < 0 || r->dst_port < 0) return -1;
    r->family = fam;
    return (int)cr + 2;
}

static int ref_proxy_v2(const unsigned char *p, size_t n, ref_proxy *r) {
    static const unsigned char sig[12] = "\r\n\r\n\0\r\nQUIT\n";
    if (n < 16) return memcmp(p, sig, n < 12 ? n : 12) == 0 ? 0 : -1;
    if (memcmp(p, sig, 12) != 0) return -1;
    if ((p[12] & 0xf0) != 0x20 || (p[12] & 0x0f) > 1) return -1;
    size_t len = (size_t)p[14] * 256 + p[15], need;
    if (len + 16 > 4096) return -1;
    need = 0;
    if ((p[12] & 0x0f) == 1) switch (p[13]) {   /* LOCAL: the family is ignored */
    case 0x00: need = 0; break;
    case 0x11: case 0x12: need = 12; break;
    case 0x21: case 0x22: need = 36; break;
    case 0x31: case 0x32: need = 216; break;
    default: return -1;
    }
    if (len < need) return -1;
    if (n < len + 16) return 0;
    memset(r, 0, sizeof *r);
    r->version = 2;
    if ((p[12] & 0x0f) == 1 && (p[13] == 0x11 || p[13] == 0x21)) {
        size_t a = p[13] == 0x11 ? 4 : 16;
        memcpy(r->src, p + 16, a);
        memcpy(r->dst, p + 16 + a, a);
        r->src_port = p[16 + 2 * a] * 256 + p[17 + 2 * a];
        r->dst_port = p[18 + 2 * a] * 256 + p[19 + 2 * a];
        r->family = a == 4 ? 4 : 6;
    }
    return (int)(len + 16);
}

static int ref_proxy_parse(const unsigned char *p, size_t n, ref_proxy *r) {
    if (n == 0) return 0;
    if (p[0] == 'P') return ref_proxy_v1(p, n, r);
    if (p[0] == '\r') return ref_proxy_v2(p, n, r);
    return -1;
}

#endif
