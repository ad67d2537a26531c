/* PROXY protocol header parser (ws_proxy.c): the examples of HAProxy's
 * doc/proxy-protocol.txt, its limits, and every prefix being "incomplete". */
#include <string.h>

#include "check.h"
#include "ws_proxy.h"

static int parse(const char *s, size_t n, ws_proxy_info *i) {
    const char *why = NULL;
    int r = ws_proxy_parse((const unsigned char *)s, n, i, &why);
    if (r < 0)
        CHECK(why != NULL && *why);
    return r;
}

/* every proper prefix of a complete header asks for more */
static void prefixes_incomplete(const char *s, int len) {
    ws_proxy_info i;
    int bad = 0;
    for (int k = 0; k < len; k++)
        bad += parse(s, (size_t)k, &i) != 0;
    CHECK(bad == 0);
}

static void test_v1(void) {
    ws_proxy_info i;
    const char *h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    int len = (int)(strstr(h, "\n") - h) + 1;
    CHECK(parse(h, strlen(h), &i) == len);
    CHECK(i.version == 1 && i.family == 4);
    CHECK(strcmp(i.src, "192.168.0.1") == 0 && strcmp(i.dst, "192.168.0.11") == 0);
    CHECK(i.src_port == 56324 && i.dst_port == 443);
    prefixes_incomplete(h, len);

    h = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
    CHECK(parse(h, strlen(h), &i) == (int)strlen(h));
    CHECK(i.family == 6 && strcmp(i.src, "2001:db8::1") == 0 && i.src_port == 0 && i.dst_port == 65535);

    /* UNKNOWN: no address, the rest of the line ignored */
    h = "PROXY UNKNOWN\r\n";
    CHECK(parse(h, strlen(h), &i) == 15 && i.family == 0);
    h = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    CHECK(parse(h, strlen(h), &i) == (int)strlen(h) && i.family == 0);

    /* the longest legal line is 107 bytes with CRLF */
    char line[200];
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', 91);
    memcpy(line + 105, "\r\n", 2);
    CHECK(parse(line, 107, &i) == 107);
    memset(line + 14, 'x', 92);
    memcpy(line + 106, "\r\n", 2);
    CHECK(parse(line, 108, &i) == -1);
    memset(line, 0, sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', 100);
    CHECK(parse(line, 114, &i) == -1);      /* no CRLF within 107 bytes */

    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          /* bare LF */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",         /* CR without LF */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",       /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",       /* trailing space */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",          /* a field missing */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",    /* port out of range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",       /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",            /* family mismatch */
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY\r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01",                              /* a TLS ClientHello */
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        CHECK(parse(bad[k], strlen(bad[k]), &i) == -1);
    /* a NUL inside an address field */
    static const char nul[] = "PROXY TCP6 ::1\0x ::1 1 2\r\n";
    CHECK(parse(nul, sizeof nul - 1, &i) == -1);
}

static const char SIG[] = "\r\n\r\n\0\r\nQUIT\n";

static size_t v2(char *out, int ver_cmd, int fam, const unsigned char *addr, size_t alen, size_t len) {
    memcpy(out, SIG, 12);
    out[12] = (char)ver_cmd;
    out[13] = (char)fam;
    out[14] = (char)(len >> 8);
    out[15] = (char)len;
    memset(out + 16, 0, len);
    memcpy(out + 16, addr, alen);
    return 16 + len;
}

static void test_v2(void) {
    ws_proxy_info i;
    char buf[5000];
    static const unsigned char a4[12] = {127, 0, 0, 2, 10, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb};
    size_t n = v2(buf, 0x21, 0x11, a4, 12, 12);
    CHECK(parse(buf, n, &i) == 28);
    CHECK(i.version == 2 && i.family == 4 && strcmp(i.src, "127.0.0.2") == 0 && strcmp(i.dst, "10.0.0.1") == 0);
    CHECK(i.src_port == 12345 && i.dst_port == 443);
    prefixes_incomplete(buf, (int)n);

    /* TLVs after the addresses are skipped (length covers them) */
    n = v2(buf, 0x21, 0x11, a4, 12, 12 + 7);
    CHECK(parse(buf, n, &i) == 35 && i.family == 4);

    unsigned char a6[36] = {0x20, 0x01, 0x0d, 0xb8};
    a6[31] = 1;
    a6[32] = 0xff; a6[33] = 0xff; a6[34] = 0; a6[35] = 80;
    n = v2(buf, 0x21, 0x21, a6, 36, 36);
    CHECK(parse(buf, n, &i) == 52 && i.family == 6 && strcmp(i.src, "2001:db8::") == 0 && strcmp(i.dst, "::1") == 0);
    CHECK(i.src_port == 65535 && i.dst_port == 80);

    /* LOCAL (the proxy's own health check), UNSPEC, unix: no address */
    n = v2(buf, 0x20, 0x11, a4, 12, 12);
    CHECK(parse(buf, n, &i) == 28 && i.family == 0);
    n = v2(buf, 0x21, 0x00, a4, 0, 0);
    CHECK(parse(buf, n, &i) == 16 && i.family == 0);
    n = v2(buf, 0x21, 0x31, a4, 0, 216);
    CHECK(parse(buf, n, &i) == 232 && i.family == 0);

    /* LOCAL: the family and address block are ignored, as the spec asks
     * ("discard the protocol block including the family") and HAProxy does */
    n = v2(buf, 0x20, 0x45, a4, 0, 0);               /* a family not defined */
    CHECK(parse(buf, n, &i) == 16 && i.family == 0);
    n = v2(buf, 0x20, 0x21, a4, 12, 12);             /* IPv6 with a block too short for it */
    CHECK(parse(buf, n, &i) == 28 && i.family == 0);

    n = v2(buf, 0x11, 0x11, a4, 12, 12);             /* version 1 in binary */
    CHECK(parse(buf, n, &i) == -1);
    n = v2(buf, 0x22, 0x11, a4, 12, 12);             /* command 2 */
    CHECK(parse(buf, n, &i) == -1);
    n = v2(buf, 0x21, 0x41, a4, 12, 12);             /* family 4 */
    CHECK(parse(buf, n, &i) == -1);
    n = v2(buf, 0x21, 0x21, a4, 12, 12);             /* too short for IPv6 */
    CHECK(parse(buf, n, &i) == -1);
    n = v2(buf, 0x21, 0x11, a4, 12, 4096 - 16);      /* the largest accepted */
    CHECK(parse(buf, n, &i) == 4096);
    n = v2(buf, 0x21, 0x11, a4, 12, 4096 - 15);
    CHECK(parse(buf, 16, &i) == -1);                 /* refused from its length alone */
    buf[5] = 'X';
    CHECK(parse(buf, 16, &i) == -1);
    CHECK(parse(buf, 5, &i) == 0);                   /* still a prefix of the signature */
    CHECK(parse(buf, 6, &i) == -1);
    CHECK(parse("", 0, &i) == 0);
}

int main(void) {
    test_v1();
    test_v2();
    return check_report("c proxy");
}
