/* test_cache.c -- the local over-limit cache and the pipelined Redis path,
 * through the real binary and a real redis-server: a cached denial carries
 * the same answer the store gave and costs no Redis call; it ends when the
 * token returns (never a wrong denial after); admin reset and reload clear
 * it; the off switch; costs > 1 and idempotent checks always ask Redis; and
 * many concurrent decisions pipelined on one connection each get their own
 * reply. */
#include "test_daemon.h"
#include "test_http.h"
#include "test_json.h"
#include "test_redis.h"
#include "test_time.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct rl_test_redis redis;
static struct rl_test_daemon d;

static char *const TOKENS[] = {"RATELIMITD_ADMIN_TOKEN=admin-secret", NULL};

static void setup(void)
{
    cr_assert_eq(rl_test_redis_start(&redis), 0);
}

static void teardown(void)
{
    int st = rl_test_daemon_stop(&d);
    rl_test_redis_stop(&redis);
    rl_test_daemon_require_clean(st);
}

TestSuite(cache, .init = setup, .fini = teardown, .timeout = 60);

static void up(const char *extra, const char *policies)
{
    char cfg[4096];

    snprintf(cfg, sizeof(cfg),
             "{%s%s\"redis\":{\"url\":\"%s\",\"timeout_ms\":1000},\"policies\":%s}",
             extra ? extra : "", extra ? "," : "", redis.url, policies);
    cr_assert_eq(rl_test_daemon_start(&d, cfg, redis.url, TOKENS), 0, "start with %s", cfg);
}

/* Script calls Redis has served so far (EVALSHA and EVAL). */
static long evals(void)
{
    char buf[8192];
    long n = 0;
    const char *p;

    cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "INFO commandstats"), 0);
    if ((p = strstr(buf, "cmdstat_evalsha:calls=")) != NULL)
        n += strtol(p + strlen("cmdstat_evalsha:calls="), NULL, 10);
    if ((p = strstr(buf, "cmdstat_eval:calls=")) != NULL)
        n += strtol(p + strlen("cmdstat_eval:calls="), NULL, 10);
    return n;
}

static int check(const char *query, const char *headers, struct rl_test_response *res)
{
    char path[512];

    snprintf(path, sizeof(path), "/v1/check?%s", query);
    cr_assert_eq(rl_test_http(d.port, "GET", path, headers, NULL, 0, res), 0, "GET %s", path);
    return res->status;
}

static int status_of(const char *query, const char *headers)
{
    struct rl_test_response res;
    int st = check(query, headers, &res);

    rl_test_response_free(&res);
    return st;
}

static long hdr(const struct rl_test_response *res, const char *name)
{
    const char *v = rl_test_header(res, name);

    cr_assert_not_null(v, "header %s missing", name);
    return strtol(v, NULL, 10);
}

static long deny_cache_hits(void)
{
    struct rl_test_response res;
    const char *p;
    long n = -1;

    cr_assert_eq(rl_test_http(d.port, "GET", "/metrics", "Authorization: Bearer admin-secret\r\n",
                              NULL, 0, &res),
                 0);
    if ((p = strstr(res.body, "\nratelimitd_deny_cache_hits_total ")) != NULL)
        n = strtol(p + strlen("\nratelimitd_deny_cache_hits_total "), NULL, 10);
    rl_test_response_free(&res);
    return n;
}

static const char *const TWO_PER_MIN =
    "[{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":2,\"window\":\"1m\"}]";

/* The second denial comes from the cache: no script call, same limit,
 * remaining, reset and envelope as the store's denial, a Retry-After that
 * counts down, and the metric counts it. */
