/* test_chaos.c -- Redis faults UNDER LOAD: a bounded load generator (16 keep-alive
 * clients, about 1600 checks/s) runs against the real binary while the test kills
 * and restarts Redis (once, or flapping), pauses it (CLIENT PAUSE, DEBUG SLEEP, past
 * the stuck-connection limit), empties it (FLUSHALL + SCRIPT FLUSH, SHUTDOWN +
 * restart) or holds every connection slot while ratelimitd reconnects; two daemons
 * share one limit under concurrent load; and SIGTERM comes during a fault and
 * while idle keep-alive connections speak up.
 * Every request must be answered within timeout_ms plus a margin, the answers must
 * follow failure_mode, decisions must be exact again soon after the fault, /metrics
 * must count what the clients saw, and the daemon must not crash or leak fds or
 * memory. Each test prints one line of figures ("chaos: ...") on stderr, for
 * docs/reliability.md; RL_TEST_CHAOS_LOG=1 prints the daemon's log too.
 * Single-request faults live in test_faults.c. */
#include "test_daemon.h"
#include "test_http.h"
#include "test_json.h"
#include "test_redis.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHAOS_TIMEOUT_MS  100   /* redis.timeout_ms of every daemon here */
#define CHAOS_MARGIN_MS   400   /* a busy 2-core machine: scheduling, not the service */
#define CHAOS_RECOVER_MS  1000  /* reconnect backoff tops out at 1 s */
#define CHAOS_THREADS     16    /* concurrent keep-alive connections */
#define CHAOS_RATE        100   /* requests/s per load thread: 1600/s in all */
#define CHAOS_REC_MAX     4096  /* records per load thread: > CHAOS_LOAD_MAX_MS at CHAOS_RATE */
#define CHAOS_LOAD_MAX_MS 10000 /* a load stops by itself after this, whatever happens */
#define CHAOS_REPLY_MS    3000  /* a request unanswered after this is "no answer" */
#define CHAOS_FD_SLACK    2
#define CHAOS_EXACT_LIMIT 3
#define CHAOS_HOLDERS     6   /* idle connections holding Redis's slots */
#define CHAOS_CONNS_MAX   400 /* load threads, at most */

/* RSS growth bound. AddressSanitizer keeps freed memory in a quarantine (256 MiB
 * by default) before reuse, so RSS grows with the bytes allocated, not leaked:
 * there LeakSanitizer (at the daemon's exit) is the leak check. */
#if defined(__SANITIZE_ADDRESS__)
#define CHAOS_RSS_MAX_KB (300L * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHAOS_RSS_MAX_KB (300L * 1024)
#endif
#endif
#ifndef CHAOS_RSS_MAX_KB
#define CHAOS_RSS_MAX_KB (20L * 1024)
#endif

static struct rl_test_redis redis;
static struct rl_test_daemon d1, d2;
static redisContext *holders[CHAOS_HOLDERS + 1];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(rl_test_redis_start(&redis), 0, "redis-server did not start");
}

static void teardown(void)
{
    for (int i = 0; i <= CHAOS_HOLDERS; i++) {
        if (holders[i] != NULL) redisFree(holders[i]);
        holders[i] = NULL;
    }
    int st_d1 = rl_test_daemon_stop(&d1);
    int st_d2 = rl_test_daemon_stop(&d2);
    rl_test_redis_stop(&redis);
    rl_test_daemon_require_clean(st_d1);
    rl_test_daemon_require_clean(st_d2);
}

TestSuite(chaos, .init = setup, .fini = teardown, .timeout = 60);

/*----------------------------------------------------------------------------
 * Clocks and /proc
 *--------------------------------------------------------------------------*/

static int64_t chaos_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t chaos_ms(void)
{
    return chaos_us() / 1000;
}

static void chaos_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Open file descriptors of pid (entries of /proc/PID/fd), -1 when unreadable. */
static int chaos_fds(pid_t pid)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    if ((d = opendir(path)) == NULL) return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* VmRSS of pid in KiB, -1 when unreadable. */
static long chaos_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    if ((f = fopen(path, "r")) == NULL) return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Still running (not exited, not a zombie)? Reaps it when it died, so the
 * teardown's stop does not wait for it; the exit status goes to *status. */
static bool chaos_alive(struct rl_test_daemon *d, int *status)
{
    int st = 0;
    pid_t r = waitpid(d->pid, &st, WNOHANG);

    if (r == 0) return true;
    *status = st;
    d->pid = 0;
    return false;
}

/* Does the daemon's log hold `needle`? */
static bool chaos_log_has(const struct rl_test_daemon *d, const char *needle)
{
    char line[2048];
    bool found = false;
    FILE *f = fopen(d->log_path, "r");

    if (f == NULL) return false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/*----------------------------------------------------------------------------
 * A keep-alive HTTP/1.1 client: one connection per load thread, one request
 * at a time, the whole answer read within CHAOS_REPLY_MS.
 *--------------------------------------------------------------------------*/

struct chaos_conn {
    int fd;
    uint16_t port;
    char buf[16384];
    size_t len;
};

struct chaos_answer {
    int status; /* 0: no answer (refused, reset, closed early or too late) */
    char degraded[32], retry_after[16], content_type[64];
    long remaining;   /* X-RateLimit-Remaining, -1 when absent */
    bool close;       /* the server said Connection: close */
    const char *body; /* into the connection's buffer, valid until the next request */
    size_t body_len;
    char why[96];      /* when status is 0 */
    bool closed_clean; /* status 0: refused, or closed before any byte of an answer */
};

static int chaos_connect(uint16_t port)
{
    struct sockaddr_in a;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void chaos_conn_close(struct chaos_conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->len = 0;
}

/* Copy header `name`'s value into dst when line is that header. */
static void chaos_header(const char *line, size_t len, const char *name, char *dst, size_t cap)
{
    size_t n = strlen(name), v;

    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') return;
    for (v = n + 1; v < len && line[v] == ' '; v++)
        ;
    snprintf(dst, cap, "%.*s", (int)(len - v), line + v);
}

/* Parse the status line and the headers in buf[0..head) (head: after the
 * blank line). Returns the Content-Length, or -1. */
static long chaos_parse_head(const char *buf, size_t head, struct chaos_answer *a)
{
    char clen[24] = "", conn[32] = "", rem[24] = "";
    const char *p = buf, *end = buf + head;

    if (sscanf(buf, "HTTP/1.%*d %d", &a->status) != 1) return -1;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        size_t len;

        if (eol == NULL) break;
        len = (size_t)(eol - p);
        chaos_header(p, len, "Content-Length", clen, sizeof(clen));
        chaos_header(p, len, "Connection", conn, sizeof(conn));
        chaos_header(p, len, "X-RateLimit-Degraded", a->degraded, sizeof(a->degraded));
        chaos_header(p, len, "X-RateLimit-Remaining", rem, sizeof(rem));
        chaos_header(p, len, "Retry-After", a->retry_after, sizeof(a->retry_after));
        chaos_header(p, len, "Content-Type", a->content_type, sizeof(a->content_type));
        p = eol + 2;
    }
    a->remaining = rem[0] ? strtol(rem, NULL, 10) : -1;
    a->close = strcasecmp(conn, "close") == 0;
    return clen[0] ? strtol(clen, NULL, 10) : -1;
}

/* Read one whole answer into c->buf (by Content-Length) before `deadline_us`. */
static int chaos_read_answer(struct chaos_conn *c, int64_t deadline_us, struct chaos_answer *a)
{
    long clen = -1;
    size_t head = 0;

    c->len = 0;
    for (;;) {
        const char *eoh;

        if (head == 0 && c->len > 0) {
            c->buf[c->len] = '\0';
            if ((eoh = strstr(c->buf, "\r\n\r\n")) != NULL) {
                head = (size_t)(eoh + 4 - c->buf);
                if ((clen = chaos_parse_head(c->buf, head, a)) < 0)
                    return snprintf(a->why, sizeof(a->why), "bad head"), -1;
            }
        }
        if (head > 0 && c->len >= head + (size_t)clen) {
            a->body = c->buf + head;
            a->body_len = (size_t)clen;
            return 0;
        }
        int64_t left = (deadline_us - chaos_us()) / 1000;
        struct pollfd p = {c->fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return snprintf(a->why, sizeof(a->why), "no answer in %d ms", CHAOS_REPLY_MS), -1;
        if (c->len + 1 >= sizeof(c->buf))
            return snprintf(a->why, sizeof(a->why), "answer too large"), -1;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) a->closed_clean = c->len == 0 && (r == 0 || errno == ECONNRESET);
        if (r <= 0)
            return snprintf(a->why, sizeof(a->why), "closed after %zu bytes: %s", c->len,
                            r == 0 ? "EOF" : strerror(errno)),
                   -1;
        c->len += (size_t)r;
    }
}

/* GET path on the keep-alive connection (made when there is none). 0, or -1
 * with a->status 0 and a->why; the connection is then closed. */
static int chaos_get(struct chaos_conn *c, const char *path, struct chaos_answer *a)
{
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    int64_t deadline = chaos_us() + (int64_t)CHAOS_REPLY_MS * 1000;

    memset(a, 0, sizeof(*a));
    if (c->fd < 0 && (c->fd = chaos_connect(c->port)) < 0) {
        a->closed_clean = errno == ECONNREFUSED;
        snprintf(a->why, sizeof(a->why), "connect: %s", strerror(errno));
        return -1;
    }
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        a->closed_clean = errno == EPIPE || errno == ECONNRESET;
        snprintf(a->why, sizeof(a->why), "send: %s", strerror(errno));
        chaos_conn_close(c);
        return -1;
    }
    if (chaos_read_answer(c, deadline, a) != 0) {
        a->status = 0;
        chaos_conn_close(c);
        return -1;
    }
    if (a->close) close(c->fd), c->fd = -1; /* the body stays in c->buf */
    return 0;
}

