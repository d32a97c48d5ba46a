/* test_store.c -- both stores through struct rl_store_ops: every shared case
 * is one static function run twice, against the memory store and against a
 * real redis-server (STORE_TEST). Then the Redis-only cases: keys, TTLs and
 * value format in Redis, the Lua script against bucket.c, NOSCRIPT, a killed
 * and a slow server, concurrency and batching. */
#include "bucket.h"
#include "store.h"
#include "test_redis.h"
#include "test_time.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*-----------------------------------------------------------------------------
 * Helpers: buckets, jobs, waiting for done()
 *---------------------------------------------------------------------------*/

/* A set of buckets for one decision: policies and refs into them. */
struct tb {
    struct rl_policy pol[RL_MAX_POLICIES];
    struct rl_bucket_ref ref[RL_MAX_POLICIES];
    size_t n;
};

static void tb_add_scoped(struct tb *t, const char *policy, enum rl_scope scope, const char *id,
                          int64_t limit, int64_t burst, int64_t window_ms, bool shadow)
{
    struct rl_policy *p = &t->pol[t->n];
    struct rl_bucket_ref *r = &t->ref[t->n];

    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", policy);
    p->scope = scope;
    p->lim.limit = limit;
    p->lim.burst = burst;
    p->lim.window_ms = window_ms;
    p->shadow = shadow;
    p->envelope = -1;
    p->metric_slot = -1;
    memset(r, 0, sizeof(*r));
    r->policy = p;
    r->policy_index = (int)t->n;
    r->lim = p->lim;
    r->id = id;
    r->id_len = strlen(id);
    r->shadow = shadow;
    t->n++;
}

static void tb_add(struct tb *t, const char *policy, const char *id, int64_t limit,
                   int64_t burst, int64_t window_ms, bool shadow)
{
    tb_add_scoped(t, policy, RL_SCOPE_KEY, id, limit, burst, window_ms, shadow);
}

/* Counts done() calls of any number of jobs. */
struct group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

#define GROUP_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

static void group_add(struct group *g)
{
    pthread_mutex_lock(&g->mu);
    g->done++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void on_done(struct rl_job *j) { group_add(j->udata); }

/* Wait until n jobs are done or ms pass; returns how many are done. */
static int group_wait(struct group *g, int n, int ms)
{
    struct timespec until;
    int done;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g->mu);
    while (g->done < n && pthread_cond_timedwait(&g->cv, &g->mu, &until) == 0)
        ;
    done = g->done;
    pthread_mutex_unlock(&g->mu);
    return done;
}

/* Submit without waiting; a synchronous answer counts as done at once. */
static void submit_async(struct rl_store *s, struct rl_job *j, struct group *g)
{
    int rc;

    j->done = on_done;
    j->udata = g;
    rc = rl_store_submit(s, j);
    if (rc == RL_OK)
        group_add(g);
    else
        cr_assert_eq(rc, RL_AGAIN);
}

/* Submit and wait (at most 2 s) for the result; returns its status. */
static int run(struct rl_store *s, struct rl_job *j)
{
    struct group g = GROUP_INIT;

    submit_async(s, j, &g);
    cr_assert_eq(group_wait(&g, 1, 2000), 1, "no answer within 2 s");
    return j->result.status;
}

static void job_init(struct rl_job *j, enum rl_op op, const struct tb *t, int64_t cost)
{
    memset(j, 0, sizeof(*j));
    j->op = op;
    j->refs = t->ref;
    j->n = t->n;
    j->cost = cost;
}

/* One decision; asserts status RL_OK and the bucket count. */
static struct rl_decision decide(struct rl_store *s, enum rl_op op, const struct tb *t,
                                 int64_t cost)
{
    struct rl_job j;

    job_init(&j, op, t, cost);
    cr_assert_eq(run(s, &j), RL_OK, "status %d", j.result.status);
    cr_assert_eq(j.result.n, t->n);
    return j.result;
}

static struct rl_decision check(struct rl_store *s, const struct tb *t, int64_t cost)
{
    return decide(s, RL_OP_CHECK, t, cost);
}

static struct rl_decision peek(struct rl_store *s, const struct tb *t)
{
    return decide(s, RL_OP_PEEK, t, 0);
}

static int check_idem(struct rl_store *s, const struct tb *t, const char *key, uint64_t fp,
                      int64_t ttl_ms, struct rl_decision *d)
{
    struct rl_job j;
    int st;

    job_init(&j, RL_OP_CHECK, t, 1);
    j.idem_key = key;
    j.idem_len = strlen(key);
    j.fingerprint = fp;
    j.idem_ttl_ms = ttl_ms;
    st = run(s, &j);
    *d = j.result;
    return st;
}

/*-----------------------------------------------------------------------------
 * The two stores
 *---------------------------------------------------------------------------*/

static struct rl_test_redis redis;

static void redis_up(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(rl_test_redis_start(&redis), 0, "redis-server did not start");
}

static void redis_down(void) { rl_test_redis_stop(&redis); }

TestSuite(store_memory, .timeout = 60);
TestSuite(store_redis, .init = redis_up, .fini = redis_down, .timeout = 60);

static struct rl_store *open_memory(void)
{
    struct rl_store *s = rl_store_memory_open("rl:");

