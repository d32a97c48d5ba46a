/* test_bucket.c -- the token-bucket math of bucket.c, at exact instants:
 * burst, refill to the tick, retry/reset/ttl rounding, cost, peek, denial,
 * burst above and below the limit, and states written under another limit.
 * No clock: every test picks its own `now`. */
#include "bucket.h"

#include <criterion/criterion.h>

#define T0 1700000000000LL /* an arbitrary Unix ms */

static struct rl_limit lim_of(int64_t limit, int64_t burst, int64_t window_ms)
{
    struct rl_limit l = {.limit = limit, .burst = burst, .window_ms = window_ms};

    return l;
}

/* Charge `cost` at `now`, applying the new state only when allowed (as the
 * stores do). Returns the result. */
static struct rl_bucket_result charge(const struct rl_limit *l, struct rl_bucket_state *st,
                                      int64_t now, int64_t cost)
{
    struct rl_bucket_state next;
    struct rl_bucket_result res;

    rl_bucket_eval(l, st, now, cost, &next, &res);
    if (res.allowed)
        *st = next;
    return res;
}

Test(bucket, burst_at_one_instant_then_denied)
{
    struct rl_limit l = lim_of(10, 10, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0};
    struct rl_bucket_result r;

    for (int i = 0; i < 10; i++) {
        r = charge(&l, &st, T0, 1);
        cr_assert(r.allowed, "charge %d", i);
        cr_assert_eq(r.remaining, 9 - i);
        cr_assert_eq(r.retry_ms, 0);
    }
    r = charge(&l, &st, T0, 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_eq(r.retry_ms, 100);
    cr_assert_eq(r.reset_ms, T0 + 1000);
}

Test(bucket, fresh_state_is_full)
{
    struct rl_limit l = lim_of(5, 5, 60000);
    struct rl_bucket_state st = {0, 0, 0, 0}, next;
    struct rl_bucket_result r;

    rl_bucket_eval(&l, &st, T0, 0, &next, &r);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 5);
    cr_assert_eq(r.reset_ms, T0);
    cr_assert_eq(r.retry_ms, 0);
    cr_assert_eq(next.tat_ms, 0);
    cr_assert_eq(next.frac, 0);
}

/* 7 per 1000 ms: a token is 1000/7 = 142.857 ms, so one comes back after
 * 143 ms and not after 142 ms. */
Test(bucket, refill_exact_7_per_1000)
{
    struct rl_limit l = lim_of(7, 7, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0}, drained;
    struct rl_bucket_result r;

    for (int i = 0; i < 7; i++)
        cr_assert(charge(&l, &st, T0, 1).allowed);
    cr_assert_eq(st.tat_ms, T0 + 1000);
    cr_assert_eq(st.frac, 0);
    drained = st;

    r = charge(&l, &st, T0 + 142, 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_ms, 1); /* 6 ticks short: ceil(6/7) */
    cr_assert_eq(st.tat_ms, drained.tat_ms);

    r = charge(&l, &st, T0 + 143, 1);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    /* debt 857*7 = 5999 ticks + 1000 = 6999: TAT = T0+143 + 999 ticks */
    cr_assert_eq(st.tat_ms, T0 + 143 + 999);
    cr_assert_eq(st.frac, 6);
    cr_assert_not(charge(&l, &st, T0 + 143, 1).allowed);

    /* 7 tokens in 1000 ms exactly, never 8: at T0+1000 the bucket drained at
     * T0 and charged once at T0+143 has 6 back */
    st = drained;
    cr_assert(charge(&l, &st, T0 + 143, 1).allowed);
    r = charge(&l, &st, T0 + 1000, 0);
    cr_assert_eq(r.remaining, 6);
}

Test(bucket, refill_whole_tokens_only)
{
    struct rl_limit l = lim_of(10, 10, 1000); /* 100 ms per token */
    struct rl_bucket_state st = {0, 0, 0, 0};
    struct rl_bucket_result r;

    for (int i = 0; i < 10; i++)
        charge(&l, &st, T0, 1);
    r = charge(&l, &st, T0 + 99, 0);
    cr_assert_eq(r.remaining, 0);
    r = charge(&l, &st, T0 + 100, 0);
    cr_assert_eq(r.remaining, 1);
    r = charge(&l, &st, T0 + 550, 0);
    cr_assert_eq(r.remaining, 5);
    r = charge(&l, &st, T0 + 5000, 0);
    cr_assert_eq(r.remaining, 10);
    cr_assert_eq(r.reset_ms, T0 + 5000);
}

