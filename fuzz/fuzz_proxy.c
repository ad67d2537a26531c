/* libFuzzer target for ws_proxy: differential against fuzz/proxy_oracle.h
 * (its own address parsing), on the whole input and on every prefix of a
 * header it accepts (each must be "incomplete", never another answer).
 *
 * Built and run by scripts/fuzz.sh (make fuzz, make fuzz-short).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_proxy.h"

#include "proxy_oracle.h"

static void same(const ws_proxy_info *got, const ref_proxy *want) {
    if (got->version != want->version || got->family != want->family)
        abort();
    if (!want->family)
        return;
    unsigned char src[16], dst[16];
    int af = want->family == 4 ? AF_INET : AF_INET6;
    size_t n = want->family == 4 ? 4 : 16;
    if (inet_pton(af, got->src, src) != 1 || inet_pton(af, got->dst, dst) != 1)
        abort();
    if (memcmp(src, want->src, n) != 0 || memcmp(dst, want->dst, n) != 0)
        abort();
    if (got->src_port != want->src_port || got->dst_port != want->dst_port)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ws_proxy_info got;
    ref_proxy want;
    const char *why = NULL;
    int r = ws_proxy_parse(data, size, &got, &why);
    int w = ref_proxy_parse(data, size, &want);
    if (r != w)
        abort();
    if (r < 0 && (!why || !*why))
        abort();
    if (r > 0) {
        same(&got, &want);
        for (int k = 0; k < r; k++)
            if (ws_proxy_parse(data, (size_t)k, &got, &why) != 0)
                abort();
    }
    return 0;
}