    cr_assert_not_null(s);
    cr_assert_str_eq(s->ops->name, "memory");
    return s;
}

static bool wait_ready(struct rl_store *s, int ms)
{
    int64_t end = rl_test_mono_ms() + ms;

    while (!s->ops->ready(s) && rl_test_mono_ms() < end)
        rl_test_sleep_ms(5);
    return s->ops->ready(s);
}

static void redis_cfg(struct rl_config *cfg, uint16_t port, int timeout_ms)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->redis_enabled = true;
    snprintf(cfg->redis_host, sizeof(cfg->redis_host), "127.0.0.1");
    cfg->redis_port = port;
    cfg->redis_timeout_ms = timeout_ms;
    snprintf(cfg->redis_prefix, sizeof(cfg->redis_prefix), "rl:");
}

static struct rl_store *open_redis_cfg(const struct rl_config *cfg)
{
    struct rl_error err;
    struct rl_store *s;

    memset(&err, 0, sizeof(err));
    s = rl_store_redis_open(cfg, &err);
    cr_assert_not_null(s, "rl_store_redis_open: %s", err.message);
    cr_assert_str_eq(s->ops->name, "redis");
    return s;
}

static struct rl_store *open_redis_port(uint16_t port, int timeout_ms)
{
    struct rl_config cfg;
    struct rl_error err;
    struct rl_store *s;

    redis_cfg(&cfg, port, timeout_ms);
    memset(&err, 0, sizeof(err));
    s = rl_store_redis_open(&cfg, &err);
    cr_assert_not_null(s, "rl_store_redis_open: %s", err.message);
    cr_assert_str_eq(s->ops->name, "redis");
    return s;
}

static struct rl_store *open_redis(int timeout_ms)
{
    struct rl_store *s = open_redis_port(redis.port, timeout_ms);

    cr_assert(wait_ready(s, 3000), "redis store not ready within 3 s");
    return s;
}

/* STORE_TEST(name) { body using `s` }: the body runs against both stores. */
#define STORE_TEST(name)                                                                  \
    static void name(struct rl_store *s);                                                 \
    Test(store_memory, name)                                                              \
    {                                                                                     \
        struct rl_store *s = open_memory();                                               \
        name(s);                                                                          \
        s->ops->close(s);                                                                 \
    }                                                                                     \
    Test(store_redis, name)                                                               \
    {                                                                                     \
        struct rl_store *s = open_redis(1000);                                            \
        name(s);                                                                          \
        s->ops->close(s);                                                                 \
    }                                                                                     \
    static void name(struct rl_store *s)

/*-----------------------------------------------------------------------------
 * Shared cases
 *---------------------------------------------------------------------------*/

STORE_TEST(burst_then_denied)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    for (int i = 0; i < 5; i++) {
        d = check(s, &t, 1);
        cr_assert(d.allowed, "charge %d", i);
        cr_assert(d.out[0].allowed);
        cr_assert_eq(d.out[0].remaining, 4 - i);
        cr_assert_eq(d.out[0].retry_ms, 0);
        cr_assert_not(d.replayed);
    }
    d = check(s, &t, 1);
    cr_assert_not(d.allowed);
    cr_assert_not(d.out[0].allowed);
    cr_assert_eq(d.out[0].remaining, 0);
    /* one token is 12 s; the five charges took a few ms */
    cr_assert(d.out[0].retry_ms > 11000 && d.out[0].retry_ms <= 12000, "retry %lld",
              (long long)d.out[0].retry_ms);
    cr_assert(d.out[0].reset_ms > d.now_ms + 59000 && d.out[0].reset_ms <= d.now_ms + 60000);
    cr_assert(d.now_ms > 1600000000000LL, "now_ms is Unix ms");
}

STORE_TEST(all_or_nothing_denied_charges_neither)
{
    struct tb both = {.n = 0}, a = {.n = 0};
    struct rl_decision d;

    tb_add(&both, "wide", "k1", 5, 5, 60000, false);
    tb_add(&both, "narrow", "k1", 1, 1, 60000, false);
    tb_add(&a, "wide", "k1", 5, 5, 60000, false);

    d = check(s, &both, 1);
    cr_assert(d.allowed);
    cr_assert_eq(d.out[0].remaining, 4);
    cr_assert_eq(d.out[1].remaining, 0);

    d = check(s, &both, 1);
    cr_assert_not(d.allowed);
    cr_assert(d.out[0].allowed, "wide had the token");
    cr_assert_eq(d.out[0].remaining, 4, "wide reports its uncharged state");
    cr_assert_eq(d.out[0].retry_ms, 0);
    cr_assert_not(d.out[1].allowed);
    cr_assert(d.out[1].retry_ms > 0);

    d = peek(s, &both);
    cr_assert_eq(d.out[0].remaining, 4, "the denied check charged wide");
    cr_assert_eq(d.out[1].remaining, 0);
    d = check(s, &a, 1);
    cr_assert(d.allowed);
    cr_assert_eq(d.out[0].remaining, 3);
}