Test(bucket, retry_ms_is_ceil_and_at_least_1)
{
    struct rl_limit l = lim_of(7, 7, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0};
    struct rl_bucket_result r;

    for (int i = 0; i < 7; i++)
        charge(&l, &st, T0, 1);
    r = charge(&l, &st, T0, 1);
    cr_assert_eq(r.retry_ms, 143); /* 1000 ticks / 7 = 142.86 */
    r = charge(&l, &st, T0, 2);
    cr_assert_eq(r.retry_ms, 286); /* 2000 / 7 = 285.7 */
    r = charge(&l, &st, T0, 7);
    cr_assert_eq(r.retry_ms, 1000);
    r = charge(&l, &st, T0 + 142, 1);
    cr_assert_eq(r.retry_ms, 1); /* 6 ticks */
    r = charge(&l, &st, T0 + 100, 1);
    cr_assert_eq(r.retry_ms, 43); /* 1000 - 700 = 300 ticks: 42.86 */
}

Test(bucket, reset_ms)
{
    struct rl_limit l = lim_of(7, 7, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0};
    struct rl_bucket_result r;

    r = charge(&l, &st, T0, 1);
    cr_assert_eq(r.reset_ms, T0 + 143); /* 1000 ticks: ceil(142.86) */
    r = charge(&l, &st, T0, 6);
    cr_assert_eq(r.reset_ms, T0 + 1000);
    r = charge(&l, &st, T0 + 1, 0);
    cr_assert_eq(r.reset_ms, T0 + 1000);
    r = charge(&l, &st, T0 + 1000, 0);
    cr_assert_eq(r.reset_ms, T0 + 1000);
    cr_assert_eq(r.remaining, 7);
    r = charge(&l, &st, T0 + 2000, 0);
    cr_assert_eq(r.reset_ms, T0 + 2000);
}

Test(bucket, cost_above_1)
{
    struct rl_limit l = lim_of(10, 10, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0};
    struct rl_bucket_result r;

    cr_assert_eq(charge(&l, &st, T0, 3).remaining, 7);
    cr_assert_eq(charge(&l, &st, T0, 3).remaining, 4);
    cr_assert_eq(charge(&l, &st, T0, 3).remaining, 1);
    r = charge(&l, &st, T0, 3);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 1);
    cr_assert_eq(r.retry_ms, 200); /* two more tokens at 100 ms each */
    r = charge(&l, &st, T0, 1);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    r = charge(&l, &st, T0, 10);
    cr_assert_eq(r.retry_ms, 1000);
}

Test(bucket, cost_equal_to_burst)
{
    struct rl_limit l = lim_of(10, 10, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0};

    cr_assert(charge(&l, &st, T0, 10).allowed);
    cr_assert_not(charge(&l, &st, T0 + 999, 10).allowed);
    cr_assert(charge(&l, &st, T0 + 1000, 10).allowed);
}

Test(bucket, cost_0_peeks)
{
    struct rl_limit l = lim_of(10, 10, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0}, next;
    struct rl_bucket_result r;

    charge(&l, &st, T0, 4);
    rl_bucket_eval(&l, &st, T0 + 50, 0, &next, &r);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 6);
    cr_assert_eq(r.retry_ms, 0);
    cr_assert_eq(r.reset_ms, T0 + 400);
    cr_assert_eq(next.tat_ms, st.tat_ms);
    cr_assert_eq(next.frac, st.frac);
}

Test(bucket, denied_leaves_state_unchanged)
{
    struct rl_limit l = lim_of(7, 3, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0}, next;
    struct rl_bucket_result r;

    for (int i = 0; i < 3; i++)
        charge(&l, &st, T0, 1);
    cr_assert_eq(st.tat_ms, T0 + 428);
    cr_assert_eq(st.frac, 4); /* 3000 ticks = 428 ms + 4/7 */
    rl_bucket_eval(&l, &st, T0 + 10, 1, &next, &r);
    cr_assert_not(r.allowed);
    cr_assert_eq(next.tat_ms, st.tat_ms);
    cr_assert_eq(next.frac, st.frac);
    cr_assert_eq(r.reset_ms, T0 + 429);
}

Test(bucket, burst_above_limit)
{
    struct rl_limit l = lim_of(2, 5, 1000); /* 2 per second, 5 at once */
    struct rl_bucket_state st = {0, 0, 0, 0};
    struct rl_bucket_result r;

    for (int i = 0; i < 5; i++)
        cr_assert(charge(&l, &st, T0, 1).allowed);
    r = charge(&l, &st, T0, 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_ms, 500);
    cr_assert_eq(r.reset_ms, T0 + 2500);
    cr_assert_not(charge(&l, &st, T0 + 499, 1).allowed);
    cr_assert(charge(&l, &st, T0 + 500, 1).allowed);
    cr_assert_not(charge(&l, &st, T0 + 500, 1).allowed);
}

Test(bucket, burst_below_limit)
{
    struct rl_limit l = lim_of(10, 2, 1000); /* 10 per second, 2 at once */
    struct rl_bucket_state st = {0, 0, 0, 0};
    struct rl_bucket_result r;

    cr_assert(charge(&l, &st, T0, 1).allowed);
    r = charge(&l, &st, T0, 1);
    cr_assert(r.allowed);
    cr_assert_eq(r.reset_ms, T0 + 200);
    r = charge(&l, &st, T0, 1);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_ms, 100);
    cr_assert_not(charge(&l, &st, T0 + 99, 1).allowed);
    cr_assert(charge(&l, &st, T0 + 100, 1).allowed);
    /* a long pause refills up to burst only */
    r = charge(&l, &st, T0 + 60000, 0);
    cr_assert_eq(r.remaining, 2);
}

