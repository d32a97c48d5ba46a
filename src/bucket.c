/* bucket.c -- token-bucket math (GCRA in integer ticks of 1/limit ms).
 * No I/O, no allocation. The Lua script in store_redis.c mirrors this file
 * line by line; change both or neither. */
#include "bucket.h"

/* Debt of a state at now, in ticks: how far its TAT lies ahead of now
 * (0 when the bucket is full). A remainder left over from an older limit
 * (reload changed it) is clamped, which moves the TAT by under 1 ms. */
static int64_t rl_bucket_debt(const struct rl_limit *lim, const struct rl_bucket_state *st,
                              int64_t now_ms)
{
    int64_t frac = st->frac < lim->limit ? st->frac : lim->limit - 1;

    if (st->tat_ms < now_ms || (st->tat_ms == now_ms && frac <= 0))
        return 0;
    return (st->tat_ms - now_ms) * lim->limit + frac;
}

void rl_bucket_eval(const struct rl_limit *lim, const struct rl_bucket_state *st, int64_t now_ms,
                    int64_t cost, struct rl_bucket_state *next, struct rl_bucket_result *res)
{
    int64_t cap = lim->burst * lim->window_ms; /* capacity in ticks */
    int64_t debt = rl_bucket_debt(lim, st, now_ms);
    int64_t add = cost * lim->window_ms;
    int64_t after = debt + add;
    int64_t left;

    if (after <= cap || cost == 0) {
        /* a peek is allowed even when an older, larger limit left more debt
         * than this capacity (reload lowered burst): nothing is left then */
        res->allowed = true;
        res->retry_ms = 0;
        left = cap > after ? cap - after : 0;
    } else {
        res->allowed = false;
        after = debt; /* nothing is charged */
        left = cap > debt ? cap - debt : 0;
        res->retry_ms = (debt + add - cap + lim->limit - 1) / lim->limit;
        if (res->retry_ms < 1)
            res->retry_ms = 1;
    }
    res->remaining = left / lim->window_ms;

    /* TAT = now + after ticks = now_ms + after / limit, remainder after % limit */
    next->tat_ms = now_ms + after / lim->limit;
    next->frac = after % lim->limit;
    if (after == 0) {
        next->tat_ms = 0;
        next->frac = 0;
    }
    res->reset_ms = now_ms + (after + lim->limit - 1) / lim->limit;
}

int64_t rl_bucket_ttl_ms(const struct rl_limit *lim, const struct rl_bucket_state *st,
                         int64_t now_ms)
{
    int64_t debt = rl_bucket_debt(lim, st, now_ms);

    return (debt + lim->limit - 1) / lim->limit;
}