/* 5 per 1000 ms: one token every 200 ms. */
STORE_TEST(refill_after_waiting)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "per-key", "k1", 5, 5, 1000, false);
    for (int i = 0; i < 5; i++)
        cr_assert(check(s, &t, 1).allowed);
    d = check(s, &t, 1);
    cr_assert_not(d.allowed);
    cr_assert(d.out[0].retry_ms > 150 && d.out[0].retry_ms <= 200);

    rl_test_sleep_ms(300); /* one token back at 200 ms, the next at 400 ms */
    d = check(s, &t, 1);
    cr_assert(d.allowed);
    cr_assert_eq(d.out[0].remaining, 0);
    cr_assert_not(check(s, &t, 1).allowed);

    rl_test_sleep_ms(1100); /* full again */
    d = peek(s, &t);
    cr_assert_eq(d.out[0].remaining, 5);
    cr_assert_eq(d.out[0].reset_ms, d.now_ms);
    for (int i = 0; i < 5; i++)
        cr_assert(check(s, &t, 1).allowed);
    cr_assert_not(check(s, &t, 1).allowed);
}

STORE_TEST(cost_above_1)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "per-key", "k1", 10, 10, 60000, false);
    cr_assert_eq(check(s, &t, 4).out[0].remaining, 6);
    cr_assert_eq(check(s, &t, 4).out[0].remaining, 2);
    d = check(s, &t, 4);
    cr_assert_not(d.allowed);
    cr_assert_eq(d.out[0].remaining, 2);
    /* two more tokens at 6 s each */
    cr_assert(d.out[0].retry_ms > 11000 && d.out[0].retry_ms <= 12000);
    d = check(s, &t, 2);
    cr_assert(d.allowed);
    cr_assert_eq(d.out[0].remaining, 0);
}

STORE_TEST(shadow_never_denies_and_is_charged_only_when_allowed)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "enforced", "k1", 1, 1, 60000, false);
    tb_add(&t, "dry-run", "k1", 5, 5, 60000, true);

    d = check(s, &t, 1);
    cr_assert(d.allowed);
    cr_assert_eq(d.out[0].remaining, 0);
    cr_assert_eq(d.out[1].remaining, 4);

    /* the enforced bucket denies: the shadow one would have allowed, and is
     * not charged */
    d = check(s, &t, 1);
    cr_assert_not(d.allowed);
    cr_assert(d.out[1].allowed);
    cr_assert_eq(d.out[1].remaining, 4);
    d = peek(s, &t);
    cr_assert_eq(d.out[1].remaining, 4);
}

STORE_TEST(shadow_denial_does_not_deny)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "enforced", "k1", 10, 10, 60000, false);
    tb_add(&t, "dry-run", "k1", 2, 2, 60000, true);
    cr_assert(check(s, &t, 1).allowed);
    cr_assert(check(s, &t, 1).allowed);
    d = check(s, &t, 1);
    cr_assert(d.allowed, "a shadow bucket never denies");
    cr_assert(d.out[0].allowed);
    cr_assert_not(d.out[1].allowed, "it reports that it would have");
    cr_assert_eq(d.out[1].remaining, 0);
    cr_assert(d.out[1].retry_ms > 0);
    d = peek(s, &t);
    cr_assert_eq(d.out[0].remaining, 7, "the enforced bucket was charged");
    cr_assert_eq(d.out[1].remaining, 0);
}

STORE_TEST(only_shadow_buckets_always_allowed)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "dry-run", "k1", 1, 1, 60000, true);
    d = check(s, &t, 1);
    cr_assert(d.allowed);
    cr_assert(d.out[0].allowed);
    d = check(s, &t, 1);
    cr_assert(d.allowed);
    cr_assert_not(d.out[0].allowed);
}

STORE_TEST(peek_charges_nothing)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    d = peek(s, &t);
    cr_assert(d.allowed);
    cr_assert(d.out[0].allowed);
    cr_assert_eq(d.out[0].remaining, 5);
    cr_assert_eq(d.out[0].reset_ms, d.now_ms);
    cr_assert_eq(d.out[0].retry_ms, 0);
    cr_assert_eq(check(s, &t, 2).out[0].remaining, 3);
    for (int i = 0; i < 3; i++) {
        d = peek(s, &t);
        cr_assert_eq(d.out[0].remaining, 3);
        cr_assert(d.out[0].reset_ms > d.now_ms + 23000 && d.out[0].reset_ms <= d.now_ms + 24000);
    }
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 2);
}

STORE_TEST(reset_empties)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "a", "k1", 3, 3, 60000, false);
    tb_add(&t, "b", "k1", 2, 2, 60000, false);
    cr_assert(check(s, &t, 2).allowed);
    cr_assert_not(check(s, &t, 1).allowed);
    d = decide(s, RL_OP_RESET, &t, 0);
    cr_assert_eq(d.out[0].remaining, 3);
    cr_assert_eq(d.out[1].remaining, 2);
    d = peek(s, &t);
    cr_assert_eq(d.out[0].remaining, 3);
    cr_assert_eq(d.out[1].remaining, 2);
    cr_assert_eq(d.out[0].reset_ms, d.now_ms);
    d = check(s, &t, 2);
    cr_assert(d.allowed);
    cr_assert_eq(d.out[0].remaining, 1);
    cr_assert_eq(d.out[1].remaining, 0);
}