Test(bucket, ttl_ms)
{
    struct rl_limit l = lim_of(7, 7, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0};

    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0), 0);
    charge(&l, &st, T0, 1);
    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0), 143);
    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0 + 142), 1);
    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0 + 143), 0);
    charge(&l, &st, T0, 6);
    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0), 1000);
    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0 + 999), 1);
    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0 + 1000), 0);
    cr_assert_eq(rl_bucket_ttl_ms(&l, &st, T0 + 5000), 0);
}

/* A reload changed the limit: the debt is kept in tokens. 1 of 3 per hour
 * used, then 5 per hour: 4 left, and the used token comes back in 12 min. */
Test(bucket, reload_keeps_token_debt_when_limit_changes)
{
    struct rl_limit three = lim_of(3, 3, 3600000), five = lim_of(5, 5, 3600000);
    struct rl_bucket_state st = {0, 0, 0, 0}, next;
    struct rl_bucket_result r;

    charge(&three, &st, T0, 1);
    cr_assert_eq(st.limit, 3);
    cr_assert_eq(st.window_ms, 3600000);
    rl_bucket_eval(&five, &st, T0, 0, &next, &r);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 4);
    cr_assert_eq(r.reset_ms, T0 + 720000);
    r = charge(&five, &st, T0, 1);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 3);
    cr_assert_eq(st.limit, 5);
    cr_assert_eq(rl_bucket_ttl_ms(&five, &st, T0), 1440000);

    /* and back down to 3: 2 tokens used of 3, one left */
    rl_bucket_eval(&three, &st, T0, 0, &next, &r);
    cr_assert_eq(r.remaining, 1);
    cr_assert_eq(r.reset_ms, T0 + 2400000);
}

/* The window changed: 4 of 10 per second used, then 10 per 2 s: still 4
 * used, refilled at 5/s, so full again in 800 ms. A fraction of a tick is
 * rounded up (never a token given away). */
Test(bucket, reload_keeps_token_debt_when_window_changes)
{
    struct rl_limit fast = lim_of(10, 10, 1000), slow = lim_of(10, 10, 2000);
    struct rl_limit odd = lim_of(7, 7, 3000);
    struct rl_bucket_state st = {0, 0, 0, 0}, next;
    struct rl_bucket_result r;

    charge(&fast, &st, T0, 4);
    rl_bucket_eval(&slow, &st, T0, 0, &next, &r);
    cr_assert_eq(r.remaining, 6);
    cr_assert_eq(r.reset_ms, T0 + 800);
    /* 4 tokens at 7 per 3 s: 4 * 3000 / 7 = 1714.28 ms, reset rounds up */
    rl_bucket_eval(&odd, &st, T0, 0, &next, &r);
    cr_assert_eq(r.remaining, 3);
    cr_assert_eq(r.reset_ms, T0 + 1715);
    /* half a token of debt (50 ms at 10/s) is half a token at 7 per 3 s */
    rl_bucket_eval(&odd, &st, T0 + 350, 0, &next, &r);
    cr_assert_eq(r.remaining, 6);
    cr_assert_eq(next.tat_ms, T0 + 350 + 214); /* 1500 ticks = 214 ms + 2 */
    cr_assert_eq(next.frac, 2);
}

/* Debt never exceeds the capacity: with the burst lowered from 10 to 2, a
 * caller who used 10 tokens finds an empty bucket of 2 (full in 200 ms), not
 * a 1 s wait. A peek (cost 0) is always allowed (regression: it was reported
 * denied, with a retry, and a negative remaining was possible). */
Test(bucket, burst_lowered_caps_the_debt)
{
    struct rl_limit big = lim_of(10, 10, 1000), small = lim_of(10, 2, 1000);
    struct rl_limit small_slow = lim_of(5, 2, 1000);
    struct rl_bucket_state st = {0, 0, 0, 0}, next;
    struct rl_bucket_result r;

    charge(&big, &st, T0, 10); /* debt 10 tokens */
    rl_bucket_eval(&small, &st, T0, 0, &next, &r);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_eq(r.retry_ms, 0);
    cr_assert_eq(r.reset_ms, T0 + 200);

    rl_bucket_eval(&small, &st, T0, 1, &next, &r);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_eq(r.retry_ms, 100);
    /* the same with the limit changed too: empty, 2 tokens at 5/s */
    rl_bucket_eval(&small_slow, &st, T0, 1, &next, &r);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_ms, 200);
    cr_assert_eq(r.reset_ms, T0 + 400);
}