/*----------------------------------------------------------------------------
 * The load generator: CHAOS_THREADS threads, each paced at CHAOS_RATE checks/s
 * on its own keep-alive connection, recording every request.
 *--------------------------------------------------------------------------*/

enum chaos_kind {
    CHAOS_NORMAL,   /* 200, decided by Redis (X-RateLimit-Remaining) */
    CHAOS_DEGRADED, /* 200 + X-RateLimit-Degraded (failure_mode open) */
    CHAOS_REFUSED,  /* 503 service_unavailable (failure_mode closed) */
    CHAOS_DENIED,   /* 429 */
    CHAOS_OTHER,    /* any other status */
    CHAOS_NOANSWER, /* no complete answer: connection error or past CHAOS_REPLY_MS */
    CHAOS_KINDS
};

struct chaos_rec {
    int32_t t_us;      /* sent, after the load started */
    int32_t lat_us;    /* until the whole answer was read */
    int32_t remaining; /* X-RateLimit-Remaining, -1 when absent */
    uint8_t kind;
    bool bad;          /* the answer's shape does not fit its kind */
    bool closed_clean; /* no answer: refused, or closed before any byte */
};

struct chaos_load;

struct chaos_worker {
    struct chaos_load *load;
    int idx;
    pthread_t th;
    struct chaos_rec *recs;
    size_t n;
    char first_bad[256]; /* the first bad answer, for the failure message */
};

struct chaos_load {
    uint16_t port[2]; /* thread i uses port[i % nports] */
    int nports;
    int nthreads;
    int rate;             /* per thread, requests/s; 0: as fast as possible */
    int max_per_thread;   /* 0: until stopped */
    const char *path_fmt; /* with one %d: the thread's index */
    int64_t t0_us;
    atomic_bool stop;
    struct chaos_worker w[CHAOS_CONNS_MAX];
};

/* A degraded 200 carries the header, "degraded":true and no limit headers; a
 * normal 200 has X-RateLimit-Remaining; a 503 is the problem+json envelope
 * with Retry-After: 1. NULL when the answer fits, else what is wrong. */
static const char *chaos_shape(const struct chaos_answer *a, enum chaos_kind k)
{
    static const char *const bad_503 = "503 is not problem+json service_unavailable, "
                                       "Retry-After 1, retry_after_secs 1";
    struct json_object *b;
    const char *why = NULL;

    if (k == CHAOS_DEGRADED) {
        if (strcmp(a->degraded, "redis-unavailable") != 0 &&
            strcmp(a->degraded, "redis-timeout") != 0)
            return "unknown X-RateLimit-Degraded value";
        if (a->remaining != -1 || memmem(a->body, a->body_len, "\"degraded\":true", 15) == NULL)
            return "degraded 200 with limit headers or without \"degraded\":true";
        return NULL;
    }
    if (k == CHAOS_NORMAL) return a->remaining < 0 ? "200 without X-RateLimit-Remaining" : NULL;
    if (k != CHAOS_REFUSED) return NULL;
    if (strcmp(a->retry_after, "1") != 0 ||
        strcmp(a->content_type, "application/problem+json") != 0)
        return bad_503;
    b = json_tokener_parse(a->body); /* NUL-terminated: the buffer's end is 0 */
    if (b == NULL || rl_tj_int(b, "status") != 503 || rl_tj_int(b, "retry_after_secs") != 1 ||
        rl_tj_str(b, "type") == NULL ||
        strcmp(rl_tj_str(b, "type"), "urn:ratelimitd:problem:service_unavailable") != 0)
        why = bad_503;
    json_object_put(b);
    return why;
}

static enum chaos_kind chaos_classify(const struct chaos_answer *a)
{
    switch (a->status) {
    case 0:
        return CHAOS_NOANSWER;
    case 200:
        return a->degraded[0] ? CHAOS_DEGRADED : CHAOS_NORMAL;
    case 503:
        return CHAOS_REFUSED;
    case 429:
        return CHAOS_DENIED;
    default:
        return CHAOS_OTHER;
    }
}

static void chaos_record(struct chaos_worker *w, int64_t t_us, int64_t lat_us,
                         const struct chaos_answer *a)
{
    enum chaos_kind k = chaos_classify(a);
    const char *bad = chaos_shape(a, k);
    struct chaos_rec *r = &w->recs[w->n++];

    r->t_us = (int32_t)(t_us - w->load->t0_us);
    r->lat_us = (int32_t)lat_us;
    r->remaining = (int32_t)a->remaining;
    r->kind = (uint8_t)k;
    r->bad = bad != NULL;
    r->closed_clean = a->closed_clean;
    if (k == CHAOS_NOANSWER && w->first_bad[0] == '\0')
        snprintf(w->first_bad, sizeof(w->first_bad), "t=%d ms: %s", r->t_us / 1000, a->why);
    else if (bad != NULL && w->first_bad[0] == '\0')
        snprintf(w->first_bad, sizeof(w->first_bad), "t=%d ms, %d: %s: %.120s", r->t_us / 1000,
                 a->status, bad, a->body ? a->body : "");
}

static void *chaos_worker_run(void *arg)
{
    struct chaos_worker *w = arg;
    struct chaos_load *l = w->load;
    struct chaos_conn *c = malloc(sizeof(*c));
    int64_t next = chaos_us(), end = l->t0_us + (int64_t)CHAOS_LOAD_MAX_MS * 1000;
    char path[256];

    if (c == NULL) return NULL;
    c->fd = -1;
    c->len = 0;
    c->port = l->port[w->idx % l->nports];
    snprintf(path, sizeof(path), l->path_fmt, w->idx);
    while (!atomic_load(&l->stop) && w->n < CHAOS_REC_MAX &&
           (l->max_per_thread == 0 || w->n < (size_t)l->max_per_thread)) {
        struct chaos_answer a;
        int64_t t, now = chaos_us();

        if (now >= end) break;
        if (l->rate > 0 && next > now) chaos_sleep_ms((int)((next - now + 999) / 1000));
        t = chaos_us();
        chaos_get(c, path, &a);
        chaos_record(w, t, chaos_us() - t, &a);
        /* paced, without bursts to catch up after a slow answer */
        next = (next > t ? next : t) + (l->rate > 0 ? 1000000 / l->rate : 0);
    }
    chaos_conn_close(c);
    free(c);
    return NULL;
}

static void chaos_load_start(struct chaos_load *l)
{
    l->t0_us = chaos_us();
    atomic_init(&l->stop, false);
    for (int i = 0; i < l->nthreads; i++) {
        struct chaos_worker *w = &l->w[i];

        memset(w, 0, sizeof(*w));
        w->load = l;
        w->idx = i;
        w->recs = calloc(CHAOS_REC_MAX, sizeof(*w->recs));
        cr_assert_not_null(w->recs);
        cr_assert_eq(pthread_create(&w->th, NULL, chaos_worker_run, w), 0);
    }
}