STORE_TEST(idempotency_replay_and_conflict)
{
    struct tb t = {.n = 0}, other = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    cr_assert_eq(check_idem(s, &t, "req-1", 42, 60000, &d), RL_OK);
    cr_assert(d.allowed);
    cr_assert_not(d.replayed);
    cr_assert_eq(d.out[0].remaining, 4);

    cr_assert_eq(check_idem(s, &t, "req-1", 42, 60000, &d), RL_OK);
    cr_assert(d.replayed);
    cr_assert(d.allowed);
    cr_assert_eq(d.n, 1);
    cr_assert_eq(d.out[0].remaining, 4);
    cr_assert_eq(peek(s, &t).out[0].remaining, 4, "a replay charges nothing");

    cr_assert_eq(check_idem(s, &t, "req-1", 43, 60000, &d), RL_ECONFLICT);
    cr_assert_eq(peek(s, &t).out[0].remaining, 4, "a conflict charges nothing");

    /* another key is another request, and so is one spelled like an escape
     * of the first ("req%2D1") */
    cr_assert_eq(check_idem(s, &t, "req-2", 43, 60000, &d), RL_OK);
    cr_assert_not(d.replayed);
    cr_assert_eq(d.out[0].remaining, 3);
    cr_assert_eq(check_idem(s, &t, "req%2D1", 43, 60000, &d), RL_OK);
    cr_assert_not(d.replayed);
    cr_assert_eq(d.out[0].remaining, 2);

    /* a peek never looks at idempotency */
    tb_add(&other, "per-key", "k2", 5, 5, 60000, false);
    cr_assert_eq(peek(s, &other).out[0].remaining, 5);
}

STORE_TEST(idempotency_replays_a_denial)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "per-key", "k1", 1, 1, 60000, false);
    cr_assert(check(s, &t, 1).allowed);
    cr_assert_eq(check_idem(s, &t, "req-1", 7, 60000, &d), RL_OK);
    cr_assert_not(d.allowed);
    cr_assert_not(d.replayed);
    decide(s, RL_OP_RESET, &t, 0);
    cr_assert_eq(check_idem(s, &t, "req-1", 7, 60000, &d), RL_OK);
    cr_assert(d.replayed);
    cr_assert_not(d.allowed, "the stored denial, not a new decision");
    cr_assert_not(d.out[0].allowed);
    cr_assert(d.out[0].retry_ms > 0);
    cr_assert_eq(peek(s, &t).out[0].remaining, 1);
}

STORE_TEST(idempotency_record_expires)
{
    struct tb t = {.n = 0};
    struct rl_decision d;

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    cr_assert_eq(check_idem(s, &t, "req-1", 1, 200, &d), RL_OK);
    cr_assert_eq(d.out[0].remaining, 4);
    rl_test_sleep_ms(350);
    cr_assert_eq(check_idem(s, &t, "req-1", 2, 200, &d), RL_OK, "the record is gone");
    cr_assert_not(d.replayed);
    cr_assert_eq(d.out[0].remaining, 3);
}

/* Ids that look alike after naive joining or escaping get distinct buckets. */
STORE_TEST(ids_with_separators_get_distinct_buckets)
{
    static const char *const ids[] = {"a:b", "a%3Ab", "a%253Ab", "a{b}", "a}b", "a*b",
                                      "a b", "a",     "a:",      ":a",   "a\xc3\xa9"};
    struct rl_decision d;

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct tb t = {.n = 0};

        tb_add(&t, "per-key", ids[i], 1, 1, 60000, false);
        d = check(s, &t, 1);
        cr_assert(d.allowed, "id \"%s\" shares a bucket with an earlier id", ids[i]);
        cr_assert_not(check(s, &t, 1).allowed);
    }
    /* the same id under another scope or policy is another bucket */
    for (int scope = 0; scope < RL_SCOPE_COUNT; scope++) {
        struct tb t = {.n = 0};

        tb_add_scoped(&t, "other", (enum rl_scope)scope, "a:b", 1, 1, 60000, false);
        cr_assert(check(s, &t, 1).allowed, "scope %d", scope);
    }
}

/* 4 threads x 75 jobs on 10 keys (30 each), limit 20 per hour: exactly 200
 * allowed, whatever the interleaving and batching. */
struct conc {
    struct rl_store *s;
    struct tb *keys;
    struct rl_job *jobs;
    struct group *g;
};

static void *conc_thread(void *arg)
{
    struct conc *c = arg;

    for (int i = 0; i < 75; i++) {
        struct rl_job *j = &c->jobs[i];

        job_init(j, RL_OP_CHECK, &c->keys[i % 10], 1);
        submit_async(c->s, j, c->g);
    }
    return NULL;
}

