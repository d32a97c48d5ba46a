/* test_request_fixture.h -- what the request and policy unit tests share: a
 * parsed config (cfg) and the raw inputs of one request (in), reset by
 * rl_tf_setup(json) and freed by rl_tf_teardown(). Included by one test file
 * each (its statics are that file's own). */
#ifndef RL_TEST_REQUEST_FIXTURE_H
#define RL_TEST_REQUEST_FIXTURE_H

#include "request.h"

#include <criterion/criterion.h>
#include <string.h>

static struct rl_config *cfg;
static struct rl_request_input in;

/* Replace cfg with the config parsed from json (which must be valid). */
static void use_config(const char *json)
{
    struct rl_error e = {0};

    rl_config_free(cfg);
    cfg = NULL;
    cr_assert_eq(rl_config_parse(json, strlen(json), NULL, &cfg, &e), RL_OK, "%s", e.message);
}

static void rl_tf_setup(const char *json)
{
    memset(&in, 0, sizeof(in));
    use_config(json);
}

static void rl_tf_teardown(void)
{
    rl_config_free(cfg);
    cfg = NULL;
}

/* A raw value from a C string; NULL is absent. */
static struct rl_raw raw(const char *s)
{
    return s == NULL ? (struct rl_raw){NULL, 0} : (struct rl_raw){s, strlen(s)};
}

#endif