/* Microseconds since the load started: the records' time line. */
static int64_t chaos_load_now(const struct chaos_load *l)
{
    return chaos_us() - l->t0_us;
}

static void chaos_load_join(struct chaos_load *l)
{
    atomic_store(&l->stop, true);
    for (int i = 0; i < l->nthreads; i++)
        pthread_join(l->w[i].th, NULL);
}

static void chaos_load_free(struct chaos_load *l)
{
    for (int i = 0; i < l->nthreads; i++) {
        free(l->w[i].recs);
        l->w[i].recs = NULL;
    }
}

/*----------------------------------------------------------------------------
 * Figures of one run
 *--------------------------------------------------------------------------*/

struct chaos_figures {
    long sent, answered, bad;
    long kinds[CHAOS_KINDS];
    int64_t max_lat_us, p99_lat_us;
    int duration_ms;
    long early_faults;                 /* fault answers that ended before the fault began */
    int first_fault_ms, last_fault_ms; /* end of the first/last fault answer; -1 none */
    int fault_start_ms, fault_end_ms;  /* all ms after the load started */
    int recovery_ms;                   /* fault end -> the first exact decision sequence */
    int fds_before, fds_after;
    long rss_before, rss_after;
    char first_bad[256];
    bool hot_cached; /* the spent key still denied after the fault */
};

static int chaos_cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

    return x < y ? -1 : x > y;
}

/* Sum the workers' records; fault answers are the degraded and the 503 ones. */
static void chaos_figures(const struct chaos_load *l, int64_t fault_start_us,
                          struct chaos_figures *f)
{
    int32_t *lat;
    size_t nlat = 0;

    memset(f, 0, sizeof(*f));
    f->first_fault_ms = f->last_fault_ms = -1;
    f->fault_start_ms = (int)(fault_start_us / 1000);
    for (int i = 0; i < l->nthreads; i++)
        nlat += l->w[i].n;
    lat = calloc(nlat + 1, sizeof(*lat));
    cr_assert_not_null(lat);
    nlat = 0;
    for (int i = 0; i < l->nthreads; i++) {
        const struct chaos_worker *w = &l->w[i];

        if (f->first_bad[0] == '\0' && w->first_bad[0] != '\0')
            snprintf(f->first_bad, sizeof(f->first_bad), "%s", w->first_bad);
        for (size_t k = 0; k < w->n; k++) {
            const struct chaos_rec *r = &w->recs[k];
            int64_t end_us = (int64_t)r->t_us + r->lat_us;
            int end_ms = (int)(end_us / 1000);

            f->sent++;
            f->answered += r->kind != CHAOS_NOANSWER;
            f->kinds[r->kind]++;
            f->bad += r->bad;
            lat[nlat++] = r->lat_us;
            if (r->lat_us > f->max_lat_us) f->max_lat_us = r->lat_us;
            if (end_ms > f->duration_ms) f->duration_ms = end_ms;
            if (r->kind != CHAOS_DEGRADED && r->kind != CHAOS_REFUSED) continue;
            if (end_us < fault_start_us) f->early_faults++;
            if (f->first_fault_ms < 0 || end_ms < f->first_fault_ms) f->first_fault_ms = end_ms;
            if (end_ms > f->last_fault_ms) f->last_fault_ms = end_ms;
        }
    }
    qsort(lat, nlat, sizeof(*lat), chaos_cmp_i32);
    f->p99_lat_us = nlat ? lat[(nlat * 99) / 100] : 0;
    free(lat);
}

static void chaos_print(const char *name, const char *mode, const struct chaos_figures *f)
{
    fprintf(stderr,
            "chaos: %-22s %-6s sent %5ld (%4ld/s) answered %5ld errors %ld | 200 %ld, "
            "200-degraded %ld, 503 %ld, 429 %ld, other %ld | latency p99 %.1f ms max %.1f ms | "
            "fault %d..%d ms, fault answers %d..%d ms, exact again %d ms after | spent key "
            "after: %s | fds %d -> %d | RSS %ld -> %ld KiB\n",
            name, mode, f->sent, f->duration_ms > 0 ? f->sent * 1000 / f->duration_ms : 0,
            f->answered, f->kinds[CHAOS_NOANSWER], f->kinds[CHAOS_NORMAL], f->kinds[CHAOS_DEGRADED],
            f->kinds[CHAOS_REFUSED], f->kinds[CHAOS_DENIED], f->kinds[CHAOS_OTHER],
            f->p99_lat_us / 1000.0, f->max_lat_us / 1000.0, f->fault_start_ms, f->fault_end_ms,
            f->first_fault_ms, f->last_fault_ms, f->recovery_ms, f->hot_cached ? "429" : "full",
            f->fds_before, f->fds_after, f->rss_before, f->rss_after);
}

/*----------------------------------------------------------------------------
 * The daemon under test and its exact-decision probe
 *--------------------------------------------------------------------------*/

/* Policy "load" (scope caller, never exhausted) takes the load; policy "exact"
 * (scope key, limit CHAOS_EXACT_LIMIT per hour) takes the exactness probes. */
static void chaos_start(struct rl_test_daemon *d, const char *mode, int timeout_ms, int exact_limit)
{
    char cfg[1024];

    snprintf(cfg, sizeof(cfg),
             "{\"redis\":{\"url\":\"%s\",\"timeout_ms\":%d},\"failure_mode\":\"%s\","
             "\"policies\":[{\"name\":\"load\",\"scope\":\"caller\",\"limit\":1000000,"
             "\"window\":\"1h\"},{\"name\":\"exact\",\"scope\":\"key\",\"limit\":%d,"
             "\"window\":\"1h\"}]}",
             redis.url, timeout_ms, mode, exact_limit);
    cr_assert_eq(rl_test_daemon_start(d, cfg, NULL, NULL), 0, "ratelimitd did not start");
}

/* Answers to the probes below, by result, to match against /metrics. */
static struct {
    long allowed, denied, degraded, error;
} chaos_probes;

/* One check of `key` on the exact policy: the status, X-RateLimit-Remaining
 * (-1 when absent), and whether it was a fault answer (degraded or 503). */
static int chaos_probe(const struct rl_test_daemon *d, const char *key, long *remaining,
                       bool *fault)
{
    struct rl_test_response res;
    char path[160];
    const char *rem, *deg;
    int status;

    snprintf(path, sizeof(path), "/v1/check?key=%s", key);
    cr_assert_eq(rl_test_http(d->port, "GET", path, NULL, NULL, 0, &res), 0,
                 "no answer to the probe %s", path);
    status = res.status;
    rem = rl_test_header(&res, "X-RateLimit-Remaining");
    deg = rl_test_header(&res, "X-RateLimit-Degraded");
    *remaining = rem ? strtol(rem, NULL, 10) : -1;
    *fault = status == 503 || (status == 200 && deg != NULL);
    chaos_probes.allowed += status == 200 && deg == NULL;
    chaos_probes.degraded += status == 200 && deg != NULL;
    chaos_probes.denied += status == 429;
    chaos_probes.error += status != 200 && status != 429;
    if (status == 429)
        cr_assert_not_null(rl_test_header(&res, "Retry-After"), "429 without Retry-After");
    rl_test_response_free(&res);
    return status;
}

/* Exactly `limit` allowed on `key` (remaining limit-1 .. 0), then 429 with
 * remaining 0. false when a fault answer came (inconclusive: try another
 * key); a wrong decision fails the test. */
static bool chaos_exact_once(const struct rl_test_daemon *d, const char *key, int limit)
{
    long rem;
    bool fault;

    for (int i = 0; i < limit; i++) {
        int st = chaos_probe(d, key, &rem, &fault);

        if (fault) return false;
        cr_assert_eq(st, 200, "%s: request %d of %d answered %d", key, i + 1, limit, st);
        cr_assert_eq(rem, limit - 1 - i, "%s: request %d: remaining %ld, want %d", key, i + 1, rem,
                     limit - 1 - i);
    }
    int st = chaos_probe(d, key, &rem, &fault);
    if (fault) return false;
    cr_assert_eq(st, 429, "%s: request %d of limit %d answered %d", key, limit + 1, limit, st);
    cr_assert_eq(rem, 0, "%s: 429 with remaining %ld", key, rem);
    return true;
}

/* Fresh keys until a whole exact sequence passes; ms from `since_ms` (a
 * chaos_ms() time) to that success. Gives up after 5 s (returns -1). */
