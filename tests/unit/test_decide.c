/* test_decide.c -- the reported bucket, failure_mode and the cost check. */
#include "decide.h"

#include <criterion/criterion.h>
#include <string.h>

static struct rl_policy pol[3] = {{.name = "a"}, {.name = "b"}, {.name = "c"}};

static void refs3(struct rl_bucket_ref *refs, bool shadow_c)
{
    memset(refs, 0, 3 * sizeof(*refs));
    for (int i = 0; i < 3; i++) {
        refs[i].policy = &pol[i];
        refs[i].policy_index = i;
        refs[i].lim.limit = refs[i].lim.burst = 10;
        refs[i].lim.window_ms = 1000;
    }
    refs[1].lim.burst = 4;
    refs[2].shadow = shadow_c;
}

static void outcome(struct rl_decision *d, int i, bool ok, int64_t rem, int64_t retry)
{
    d->out[i].allowed = ok;
    d->out[i].remaining = rem;
    d->out[i].retry_ms = retry;
    d->out[i].reset_ms = 1000;
}

Test(decide, allowed_reports_fewest_remaining)
{
    struct rl_bucket_ref refs[3];
    struct rl_decision d = {.status = RL_OK, .allowed = true, .n = 3};

    refs3(refs, false);
    outcome(&d, 0, true, 5, 0);
    outcome(&d, 1, true, 2, 0);
    outcome(&d, 2, true, 7, 0);
    cr_assert_eq(rl_decide_governing(refs, &d), 1);
    outcome(&d, 0, true, 2, 0); /* tie: the earliest in config order */
    cr_assert_eq(rl_decide_governing(refs, &d), 0);
}

Test(decide, denied_reports_longest_retry_of_the_denying)
{
    struct rl_bucket_ref refs[3];
    struct rl_decision d = {.status = RL_OK, .allowed = false, .n = 3};

    refs3(refs, false);
    outcome(&d, 0, true, 0, 0);     /* allowed bucket with 0 left: not reported */
    outcome(&d, 1, false, 0, 3000);
    outcome(&d, 2, false, 0, 9000);
    cr_assert_eq(rl_decide_governing(refs, &d), 2);
    outcome(&d, 2, false, 1, 3000); /* tie on retry: the fewest remaining */
    cr_assert_eq(rl_decide_governing(refs, &d), 1);
}

Test(decide, shadow_is_never_reported)
{
    struct rl_bucket_ref refs[3];
    struct rl_decision d = {.status = RL_OK, .allowed = true, .n = 3};

    refs3(refs, true);
    outcome(&d, 0, true, 5, 0);
    outcome(&d, 1, true, 4, 0);
    outcome(&d, 2, false, 0, 500);
    cr_assert_eq(rl_decide_governing(refs, &d), 1);
    d.n = 0;
    cr_assert_eq(rl_decide_governing(refs, &d), -1);
    refs[0].shadow = refs[1].shadow = true;
    d.n = 3;
    cr_assert_eq(rl_decide_governing(refs, &d), -1, "only shadow buckets: none reported");
}

Test(decide, cost_must_fit_every_capacity)
{
    struct rl_bucket_ref refs[3];
    struct rl_error err;

    refs3(refs, false);
    cr_assert_eq(rl_decide_check_cost(refs, 3, 4, &err), RL_OK);
    cr_assert_eq(rl_decide_check_cost(refs, 3, 5, &err), RL_EINVAL);
    cr_assert_eq(err.http_status, 400);
    cr_assert_str_eq(err.path, "cost");
    cr_assert(strstr(err.message, "\"b\"") != NULL, "%s", err.message);
    cr_assert_eq(rl_decide_check_cost(refs, 0, 99, &err), RL_OK, "no bucket, no bound");
}

Test(decide, failure_modes)
{
    struct rl_error err;
    enum rl_degraded deg;

    cr_assert_eq(rl_decide_failure(RL_OK, RL_FAIL_CLOSED, &deg, &err), RL_OK);
    cr_assert_eq(deg, RL_DEG_NONE);
    cr_assert_eq(rl_decide_failure(RL_EUNAVAIL, RL_FAIL_OPEN, &deg, &err), RL_OK);
    cr_assert_eq(deg, RL_DEG_UNAVAILABLE);
    cr_assert_eq(rl_decide_failure(RL_ETIMEDOUT, RL_FAIL_OPEN, &deg, &err), RL_OK);
    cr_assert_eq(deg, RL_DEG_TIMEOUT);
    cr_assert_eq(rl_decide_failure(RL_EUNAVAIL, RL_FAIL_CLOSED, &deg, &err), RL_EUNAVAIL);
    cr_assert_eq(err.http_status, 503);
    cr_assert_eq(rl_decide_failure(RL_ETIMEDOUT, RL_FAIL_CLOSED, &deg, &err), RL_ETIMEDOUT);
    cr_assert_eq(err.http_status, 503);
    cr_assert_eq(rl_decide_failure(RL_ECONFLICT, RL_FAIL_OPEN, &deg, &err), RL_ECONFLICT);
    cr_assert_eq(err.http_status, 409);
    cr_assert_str_eq(err.path, "Idempotency-Key");
    cr_assert_eq(rl_decide_failure(RL_EINTERNAL, RL_FAIL_OPEN, &deg, &err), RL_EINTERNAL);
    cr_assert_eq(err.http_status, 500);
    cr_assert_eq(deg, RL_DEG_NONE);
}
