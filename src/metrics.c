/* metrics.c -- counters, the latency histogram and their Prometheus text.
 * Hot path: relaxed atomic adds only. Knows nothing of HTTP routing. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds of the latency buckets, in microseconds (le= in seconds). */
static const int64_t rl_metrics_le_us[] = {250,   500,   1000,   2500,   5000,   10000,
                                           25000, 50000, 100000, 250000, 1000000};
#define RL_METRICS_NLE (sizeof(rl_metrics_le_us) / sizeof(rl_metrics_le_us[0]))

struct rl_metrics_hist {
    atomic_uint_fast64_t le[RL_METRICS_NLE]; /* non-cumulative; summed on render */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
};

struct rl_metrics {
    pthread_mutex_t lock; /* only for adding policy names */
    atomic_int npolicies;
    char names[RL_METRICS_POLICIES][RL_NAME_MAX];
    atomic_uint_fast64_t decisions[RL_METRICS_POLICIES + 1][RL_OUT_COUNT]; /* +1: _other */
    atomic_uint_fast64_t checks[RL_EP_COUNT][RL_RES_COUNT];
    struct rl_metrics_hist latency[RL_EP_COUNT];
    atomic_uint_fast64_t store_errors[RL_SERR_COUNT];
    atomic_uint_fast64_t deny_cache_hits;
    atomic_uint_fast64_t reloads[2]; /* [0] failure, [1] success */
    atomic_int_fast64_t last_reload_s;
    atomic_int last_reload_ok;
};

static const char *const rl_outcome_names[RL_OUT_COUNT] = {"allowed", "denied", "shadow_denied",
                                                           "degraded"};
static const char *const rl_endpoint_names[RL_EP_COUNT] = {"check", "auth"};
static const char *const rl_result_names[RL_RES_COUNT] = {"allowed", "denied", "degraded", "error"};
static const char *const rl_store_err_names[RL_SERR_COUNT] = {"timeout", "unavailable", "internal"};

struct rl_metrics *rl_metrics_new(void)
{
    struct rl_metrics *m = calloc(1, sizeof(*m));

    if (m == NULL) return NULL;
    pthread_mutex_init(&m->lock, NULL);
    atomic_store(&m->last_reload_ok, 1);
    return m;
}