static int chaos_exact_after(const struct rl_test_daemon *d, const char *tag, int64_t since_ms)
{
    char key[96];

    for (int attempt = 0; chaos_ms() - since_ms < 5000; attempt++) {
        snprintf(key, sizeof(key), "exact-%s-%d", tag, attempt);
        if (chaos_exact_once(d, key, CHAOS_EXACT_LIMIT)) return (int)(chaos_ms() - since_ms);
        chaos_sleep_ms(20);
    }
    return -1;
}

/* Before the fault: "hot" spent (limit allowed, then 429: the deny cache
 * now holds it), "warm" spent but for one token (never denied, never cached). */
static void chaos_spend(const struct rl_test_daemon *d)
{
    long rem;
    bool fault;

    cr_assert(chaos_exact_once(d, "hot", CHAOS_EXACT_LIMIT), "fault answer before any fault");
    for (int i = 0; i < CHAOS_EXACT_LIMIT - 1; i++) {
        cr_assert_eq(chaos_probe(d, "warm", &rem, &fault), 200);
        cr_assert_eq(rem, CHAOS_EXACT_LIMIT - 1 - i, "warm: remaining %ld", rem);
    }
}

/* After the fault: "warm" is full again when Redis came back empty, else it
 * kept its last token. "hot" is denied when Redis kept it; when Redis came
 * back empty it is full again: the deny cache is emptied when the store
 * reconnects or its script was flushed (store epoch), so no stale cached
 * denial outlives the state it came from. *hot_cached: hot was denied. */
static void chaos_check_kept(const struct rl_test_daemon *d, bool empty, bool *hot_cached)
{
    long rem;
    bool fault;
    int st;

    if (empty) {
        cr_assert(chaos_exact_once(d, "warm", CHAOS_EXACT_LIMIT), "fault answer on warm");
    } else {
        cr_assert_eq(st = chaos_probe(d, "warm", &rem, &fault), 200,
                     "warm kept one token through the fault: got %d", st);
        cr_assert_eq(rem, 0, "warm: remaining %ld, want 0", rem);
        cr_assert_eq(chaos_probe(d, "warm", &rem, &fault), 429);
    }
    st = chaos_probe(d, "hot", &rem, &fault);
    *hot_cached = st == 429;
    if (!empty) {
        cr_assert_eq(st, 429, "hot was spent before the fault and Redis kept it: got %d", st);
        cr_assert_eq(rem, 0);
        return;
    }
    cr_assert_eq(st, 200, "hot after Redis came back empty: %d", st);
    cr_assert_eq(rem, CHAOS_EXACT_LIMIT - 1, "hot: full again, remaining %ld", rem);
}

/*----------------------------------------------------------------------------
 * One fault under load, and what every run asserts
 *--------------------------------------------------------------------------*/

enum chaos_fault {
    CHAOS_KILL,       /* SIGKILL, down 600 ms, restart (empty) */
    CHAOS_PAUSE,      /* CLIENT PAUSE 800 ALL */
    CHAOS_LONG_PAUSE, /* CLIENT PAUSE 2500 ALL: past the stuck-connection limit */
    CHAOS_SLEEP,      /* DEBUG SLEEP 0.8 */
    CHAOS_FLUSH,      /* FLUSHALL + SCRIPT FLUSH: NOSCRIPT, buckets full */
    CHAOS_SHUTDOWN,   /* SHUTDOWN NOSAVE, restart at once (empty) */
    CHAOS_MAXCLIENTS, /* ratelimitd's connection killed, every slot held 800 ms */
    CHAOS_FLAP,       /* killed and restarted 5 times, 100-250 ms apart */
};

struct chaos_run {
    const char *name;
    const char *mode;
    enum chaos_fault fault;
    bool expect_faults; /* the load must see fault answers */
    bool empty_after;   /* Redis comes back without data */
    int conns;          /* load connections (threads); 0: CHAOS_THREADS */
    int rate;           /* per connection, requests/s; 0: CHAOS_RATE */
};

static void *chaos_sleeper(void *arg)
{
    char *buf = arg;

    /* the format's words are separate arguments (hiredis): never one "%s" */
    rl_test_redis_cmd(&redis, buf, 64, "DEBUG SLEEP %s", "0.8");
    return NULL;
}

static redisContext *chaos_redis_conn(const char *name)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis.port, tv);
    redisReply *r;

    cr_assert(c != NULL && !c->err, "cannot connect to Redis");
    redisSetTimeout(c, tv);
    r = redisCommand(c, "CLIENT SETNAME %s", name);
    cr_assert(r != NULL && r->type == REDIS_REPLY_STATUS, "CLIENT SETNAME");
    freeReplyObject(r);
    return c;
}

/* "OK"-style command on a held connection; the reply's text in buf. */
static void chaos_redis_do(redisContext *c, char *buf, size_t cap, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(c, fmt, arg);

    cr_assert_not_null(r, "Redis: %s: %s", fmt, c->errstr);
    snprintf(buf, cap, "%.*s", r->str ? (int)r->len : 0, r->str ? r->str : "");
    if (r->type == REDIS_REPLY_INTEGER) snprintf(buf, cap, "%lld", r->integer);
    freeReplyObject(r);
}

/* The ids of clients without a name (ratelimitd's: every test connection is
 * named). Returns how many. */
static int chaos_unnamed_clients(redisContext *c, long *ids, int max)
{
    redisReply *r = redisCommand(c, "CLIENT LIST");
    int n = 0;

    cr_assert(r != NULL && r->type == REDIS_REPLY_STRING, "CLIENT LIST");
    for (char *line = r->str; line != NULL && *line != '\0' && n < max;) {
        char *eol = strchr(line, '\n');

        if (eol != NULL) *eol = '\0';
        if (strstr(line, " name= ") != NULL) ids[n++] = strtol(line + 3, NULL, 10); /* "id=N ..." */
        line = eol ? eol + 1 : NULL;
    }
    freeReplyObject(r);
    return n;
}

/* Kill ratelimitd's connection while CHAOS_HOLDERS named connections (and the
 * control one) hold every slot: its reconnects are refused ("max number of
 * clients reached") until two holders go. */
static void chaos_maxclients(const struct chaos_load *l, int64_t *fault_start, int64_t *fault_end)
{
    char buf[128], num[16];
    long ids[8];
    int n;

    holders[0] = chaos_redis_conn("chaos-ctl");
    for (int i = 1; i <= CHAOS_HOLDERS; i++)
        holders[i] = chaos_redis_conn("chaos-holder");
    cr_assert_eq(n = chaos_unnamed_clients(holders[0], ids, 8), 1,
                 "one ratelimitd connection expected, found %d", n);
    snprintf(num, sizeof(num), "%d", CHAOS_HOLDERS + 1);
    chaos_redis_do(holders[0], buf, sizeof(buf), "CONFIG SET maxclients %s", num);
    cr_assert_str_eq(buf, "OK", "CONFIG SET maxclients: %s", buf);
    *fault_start = chaos_load_now(l);
    snprintf(num, sizeof(num), "%ld", ids[0]);
    chaos_redis_do(holders[0], buf, sizeof(buf), "CLIENT KILL ID %s", num);
    cr_assert_str_eq(buf, "1", "CLIENT KILL ID: %s", buf);
    chaos_sleep_ms(800);
    cr_assert_eq(chaos_unnamed_clients(holders[0], ids, 8), 0,
                 "ratelimitd got a slot although all were held");
    for (int i = CHAOS_HOLDERS - 1; i <= CHAOS_HOLDERS; i++) {
        redisFree(holders[i]);
        holders[i] = NULL;
    }
    *fault_end = chaos_load_now(l);
}