STORE_TEST(concurrent_jobs_allow_exactly_the_limit)
{
    struct tb keys[10];
    struct rl_job *jobs = calloc(300, sizeof(*jobs));
    struct group g = GROUP_INIT;
    struct conc c[4];
    pthread_t th[4];
    int allowed = 0;

    cr_assert_not_null(jobs);
    for (int k = 0; k < 10; k++) {
        char *id = malloc(8);

        snprintf(id, 8, "c%d", k);
        keys[k].n = 0;
        tb_add(&keys[k], "per-key", id, 20, 20, 3600000, false);
    }
    for (int i = 0; i < 4; i++) {
        c[i] = (struct conc){s, keys, jobs + 75 * i, &g};
        pthread_create(&th[i], NULL, conc_thread, &c[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(group_wait(&g, 300, 5000), 300);
    for (int i = 0; i < 300; i++) {
        cr_assert_eq(jobs[i].result.status, RL_OK, "job %d: %d", i, jobs[i].result.status);
        allowed += jobs[i].result.allowed;
    }
    cr_assert_eq(allowed, 200);
    for (int k = 0; k < 10; k++) {
        cr_assert_eq(peek(s, &keys[k]).out[0].remaining, 0);
        free((char *)keys[k].ref[0].id);
    }
    free(jobs);
}

/* Jobs submitted together (so batched together in Redis) each get their own
 * numbers back: distinct keys, distinct costs. */
STORE_TEST(batched_jobs_get_their_own_results)
{
    enum { N = 150 };
    struct tb *keys = calloc(N, sizeof(*keys));
    struct rl_job *jobs = calloc(N, sizeof(*jobs));
    char (*ids)[16] = calloc(N, 16);
    struct group g = GROUP_INIT;

    cr_assert(keys && jobs && ids);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], 16, "b%d", i);
        tb_add(&keys[i], "per-key", ids[i], 200, 200, 3600000, false);
        if (i % 3 == 0) /* some decisions with two buckets */
            tb_add(&keys[i], "second", ids[i], 100, 100, 3600000, i % 2 == 0);
        job_init(&jobs[i], RL_OP_CHECK, &keys[i], i % 50 + 1);
    }
    for (int i = 0; i < N; i++)
        submit_async(s, &jobs[i], &g);
    cr_assert_eq(group_wait(&g, N, 5000), N);
    for (int i = 0; i < N; i++) {
        struct rl_decision *d = &jobs[i].result;

        cr_assert_eq(d->status, RL_OK);
        cr_assert(d->allowed);
        cr_assert_eq(d->n, keys[i].n);
        cr_assert_eq(d->out[0].remaining, 200 - (i % 50 + 1), "job %d", i);
        if (keys[i].n == 2)
            cr_assert_eq(d->out[1].remaining, 100 - (i % 50 + 1), "job %d", i);
    }
    for (int i = 0; i < N; i += 7)
        cr_assert_eq(peek(s, &keys[i]).out[0].remaining, 200 - (i % 50 + 1));
    free(keys);
    free(jobs);
    free(ids);
}

/*-----------------------------------------------------------------------------
 * Redis only
 *---------------------------------------------------------------------------*/

/* CMD(buf, "FORMAT", args...): one command on a blocking connection. */
#define CMD(buf, ...)                                                                     \
    cr_assert_eq(rl_test_redis_cmd(&redis, buf, sizeof(buf), __VA_ARGS__), 0,             \
                 "redis command failed")

static long long cmd_int(const char *fmt, const char *key)
{
    char buf[256];

    CMD(buf, fmt, key);
    return atoll(buf);
}

static bool matches(const char *re, const char *s)
{
    regex_t r;
    bool ok;

    cr_assert_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

/* 5 per 500 ms: a token is 100 ms. A key lives until its bucket is full. */
Test(store_redis, keys_expire_when_full)
{
    struct rl_store *s = open_redis(1000);
    struct tb t = {.n = 0};
    struct rl_decision d;
    char val[256];
    long long pttl, tat, frac;

    tb_add(&t, "per-key", "k1", 5, 5, 500, false);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-key:key:k1"), 0);
    d = check(s, &t, 1);
    pttl = cmd_int("PTTL %s", "rl:per-key:key:k1");
    cr_assert(pttl > 0 && pttl <= 100, "PTTL %lld after one token", pttl);

    /* the value is the small string "TATMS:FRAC:LIMIT:WINDOWMS" */
    CMD(val, "GET %s", "rl:per-key:key:k1");
    cr_assert(matches("^[0-9]+:[0-9]+:5:500$", val), "value \"%s\"", val);
    cr_assert_eq(sscanf(val, "%lld:%lld", &tat, &frac), 2);
    cr_assert_eq(tat, d.now_ms + 100);
    cr_assert_eq(frac, 0);
    CMD(val, "TYPE %s", "rl:per-key:key:k1");
    cr_assert_str_eq(val, "string");
    CMD(val, "OBJECT ENCODING %s", "rl:per-key:key:k1");
    cr_assert_str_eq(val, "embstr");

    for (int i = 0; i < 4; i++)
        check(s, &t, 1);
    pttl = cmd_int("PTTL %s", "rl:per-key:key:k1");
    cr_assert(pttl > 300 && pttl <= 500, "PTTL %lld after the whole burst", pttl);
    rl_test_sleep_ms(650);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-key:key:k1"), 0, "the full bucket's key is gone");

    /* a reset deletes; a peek writes nothing */
    check(s, &t, 1);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-key:key:k1"), 1);
    decide(s, RL_OP_RESET, &t, 0);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-key:key:k1"), 0);
    peek(s, &t);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-key:key:k1"), 0);
    s->ops->close(s);
}

Test(store_redis, idempotency_record_key_and_ttl)
{
    struct rl_store *s = open_redis(1000);
    struct tb t = {.n = 0};
    struct rl_decision d;
    char val[256];
    long long pttl;

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    cr_assert_eq(check_idem(s, &t, "req:1{x}", 18446744073709551615ULL, 30000, &d), RL_OK);
    pttl = cmd_int("PTTL %s", "rl:idem:0000000000000000:req%3A1%7Bx%7D");
    cr_assert(pttl > 29000 && pttl <= 30000, "PTTL %lld", pttl);
    CMD(val, "GET %s", "rl:idem:0000000000000000:req%3A1%7Bx%7D");
    /* fingerprint, allowed, then allowed, remaining, reset, retry per bucket */
    cr_assert(matches("^18446744073709551615,1,1,4,[0-9]+,0$", val), "record \"%s\"", val);
    /* the full 64-bit fingerprint is compared, not a rounded double */
    cr_assert_eq(check_idem(s, &t, "req:1{x}", 18446744073709551614ULL, 30000, &d),
                 RL_ECONFLICT);
    cr_assert_eq(check_idem(s, &t, "req:1{x}", 18446744073709551615ULL, 30000, &d), RL_OK);
    cr_assert(d.replayed);
    s->ops->close(s);
}

Test(store_redis, keys_are_escaped)
{
    struct rl_store *s = open_redis(1000);
    struct tb t = {.n = 0};
    char val[64];

    tb_add(&t, "per-key", "a:b{c}*", 5, 5, 60000, false);
    tb_add_scoped(&t, "per-org", RL_SCOPE_ORG, "a%3Ab", 5, 5, 60000, false);
    check(s, &t, 1);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-key:key:a%3Ab%7Bc%7D%2A"), 1);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-org:org:a%253Ab"), 1);
    CMD(val, "DBSIZE");
    cr_assert_str_eq(val, "2");
    s->ops->close(s);
}

