#include "ws_proxy.h"

#include <arpa/inet.h>
#include <string.h>

static const unsigned char V2_SIG[12] = {'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};

static int bad(const char **why, const char *reason) {
    if (why)
        *why = reason;
    return -1;
}

/* p[0..n) is a prefix of want[0..wn): so far so good, more is needed */
static int is_prefix(const unsigned char *p, size_t n, const void *want, size_t wn) {
    return memcmp(p, want, n < wn ? n : wn) == 0;
}

/* a v1 port: decimal 0..65535, no sign, no leading zero */
static int port_of(const char *s, size_t n) {
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535 ? (int)v : -1;
}

/* copy one space-separated field of line[*pos..end) into dst[cap] */
static int field(const char *line, size_t *pos, size_t end, char *dst, size_t cap, int last) {
    size_t i = *pos, start = i;
    while (i < end && line[i] != ' ')
        i++;
    size_t n = i - start;
    if (n == 0 || n >= cap || (last ? i != end : i == end))
        return -1;
    /* only what addresses and ports are made of: a NUL would cut the
     * text short for inet_pton and let "::1\0junk" through */
    for (size_t k = start; k < i; k++)
        if (!strchr("0123456789abcdefABCDEF:.", line[k]) || line[k] == '\0')
            return -1;
    memcpy(dst, line + start, n);
    dst[n] = '\0';
    *pos = last ? i : i + 1;
    return 0;
}

static int parse_v1(const unsigned char *p, size_t n, ws_proxy_info *out, const char **why) {
    size_t lim = n < WS_PROXY_V1_MAX ? n : WS_PROXY_V1_MAX, eol = 0;
    for (size_t i = 0; i < lim; i++) {
        if (p[i] == '\n')
            return bad(why, "v1: bare LF");
        if (p[i] == '\r') {
            if (i + 1 == n)
                return 0;
            if (p[i + 1] != '\n' || i + 2 > WS_PROXY_V1_MAX)
                return bad(why, "v1: bad line end");
            eol = i;
            break;
        }
    }
    if (!eol) {
        if (n >= WS_PROXY_V1_MAX)
            return bad(why, "v1: header too long");
        return is_prefix(p, n, "PROXY ", 6) ? 0 : bad(why, "not a PROXY header");
    }
    const char *line = (const char *)p;
    if (eol < 6 || memcmp(line, "PROXY ", 6) != 0)
        return bad(why, "not a PROXY header");
    memset(out, 0, sizeof *out);
    out->version = 1;
    if (eol >= 13 && memcmp(line + 6, "UNKNOWN", 7) == 0 && (eol == 13 || line[13] == ' '))
        return (int)eol + 2;   /* the rest of the line is to be ignored */
    int fam;
    if (eol > 11 && memcmp(line + 6, "TCP4 ", 5) == 0)
        fam = 4;
    else if (eol > 11 && memcmp(line + 6, "TCP6 ", 5) == 0)
        fam = 6;
    else
        return bad(why, "v1: unknown protocol");
    size_t pos = 11;
    char sp[8], dp[8];
    unsigned char bin[16];
    int af = fam == 4 ? AF_INET : AF_INET6;
    if (field(line, &pos, eol, out->src, sizeof out->src, 0) != 0 ||
        field(line, &pos, eol, out->dst, sizeof out->dst, 0) != 0 ||
        field(line, &pos, eol, sp, sizeof sp, 0) != 0 ||
        field(line, &pos, eol, dp, sizeof dp, 1) != 0)
        return bad(why, "v1: bad fields");
    if (inet_pton(af, out->src, bin) != 1 || inet_pton(af, out->dst, bin) != 1)
        return bad(why, "v1: bad address");
    out->src_port = port_of(sp, strlen(sp));
    out->dst_port = port_of(dp, strlen(dp));
    if (out->src_port < 0 || out->dst_port < 0)
        return bad(why, "v1: bad port");
    out->family = fam;
    return (int)eol + 2;
}

static int parse_v2(const unsigned char *p, size_t n, ws_proxy_info *out, const char **why) {
    if (n < 16)
        return is_prefix(p, n, V2_SIG, sizeof V2_SIG) ? 0 : bad(why, "not a PROXY header");
    if (memcmp(p, V2_SIG, sizeof V2_SIG) != 0)
        return bad(why, "not a PROXY header");
    int ver = p[12] >> 4, cmd = p[12] & 0x0f, fam = p[13];
    size_t len = ((size_t)p[14] << 8) | p[15];
    if (ver != 2)
        return bad(why, "v2: bad version");
    if (cmd > 1)
        return bad(why, "v2: bad command");
    if (16 + len > WS_PROXY_MAX)
        return bad(why, "v2: header too long");
    size_t need = 0;
    /* LOCAL: "discard the protocol block including the family which is
     * ignored" (the spec; HAProxy too): a health check is not refused for it */
    if (cmd == 1) switch (fam) {
    case 0x00: break;                       /* UNSPEC */
    case 0x11: case 0x12: need = 12; break; /* IPv4 stream/dgram */
    case 0x21: case 0x22: need = 36; break; /* IPv6 */
    case 0x31: case 0x32: need = 216; break;/* unix */
    default: return bad(why, "v2: bad family");
    }
    if (len < need)
        return bad(why, "v2: address block too short");
    if (n < 16 + len)
        return 0;
    memset(out, 0, sizeof *out);
    out->version = 2;
    /* LOCAL (a health check from the proxy itself) and anything but TCP
     * over IP carry no client address: the connection's own is kept */
    if (cmd == 1 && (fam == 0x11 || fam == 0x21)) {
        const unsigned char *a = p + 16;
        int af = fam == 0x11 ? AF_INET : AF_INET6;
        size_t al = fam == 0x11 ? 4 : 16;
        if (!inet_ntop(af, a, out->src, sizeof out->src) || !inet_ntop(af, a + al, out->dst, sizeof out->dst))
            return bad(why, "v2: bad address");
        out->src_port = (a[2 * al] << 8) | a[2 * al + 1];
        out->dst_port = (a[2 * al + 2] << 8) | a[2 * al + 3];
        out->family = fam == 0x11 ? 4 : 6;
    }
    return (int)(16 + len);
}

int ws_proxy_parse(const unsigned char *p, size_t n, ws_proxy_info *out, const char **why) {
    if (n == 0)
        return 0;
    if (p[0] == 'P')
        return parse_v1(p, n, out, why);
    if (p[0] == '\r')
        return parse_v2(p, n, out, why);
    return bad(why, "not a PROXY header");
}