/* Inject the fault; its start and end in microseconds after the load started. */
static void chaos_inject(const struct chaos_run *run, const struct chaos_load *l,
                         int64_t *fault_start, int64_t *fault_end)
{
    char buf[128];
    pthread_t th;

    *fault_start = chaos_load_now(l);
    switch (run->fault) {
    case CHAOS_KILL:
        rl_test_redis_kill(&redis);
        chaos_sleep_ms(600);
        cr_assert_eq(rl_test_redis_restart(&redis), 0, "redis-server did not restart");
        break;
    case CHAOS_PAUSE:
        cr_assert_eq(
            rl_test_redis_cmd(&redis, buf, sizeof(buf), "CLIENT PAUSE %s %s", "800", "ALL"), 0);
        cr_assert_str_eq(buf, "OK", "CLIENT PAUSE: %s", buf);
        chaos_sleep_ms(800);
        break;
    case CHAOS_LONG_PAUSE:
        cr_assert_eq(
            rl_test_redis_cmd(&redis, buf, sizeof(buf), "CLIENT PAUSE %s %s", "2500", "ALL"), 0);
        cr_assert_str_eq(buf, "OK", "CLIENT PAUSE: %s", buf);
        chaos_sleep_ms(2500);
        break;
    case CHAOS_SLEEP:
        buf[0] = '\0';
        cr_assert_eq(pthread_create(&th, NULL, chaos_sleeper, buf), 0);
        pthread_join(th, NULL);
        cr_assert_str_eq(buf, "OK", "DEBUG SLEEP: %s", buf);
        break;
    case CHAOS_FLUSH:
        cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "SCRIPT FLUSH"), 0);
        cr_assert_str_eq(buf, "OK", "SCRIPT FLUSH: %s", buf);
        cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "FLUSHALL"), 0);
        cr_assert_str_eq(buf, "OK", "FLUSHALL: %s", buf);
        break;
    case CHAOS_SHUTDOWN:
        rl_test_redis_cmd(&redis, buf, sizeof(buf), "SHUTDOWN NOSAVE"); /* no reply */
        cr_assert_eq(rl_test_redis_restart(&redis), 0, "redis-server did not restart");
        break;
    case CHAOS_MAXCLIENTS:
        chaos_maxclients(l, fault_start, fault_end);
        return;
    case CHAOS_FLAP:
        for (int i = 0; i < 5; i++) {
            if (i > 0) chaos_sleep_ms(250 - 30 * i);
            rl_test_redis_kill(&redis);
            chaos_sleep_ms(100 + 30 * i);
            cr_assert_eq(rl_test_redis_restart(&redis), 0, "redis-server did not restart");
        }
        break;
    }
    *fault_end = chaos_load_now(l);
}

/* Wait (<= 2 s) for the daemon's fds to come back near `baseline` once the
 * load's connections are closed. */
static int chaos_fds_settled(pid_t pid, int baseline)
{
    int n = chaos_fds(pid);

    for (int i = 0; i < 40 && (n < 0 || n > baseline + CHAOS_FD_SLACK); i++) {
        chaos_sleep_ms(50);
        n = chaos_fds(pid);
    }
    return n;
}

/* The value of one series in /metrics (a full "name{labels}"), -1 if absent. */
static long long chaos_metric(const struct rl_test_daemon *d, const char *series)
{
    struct rl_test_response res;
    long long v = -1;
    size_t n = strlen(series);

    cr_assert_eq(rl_test_http(d->port, "GET", "/metrics", NULL, NULL, 0, &res), 0);
    cr_assert_eq(res.status, 200, "/metrics: %d", res.status);
    for (const char *p = res.body; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');

        if (strncmp(p, series, n) == 0 && p[n] == ' ') v = strtoll(p + n + 1, NULL, 10);
        p = eol ? eol + 1 : NULL;
    }
    rl_test_response_free(&res);
    return v;
}

/* Every answer the clients saw is counted once in ratelimitd_checks_total,
 * by result, however the fault interleaved with the load. */
static void chaos_check_metrics(const struct rl_test_daemon *d, const struct chaos_figures *f)
{
    static const char *const series[4] = {
        "ratelimitd_checks_total{endpoint=\"check\",result=\"allowed\"}",
        "ratelimitd_checks_total{endpoint=\"check\",result=\"denied\"}",
        "ratelimitd_checks_total{endpoint=\"check\",result=\"degraded\"}",
        "ratelimitd_checks_total{endpoint=\"check\",result=\"error\"}"};
    long long want[4] = {f->kinds[CHAOS_NORMAL] + chaos_probes.allowed,
                         f->kinds[CHAOS_DENIED] + chaos_probes.denied,
                         f->kinds[CHAOS_DEGRADED] + chaos_probes.degraded,
                         f->kinds[CHAOS_REFUSED] + f->kinds[CHAOS_OTHER] + chaos_probes.error};

    for (int i = 0; i < 4; i++) {
        long long got = chaos_metric(d, series[i]);

        cr_assert_eq(got, want[i] == 0 && got == -1 ? -1 : want[i], "%s: %lld, clients saw %lld",
                     series[i], got, want[i]);
    }
}

/* The end of every run: alive, /healthz 200, fds and RSS back. */
static void chaos_check_health(struct rl_test_daemon *d, struct chaos_figures *f)
{
    struct rl_test_response res;
    int st = 0;

    if (!chaos_alive(d, &st)) {
        rl_test_daemon_dump_log(d);
        cr_assert_fail("ratelimitd died (wait status 0x%x)", st);
    }
    cr_assert_eq(rl_test_http(d->port, "GET", "/healthz", NULL, NULL, 0, &res), 0,
                 "/healthz: no answer");
    cr_assert_eq(res.status, 200, "/healthz: %d", res.status);
    rl_test_response_free(&res);
    cr_assert_eq(rl_test_http(d->port, "GET", "/readyz", NULL, NULL, 0, &res), 0);
    cr_assert_eq(res.status, 200, "/readyz after recovery: %d", res.status);
    rl_test_response_free(&res);
    f->fds_after = chaos_fds_settled(d->pid, f->fds_before);
    f->rss_after = chaos_rss_kb(d->pid);
}

static void chaos_assert_load(const struct chaos_run *run, const struct chaos_figures *f)
{
    int fault_end = f->fault_end_ms;
    bool open = strcmp(run->mode, "open") == 0;
    int64_t lat_max_us = (int64_t)(CHAOS_TIMEOUT_MS + CHAOS_MARGIN_MS) * 1000;

    cr_assert_eq(f->kinds[CHAOS_NOANSWER], 0, "%ld of %ld requests got no answer; first: %s",
                 f->kinds[CHAOS_NOANSWER], f->sent, f->first_bad);
    cr_assert_eq(f->bad, 0, "%ld answers of the wrong shape; first: %s", f->bad, f->first_bad);
    cr_assert(f->max_lat_us <= lat_max_us, "slowest answer %.1f ms > timeout %d + %d ms",
              f->max_lat_us / 1000.0, CHAOS_TIMEOUT_MS, CHAOS_MARGIN_MS);
    cr_assert_eq(f->kinds[CHAOS_DENIED] + f->kinds[CHAOS_OTHER], 0,
                 "unexpected statuses: %ld 429, %ld other", f->kinds[CHAOS_DENIED],
                 f->kinds[CHAOS_OTHER]);
    cr_assert_eq(f->kinds[open ? CHAOS_REFUSED : CHAOS_DEGRADED], 0,
                 "failure_mode %s answered %ld %s", run->mode,
                 f->kinds[open ? CHAOS_REFUSED : CHAOS_DEGRADED], open ? "503s" : "degraded 200s");
    cr_assert_eq(f->early_faults, 0,
                 "%ld fault answers before the fault (at %d ms), first at %d ms", f->early_faults,
                 f->fault_start_ms, f->first_fault_ms);
    if (!run->expect_faults) {
        cr_assert_eq(f->kinds[CHAOS_DEGRADED] + f->kinds[CHAOS_REFUSED], 0,
                     "%ld fault answers for a fault that must not show",
                     f->kinds[CHAOS_DEGRADED] + f->kinds[CHAOS_REFUSED]);
    } else {
        cr_assert_gt(f->kinds[open ? CHAOS_DEGRADED : CHAOS_REFUSED], 0,
                     "the load never saw the fault");
        cr_assert(f->last_fault_ms <= fault_end + CHAOS_RECOVER_MS + CHAOS_MARGIN_MS,
                  "fault answers until %d ms, %d ms after the fault ended", f->last_fault_ms,
                  f->last_fault_ms - fault_end);
    }
    cr_assert_gt(f->kinds[CHAOS_NORMAL], 0);
}

/* Exact again soon after the fault; fds back; RSS growth bounded. */
static void chaos_assert_after(const struct chaos_figures *f)
{
    cr_assert(f->recovery_ms >= 0 && f->recovery_ms <= CHAOS_RECOVER_MS + CHAOS_MARGIN_MS,
              "decisions exact again %d ms after the fault ended (want <= %d)", f->recovery_ms,
              CHAOS_RECOVER_MS + CHAOS_MARGIN_MS);
    cr_assert(f->fds_after >= f->fds_before - CHAOS_FD_SLACK &&
                  f->fds_after <= f->fds_before + CHAOS_FD_SLACK,
              "fds %d before, %d after", f->fds_before, f->fds_after);
    cr_assert(f->rss_after - f->rss_before < CHAOS_RSS_MAX_KB, "RSS %ld -> %ld KiB", f->rss_before,
              f->rss_after);
}