/* The script against bucket.c: random limits, states (some written under
 * another shape: limit and window, as after a reload; some in no known
 * format) and costs; the same numbers and the same stored state. */
Test(store_redis, lua_mirrors_bucket_c)
{
    static const int64_t windows[] = {1, 7, 1000, 60000, 3600000, 86400000};
    struct rl_store *s = open_redis(2000);
    char val[256], want[64];
    unsigned seed = 12345;

    for (int n = 0; n < 300; n++) {
        struct tb t = {.n = 0};
        struct rl_limit lim;
        struct rl_bucket_state st, next;
        struct rl_bucket_result res;
        struct rl_decision d;
        long long sec, usec, now;
        int64_t maxburst, span;

        lim.window_ms = windows[rand_r(&seed) % 6];
        lim.limit = 1 + rand_r(&seed) % (n % 3 == 0 ? 7 : 100000);
        maxburst = ((1LL << 52) - 1) / lim.window_ms;
        maxburst = maxburst < 1000000000LL ? maxburst : 1000000000LL;
        lim.burst = n % 4 == 0 ? 1 + rand_r(&seed) % 10
                               : 1 + (int64_t)(((double)rand_r(&seed) / RAND_MAX) * (maxburst - 1));
        tb_add(&t, "mirror", "k", lim.limit, lim.burst, lim.window_ms, false);

        CMD(val, "TIME");
        cr_assert_eq(sscanf(val, "%lld\n%lld", &sec, &usec), 2);
        now = sec * 1000 + usec / 1000;
        span = lim.burst * lim.window_ms / lim.limit + 2000;
        st.tat_ms = n % 10 == 0 ? 0 : now - 2000 + (int64_t)(((double)rand_r(&seed) / RAND_MAX) * span);
        st.frac = rand_r(&seed) % (lim.limit + (n % 5 == 0 ? 1000 : 0));
        st.limit = n % 3 == 1 ? 1 + rand_r(&seed) % 100000 : lim.limit;
        st.window_ms = n % 3 == 1 ? windows[rand_r(&seed) % 6] : lim.window_ms;
        if (n % 3 == 1) { /* a debt the old shape could hold, or (1 in 8) none could */
            int64_t ospan = ((1LL << 52) / st.limit) * (n % 8 == 1 ? 2 : 1);
            st.frac = rand_r(&seed) % st.limit;
            st.tat_ms = now - 2000 + (int64_t)(((double)rand_r(&seed) / RAND_MAX) * ospan);
        }
        snprintf(want, sizeof(want), "%lld:%lld:%lld:%lld", (long long)st.tat_ms,
                 (long long)st.frac, (long long)st.limit, (long long)st.window_ms);
        if (n % 17 == 5) { /* not our format (an older version's): reads as full */
            snprintf(want, sizeof(want), "%lld:%lld", (long long)st.tat_ms, (long long)st.frac);
            st.tat_ms = st.frac = 0;
        }
        CMD(val, "SET rl:mirror:key:k %s", want);

        int64_t cost = rand_r(&seed) % 4 == 0 ? 0 : 1 + rand_r(&seed) % lim.burst;
        d = check(s, &t, cost);
        rl_bucket_eval(&lim, &st, d.now_ms, cost, &next, &res);
        cr_assert_eq(d.out[0].allowed, res.allowed, "case %d", n);
        cr_assert_eq(d.out[0].remaining, res.remaining, "case %d", n);
        cr_assert_eq(d.out[0].reset_ms, res.reset_ms, "case %d", n);
        cr_assert_eq(d.out[0].retry_ms, res.retry_ms, "case %d", n);
        CMD(val, "GET %s", "rl:mirror:key:k");
        if (res.allowed && cost > 0) {
            if (rl_bucket_ttl_ms(&lim, &next, d.now_ms) == 0)
                cr_assert_str_eq(val, "(nil)", "case %d", n);
            else
                snprintf(want, sizeof(want), "%lld:%lld:%lld:%lld", (long long)next.tat_ms,
                         (long long)next.frac, (long long)lim.limit, (long long)lim.window_ms);
        }
        /* a state written with a TTL of a few ms may expire before our GET
         * (1 ms and 7 ms windows; slow under ASan): gone is right then */
        bool expired = res.allowed && cost > 0 && strcmp(val, "(nil)") == 0 &&
                       rl_bucket_ttl_ms(&lim, &next, d.now_ms) < 1000;
        if (!(res.allowed && cost > 0 && rl_bucket_ttl_ms(&lim, &next, d.now_ms) == 0) &&
            !expired)
            cr_assert_str_eq(val, want, "case %d", n);
    }
    s->ops->close(s);
}