Test(cache, deny_from_cache_matches_the_store)
{
    struct rl_test_response a, b;
    struct json_object *ja, *jb;

    up(NULL, TWO_PER_MIN);
    cr_assert_eq(status_of("key=k", NULL), 200);
    cr_assert_eq(status_of("key=k", NULL), 200);
    long before = evals();
    cr_assert_eq(check("key=k", NULL, &a), 429);
    cr_assert_eq(evals(), before + 1, "the first denial asks Redis");
    cr_assert_eq(check("key=k", NULL, &b), 429);
    cr_assert_eq(evals(), before + 1, "the second denial does not");
    cr_assert_eq(deny_cache_hits(), 1);

    cr_assert_eq(hdr(&b, "X-RateLimit-Limit"), 2);
    cr_assert_eq(hdr(&b, "X-RateLimit-Remaining"), 0);
    cr_assert(labs(hdr(&b, "X-RateLimit-Reset") - hdr(&a, "X-RateLimit-Reset")) <= 1);
    cr_assert(hdr(&b, "Retry-After") <= hdr(&a, "Retry-After"));
    cr_assert(hdr(&b, "Retry-After") >= hdr(&a, "Retry-After") - 1);
    cr_assert_str_eq(rl_test_header(&b, "RateLimit-Policy"), "\"per-key\";q=2;w=60");
    cr_assert_str_eq(rl_test_header(&b, "Content-Type"), "application/problem+json");
    ja = json_tokener_parse(a.body);
    jb = json_tokener_parse(b.body);
    cr_assert_not_null(jb);
    cr_assert_str_eq(rl_tj_str(jb, "type"), rl_tj_str(ja, "type"));
    cr_assert_eq(rl_tj_int(jb, "retry_after_secs"), hdr(&b, "Retry-After"));
    cr_assert_eq(rl_tj_int(jb, "limit"), 2);
    cr_assert_eq(rl_tj_int(jb, "remaining"), 0);
    cr_assert_str_eq(rl_tj_str(jb, "violated-policies.0"), "per-key");
    cr_assert_str_eq(rl_tj_str(jb, "request_id"), rl_test_header(&b, "X-Request-ID"));
    json_object_put(ja);
    json_object_put(jb);
    rl_test_response_free(&a);
    rl_test_response_free(&b);

    /* another key is not affected */
    cr_assert_eq(status_of("key=other", NULL), 200);
}

/* 1 per 600 ms: denied answers come from the cache until the token returns;
 * the first request after that moment is allowed (never a cached denial past
 * it), and the store then counts again. */
Test(cache, cached_denial_ends_when_the_token_returns)
{
    struct rl_test_response res;

    up(NULL, "[{\"name\":\"slow\",\"scope\":\"key\",\"limit\":1,\"window\":\"600ms\"}]");
    cr_assert_eq(status_of("key=t", NULL), 200);
    int64_t t0 = rl_test_mono_ms();
    cr_assert_eq(check("key=t", NULL, &res), 429);
    int64_t token_back = t0 + 600; /* at the latest: 600 ms after the charge */
    rl_test_response_free(&res);
    int denied = 0, allowed_at = -1;
    while (rl_test_mono_ms() < t0 + 2000) {
        int64_t sent = rl_test_mono_ms();
        int st = status_of("key=t", NULL);
        if (st == 200) {
            allowed_at = (int)(sent - t0);
            break;
        }
        cr_assert_eq(st, 429);
        cr_assert_lt(sent, token_back, "denied %lld ms after the token was back",
                     (long long)(sent - token_back));
        denied++;
        rl_test_sleep_ms(10);
    }
    cr_assert_geq(allowed_at, 0, "never allowed again");
    cr_assert_gt(denied, 3, "the cache answered while the bucket was empty");
    cr_assert_gt(deny_cache_hits(), 0);
}