/* Warm up, spend the hot key, run the load, inject, probe until decisions are
 * exact, keep the load 500 ms more, then check everything. */
static void chaos_go(const struct chaos_run *run)
{
    struct chaos_load *l = calloc(1, sizeof(*l));
    struct chaos_figures f;
    int64_t fault_start, fault_end;
    int recovery;
    int fds_before;
    long rss_before;
    int64_t fault_end_abs;
    bool hot_cached = false;

    cr_assert_not_null(l);
    chaos_start(&d1, run->mode, CHAOS_TIMEOUT_MS, CHAOS_EXACT_LIMIT);
    cr_assert_gt(chaos_exact_after(&d1, "warmup", chaos_ms()), -1, "never exact before the fault");
    chaos_spend(&d1);
    chaos_sleep_ms(100);
    fds_before = chaos_fds(d1.pid);
    rss_before = chaos_rss_kb(d1.pid);

    *l = (struct chaos_load){.port = {d1.port},
                             .nports = 1,
                             .nthreads = run->conns ? run->conns : CHAOS_THREADS,
                             .rate = run->rate ? run->rate : CHAOS_RATE,
                             .path_fmt = "/v1/check?caller=load-%d"};
    chaos_load_start(l);
    chaos_sleep_ms(700);
    chaos_inject(run, l, &fault_start, &fault_end);
    fault_end_abs = chaos_ms() - (chaos_load_now(l) - fault_end) / 1000;
    recovery = chaos_exact_after(&d1, run->name, fault_end_abs);
    if (recovery >= 0) chaos_check_kept(&d1, run->empty_after, &hot_cached);
    chaos_sleep_ms(500);
    chaos_load_join(l);

    chaos_figures(l, fault_start, &f);
    f.hot_cached = hot_cached;
    f.fault_end_ms = (int)(fault_end / 1000);
    f.recovery_ms = recovery;
    f.fds_before = fds_before;
    f.rss_before = rss_before;
    chaos_check_health(&d1, &f);
    chaos_print(run->name, run->mode, &f);
    if (getenv("RL_TEST_CHAOS_LOG") != NULL)
        rl_test_daemon_dump_log(&d1); /* to read what the service said */
    chaos_load_free(l);
    free(l);

    chaos_assert_load(run, &f);
    chaos_assert_after(&f);
    chaos_check_metrics(&d1, &f);
    if (run->fault == CHAOS_FLUSH)
        cr_assert(chaos_log_has(&d1, "NOSCRIPT"), "the NOSCRIPT path was not taken");
    if (run->fault == CHAOS_LONG_PAUSE)
        cr_assert(chaos_log_has(&d1, "connection stuck"), "the stuck connection was kept");
}

/* One fault case: a thin wrapper over chaos_go. */
static void chaos_case(const char *name, const char *mode, enum chaos_fault fault,
                       bool expect_faults, bool empty_after, int conns, int rate)
{
    struct chaos_run run = {name, mode, fault, expect_faults, empty_after, conns, rate};

    chaos_go(&run);
}

/*----------------------------------------------------------------------------
 * 1. Redis killed (SIGKILL), restarted empty 600 ms later; and flapping
 *--------------------------------------------------------------------------*/

Test(chaos, kill_restart_open)
{
    chaos_case("kill_restart", "open", CHAOS_KILL, true, true, 0, 0);
}

Test(chaos, kill_restart_closed)
{
    chaos_case("kill_restart", "closed", CHAOS_KILL, true, true, 0, 0);
}

/* Reconnect attempts land on a dead port, on a server starting up, and on a
 * connection killed before its SCRIPT LOAD was answered. */
Test(chaos, flap_open)
{
    chaos_case("flap", "open", CHAOS_FLAP, true, true, 0, 0);
}

Test(chaos, flap_closed)
{
    chaos_case("flap", "closed", CHAOS_FLAP, true, true, 0, 0);
}

/*----------------------------------------------------------------------------
 * 2. Redis paused longer than timeout_ms (800 ms against 100 ms)
 *--------------------------------------------------------------------------*/

Test(chaos, client_pause_open)
{
    chaos_case("client_pause", "open", CHAOS_PAUSE, true, false, 0, 0);
}

Test(chaos, client_pause_closed)
{
    chaos_case("client_pause", "closed", CHAOS_PAUSE, true, false, 0, 0);
}

/* 300 connections: more requests wait than the 4 x 64 decisions the store
 * keeps in flight, so some expire in its queue, never sent. */
Test(chaos, client_pause_300_conns)
{
    chaos_case("client_pause_300", "closed", CHAOS_PAUSE, true, false, 300, 5);
}

Test(chaos, debug_sleep_open)
{
    chaos_case("debug_sleep", "open", CHAOS_SLEEP, true, false, 0, 0);
}

Test(chaos, debug_sleep_closed)
{
    chaos_case("debug_sleep", "closed", CHAOS_SLEEP, true, false, 0, 0);
}

/* 2500 ms: past max(1 s, 20 x timeout_ms) = 2 s, so the connection is dropped
 * as stuck and re-made (its SCRIPT LOAD waits for the pause's end too). */
Test(chaos, long_pause_open)
{
    chaos_case("long_pause", "open", CHAOS_LONG_PAUSE, true, false, 0, 0);
}

Test(chaos, long_pause_closed)
{
    chaos_case("long_pause", "closed", CHAOS_LONG_PAUSE, true, false, 0, 0);
}

/*----------------------------------------------------------------------------
 * 3. Redis emptied: FLUSHALL + SCRIPT FLUSH on the live connection (NOSCRIPT,
 *    resent with EVAL: invisible to callers), and a real restart
 *--------------------------------------------------------------------------*/

Test(chaos, flush_noscript_open)
{
    chaos_case("flush_noscript", "open", CHAOS_FLUSH, false, true, 0, 0);
}

Test(chaos, flush_noscript_closed)
{
    chaos_case("flush_noscript", "closed", CHAOS_FLUSH, false, true, 0, 0);
}

Test(chaos, shutdown_restart_open)
{
    chaos_case("shutdown_restart", "open", CHAOS_SHUTDOWN, true, true, 0, 0);
}

Test(chaos, shutdown_restart_closed)
{
    chaos_case("shutdown_restart", "closed", CHAOS_SHUTDOWN, true, true, 0, 0);
}

/*----------------------------------------------------------------------------
 * 4. Redis out of connection slots while ratelimitd reconnects
 *--------------------------------------------------------------------------*/

Test(chaos, maxclients_open)
{
    chaos_case("maxclients", "open", CHAOS_MAXCLIENTS, true, false, 0, 0);
}

Test(chaos, maxclients_closed)
{
    chaos_case("maxclients", "closed", CHAOS_MAXCLIENTS, true, false, 0, 0);
}

/*----------------------------------------------------------------------------
 * 5. Two daemons, one Redis, one key: 4000 requests from 16 threads over both
 *    allow exactly the limit, each remaining value once
 *--------------------------------------------------------------------------*/

#define CHAOS_TWO_LIMIT    500
#define CHAOS_TWO_THREADS  16
#define CHAOS_TWO_REQUESTS 250 /* per thread */

/* Each allowed request took one token in one atomic step, so the allowed
 * answers' X-RateLimit-Remaining values are limit-1 .. 0, each exactly once. */
static void chaos_remaining_once(const struct chaos_load *l, int limit)
{
    int seen[CHAOS_TWO_LIMIT] = {0};

    for (int i = 0; i < l->nthreads; i++) {
        for (size_t k = 0; k < l->w[i].n; k++) {
            const struct chaos_rec *r = &l->w[i].recs[k];

            if (r->kind != CHAOS_NORMAL) continue;
            cr_assert(r->remaining >= 0 && r->remaining < limit, "remaining %d", r->remaining);
            cr_assert_eq(seen[r->remaining]++, 0, "remaining %d given twice", r->remaining);
        }
    }
}