Test(store_redis, noscript_recovery)
{
    struct rl_store *s = open_redis(1000);
    struct tb t = {.n = 0};
    char buf[64];

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 4);
    CMD(buf, "SCRIPT FLUSH");
    cr_assert_str_eq(buf, "OK");
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 3, "resent with EVAL");
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 2, "the script was loaded again");
    CMD(buf, "SCRIPT FLUSH");
    cr_assert_eq(peek(s, &t).out[0].remaining, 2);
    s->ops->close(s);
}

Test(store_redis, killed_then_restarted)
{
    struct rl_store *s = open_redis(50);
    struct tb t = {.n = 0};
    struct rl_job j;
    int64_t t0, took;

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 4);
    rl_test_redis_kill(&redis);
    for (int i = 0; i < 3; i++) {
        job_init(&j, RL_OP_CHECK, &t, 1);
        t0 = rl_test_mono_ms();
        cr_assert_eq(run(s, &j), RL_EUNAVAIL, "try %d: status %d", i, j.result.status);
        took = rl_test_mono_ms() - t0;
        cr_assert(took < 500, "try %d took %lld ms", i, (long long)took);
        rl_test_sleep_ms(20);
    }
    cr_assert_not(s->ops->ready(s));

    cr_assert_eq(rl_test_redis_restart(&redis), 0);
    cr_assert(wait_ready(s, 3000), "not ready 3 s after the restart");
    /* a new, empty server: exact from a full bucket */
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 4);
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 3);
    s->ops->close(s);
}

Test(store_redis, nothing_listening_fails_fast)
{
    uint16_t port = rl_test_free_port();
    struct rl_store *s = open_redis_port(port, 50);
    struct tb t = {.n = 0};
    struct rl_job j;
    int64_t t0 = rl_test_mono_ms();

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    job_init(&j, RL_OP_CHECK, &t, 1);
    cr_assert_eq(run(s, &j), RL_EUNAVAIL);
    cr_assert(rl_test_mono_ms() - t0 < 500);
    cr_assert_not(s->ops->ready(s));
    s->ops->close(s);
}

static void *debug_sleep(void *arg)
{
    char *buf = arg;

    if (rl_test_redis_cmd(&redis, buf, 64, "DEBUG SLEEP 0.5") != 0)
        snprintf(buf, 64, "(failed)");
    return NULL;
}

Test(store_redis, slow_redis_times_out_then_recovers)
{
    struct rl_store *s = open_redis(50);
    struct tb t = {.n = 0}, t2 = {.n = 0};
    struct rl_job j;
    pthread_t th;
    char reply[64] = "";
    int64_t t0, took;

    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    tb_add(&t2, "per-key", "k2", 5, 5, 60000, false);
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 4);
    pthread_create(&th, NULL, debug_sleep, reply);
    rl_test_sleep_ms(100);
    job_init(&j, RL_OP_CHECK, &t, 1);
    t0 = rl_test_mono_ms();
    cr_assert_eq(run(s, &j), RL_ETIMEDOUT, "status %d", j.result.status);
    took = rl_test_mono_ms() - t0;
    cr_assert(took >= 45 && took <= 150, "timed out after %lld ms", (long long)took);
    pthread_join(th, NULL);
    cr_assert_str_eq(reply, "OK");

    cr_assert(s->ops->ready(s), "a slow reply is no reason to reconnect");
    cr_assert_eq(check(s, &t2, 1).out[0].remaining, 4);
    cr_assert_eq(check(s, &t2, 1).out[0].remaining, 3);
    s->ops->close(s);
}