Test(cache, admin_reset_clears_it)
{
    up(NULL, TWO_PER_MIN);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(status_of("key=r", NULL), 200);
    cr_assert_eq(status_of("key=r", NULL), 429);
    cr_assert_eq(status_of("key=r", NULL), 429);
    cr_assert_eq(deny_cache_hits(), 1);
    struct rl_test_response res;
    cr_assert_eq(rl_test_http(d.port, "POST", "/v1/admin/reset?scope=key&id=r",
                              "Authorization: Bearer admin-secret\r\n", NULL, 0, &res),
                 0);
    cr_assert_eq(res.status, 200);
    rl_test_response_free(&res);
    cr_assert_eq(status_of("key=r", NULL), 200, "no stale cached denial after a reset");
}

Test(cache, reload_clears_it)
{
    up(NULL, TWO_PER_MIN);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(status_of("key=h", NULL), 200);
    cr_assert_eq(status_of("key=h", NULL), 429);
    cr_assert_eq(status_of("key=h", NULL), 429);
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "{\"redis\":{\"url\":\"%s\",\"timeout_ms\":1000},\"policies\":[{\"name\":"
             "\"per-key\",\"scope\":\"key\",\"limit\":10,\"window\":\"1m\"}]}",
             redis.url);
    cr_assert_eq(rl_test_daemon_write_config(&d, cfg), 0);
    cr_assert_eq(rl_test_daemon_signal(&d, SIGHUP), 0);
    int st = 429;
    for (int i = 0; i < 100 && st == 429; i++) { /* the reload is asynchronous */
        st = status_of("key=h", NULL);
        if (st == 429) rl_test_sleep_ms(20);
    }
    cr_assert_eq(st, 200, "the raised limit applies at once, no cached denial");
}

Test(cache, off_switch)
{
    up("\"deny_cache_entries\":0", TWO_PER_MIN);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(status_of("key=o", NULL), 200);
    long before = evals();
    for (int i = 0; i < 5; i++)
        cr_assert_eq(status_of("key=o", NULL), 429);
    cr_assert_eq(evals(), before + 5, "every denial asks Redis");
    cr_assert_eq(deny_cache_hits(), 0);
}

/* The cache knows when one token returns, not more: a cost of 2 and an
 * idempotent check go to Redis even while the bucket is cached empty. */
Test(cache, cost_and_idempotency_bypass_it)
{
    up(NULL, TWO_PER_MIN);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(status_of("key=c", NULL), 200);
    cr_assert_eq(status_of("key=c", NULL), 429); /* cached now */
    long before = evals();
    cr_assert_eq(status_of("key=c&cost=2", NULL), 429);
    cr_assert_eq(status_of("key=c", "Idempotency-Key: i-1\r\n"), 429);
    cr_assert_eq(evals(), before + 2);
    cr_assert_eq(status_of("key=c", NULL), 429);
    cr_assert_eq(evals(), before + 2, "a plain check still comes from the cache");
}

/* Several policies: the cached denial reports the known-empty bucket and
 * charges nothing anywhere (all or nothing still holds). */
Test(cache, all_or_nothing_with_a_cached_bucket)
{
    struct rl_test_response res;

    up(NULL, "[{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":1,\"window\":\"1m\"},"
             "{\"name\":\"per-org\",\"scope\":\"org\",\"limit\":5,\"window\":\"1m\"}]");
    cr_assert_eq(status_of("key=a&org=o", NULL), 200);
    cr_assert_eq(status_of("key=a&org=o", NULL), 429);   /* from Redis */
    cr_assert_eq(check("key=a&org=o", NULL, &res), 429); /* from the cache */
    cr_assert_eq(hdr(&res, "X-RateLimit-Limit"), 1);
    rl_test_response_free(&res);
    cr_assert_eq(check("key=b&org=o", NULL, &res), 200);
    cr_assert_eq(hdr(&res, "X-RateLimit-Limit"), 1);
    cr_assert_str_eq(rl_test_header(&res, "RateLimit"),
                     "\"per-key\";r=0;t=60, \"per-org\";r=3;t=24");
    rl_test_response_free(&res);
}

/*----------------------------------------------------------------------------
 * Pipelining: many decisions in flight on one Redis connection
 *--------------------------------------------------------------------------*/

