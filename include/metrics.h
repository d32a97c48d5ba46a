/* metrics.h -- the counters dashboards read: decisions by policy and outcome,
 * check latency histogram, store errors, Redis up, config reloads, build info;
 * rendered in the Prometheus text exposition format (version 0.0.4).
 * Lock-free on the hot path (relaxed atomics); a mutex only when a policy name
 * is seen for the first time. No label ever takes a caller id (cardinality):
 * labels are policy names, outcomes, endpoints and error kinds, all bounded.
 * Knows nothing of HTTP routing. */
#ifndef RL_METRICS_H
#define RL_METRICS_H

#include "rl.h"

#define RL_METRICS_POLICIES 256 /* distinct policy names kept over reloads */

enum rl_outcome {
    RL_OUT_ALLOWED,       /* the bucket had the tokens and the request passed */
    RL_OUT_DENIED,        /* an enforced bucket that denied the request */
    RL_OUT_SHADOW_DENIED, /* a shadow bucket that would have denied */
    RL_OUT_DEGRADED,      /* decided without the store (failure_mode open) */
    RL_OUT_COUNT
};

enum rl_endpoint { RL_EP_CHECK, RL_EP_AUTH, RL_EP_COUNT };
enum rl_result { RL_RES_ALLOWED, RL_RES_DENIED, RL_RES_DEGRADED, RL_RES_ERROR, RL_RES_COUNT };
enum rl_store_err { RL_SERR_TIMEOUT, RL_SERR_UNAVAILABLE, RL_SERR_INTERNAL, RL_SERR_COUNT };

struct rl_metrics;

struct rl_metrics *rl_metrics_new(void);
void rl_metrics_free(struct rl_metrics *m);

/* The slot of a policy name (found or added); -1 when the table is full
 * (the decision is then counted under policy="_other"). */
int rl_metrics_policy_slot(struct rl_metrics *m, const char *name);

void rl_metrics_decision(struct rl_metrics *m, int slot, enum rl_outcome o);
/* One answered check: endpoint, result, and its latency in microseconds. */
void rl_metrics_check(struct rl_metrics *m, enum rl_endpoint ep, enum rl_result r,
                      int64_t latency_us);
void rl_metrics_store_error(struct rl_metrics *m, enum rl_store_err e);
/* A check denied from the local over-limit cache (denycache.h). */
void rl_metrics_deny_cache_hit(struct rl_metrics *m);
/* A config reload: ok or not, at Unix time `now_s`. */
void rl_metrics_reload(struct rl_metrics *m, bool ok, int64_t now_s);

/* Render everything into buf (cap bytes). redis_up: 1, 0, or -1 (no Redis:
 * the gauge is left out). Returns the length the text needs; when that is
 * >= cap the text was cut, call again with a bigger buffer. */
size_t rl_metrics_render(struct rl_metrics *m, int redis_up, char *buf, size_t cap);

#endif
