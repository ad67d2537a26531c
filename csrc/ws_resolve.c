/* getaddrinfo off the loop's thread (ws_resolve.h). A request is shared by
 * its caller and its thread, reference-counted under its mutex: a caller
 * that gives up (a deadline) closes its eventfd and leaves; the thread
 * then writes to no descriptor, and whichever of the two lets go last
 * frees the request, so neither waits for the other. At most
 * WS_RESOLVE_THREADS threads run; more requests wait in a queue, each
 * taken by the next thread free, and skipped if its caller left meanwhile
 * (with a dead DNS server, callers that time out leave no work behind). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "ws_resolve.h"

struct ws_resolve {
    pthread_mutex_t mu;
    pid_t pid;                /* the process whose thread looks up */
    int refs;                 /* the caller's and the thread's */
    int done;                 /* the answer is in (set by the thread) */
    int fd;                   /* eventfd; -1 once the caller let go */
    int n;
    struct ws_resolve *next;  /* in the queue (under live_mu) */
    ws_resolve_err err;
    ws_addr addrs[WS_RESOLVE_MAX];
    char host[];              /* read-only once the thread runs */
};

/* under live_mu: requests not freed, lookup threads, the queue */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static long live;
static int threads;
static ws_resolve *queue_head, *queue_tail;

/* glibc's resolver holds a process-wide lock of its own (resolv_conf.c)
 * at moments of a lookup, and fork() copies it locked if a lookup thread
 * held it then: every later lookup of the child waits on it for good. So a
 * fork waits until no lookup is inside getaddrinfo (each holds gai_lock to
 * read; the fork takes it to write, which stops new ones meanwhile), at
 * most FORK_WAIT_S; past that (a DNS server that does not answer), the
 * child's lookups fail at once with EDEADLK rather than hang. */
#define FORK_WAIT_S 5
static pthread_rwlock_t gai_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static int gai_held;      /* the fork holds gai_lock (set in fork_prepare) */
static int gai_broken;    /* this process was forked while a lookup ran */

/* A fork copies a request in flight, not its thread: in the child it
 * never ends (and the eventfd, shared with the parent, turns readable when
 * the parent's thread is done: a task waiting on it would spin), and its
 * mutex may be copied locked. The child's copy is an orphan: it answers
 * "cancelled" at once and is freed without its lock; the child counts
 * only its own lookups and threads (live starts again at 0, the queue
 * empty, its lock unlocked). */
static int orphan(const ws_resolve *r) {
    return r->pid != getpid();
}

static void fork_prepare(void) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += FORK_WAIT_S;
    gai_held = pthread_rwlock_timedwrlock(&gai_lock, &until) == 0;
    pthread_mutex_lock(&live_mu);
}

static void fork_parent(void) {
    pthread_mutex_unlock(&live_mu);
    if (gai_held)
        pthread_rwlock_unlock(&gai_lock);
}

static void fork_child(void) {
    /* (made anew, not unlocked: the copy may still record the parent's
     * threads as waiters, and then a read lock here would wait for good) */
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&gai_lock, &a);
    pthread_rwlockattr_destroy(&a);
    if (!gai_held)
        gai_broken = 1;
    live = 0;
    threads = 0;
    queue_head = queue_tail = NULL;   /* (the parent's, orphans here) */
    pthread_mutex_unlock(&live_mu);
}

static void live_add(long d) {
    pthread_mutex_lock(&live_mu);
    live += d;
    pthread_mutex_unlock(&live_mu);
}

long ws_resolve_live(void) {
    pthread_mutex_lock(&live_mu);
    long n = live;
    pthread_mutex_unlock(&live_mu);
    return n;
}

const char *ws_resolve_strerror(ws_resolve_err e) {
    if (e.gai == EAI_SYSTEM && e.sys == EDEADLK)
        return "no lookups in this process: it was forked while one ran (glibc's resolver lock may be held for good)";
    return e.gai == EAI_SYSTEM ? strerror(e.sys) : gai_strerror(e.gai);
}

/* getaddrinfo with flags into out (no duplicates): the count, or 0 with *err */
static int lookup(const char *host, int flags, ws_addr *out, int max, ws_resolve_err *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;   /* one entry per address, not one per socket type */
    hints.ai_flags = flags;            /* (no AI_ADDRCONFIG: it drops "localhost" on a loopback-only host) */
    int numeric = (flags & AI_NUMERICHOST) != 0;   /* (never reaches the resolver) */
    if (!numeric && gai_broken) {
        err->gai = EAI_SYSTEM;
        err->sys = EDEADLK;
        return 0;
    }
    if (!numeric)
        pthread_rwlock_rdlock(&gai_lock);
    int rc = getaddrinfo(host, NULL, &hints, &res);
    int sys = errno;
    if (!numeric)
        pthread_rwlock_unlock(&gai_lock);
    err->gai = rc;
    err->sys = rc == EAI_SYSTEM ? sys : 0;
    if (rc != 0)
        return 0;
    int n = 0;
    for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
            continue;
        ws_addr *o = &out[n];
        if (getnameinfo(a->ai_addr, a->ai_addrlen, o->addr, sizeof o->addr, NULL, 0, NI_NUMERICHOST) != 0)
            continue;
        o->family = a->ai_family == AF_INET6 ? 6 : 4;
        int dup = 0;
        for (int i = 0; i < n && !dup; i++)
            dup = out[i].family == o->family && strcmp(out[i].addr, o->addr) == 0;
        if (!dup)
            n++;
    }
    freeaddrinfo(res);
    if (n == 0) {
        err->gai = EAI_NONAME;
        err->sys = 0;
    }
    return n;
}

