/* test_faults.c -- the real binary against a real Redis that fails: killed
 * mid-run (failure_mode open and closed), restarted and recovered, slowed past
 * timeout_ms; and two instances on one Redis enforcing one global limit. */
#include "test_daemon.h"
#include "test_http.h"
#include "test_json.h"
#include "test_redis.h"
#include "test_time.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct rl_test_redis redis;
static struct rl_test_daemon d1, d2;

static void setup(void) { cr_assert_eq(rl_test_redis_start(&redis), 0, "redis-server did not start"); }

static void teardown(void)
{
    int st_d1 = rl_test_daemon_stop(&d1);
    int st_d2 = rl_test_daemon_stop(&d2);
    rl_test_redis_stop(&redis);
    rl_test_daemon_require_clean(st_d1);
    rl_test_daemon_require_clean(st_d2);
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 90);

static void start(struct rl_test_daemon *d, const char *mode, int timeout_ms, int limit)
{
    char cfg[1024];

    snprintf(cfg, sizeof(cfg),
             "{\"failure_mode\":\"%s\",\"redis\":{\"url\":\"%s\",\"timeout_ms\":%d},"
             "\"policies\":[{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":%d,"
             "\"window\":\"1h\"}]}",
             mode, redis.url, timeout_ms, limit);
    cr_assert_eq(rl_test_daemon_start(d, cfg, NULL, NULL), 0, "ratelimitd did not start");
}

/* GET /v1/check?key=KEY on d; returns the status, fills remaining (-1 if absent). */
static int check(struct rl_test_daemon *d, const char *key, long *remaining,
                 struct rl_test_response *keep)
{
    struct rl_test_response res;
    char path[128];
    int status;

    snprintf(path, sizeof(path), "/v1/check?key=%s", key);
    cr_assert_eq(rl_test_http(d->port, "GET", path, NULL, NULL, 0, &res), 0, "no answer");
    status = res.status;
    if (remaining != NULL) {
        const char *r = rl_test_header(&res, "X-RateLimit-Remaining");
        *remaining = r ? strtol(r, NULL, 10) : -1;
    }
    if (keep != NULL)
        *keep = res;
    else
        rl_test_response_free(&res);
    return status;
}

/* Wait until a check on `key` is answered without degradation (<= 5 s). */
static void wait_recovered(struct rl_test_daemon *d, const char *key)
{
    for (int i = 0; i < 100; i++) {
        struct rl_test_response res;
        int st = check(d, key, NULL, &res);
        bool ok = st == 200 && rl_test_header(&res, "X-RateLimit-Degraded") == NULL;
        rl_test_response_free(&res);
        if (ok)
            return;
        rl_test_sleep_ms(50);
    }
    cr_assert_fail("not recovered within 5 s");
}