/* close() answers every job it holds (RL_EUNAVAIL) exactly once. */
Test(store_redis, close_finishes_every_job)
{
    enum { N = 200 };
    struct rl_store *s = open_redis(2000);
    struct rl_job *jobs = calloc(N, sizeof(*jobs));
    struct group g = GROUP_INIT;
    struct tb t = {.n = 0};
    int ok = 0, unavail = 0;

    cr_assert_not_null(jobs);
    tb_add(&t, "per-key", "k1", 1000, 1000, 60000, false);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], RL_OP_CHECK, &t, 1);
        submit_async(s, &jobs[i], &g);
    }
    s->ops->close(s);
    cr_assert_eq(group_wait(&g, N, 0), N, "every job answered by the time close returns");
    rl_test_sleep_ms(50);
    cr_assert_eq(group_wait(&g, N + 1, 0), N, "and only once");
    for (int i = 0; i < N; i++) {
        ok += jobs[i].result.status == RL_OK;
        unavail += jobs[i].result.status == RL_EUNAVAIL;
    }
    cr_assert_eq(ok + unavail, N);
    free(jobs);
}

/* More than RL_REDIS_QUEUE_MAX (10000) jobs waiting: the rest fail at once. */
static void *debug_sleep_1s(void *arg)
{
    char *buf = arg;

    if (rl_test_redis_cmd(&redis, buf, 64, "DEBUG SLEEP 1") != 0)
        snprintf(buf, 64, "(failed)");
    return NULL;
}

Test(store_redis, queue_full_fails_fast)
{
    enum { N = 10050 };
    struct rl_store *s = open_redis(5000);
    struct rl_job *jobs = calloc(N, sizeof(*jobs));
    struct group g = GROUP_INIT;
    struct tb t = {.n = 0};
    pthread_t th;
    char reply[64] = "";
    int sync_unavail = 0, ok = 0;

    cr_assert_not_null(jobs);
    tb_add(&t, "per-key", "k1", 100000, 100000, 2592000000LL, false); /* 30 days */
    pthread_create(&th, NULL, debug_sleep_1s, reply);
    rl_test_sleep_ms(100);
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], RL_OP_CHECK, &t, 1);
        jobs[i].done = on_done;
        jobs[i].udata = &g;
        if (rl_store_submit(s, &jobs[i]) == RL_OK) {
            cr_assert_eq(jobs[i].result.status, RL_EUNAVAIL);
            sync_unavail++;
        }
    }
    cr_assert_eq(sync_unavail, 50);
    cr_assert_eq(group_wait(&g, N - 50, 10000), N - 50);
    pthread_join(th, NULL);
    cr_assert_str_eq(reply, "OK");
    for (int i = 0; i < N; i++)
        ok += jobs[i].result.status == RL_OK && jobs[i].result.allowed;
    cr_assert_eq(ok, N - 50);
    cr_assert_eq(peek(s, &t).out[0].remaining, 100000 - (N - 50));
    free(jobs);
    s->ops->close(s);
}

Test(store_redis, select_db)
{
    struct rl_config cfg;
    struct rl_store *s;
    struct tb t = {.n = 0};
    char val[64];

    redis_cfg(&cfg, redis.port, 1000);
    cfg.redis_db = 3;
    s = open_redis_cfg(&cfg);
    cr_assert(wait_ready(s, 3000));
    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 4);
    cr_assert_eq(cmd_int("EXISTS %s", "rl:per-key:key:k1"), 0, "not in db 0");
    CMD(val, "EVAL %s 1 %s",
        "redis.call('SELECT', 3) return redis.call('EXISTS', KEYS[1])", "rl:per-key:key:k1");
    cr_assert_str_eq(val, "1");
    s->ops->close(s);
}

Test(store_redis, acl_user_and_password)
{
    struct rl_config cfg;
    struct rl_store *s;
    struct tb t = {.n = 0};
    char val[256];

    CMD(val, "ACL SETUSER rluser on >s3cret ~rl:* +@all");
    cr_assert_str_eq(val, "OK");
    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);

    redis_cfg(&cfg, redis.port, 1000);
    cfg.redis_user = "rluser";
    cfg.redis_password = "s3cret";
    s = open_redis_cfg(&cfg);
    cr_assert(wait_ready(s, 3000));
    cr_assert_eq(check(s, &t, 1).out[0].remaining, 4);
    CMD(val, "CLIENT LIST");
    cr_assert_not_null(strstr(val, "user=rluser"), "%s", val);
    s->ops->close(s);
}

/* Regression: after a refused AUTH the connection still belongs to Redis's
 * default user, so SCRIPT LOAD succeeded and ready() flashed true until the
 * loop dropped the connection. Spin on ready() to catch such a flash. */
Test(store_redis, wrong_password_is_never_ready)
{
    struct rl_config cfg;
    struct rl_store *s;
    struct tb t = {.n = 0};
    struct rl_job j;
    char val[64];
    int64_t end;

    CMD(val, "ACL SETUSER rluser on >s3cret ~rl:* +@all");
    redis_cfg(&cfg, redis.port, 200);
    cfg.redis_user = "rluser";
    cfg.redis_password = "wrong";
    s = open_redis_cfg(&cfg);
    end = rl_test_mono_ms() + 1200; /* two attempts at least (backoff 50, 100 ms) */
    while (rl_test_mono_ms() < end)
        cr_assert_not(s->ops->ready(s), "ready with a wrong password");
    tb_add(&t, "per-key", "k1", 5, 5, 60000, false);
    job_init(&j, RL_OP_CHECK, &t, 1);
    cr_assert_eq(run(s, &j), RL_EUNAVAIL);
    s->ops->close(s);
}
