/* bucket.c -- token-bucket math (GCRA in integer ticks of 1/limit ms).
 * No I/O, no allocation. The Lua script in store_redis.c mirrors this file
 * line by line; change both or neither. */
#include "bucket.h"

#include <math.h>

/* Debt of a state at now, in ticks of the current shape: how far its TAT
 * lies ahead of now (0 when the bucket is full). A state written under
 * another shape (limit or window changed by a reload) is converted: its debt
 * in tokens is kept (rounded up to a whole tick). Debt is never more than the
 * capacity: a lowered burst leaves an empty bucket, not a longer wait.
 * The conversion uses one double division, like the Lua copy, so both agree
 * to the tick. */
static int64_t rl_bucket_debt(const struct rl_limit *lim, const struct rl_bucket_state *st,
                              int64_t now_ms)
{
    int64_t olimit = st->limit > 0 ? st->limit : lim->limit;
    int64_t owindow = st->window_ms > 0 ? st->window_ms : lim->window_ms;
    int64_t frac = st->frac < olimit ? st->frac : olimit - 1;
    int64_t debt, q, r, cap = lim->burst * lim->window_ms;

    if (st->tat_ms < now_ms || (st->tat_ms == now_ms && frac <= 0)) return 0;
    if (st->tat_ms - now_ms > RL_BUCKET_TICKS_MAX / olimit)
        return cap; /* no valid state owes that much (a corrupt value): empty */
    debt = (st->tat_ms - now_ms) * olimit + frac; /* old ticks; 1 token = owindow */
    if (olimit == lim->limit && owindow == lim->window_ms)
        return debt < cap ? debt : cap; /* burst may have been lowered */
    q = debt / owindow;                 /* whole tokens */
    r = debt % owindow;
    if (q >= lim->burst) return cap;
    debt = q * lim->window_ms + (int64_t)ceil((double)r * (double)lim->window_ms / (double)owindow);
    return debt < cap ? debt : cap;
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
        if (res->retry_ms < 1) res->retry_ms = 1;
    }
    res->remaining = left / lim->window_ms;

    /* TAT = now + after ticks = now_ms + after / limit, remainder after % limit */
    next->tat_ms = now_ms + after / lim->limit;
    next->frac = after % lim->limit;
    next->limit = lim->limit;
    next->window_ms = lim->window_ms;
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
