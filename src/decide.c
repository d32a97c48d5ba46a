/* decide.c -- the decision around the store: the reported (most restrictive)
 * bucket, failure_mode, and the cost-versus-capacity check.
 * Pure: no I/O. Knows nothing of envelopes or HTTP. */
#include "decide.h"

int rl_decide_governing(const struct rl_bucket_ref *refs, const struct rl_decision *d)
{
    int best = -1;

    for (size_t i = 0; i < d->n; i++) {
        const struct rl_bucket_outcome *o = &d->out[i];
        const struct rl_bucket_outcome *b;

        if (refs[i].shadow) continue;
        if (!d->allowed && o->allowed) continue; /* a denial reports a bucket that denied */
        if (best < 0) {
            best = (int)i;
            continue;
        }
        b = &d->out[best];
        if (!d->allowed) {
            if (o->retry_ms > b->retry_ms ||
                (o->retry_ms == b->retry_ms && o->remaining < b->remaining))
                best = (int)i;
        } else if (o->remaining < b->remaining) {
            best = (int)i;
        }
    }
    return best;
}

int rl_decide_check_cost(const struct rl_bucket_ref *refs, size_t n, int64_t cost,
                         struct rl_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (cost > refs[i].lim.burst)
            return rl_error_set(
                err, RL_EINVAL, 400, "cost", "cost %lld exceeds the capacity %lld of policy \"%s\"",
                (long long)cost, (long long)refs[i].lim.burst, refs[i].policy->name);
    return RL_OK;
}

int rl_decide_failure(int store_status, enum rl_failure_mode mode, enum rl_degraded *degraded,
                      struct rl_error *err)
{
    *degraded = RL_DEG_NONE;
    switch (store_status) {
    case RL_OK:
        return RL_OK;
    case RL_ECONFLICT:
        return rl_error_set(err, RL_ECONFLICT, 409, "Idempotency-Key",
                            "Idempotency-Key was already used for a different request");
    case RL_ETIMEDOUT:
    case RL_EUNAVAIL:
        if (mode == RL_FAIL_OPEN) {
            *degraded = store_status == RL_ETIMEDOUT ? RL_DEG_TIMEOUT : RL_DEG_UNAVAILABLE;
            return RL_OK;
        }
        return rl_error_set(err, store_status, 503, "",
                            store_status == RL_ETIMEDOUT
                                ? "the rate-limit store did not answer in time"
                                : "the rate-limit store is unavailable");
    default:
        return rl_error_set(err, RL_EINTERNAL, 500, "", "internal error in the rate-limit store");
    }
}
