/* bucket.h -- token-bucket math, as GCRA with exact integer arithmetic.
 * No I/O, no allocation. store_memory.c uses it directly; the Lua script in
 * store_redis.c is a line-by-line copy, and both are tested against it.
 *
 * A bucket is one number, its "theoretical arrival time" (TAT): the moment the
 * bucket would be full again. Time is counted in ticks of 1/limit ms, so one
 * token is exactly window_ms ticks and the capacity is burst * window_ms ticks:
 *   full at TAT; tokens(now) = (burst*window_ms - max(0, TAT-now)) / window_ms.
 * The TAT is kept as whole ms plus a remainder in ticks (0 <= frac < limit),
 * so no rounding ever creeps in: `burst` requests at one instant are all
 * allowed, the next one is not, and the refill rate is exact. */
#ifndef RL_BUCKET_H
#define RL_BUCKET_H

#include "config.h"

/* No capacity in ticks (burst * window_ms) reaches this (config checks it):
 * every tick count fits a double exactly, for the Lua copy. */
#define RL_BUCKET_TICKS_MAX (INT64_C(1) << 52)

struct rl_bucket_state {
    int64_t tat_ms; /* whole ms part of the TAT (Unix ms); 0 = never used */
    int64_t frac;   /* ticks past tat_ms, 0 <= frac < limit */
    /* The shape the state was written under; 0 = the current one. When a
     * reload changed limit or window, the debt is carried over in tokens
     * (a caller who had used 1 token of 3 has used 1 token of 5), not in
     * time, and owed at the new rate; never more than the new capacity. */
    int64_t limit, window_ms;
};

struct rl_bucket_result {
    bool allowed;
    int64_t remaining; /* whole tokens left (after the charge when allowed) */
    int64_t reset_ms;  /* Unix ms when the bucket is full again (>= now) */
    int64_t retry_ms;  /* when denied: ms until `cost` fits (>= 1); else 0 */
};

/* Evaluate a charge of `cost` tokens at `now_ms` against state `st`.
 * Writes the result to *res and the state to keep if the charge is applied
 * to *next (when denied, *next is the unchanged state, brought to now).
 * cost 0 is a read (peek): always allowed, nothing consumed.
 * Preconditions (checked by config and request parsing): 1 <= limit,
 * 1 <= burst, 1 <= window_ms, 0 <= cost <= burst. */
void rl_bucket_eval(const struct rl_limit *lim, const struct rl_bucket_state *st, int64_t now_ms,
                    int64_t cost, struct rl_bucket_state *next, struct rl_bucket_result *res);

/* How long the state must be kept: ms from now until the bucket is full
 * (ceil), 0 when it is full already (the key can be dropped). */
int64_t rl_bucket_ttl_ms(const struct rl_limit *lim, const struct rl_bucket_state *st,
                         int64_t now_ms);

#endif