struct pipe_arg {
    int i, bad, answered;
    char why[256];
};

/* Each thread has its own key and cost, so its remaining count is unique:
 * a reply delivered to the wrong request would show another number. */
static void *pipe_run(void *p)
{
    struct pipe_arg *a = p;

    for (int round = 0; round < 10; round++) {
        struct rl_test_response res;
        char path[128], rid[64], hdrs[128];
        int cost = 1 + a->i % 40;
        long want = 1000 - (long)cost * (round + 1);

        snprintf(path, sizeof(path), "/v1/check?key=p%d&cost=%d", a->i, cost);
        snprintf(rid, sizeof(rid), "t%d-r%d", a->i, round);
        snprintf(hdrs, sizeof(hdrs), "X-Request-ID: %s\r\n", rid);
        if (rl_test_http(d.port, "GET", path, hdrs, NULL, 0, &res) != 0) {
            a->bad++;
            snprintf(a->why, sizeof(a->why), "no answer");
            continue;
        }
        a->answered++;
        const char *rem = rl_test_header(&res, "X-RateLimit-Remaining");
        const char *got = rl_test_header(&res, "X-Request-ID");
        if (res.status != 200 || rem == NULL || strtol(rem, NULL, 10) != want || got == NULL ||
            strcmp(got, rid) != 0) {
            a->bad++;
            snprintf(a->why, sizeof(a->why), "%s: status %d remaining %s (want %ld) id %s", path,
                     res.status, rem ? rem : "-", want, got ? got : "-");
        }
        rl_test_response_free(&res);
    }
    return NULL;
}

Test(cache, pipelined_replies_reach_their_requests)
{
    enum { N = 48 };
    pthread_t th[N];
    struct pipe_arg a[N];
    int bad = 0, answered = 0;

    up(NULL, "[{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":1000,\"window\":\"1h\"}]");
    long before = evals();
    for (int i = 0; i < N; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        a[i].i = i;
        pthread_create(&th[i], NULL, pipe_run, &a[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        bad += a[i].bad;
        answered += a[i].answered;
        if (a[i].bad) fprintf(stderr, "thread %d: %s\n", i, a[i].why);
    }
    cr_assert_eq(answered, N * 10);
    cr_assert_eq(bad, 0, "%d replies went astray or were wrong", bad);
    /* batching: fewer script calls than decisions is allowed, more is not */
    cr_assert_leq(evals() - before, N * 10);
}

/* Redis restarted empty: every bucket is full again, and the deny cache,
 * learned from the old state, is dropped when the store reconnects. */
Test(cache, redis_restart_clears_it)
{
    up(NULL, TWO_PER_MIN);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(status_of("key=z", NULL), 200);
    cr_assert_eq(status_of("key=z", NULL), 429);
    cr_assert_eq(status_of("key=z", NULL), 429);
    cr_assert_eq(deny_cache_hits(), 1);
    rl_test_redis_kill(&redis);
    cr_assert_eq(rl_test_redis_restart(&redis), 0);
    bool ready = false;
    for (int i = 0; i < 250 && !ready; i++) { /* reconnect: 50 ms backoff, doubling */
        struct rl_test_response res;
        ready = check("key=probe", NULL, &res) == 200 &&
                rl_test_header(&res, "X-RateLimit-Degraded") == NULL;
        rl_test_response_free(&res);
        if (!ready) rl_test_sleep_ms(20);
    }
    cr_assert(ready, "ratelimitd did not reconnect");
    struct rl_test_response res;
    cr_assert_eq(check("key=z", NULL, &res), 200, "no cached denial from before the restart");
    cr_assert_null(rl_test_header(&res, "X-RateLimit-Degraded"));
    cr_assert_eq(hdr(&res, "X-RateLimit-Remaining"), 1, "a full bucket, charged once");
    rl_test_response_free(&res);
}