Test(chaos, two_daemons_exact_limit)
{
    struct chaos_load *l = calloc(1, sizeof(*l));
    struct chaos_figures f;
    long per_daemon[2] = {0, 0};

    cr_assert_not_null(l);
    /* a generous deadline: this test is about exactness, not about timeouts */
    chaos_start(&d1, "closed", 2000, CHAOS_TWO_LIMIT);
    chaos_start(&d2, "closed", 2000, CHAOS_TWO_LIMIT);
    *l = (struct chaos_load){.port = {d1.port, d2.port},
                             .nports = 2,
                             .nthreads = CHAOS_TWO_THREADS,
                             .rate = 0,
                             .max_per_thread = CHAOS_TWO_REQUESTS,
                             .path_fmt = "/v1/check?key=shared&t=%d"};
    chaos_load_start(l);
    for (int i = 0; i < l->nthreads; i++)
        pthread_join(l->w[i].th, NULL);
    chaos_figures(l, 0, &f);
    for (int i = 0; i < l->nthreads; i++)
        for (size_t k = 0; k < l->w[i].n; k++)
            per_daemon[i % 2] += l->w[i].recs[k].kind == CHAOS_NORMAL;
    chaos_remaining_once(l, CHAOS_TWO_LIMIT);
    fprintf(stderr,
            "chaos: %-22s %-6s sent %5ld (%4ld/s) answered %5ld errors %ld | 200 %ld "
            "(d1 %ld, d2 %ld), 429 %ld, other %ld | latency p99 %.1f ms max %.1f ms\n",
            "two_daemons", "closed", f.sent, f.duration_ms ? f.sent * 1000 / f.duration_ms : 0,
            f.answered, f.kinds[CHAOS_NOANSWER], f.kinds[CHAOS_NORMAL], per_daemon[0],
            per_daemon[1], f.kinds[CHAOS_DENIED],
            f.sent - f.kinds[CHAOS_NORMAL] - f.kinds[CHAOS_DENIED], f.p99_lat_us / 1000.0,
            f.max_lat_us / 1000.0);
    chaos_load_free(l);
    free(l);

    cr_assert_eq(f.sent, CHAOS_TWO_THREADS * CHAOS_TWO_REQUESTS);
    cr_assert_eq(f.kinds[CHAOS_NOANSWER], 0, "no answer: %s", f.first_bad);
    cr_assert_eq(f.bad, 0, "bad answer: %s", f.first_bad);
    cr_assert_eq(f.kinds[CHAOS_NORMAL], CHAOS_TWO_LIMIT, "together %ld allowed, limit %d",
                 f.kinds[CHAOS_NORMAL], CHAOS_TWO_LIMIT);
    cr_assert_eq(f.kinds[CHAOS_DENIED], f.sent - CHAOS_TWO_LIMIT, "%ld denied",
                 f.kinds[CHAOS_DENIED]);
    cr_assert(per_daemon[0] > 0 && per_daemon[1] > 0, "both daemons allowed some");
}

/*----------------------------------------------------------------------------
 * 6. SIGTERM under load: during a Redis pause, and with idle keep-alive
 *    connections (an nginx upstream pool) speaking up while the drain ends
 *--------------------------------------------------------------------------*/

#define CHAOS_IDLE        200  /* idle keep-alive connections */
#define CHAOS_DRAIN_MS    5000 /* main.c waits this long for requests in flight */
#define CHAOS_TERM_ROUNDS 12

/* One idle keep-alive connection that sends one check at fire_us. */
struct chaos_idle {
    struct chaos_conn c;
    int64_t fire_us;
    int64_t lat_us;
    struct chaos_answer a;
    pthread_t th;
};

static void *chaos_idle_run(void *arg)
{
    struct chaos_idle *x = arg;
    struct timespec at = {(time_t)(x->fire_us / 1000000), (long)(x->fire_us % 1000000) * 1000};
    int64_t now;

    /* to the microsecond: the drain's end is a narrow target */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
    now = chaos_us();
    chaos_get(&x->c, "/v1/check?caller=idle", &x->a);
    x->lat_us = chaos_us() - now;
    chaos_conn_close(&x->c);
    return NULL;
}

/* Open n keep-alive connections to port, each answered once, then idle. */
static void chaos_idle_open(struct chaos_idle *xs, int n, uint16_t port)
{
    for (int i = 0; i < n; i++) {
        memset(&xs[i], 0, sizeof(xs[i]));
        xs[i].c.fd = -1;
        xs[i].c.port = port;
        cr_assert_eq(chaos_get(&xs[i].c, "/v1/check?caller=idle", &xs[i].a), 0,
                     "idle connection %d: %s", i, xs[i].a.why);
    }
}

/* Each idle connection sends one check between 40 and 190 ms after t_us:
 * the drain (50 ms, more while requests are in flight) ends in that span. */
static void chaos_idle_fire(struct chaos_idle *xs, int n, int64_t t_us)
{
    for (int i = 0; i < n; i++) {
        xs[i].fire_us = t_us + 40000 + (int64_t)i * 150000 / n;
        cr_assert_eq(pthread_create(&xs[i].th, NULL, chaos_idle_run, &xs[i]), 0);
    }
}

/* Join them: how many were answered. An answer must come within the
 * deadline and follow failure_mode; no answer is fine only as a clean close
 * (the server stops: refused, or closed before any byte). */
static int chaos_idle_join(struct chaos_idle *xs, int n, bool open)
{
    int answered = 0;

    for (int i = 0; i < n; i++)
        pthread_join(xs[i].th, NULL);
    for (int i = 0; i < n; i++) {
        const struct chaos_answer *a = &xs[i].a;

        if (a->status == 0) {
            cr_assert(a->closed_clean, "idle connection %d: %s", i, a->why);
            continue;
        }
        answered++;
        cr_assert(a->status == 200 || (!open && a->status == 503), "idle connection %d: %d", i,
                  a->status);
        cr_assert(xs[i].lat_us <= (CHAOS_TIMEOUT_MS + CHAOS_MARGIN_MS) * 1000LL,
                  "idle connection %d answered after %lld ms", i, (long long)xs[i].lat_us / 1000);
    }
    return answered;
}

/* SIGTERM the daemon and wait for its exit (at most the drain + 1 s, then
 * SIGKILL). The wait status; *took_ms from the signal to the exit. */
static int chaos_term(struct rl_test_daemon *d, int *took_ms)
{
    int64_t t0 = chaos_ms();
    pid_t pid = d->pid;
    int st = 0;

    cr_assert_eq(kill(pid, SIGTERM), 0);
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (chaos_ms() - t0 > CHAOS_DRAIN_MS + 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            d->pid = 0;
            rl_test_daemon_dump_log(d);
            cr_assert_fail("no exit %d ms after SIGTERM", CHAOS_DRAIN_MS + 1000);
        }
        chaos_sleep_ms(2);
    }
    *took_ms = (int)(chaos_ms() - t0);
    d->pid = 0; /* reaped: the teardown only removes its dir */
    return st;
}

/* The load's records: sent before the signal, each answered in time and per
 * failure_mode; sent after, answered so or refused/closed cleanly. */
static void chaos_term_records(const struct chaos_load *l, int64_t t_term_us, bool open,
                               long *before, long *after_answered, long *after_closed)
{
    int64_t lat_max_us = (int64_t)(CHAOS_TIMEOUT_MS + CHAOS_MARGIN_MS) * 1000;

    *before = *after_answered = *after_closed = 0;
    for (int i = 0; i < l->nthreads; i++) {
        for (size_t k = 0; k < l->w[i].n; k++) {
            const struct chaos_rec *r = &l->w[i].recs[k];
            bool ok = r->kind == CHAOS_NORMAL || r->kind == (open ? CHAOS_DEGRADED : CHAOS_REFUSED);

            if (r->kind == CHAOS_NOANSWER && r->t_us >= t_term_us && r->closed_clean) {
                (*after_closed)++;
                continue;
            }
            cr_assert(ok && !r->bad, "request sent at %d ms (SIGTERM at %d ms): kind %d; %s",
                      r->t_us / 1000, (int)(t_term_us / 1000), r->kind, l->w[i].first_bad);
            cr_assert(r->lat_us <= lat_max_us, "request sent at %d ms answered in %.1f ms",
                      r->t_us / 1000, r->lat_us / 1000.0);
            if (r->t_us < t_term_us)
                (*before)++;
            else
                (*after_answered)++;
        }
    }
}

/* Load on 16 connections, Redis paused (requests wait for their deadline),
 * SIGTERM: every request already sent is answered per failure_mode, the
 * daemon exits 0 once they are, well within the 5 s drain. */