void rl_metrics_free(struct rl_metrics *m)
{
    if (m == NULL) return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int rl_metrics_policy_slot(struct rl_metrics *m, const char *name)
{
    int n, slot = -1;

    pthread_mutex_lock(&m->lock);
    n = atomic_load(&m->npolicies);
    for (int i = 0; i < n; i++)
        if (strcmp(m->names[i], name) == 0) {
            slot = i;
            break;
        }
    if (slot < 0 && n < RL_METRICS_POLICIES) {
        snprintf(m->names[n], RL_NAME_MAX, "%s", name);
        atomic_store(&m->npolicies, n + 1); /* published after the name */
        slot = n;
    }
    pthread_mutex_unlock(&m->lock);
    return slot;
}

void rl_metrics_decision(struct rl_metrics *m, int slot, enum rl_outcome o)
{
    if (slot < 0 || slot >= RL_METRICS_POLICIES) slot = RL_METRICS_POLICIES;
    atomic_fetch_add_explicit(&m->decisions[slot][o], 1, memory_order_relaxed);
}

void rl_metrics_check(struct rl_metrics *m, enum rl_endpoint ep, enum rl_result r,
                      int64_t latency_us)
{
    struct rl_metrics_hist *h = &m->latency[ep];
    size_t i = 0;

    atomic_fetch_add_explicit(&m->checks[ep][r], 1, memory_order_relaxed);
    while (i < RL_METRICS_NLE && latency_us > rl_metrics_le_us[i])
        i++;
    if (i < RL_METRICS_NLE) atomic_fetch_add_explicit(&h->le[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(latency_us > 0 ? latency_us : 0),
                              memory_order_relaxed);
}

void rl_metrics_store_error(struct rl_metrics *m, enum rl_store_err e)
{
    atomic_fetch_add_explicit(&m->store_errors[e], 1, memory_order_relaxed);
}

void rl_metrics_deny_cache_hit(struct rl_metrics *m)
{
    atomic_fetch_add_explicit(&m->deny_cache_hits, 1, memory_order_relaxed);
}

void rl_metrics_reload(struct rl_metrics *m, bool ok, int64_t now_s)
{
    atomic_fetch_add(&m->reloads[ok ? 1 : 0], 1);
    atomic_store(&m->last_reload_ok, ok ? 1 : 0);
    if (ok) atomic_store(&m->last_reload_s, now_s);
}

/*----------------------------------------------------------------------------
 * Prometheus text format
 *--------------------------------------------------------------------------*/

struct rl_metrics_buf {
    char *p;
    size_t cap, len;
};

static void rl_metrics_put(struct rl_metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void rl_metrics_put(struct rl_metrics_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(b->len < b->cap ? b->p + b->len : NULL, b->len < b->cap ? b->cap - b->len : 0,
                  fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
}

/* A label value: policy names are [A-Za-z0-9_.-] already; escape anyway
 * (backslash, quote, newline) so the format holds whatever a name becomes. */
static void rl_metrics_label(struct rl_metrics_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            rl_metrics_put(b, "\\%c", *s);
        else if (*s == '\n')
            rl_metrics_put(b, "\\n");
        else
            rl_metrics_put(b, "%c", *s);
    }
}

static void rl_metrics_hist_render(struct rl_metrics_buf *b, struct rl_metrics_hist *h,
                                   const char *ep)
{
    uint64_t cum = 0;

    for (size_t i = 0; i < RL_METRICS_NLE; i++) {
        cum += atomic_load_explicit(&h->le[i], memory_order_relaxed);
        rl_metrics_put(b,
                       "ratelimitd_check_duration_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n",
                       ep, rl_metrics_le_us[i] / 1e6, (unsigned long long)cum);
    }
    rl_metrics_put(b,
                   "ratelimitd_check_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n",
                   ep, (unsigned long long)atomic_load(&h->count));
    rl_metrics_put(b, "ratelimitd_check_duration_seconds_sum{endpoint=\"%s\"} %.6f\n", ep,
                   (double)atomic_load(&h->sum_us) / 1e6);
    rl_metrics_put(b, "ratelimitd_check_duration_seconds_count{endpoint=\"%s\"} %llu\n", ep,
                   (unsigned long long)atomic_load(&h->count));
}

size_t rl_metrics_render(struct rl_metrics *m, int redis_up, char *buf, size_t cap)
{
    struct rl_metrics_buf b = {buf, cap, 0};
    int n = atomic_load(&m->npolicies);

    rl_metrics_put(&b,
                   "# HELP ratelimitd_build_info Build information.\n"
                   "# TYPE ratelimitd_build_info gauge\n"
                   "ratelimitd_build_info{version=\"%s\"} 1\n",
                   RL_VERSION);
    rl_metrics_put(&b, "# HELP ratelimitd_decisions_total Bucket decisions by policy and "
                       "outcome.\n# TYPE ratelimitd_decisions_total counter\n");
    for (int i = 0; i <= n; i++) {
        bool other = i == n;
        for (int o = 0; o < RL_OUT_COUNT; o++) {
            uint64_t v = atomic_load_explicit(&m->decisions[other ? RL_METRICS_POLICIES : i][o],
                                              memory_order_relaxed);
            if (other && v == 0) continue;
            rl_metrics_put(&b, "ratelimitd_decisions_total{policy=\"");
            rl_metrics_label(&b, other ? "_other" : m->names[i]);
            rl_metrics_put(&b, "\",outcome=\"%s\"} %llu\n", rl_outcome_names[o],
                           (unsigned long long)v);
        }
    }
    rl_metrics_put(&b, "# HELP ratelimitd_checks_total Answered checks by endpoint and result.\n"
                       "# TYPE ratelimitd_checks_total counter\n");
    for (int e = 0; e < RL_EP_COUNT; e++)
        for (int r = 0; r < RL_RES_COUNT; r++)
            rl_metrics_put(&b, "ratelimitd_checks_total{endpoint=\"%s\",result=\"%s\"} %llu\n",
                           rl_endpoint_names[e], rl_result_names[r],
                           (unsigned long long)atomic_load(&m->checks[e][r]));
    rl_metrics_put(&b, "# HELP ratelimitd_check_duration_seconds Time from request to answer.\n"
                       "# TYPE ratelimitd_check_duration_seconds histogram\n");
    for (int e = 0; e < RL_EP_COUNT; e++)
        rl_metrics_hist_render(&b, &m->latency[e], rl_endpoint_names[e]);
    rl_metrics_put(&b, "# HELP ratelimitd_store_errors_total Store failures by kind.\n"
                       "# TYPE ratelimitd_store_errors_total counter\n");
    for (int e = 0; e < RL_SERR_COUNT; e++)
        rl_metrics_put(&b, "ratelimitd_store_errors_total{kind=\"%s\"} %llu\n",
                       rl_store_err_names[e], (unsigned long long)atomic_load(&m->store_errors[e]));
    rl_metrics_put(&b,
                   "# HELP ratelimitd_deny_cache_hits_total Checks denied from the local "
                   "over-limit cache, without a store round trip.\n"
                   "# TYPE ratelimitd_deny_cache_hits_total counter\n"
                   "ratelimitd_deny_cache_hits_total %llu\n",
                   (unsigned long long)atomic_load(&m->deny_cache_hits));
    if (redis_up >= 0)
        rl_metrics_put(&b,
                       "# HELP ratelimitd_redis_up Whether Redis is connected and ready.\n"
                       "# TYPE ratelimitd_redis_up gauge\nratelimitd_redis_up %d\n",
                       redis_up);
    rl_metrics_put(&b,
                   "# HELP ratelimitd_config_reloads_total Config reloads by result.\n"
                   "# TYPE ratelimitd_config_reloads_total counter\n"
                   "ratelimitd_config_reloads_total{result=\"success\"} %llu\n"
                   "ratelimitd_config_reloads_total{result=\"failure\"} %llu\n",
                   (unsigned long long)atomic_load(&m->reloads[1]),
                   (unsigned long long)atomic_load(&m->reloads[0]));
    rl_metrics_put(&b,
                   "# HELP ratelimitd_config_last_reload_success Whether the last reload "
                   "succeeded.\n# TYPE ratelimitd_config_last_reload_success gauge\n"
                   "ratelimitd_config_last_reload_success %d\n",
                   atomic_load(&m->last_reload_ok));
    rl_metrics_put(&b,
                   "# HELP ratelimitd_config_last_reload_timestamp_seconds Unix time of the "
                   "last successful load.\n"
                   "# TYPE ratelimitd_config_last_reload_timestamp_seconds gauge\n"
                   "ratelimitd_config_last_reload_timestamp_seconds %lld\n",
                   (long long)atomic_load(&m->last_reload_s));
    return b.len;
}