int ws_resolve_numeric(const char *host, ws_addr *out) {
    ws_resolve_err err;
    return lookup(host, AI_NUMERICHOST, out, 1, &err) == 1;
}

int ws_resolve_now(const char *host, ws_addr *out, int max, ws_resolve_err *err) {
    return lookup(host, 0, out, max < WS_RESOLVE_MAX ? max : WS_RESOLVE_MAX, err);
}

static void destroy(ws_resolve *r) {
    pthread_mutex_destroy(&r->mu);
    free(r);
    live_add(-1);
}

/* Drop one reference; the last frees. */
static void unref_locked(ws_resolve *r) {
    int last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (last)
        destroy(r);
}

/* One request on its thread: looked up (unless its caller left while it
 * waited in the queue), answered, and this thread's reference dropped. */
static void serve(ws_resolve *r) {
    ws_resolve_err err = {EAI_SYSTEM, ECANCELED};
    int n = 0;
    pthread_mutex_lock(&r->mu);
    int wanted = r->fd >= 0;
    pthread_mutex_unlock(&r->mu);
    /* (into r without the lock: the caller reads them only once done is set) */
    if (wanted)
        n = lookup(r->host, 0, r->addrs, WS_RESOLVE_MAX, &err);
    pthread_mutex_lock(&r->mu);
    r->n = n;
    r->err = err;
    r->done = 1;
    if (r->fd >= 0) {
        /* under the lock: the caller closes fd under it too, so this never
         * writes to a descriptor closed (and maybe reused) meanwhile */
        uint64_t one = 1;
        ssize_t w = write(r->fd, &one, sizeof one);
        (void)w;              /* (an eventfd takes 8 bytes unless its count is near 2^64) */
    }
    unref_locked(r);
}

/* A lookup thread: its request, then each one queued meanwhile. */
static void *run(void *arg) {
    ws_resolve *r = (ws_resolve *)arg;
    while (r) {
        serve(r);
        pthread_mutex_lock(&live_mu);
        r = queue_head;
        if (r) {
            queue_head = r->next;
            if (!queue_head)
                queue_tail = NULL;
        } else {
            threads--;
        }
        pthread_mutex_unlock(&live_mu);
    }
    return NULL;
}

/* lua_close unloads ws/core.so (dlclose): a lookup thread still running
 * then (a process that exits while a DNS server is slow) would return into
 * unmapped code. Once a thread may outlive its caller, the library stays
 * loaded for the life of the process. (Best effort: no shared object to
 * find, as in the C tests, is nothing to pin.) */
static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

static void pin_library(void) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    Dl_info info;
    if (dladdr(&live, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);   /* (never closed) */
}

ws_resolve *ws_resolve_start(const char *host) {
    pthread_once(&pin_once, pin_library);
    size_t len = strlen(host);
    ws_resolve *r = (ws_resolve *)calloc(1, sizeof *r + len + 1);
    if (!r)
        return NULL;
    memcpy(r->host, host, len + 1);
    r->pid = getpid();
    r->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->fd < 0) {
        free(r);
        return NULL;
    }
    int e = pthread_mutex_init(&r->mu, NULL);
    if (e != 0) {
        close(r->fd);
        free(r);
        errno = e;
        return NULL;
    }
    r->refs = 2;
    pthread_mutex_lock(&live_mu);
    live++;
    int spawn = threads < WS_RESOLVE_THREADS;
    if (spawn) {
        threads++;
    } else {
        /* (every thread is busy: the first one free takes it) */
        if (queue_tail)
            queue_tail->next = r;
        else
            queue_head = r;
        queue_tail = r;
    }
    pthread_mutex_unlock(&live_mu);
    if (!spawn)
        return r;
    pthread_attr_t attr;
    sigset_t all, old;
    e = pthread_attr_init(&attr);
    if (e == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* The thread starts with every signal blocked: a process-directed
         * signal (SIGTERM, SIGINT) goes to the loop's thread, which may read
         * it from a signalfd, and never kills the process through this one. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t t;
        e = pthread_create(&t, &attr, run, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (e != 0) {
        /* (a request queued meanwhile is taken by a thread still running:
         * it was queued only because threads were at the cap) */
        pthread_mutex_lock(&live_mu);
        threads--;
        pthread_mutex_unlock(&live_mu);
        close(r->fd);
        destroy(r);
        errno = e;
        return NULL;
    }
    return r;
}

int ws_resolve_threads(void) {
    pthread_mutex_lock(&live_mu);
    int n = threads;
    pthread_mutex_unlock(&live_mu);
    return n;
}

int ws_resolve_fd(const ws_resolve *r) {
    return r->fd;
}

int ws_resolve_result(ws_resolve *r, const ws_addr **addrs, int *n, ws_resolve_err *err) {
    if (orphan(r)) {
        *addrs = r->addrs;
        *n = 0;
        err->gai = EAI_SYSTEM;
        err->sys = ECANCELED;
        return 1;
    }
    pthread_mutex_lock(&r->mu);
    int done = r->done;
    pthread_mutex_unlock(&r->mu);
    if (!done)
        return 0;
    *addrs = r->addrs;
    *n = r->n;
    *err = r->err;
    return 1;
}

int ws_resolve_release(ws_resolve *r) {
    if (orphan(r)) {
        /* (this process's copy of the descriptor and the memory; not
         * counted in live here, see fork_child) */
        if (r->fd >= 0)
            close(r->fd);
        free(r);
        return 1;
    }
    pthread_mutex_lock(&r->mu);
    int running = !r->done;
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    unref_locked(r);
    return running;
}
