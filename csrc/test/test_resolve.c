/* ws_resolve (ws_resolve.c): numeric hosts without a lookup, "localhost"
 * from /etc/hosts in place and on the lookup thread (its eventfd readable
 * once the answer is in), and requests released before their thread is
 * done: each thread then frees its own, and none is left (run under ASan
 * and valgrind by make ctest-asan / ctest-valgrind: no leak, no use after
 * free). No DNS server is asked. */
#define _GNU_SOURCE
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ws_resolve.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until every request is freed, at most secs; 1 if they all were. */
static int settle(double secs) {
    double end = now() + secs;
    while (ws_resolve_live() != 0 && now() < end)
        usleep(1000);
    return ws_resolve_live() == 0;
}

/* until no lookup thread is left (each ends once the queue is empty) */
static int threads_gone(double secs) {
    double end = now() + secs;
    while (ws_resolve_threads() != 0 && now() < end)
        usleep(1000);
    return ws_resolve_threads() == 0;
}

static int has(const ws_addr *a, int n, int family, const char *addr) {
    for (int i = 0; i < n; i++)
        if (a[i].family == family && strcmp(a[i].addr, addr) == 0)
            return 1;
    return 0;
}

static void test_numeric(void) {
    ws_addr a;
    CHECK(ws_resolve_numeric("127.0.0.1", &a) == 1);
    CHECK(a.family == 4 && strcmp(a.addr, "127.0.0.1") == 0);
    CHECK(ws_resolve_numeric("::1", &a) == 1);
    CHECK(a.family == 6 && strcmp(a.addr, "::1") == 0);
    CHECK(ws_resolve_numeric("localhost", &a) == 0);
    CHECK(ws_resolve_numeric("", &a) == 0);
}

static void test_now(void) {
    ws_addr a[WS_RESOLVE_MAX];
    ws_resolve_err e;
    int n = ws_resolve_now("localhost", a, WS_RESOLVE_MAX, &e);
    CHECK(n >= 1);
    CHECK(has(a, n, 4, "127.0.0.1"));
    CHECK(ws_resolve_now("", a, WS_RESOLVE_MAX, &e) == 0);
    CHECK(e.gai != 0 && strlen(ws_resolve_strerror(e)) > 0);
}

/* One lookup on its thread, waited for on its eventfd. */
static void test_thread(const char *host, int family, const char *want) {
    ws_resolve *r = ws_resolve_start(host);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK(ws_resolve_live() >= 1);
    struct pollfd p = {ws_resolve_fd(r), POLLIN, 0};
    CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN));
    const ws_addr *a;
    int n = 0;
    ws_resolve_err e;
    CHECK(ws_resolve_result(r, &a, &n, &e) == 1);
    CHECK(n >= 1 && has(a, n, family, want));
    CHECK(ws_resolve_release(r) == 0);   /* (done: nothing was cancelled) */
    CHECK(settle(5));
}

/* Requests released at once, most before their thread is done: each
 * thread frees its own, and writes to no descriptor closed meanwhile
 * (descriptors made right after the release reuse the numbers). */
static void test_cancel(void) {
    enum { N = 64 };
    int cancelled = 0, started = 0;
    for (int i = 0; i < N; i++) {
        ws_resolve *r = ws_resolve_start("localhost");
        CHECK(r != NULL);
        if (!r)
            continue;
        started++;
        cancelled += ws_resolve_release(r);
        int fds[2];
        if (pipe(fds) == 0) {
            close(fds[0]);
            close(fds[1]);
        }
    }
    CHECK(started == N);
    CHECK(settle(10));
    /* (how many were still running depends on the machine; printed for the log) */
    printf("test_resolve: %d of %d released before their lookup ended\n", cancelled, started);
}

/* More requests than threads at once: never more than WS_RESOLVE_THREADS
 * threads, the rest queued, and every one answered. */
static void test_queue(void) {
    enum { N = 4 * WS_RESOLVE_THREADS + 3 };
    ws_resolve *r[N];
    int most = 0, answered = 0;
    for (int i = 0; i < N; i++) {
        r[i] = ws_resolve_start("localhost");
        CHECK(r[i] != NULL);
        int t = ws_resolve_threads();
        if (t > most)
            most = t;
    }
    CHECK(most <= WS_RESOLVE_THREADS);
    for (int i = 0; i < N; i++) {
        if (!r[i])
            continue;
        struct pollfd p = {ws_resolve_fd(r[i]), POLLIN, 0};
        const ws_addr *a;
        int n = 0;
        ws_resolve_err e;
        if (poll(&p, 1, 10000) == 1 && ws_resolve_result(r[i], &a, &n, &e) == 1 &&
            has(a, n, 4, "127.0.0.1"))
            answered++;
        ws_resolve_release(r[i]);
    }
    CHECK(answered == N);
    CHECK(settle(5));
    CHECK(threads_gone(5));
}

int main(void) {
    test_numeric();
    test_now();
    test_thread("localhost", 4, "127.0.0.1");
    test_thread("127.0.0.1", 4, "127.0.0.1");
    test_thread("::1", 6, "::1");
    test_queue();
    test_cancel();
    CHECK(ws_resolve_live() == 0);
    CHECK(threads_gone(5));
    return check_report("test_resolve");
}