Test(faults, redis_killed_open_then_recovered)
{
    struct rl_test_response res;
    long rem;

    start(&d1, "open", 50, 5);
    cr_assert_eq(check(&d1, "k", &rem, NULL), 200);
    cr_assert_eq(rem, 4);
    rl_test_redis_kill(&redis);

    int64_t t0 = rl_test_mono_ms();
    cr_assert_eq(check(&d1, "k", NULL, &res), 200, "open: allowed while Redis is down");
    cr_assert(rl_test_mono_ms() - t0 < 1000, "answered quickly");
    cr_assert_str_eq(rl_test_header(&res, "X-RateLimit-Degraded"), "redis-unavailable");
    cr_assert_null(rl_test_header(&res, "X-RateLimit-Remaining"));
    struct json_object *b = json_tokener_parse(res.body);
    cr_assert_eq(rl_tj_bool(b, "degraded"), 1);
    json_object_put(b);
    rl_test_response_free(&res);

    cr_assert_eq(rl_test_http(d1.port, "GET", "/readyz", NULL, NULL, 0, &res), 0);
    cr_assert_eq(res.status, 503, "not ready while Redis is down");
    rl_test_response_free(&res);
    cr_assert_eq(rl_test_http(d1.port, "GET", "/healthz", NULL, NULL, 0, &res), 0);
    cr_assert_eq(res.status, 200, "still alive");
    rl_test_response_free(&res);

    cr_assert_eq(rl_test_redis_restart(&redis), 0);
    wait_recovered(&d1, "fresh");
    /* empty dataset after the restart: buckets start full, decisions exact */
    cr_assert_eq(check(&d1, "k", &rem, NULL), 200);
    cr_assert_eq(rem, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(check(&d1, "k", NULL, NULL), 200);
    cr_assert_eq(check(&d1, "k", NULL, NULL), 429);
}

Test(faults, redis_killed_closed)
{
    struct rl_test_response res;

    start(&d1, "closed", 50, 5);
    cr_assert_eq(check(&d1, "k", NULL, NULL), 200);
    rl_test_redis_kill(&redis);
    cr_assert_eq(check(&d1, "k", NULL, &res), 503);
    cr_assert_str_eq(rl_test_header(&res, "Retry-After"), "1");
    cr_assert_str_eq(rl_test_header(&res, "Content-Type"), "application/problem+json");
    struct json_object *b = json_tokener_parse(res.body);
    cr_assert_str_eq(rl_tj_str(b, "type"), "urn:ratelimitd:problem:service_unavailable");
    cr_assert_eq(rl_tj_int(b, "status"), 503);
    cr_assert_eq(rl_tj_int(b, "retry_after_secs"), 1);
    json_object_put(b);
    rl_test_response_free(&res);

    cr_assert_eq(rl_test_redis_restart(&redis), 0);
    wait_recovered(&d1, "fresh");
    long rem;
    cr_assert_eq(check(&d1, "k", &rem, NULL), 200);
    cr_assert_eq(rem, 4);
}

struct pause_arg {
    int ms;
};

static void *redis_sleeper(void *arg)
{
    struct pause_arg *p = arg;
    char buf[64];

    /* words of the format are separate arguments (hiredis): not one "%s" */
    rl_test_redis_cmd(&redis, buf, sizeof(buf), "DEBUG SLEEP %.3f", p->ms / 1000.0);
    cr_assert_str_eq(buf, "OK", "DEBUG SLEEP: %s", buf);
    return NULL;
}

Test(faults, slow_redis_answers_within_timeout)
{
    struct rl_test_response res;
    pthread_t th;
    struct pause_arg p = {800};

    start(&d1, "open", 50, 100);
    cr_assert_eq(check(&d1, "k", NULL, NULL), 200);
    pthread_create(&th, NULL, redis_sleeper, &p);
    rl_test_sleep_ms(100); /* Redis is now asleep */
    int64_t t0 = rl_test_mono_ms();
    cr_assert_eq(check(&d1, "k", NULL, &res), 200);
    int64_t took = rl_test_mono_ms() - t0;
    cr_assert(took < 50 + 250, "answered in %lld ms, timeout 50 ms", (long long)took);
    cr_assert_str_eq(rl_test_header(&res, "X-RateLimit-Degraded"), "redis-timeout");
    rl_test_response_free(&res);
    pthread_join(th, NULL);
    wait_recovered(&d1, "k");
}

Test(faults, slow_redis_closed_is_503)
{
    struct rl_test_response res;
    pthread_t th;
    struct pause_arg p = {800};

    start(&d1, "closed", 50, 100);
    cr_assert_eq(check(&d1, "k", NULL, NULL), 200);
    pthread_create(&th, NULL, redis_sleeper, &p);
    rl_test_sleep_ms(100);
    int64_t t0 = rl_test_mono_ms();
    cr_assert_eq(check(&d1, "k", NULL, &res), 503);
    cr_assert(rl_test_mono_ms() - t0 < 300);
    cr_assert_str_eq(rl_test_header(&res, "Retry-After"), "1");
    rl_test_response_free(&res);
    pthread_join(th, NULL);
    wait_recovered(&d1, "k");
}

/* Two instances on one Redis, hammered concurrently: together they allow
 * exactly `limit` over a long window. */
struct hammer {
    struct rl_test_daemon *d;
    int n, allowed, denied, other;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;

    for (int i = 0; i < h->n; i++) {
        struct rl_test_response res;
        if (rl_test_http(h->d->port, "GET", "/v1/check?key=shared", NULL, NULL, 0, &res) != 0) {
            h->other++;
            continue;
        }
        if (res.status == 200)
            h->allowed++;
        else if (res.status == 429)
            h->denied++;
        else
            h->other++;
        rl_test_response_free(&res);
    }
    return NULL;
}

Test(faults, two_instances_one_global_limit)
{
    struct hammer h[4];
    pthread_t th[4];
    int allowed = 0, denied = 0, other = 0;

    start(&d1, "closed", 500, 25);
    start(&d2, "closed", 500, 25);
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){i % 2 ? &d2 : &d1, 20, 0, 0, 0};
        pthread_create(&th[i], NULL, hammer_run, &h[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        allowed += h[i].allowed;
        denied += h[i].denied;
        other += h[i].other;
    }
    cr_assert_eq(other, 0, "every request answered 200 or 429");
    cr_assert_eq(allowed, 25, "together exactly the limit: %d allowed", allowed);
    cr_assert_eq(denied, 80 - 25);
    cr_assert(h[0].allowed + h[2].allowed > 0 && h[1].allowed + h[3].allowed > 0,
              "both instances served allowed requests");
}

/* State lives in Redis: a restarted ratelimitd finds every bucket as it was. */
Test(faults, daemon_restart_keeps_bucket_state)
{
    long rem;

    start(&d1, "closed", 500, 5);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(check(&d1, "kept", NULL, NULL), 200);
    cr_assert_eq(rl_test_daemon_stop(&d1), 0);
    start(&d1, "closed", 500, 5);
    cr_assert_eq(check(&d1, "kept", &rem, NULL), 200);
    cr_assert_eq(rem, 1, "5 - 3 before the restart - 1 now");
}

/* With persistence (an RDB snapshot here; AOF works the same), a Redis
 * restart keeps the buckets, their TTLs included; without it they start
 * full (the "restarted empty" case above). */
Test(faults, redis_restart_with_persistence_keeps_bucket_state)
{
    char buf[64];
    long rem;

    start(&d1, "closed", 500, 5);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(check(&d1, "saved", NULL, NULL), 200);
    cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), "SAVE"), 0);
    cr_assert_str_eq(buf, "OK");
    rl_test_redis_kill(&redis);
    cr_assert_eq(rl_test_redis_restart(&redis), 0); /* loads dump.rdb from its dir */
    wait_recovered(&d1, "probe");
    cr_assert_eq(check(&d1, "saved", &rem, NULL), 200);
    cr_assert_eq(rem, 0, "5 - 4 before the restart - 1 now");
    cr_assert_eq(check(&d1, "saved", NULL, NULL), 429);
}