static void chaos_term_during_pause(const char *mode)
{
    static struct chaos_idle xs[CHAOS_IDLE];
    struct chaos_load *l = calloc(1, sizeof(*l));
    bool open = strcmp(mode, "open") == 0;
    long before, after_answered, after_closed;
    int64_t t_term;
    int took, st, idle_answered;
    char buf[64];

    cr_assert_not_null(l);
    chaos_start(&d1, mode, CHAOS_TIMEOUT_MS, CHAOS_EXACT_LIMIT);
    chaos_idle_open(xs, CHAOS_IDLE, d1.port);
    *l = (struct chaos_load){.port = {d1.port},
                             .nports = 1,
                             .nthreads = CHAOS_THREADS,
                             .rate = CHAOS_RATE,
                             .path_fmt = "/v1/check?caller=load-%d"};
    chaos_load_start(l);
    chaos_sleep_ms(700);
    cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "CLIENT PAUSE %s %s", "1500", "ALL"),
                 0);
    cr_assert_str_eq(buf, "OK", "CLIENT PAUSE: %s", buf);
    chaos_sleep_ms(200);
    t_term = chaos_load_now(l);
    chaos_idle_fire(xs, CHAOS_IDLE, chaos_us());
    st = chaos_term(&d1, &took);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) rl_test_daemon_dump_log(&d1);
    idle_answered = chaos_idle_join(xs, CHAOS_IDLE, open);
    chaos_load_join(l);
    chaos_term_records(l, t_term, open, &before, &after_answered, &after_closed);
    fprintf(stderr,
            "chaos: %-22s %-6s exit status 0x%x after %d ms | load: %ld answered before "
            "SIGTERM, %ld after, %ld refused/closed after | idle keep-alive: %d of %d answered\n",
            "sigterm_during_pause", mode, st, took, before, after_answered, after_closed,
            idle_answered, CHAOS_IDLE);
    chaos_load_free(l);
    free(l);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x after SIGTERM", st);
    cr_assert(took <= CHAOS_DRAIN_MS, "exit %d ms after SIGTERM", took);
}

Test(chaos, sigterm_during_pause_open)
{
    chaos_term_during_pause("open");
}

Test(chaos, sigterm_during_pause_closed)
{
    chaos_term_during_pause("closed");
}

/* Regression: main.c closes (frees) the store before it stops libmicrohttpd,
 * and the drain waits only for requests in flight, not for idle keep-alive
 * connections: a check arriving on one in between calls rl_store_submit on
 * freed memory (heap-use-after-free; SIGSEGV without sanitizers). A race: the
 * window is the few microseconds before the workers see the shutdown, so some
 * runs miss it (with the code of 2026-11-23 a run of CHAOS_TERM_ROUNDS rounds
 * caught it 4 times in 10; the stalled tests below catch it too). */
Test(chaos, sigterm_idle_keepalive_no_use_after_free)
{
    static struct chaos_idle xs[CHAOS_IDLE];
    int crashed = 0, first_status = 0, answered = 0, took;

    for (int round = 0; round < CHAOS_TERM_ROUNDS; round++) {
        int st;

        chaos_start(&d1, "open", CHAOS_TIMEOUT_MS, CHAOS_EXACT_LIMIT);
        chaos_idle_open(xs, CHAOS_IDLE, d1.port);
        chaos_idle_fire(xs, CHAOS_IDLE, chaos_us());
        st = chaos_term(&d1, &took);
        answered += chaos_idle_join(xs, CHAOS_IDLE, true);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            if (crashed++ == 0) {
                first_status = st;
                rl_test_daemon_dump_log(&d1); /* the first one's report */
            }
        }
        rl_test_daemon_stop(&d1); /* reaped already: removes its dir */
    }
    fprintf(stderr,
            "chaos: %-22s %-6s %d of %d shutdowns unclean (first wait status 0x%x) | "
            "idle keep-alive: %d of %d answered\n",
            "sigterm_idle_keepalive", "open", crashed, CHAOS_TERM_ROUNDS, first_status, answered,
            CHAOS_TERM_ROUNDS * CHAOS_IDLE);
    cr_assert_eq(crashed, 0,
                 "%d of %d SIGTERMs with idle keep-alive connections ended uncleanly (first "
                 "wait status 0x%x: %s)",
                 crashed, CHAOS_TERM_ROUNDS, first_status,
                 WIFSIGNALED(first_status) ? strsignal(WTERMSIG(first_status)) : "exit code");
}

/* Redis stalled longer than the drain (timeout_ms 10 s, CLIENT PAUSE 9 s),
 * 300 checks suspended, SIGTERM: at the 5 s limit the drain gives up, the
 * store finishes their jobs (unavailable) and resumes them, so each must still
 * get its failure_mode answer before the daemon exits 0. Idle keep-alive
 * connections speak up around that moment too. */
#define CHAOS_STALLED 300

static void chaos_term_stalled(const char *mode)
{
    static struct chaos_idle idle[CHAOS_IDLE];
    static struct chaos_conn stalled[CHAOS_STALLED];
    static const char req[] = "GET /v1/check?caller=stalled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    bool open = strcmp(mode, "open") == 0;
    int took, st, answered = 0, closed = 0, idle_answered;
    char buf[64], first[128] = "";
    int64_t t;

    chaos_start(&d1, mode, 10000, CHAOS_EXACT_LIMIT);
    chaos_idle_open(idle, CHAOS_IDLE, d1.port);
    cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "CLIENT PAUSE %s %s", "9000", "ALL"),
                 0);
    cr_assert_str_eq(buf, "OK", "CLIENT PAUSE: %s", buf);
    for (int i = 0; i < CHAOS_STALLED; i++) {
        stalled[i] = (struct chaos_conn){.fd = chaos_connect(d1.port), .port = d1.port};
        cr_assert(stalled[i].fd >= 0, "connect: %s", strerror(errno));
        cr_assert_eq(send(stalled[i].fd, req, sizeof(req) - 1, MSG_NOSIGNAL),
                     (ssize_t)sizeof(req) - 1);
    }
    chaos_sleep_ms(300); /* all suspended, waiting for Redis */
    t = chaos_us();
    for (int i = 0; i < CHAOS_IDLE; i++) { /* 4995 .. 5025 ms after SIGTERM */
        idle[i].fire_us = t + CHAOS_DRAIN_MS * 1000LL - 5000 + (int64_t)i * 30000 / CHAOS_IDLE;
        cr_assert_eq(pthread_create(&idle[i].th, NULL, chaos_idle_run, &idle[i]), 0);
    }
    st = chaos_term(&d1, &took);
    idle_answered = chaos_idle_join(idle, CHAOS_IDLE, open);
    for (int i = 0; i < CHAOS_STALLED; i++) {
        struct chaos_answer a;

        memset(&a, 0, sizeof(a));
        if (chaos_read_answer(&stalled[i], chaos_us() + 1000000, &a) != 0) {
            closed++;
            if (first[0] == '\0') snprintf(first, sizeof(first), "%s", a.why);
        } else if (chaos_classify(&a) == (open ? CHAOS_DEGRADED : CHAOS_REFUSED) &&
                   chaos_shape(&a, chaos_classify(&a)) == NULL) {
            answered++;
        } else if (first[0] == '\0') {
            snprintf(first, sizeof(first), "status %d", a.status);
        }
        chaos_conn_close(&stalled[i]);
    }
    fprintf(stderr,
            "chaos: %-22s %-6s exit status 0x%x after %d ms | stalled checks: %d of %d answered, "
            "%d closed unanswered | idle keep-alive: %d of %d answered\n",
            "sigterm_stalled", mode, st, took, answered, CHAOS_STALLED, closed, idle_answered,
            CHAOS_IDLE);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) rl_test_daemon_dump_log(&d1);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x after SIGTERM (%s)", st,
              WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exit code");
    cr_assert(took <= CHAOS_DRAIN_MS + CHAOS_MARGIN_MS, "exit %d ms after SIGTERM", took);
    cr_assert_eq(answered, CHAOS_STALLED,
                 "%d of %d checks in flight at the drain limit got their failure_mode answer; "
                 "first other: %s",
                 answered, CHAOS_STALLED, first);
}

Test(chaos, sigterm_redis_stalled_past_drain_open, .timeout = 60)
{
    chaos_term_stalled("open");
}

Test(chaos, sigterm_redis_stalled_past_drain_closed, .timeout = 60)
{
    chaos_term_stalled("closed");
}
