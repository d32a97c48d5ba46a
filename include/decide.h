/* decide.h -- the decision around the store: which bucket a response reports
 * (the most restrictive), what a store failure becomes under failure_mode, and
 * the cost check against the applicable buckets. Pure: no I/O.
 * Knows nothing of envelopes or HTTP. */
#ifndef RL_DECIDE_H
#define RL_DECIDE_H

#include "render.h"

/* The index of the bucket to report, or -1 when no enforced bucket applies.
 * Denied: among enforced buckets that denied, the longest retry (ties: the
 * fewest remaining, then config order). Allowed: the enforced bucket with the
 * fewest remaining tokens (ties: the earliest in config order). */
int rl_decide_governing(const struct rl_bucket_ref *refs, const struct rl_decision *d);

/* cost must fit every applicable bucket's capacity: RL_OK, or RL_EINVAL with
 * a 400 naming "cost" and the policy whose burst is smaller. */
int rl_decide_check_cost(const struct rl_bucket_ref *refs, size_t n, int64_t cost,
                         struct rl_error *err);

/* What a store status becomes: RL_OK (a real decision), or, under
 * failure_mode open, RL_OK with *degraded set (allow), or under closed an
 * error (503 service_unavailable, Retry-After 1) in *err. RL_ECONFLICT and
 * RL_EINTERNAL become 409 and 500 in either mode. */
int rl_decide_failure(int store_status, enum rl_failure_mode mode, enum rl_degraded *degraded,
                      struct rl_error *err);

#endif
