/* test_check.c -- the real ratelimitd binary over HTTP: /v1/check and /v1/auth
 * decisions, every header and the parsed body, each envelope, bad input.
 * Runs twice under ctest: RL_TEST_STORE=memory (embedded store) and
 * RL_TEST_STORE=redis (a real redis-server started for each test). */
#include "test_daemon.h"
#include "test_http.h"
#include "test_json.h"
#include "test_redis.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define RL_BODY_SIZE_TEST (8192 + 100)

static struct rl_test_redis redis;
static struct rl_test_daemon daemon_;
static bool use_redis;

static void setup(void)
{
    const char *s = getenv("RL_TEST_STORE");

    use_redis = s != NULL && strcmp(s, "redis") == 0;
    if (use_redis)
        cr_assert_eq(rl_test_redis_start(&redis), 0, "redis-server did not start");
}

static void teardown(void)
{
    int st_daemon = rl_test_daemon_stop(&daemon_);
    if (use_redis)
        rl_test_redis_stop(&redis);
    rl_test_daemon_require_clean(st_daemon);
}

TestSuite(check, .init = setup, .fini = teardown, .timeout = 60);

/* Start the daemon with `policies` (a JSON array) and extra top-level fields. */
static void up(const char *extra, const char *policies)
{
    char cfg[8192];

    snprintf(cfg, sizeof(cfg), "{%s%s\"policies\": %s}", extra ? extra : "", extra ? "," : "",
             policies);
    cr_assert_eq(rl_test_daemon_start(&daemon_, cfg, use_redis ? redis.url : NULL, NULL), 0,
                 "ratelimitd did not start with %s", cfg);
}

/* GET path (with extra header lines) and parse the JSON body into *body. */
static void get(const char *path, const char *headers, struct rl_test_response *res,
                struct json_object **body)
{
    cr_assert_eq(rl_test_http(daemon_.port, "GET", path, headers, NULL, 0, res), 0,
                 "no response to GET %s", path);
    if (body != NULL) {
        *body = json_tokener_parse(res->body);
        cr_assert_not_null(*body, "body of GET %s is not JSON: %s", path, res->body);
    }
}

static void done(struct rl_test_response *res, struct json_object *body)
{
    rl_test_response_free(res);
    json_object_put(body);
}

static long hdr_long(const struct rl_test_response *res, const char *name)
{
    const char *v = rl_test_header(res, name);

    cr_assert_not_null(v, "header %s missing", name);
    return strtol(v, NULL, 10);
}

static const char *const ONE_KEY =
    "[{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":3,\"window\":\"60s\"}]";

/*----------------------------------------------------------------------------
 * Allowed, then denied: every header and the problem body
 *--------------------------------------------------------------------------*/

Test(check, allowed_then_denied_problem)
{
    struct rl_test_response res;
    struct json_object *b;
    long now = (long)time(NULL);

    up(NULL, ONE_KEY);
    for (int i = 0; i < 3; i++) {
        get("/v1/check?key=alice", NULL, &res, &b);
        cr_assert_eq(res.status, 200);
        cr_assert_str_eq(rl_test_header(&res, "Content-Type"), "application/json");
        cr_assert_eq(hdr_long(&res, "X-RateLimit-Limit"), 3);
        cr_assert_eq(hdr_long(&res, "X-RateLimit-Remaining"), 2 - i);
        /* full again (i+1) * 20 s from now */
        cr_assert(labs(hdr_long(&res, "X-RateLimit-Reset") - (now + 20 * (i + 1))) <= 2);
        cr_assert_str_eq(rl_test_header(&res, "RateLimit-Policy"), "\"per-key\";q=3;w=60");
        cr_assert_null(rl_test_header(&res, "Retry-After"));
        cr_assert_eq(rl_tj_bool(b, "allowed"), 1);
        cr_assert_str_eq(rl_tj_str(b, "policy"), "per-key");
        cr_assert_eq(rl_tj_int(b, "limit"), 3);
        cr_assert_eq(rl_tj_int(b, "remaining"), 2 - i);
        cr_assert_eq(rl_tj_int(b, "reset"), hdr_long(&res, "X-RateLimit-Reset"));
        cr_assert_str_eq(rl_tj_str(b, "request_id"), rl_test_header(&res, "X-Request-ID"));
        done(&res, b);
    }
    get("/v1/check?key=alice", "X-Original-URI: /v1/calls?x=1\r\n", &res, &b);
    cr_assert_eq(res.status, 429);
    cr_assert_str_eq(rl_test_header(&res, "Content-Type"), "application/problem+json");
    long retry = hdr_long(&res, "Retry-After");
    cr_assert(retry >= 19 && retry <= 20, "Retry-After %ld", retry);
    cr_assert_eq(hdr_long(&res, "X-RateLimit-Limit"), 3);
    cr_assert_eq(hdr_long(&res, "X-RateLimit-Remaining"), 0);
    cr_assert(labs(hdr_long(&res, "X-RateLimit-Reset") - (now + 60)) <= 2);
    char expect[128];
    long t = hdr_long(&res, "X-RateLimit-Reset") - (long)time(NULL);
    snprintf(expect, sizeof(expect), "\"per-key\";r=0;t=%ld", t);
    const char *rl = rl_test_header(&res, "RateLimit");
    cr_assert_not_null(rl);
    cr_assert(strncmp(rl, "\"per-key\";r=0;t=", 16) == 0, "RateLimit: %s", rl);
    cr_assert(labs(strtol(rl + 16, NULL, 10) - t) <= 1, "RateLimit %s vs %s", rl, expect);
    cr_assert_str_eq(rl_test_header(&res, "RateLimit-Policy"), "\"per-key\";q=3;w=60");

    cr_assert_str_eq(rl_tj_str(b, "type"),
                     "https://iana.org/assignments/http-problem-types#quota-exceeded");
    cr_assert_eq(rl_tj_int(b, "status"), 429);
    cr_assert_str_eq(rl_tj_str(b, "title"), "Too Many Requests");
    snprintf(expect, sizeof(expect),
             "Rate limit of 3 per 60s exceeded for key; retry in %ld seconds.", retry);
    cr_assert_str_eq(rl_tj_str(b, "detail"), expect);
    cr_assert_str_eq(rl_tj_str(b, "instance"), "/v1/calls");
    cr_assert_str_eq(rl_tj_str(b, "violated-policies.0"), "per-key");
    cr_assert_null(rl_tj_get(b, "violated-policies.1"));
    cr_assert_eq(rl_tj_int(b, "retry_after_secs"), retry);
    cr_assert_eq(rl_tj_int(b, "limit"), 3);
    cr_assert_eq(rl_tj_int(b, "remaining"), 0);
    cr_assert_eq(rl_tj_int(b, "reset"), hdr_long(&res, "X-RateLimit-Reset"));
    cr_assert_str_eq(rl_tj_str(b, "request_id"), rl_test_header(&res, "X-Request-ID"));
    done(&res, b);

    /* another key is not affected */
    get("/v1/check?key=bob", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_eq(hdr_long(&res, "X-RateLimit-Remaining"), 2);
    done(&res, b);
}

/* Deny once with ?envelope=NAME and return the parsed body (caller frees). */
static struct json_object *deny_with(const char *envelope, struct rl_test_response *res)
{
    char path[128];
    struct json_object *b;

    snprintf(path, sizeof(path), "/v1/check?key=env-%s", envelope);
    for (int i = 0; i < 3; i++) {
        get(path, NULL, res, &b);
        cr_assert_eq(res->status, 200);
        done(res, b);
    }
    snprintf(path, sizeof(path), "/v1/check?key=env-%s&envelope=%s", envelope, envelope);
    get(path, NULL, res, &b);
    cr_assert_eq(res->status, 429, "envelope %s", envelope);
    cr_assert_str_eq(rl_test_header(res, "Content-Type"), "application/json");
    return b;
}

Test(check, every_envelope)
{
    struct rl_test_response res;
    struct json_object *b;
    long retry;
    char msg[128];

    up(NULL, ONE_KEY);

    b = deny_with("error", &res);
    retry = hdr_long(&res, "Retry-After");
    cr_assert_str_eq(rl_tj_str(b, "error.code"), "rate_limit_exceeded");
    snprintf(msg, sizeof(msg), "API rate limit exceeded. Please wait %ld seconds before retrying.",
             retry);
    cr_assert_str_eq(rl_tj_str(b, "error.message"), msg);
    cr_assert_eq(rl_tj_int(b, "error.details.limit"), 3);
    cr_assert_str_eq(rl_tj_str(b, "error.details.window"), "60s");
    cr_assert_eq(rl_tj_int(b, "error.details.retry_after"), retry);
    cr_assert_eq(rl_tj_int(b, "error.details.retry_after_secs"), retry);
    cr_assert_str_eq(rl_tj_str(b, "error.details.request_id"), rl_test_header(&res, "X-Request-ID"));
    done(&res, b);

    b = deny_with("typed", &res);
    retry = hdr_long(&res, "Retry-After");
    cr_assert_str_eq(rl_tj_str(b, "error.type"), "rate_limit_error");
    cr_assert_str_eq(rl_tj_str(b, "error.code"), "rate_limit_exceeded");
    cr_assert_not_null(rl_tj_str(b, "error.message"));
    cr_assert(rl_tj_has(b, "error.param") == false || rl_tj_get(b, "error.param") == NULL);
    cr_assert_str_eq(rl_tj_str(b, "error.request_id"), rl_test_header(&res, "X-Request-ID"));
    cr_assert_eq(rl_tj_int(b, "error.retry_after_secs"), retry);
    done(&res, b);

    b = deny_with("simple", &res);
    retry = hdr_long(&res, "Retry-After");
    snprintf(msg, sizeof(msg), "rate limit exceeded: try again in %ld seconds", retry);
    cr_assert_str_eq(rl_tj_str(b, "error.message"), msg);
    cr_assert_str_eq(rl_tj_str(b, "error.type"), "rate_limit_error");
    cr_assert_eq(rl_tj_int(b, "error.retry_after_secs"), retry);
    done(&res, b);

    b = deny_with("flat", &res);
    retry = hdr_long(&res, "Retry-After");
    cr_assert_str_eq(rl_tj_str(b, "error"), "rate_limited");
    cr_assert_not_null(rl_tj_str(b, "error_description"));
    cr_assert_eq(rl_tj_int(b, "retry_after_secs"), retry);
    done(&res, b);

    b = deny_with("ws", &res);
    retry = hdr_long(&res, "Retry-After");
    cr_assert_str_eq(rl_tj_str(b, "type"), "error");
    cr_assert_str_eq(rl_tj_str(b, "error.code"), "RATE_LIMITED");
    cr_assert_not_null(rl_tj_str(b, "error.message"));
    cr_assert_eq(rl_tj_int(b, "error.details.retry_after_secs"), retry);
    cr_assert_eq(rl_tj_int(b, "error.details.limit"), 3);
    cr_assert_eq(rl_tj_int(b, "error.details.reset"), hdr_long(&res, "X-RateLimit-Reset"));
    done(&res, b);
}

Test(check, envelope_global_and_per_policy)
{
    struct rl_test_response res;
    struct json_object *b;

    up("\"envelope\":\"flat\"",
       "[{\"name\":\"k\",\"scope\":\"key\",\"limit\":1,\"window\":\"1h\"},"
       "{\"name\":\"o\",\"scope\":\"org\",\"limit\":1,\"window\":\"1h\",\"envelope\":\"simple\"}]");
    get("/v1/check?key=a", NULL, &res, &b);
    done(&res, b);
    get("/v1/check?key=a", NULL, &res, &b);
    cr_assert_eq(res.status, 429);
    cr_assert_str_eq(rl_tj_str(b, "error"), "rate_limited"); /* global: flat */
    done(&res, b);
    get("/v1/check?org=x", NULL, &res, &b);
    done(&res, b);
    get("/v1/check?org=x", NULL, &res, &b);
    cr_assert_eq(res.status, 429);
    cr_assert_str_eq(rl_tj_str(b, "error.type"), "rate_limit_error"); /* policy: simple */
    cr_assert_not_null(rl_tj_str(b, "error.message"));
    done(&res, b);
}

/*----------------------------------------------------------------------------
 * Semantics: all or nothing, refill, overrides, shadow, cost, idempotency
 *--------------------------------------------------------------------------*/

Test(check, all_or_nothing_two_policies)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, "[{\"name\":\"k\",\"scope\":\"key\",\"limit\":5,\"window\":\"1h\"},"
             "{\"name\":\"o\",\"scope\":\"org\",\"limit\":2,\"window\":\"1h\"}]");
    for (int i = 0; i < 2; i++) {
        get("/v1/check?key=k1&org=o1", NULL, &res, &b);
        cr_assert_eq(res.status, 200);
        done(&res, b);
    }
    for (int i = 0; i < 3; i++) { /* org denies: the key bucket must not be charged */
        get("/v1/check?key=k1&org=o1", NULL, &res, &b);
        cr_assert_eq(res.status, 429);
        cr_assert_str_eq(rl_tj_str(b, "violated-policies.0"), "o");
        cr_assert_null(rl_tj_get(b, "violated-policies.1"));
        cr_assert_eq(hdr_long(&res, "X-RateLimit-Limit"), 2);
        const char *pol = rl_test_header(&res, "RateLimit-Policy");
        if (use_redis && i > 0) /* from the deny cache: only the known-empty bucket */
            cr_assert_str_eq(pol, "\"o\";q=2;w=3600");
        else
            cr_assert_str_eq(pol, "\"k\";q=5;w=3600, \"o\";q=2;w=3600");
        done(&res, b);
    }
    get("/v1/check?key=k1&org=o2", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    /* key: 5 - 2 - 1 = 2 left; org o2: 1 left -> reported: the fewest (org) */
    cr_assert_str_eq(rl_tj_str(b, "policy"), "o");
    cr_assert_eq(rl_tj_int(b, "remaining"), 1);
    const char *r = rl_test_header(&res, "RateLimit");
    cr_assert(strstr(r, "\"k\";r=2;") != NULL, "RateLimit: %s", r);
    cr_assert(strstr(r, "\"o\";r=1;") != NULL, "RateLimit: %s", r);
    done(&res, b);
}

Test(check, refill_after_waiting)
{
    struct rl_test_response res;
    struct json_object *b;

    /* 2 per second: one token every 500 ms */
    up(NULL, "[{\"name\":\"fast\",\"scope\":\"caller\",\"limit\":2,\"window\":\"1s\"}]");
    for (int i = 0; i < 2; i++) {
        get("/v1/check?caller=c", NULL, &res, &b);
        cr_assert_eq(res.status, 200);
        done(&res, b);
    }
    get("/v1/check?caller=c", NULL, &res, &b);
    cr_assert_eq(res.status, 429);
    cr_assert_eq(hdr_long(&res, "Retry-After"), 1);
    done(&res, b);
    struct timespec ts = {0, 700 * 1000000L};
    nanosleep(&ts, NULL);
    get("/v1/check?caller=c", NULL, &res, &b);
    cr_assert_eq(res.status, 200, "one token should be back after 700 ms");
    cr_assert_eq(rl_tj_int(b, "remaining"), 0);
    done(&res, b);
}

Test(check, overrides)
{
    struct rl_test_response res;
    struct json_object *b;

    up("\"overrides\":[{\"policy\":\"per-org\",\"id\":\"acme\",\"limit\":5}]",
       "[{\"name\":\"per-org\",\"scope\":\"org\",\"limit\":2,\"window\":\"1h\"}]");
    for (int i = 0; i < 5; i++) {
        get("/v1/check?org=acme", NULL, &res, &b);
        cr_assert_eq(res.status, 200, "acme request %d", i);
        cr_assert_eq(hdr_long(&res, "X-RateLimit-Limit"), 5);
        done(&res, b);
    }
    get("/v1/check?org=acme", NULL, &res, &b);
    cr_assert_eq(res.status, 429);
    done(&res, b);
    for (int i = 0; i < 3; i++) {
        get("/v1/check", "X-Org-Id: small\r\n", &res, &b);
        cr_assert_eq(res.status, i < 2 ? 200 : 429);
        cr_assert_eq(hdr_long(&res, "X-RateLimit-Limit"), 2);
        done(&res, b);
    }
}

Test(check, shadow_never_denies)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, "[{\"name\":\"dry\",\"scope\":\"key\",\"limit\":1,\"window\":\"1h\",\"shadow\":true}]");
    for (int i = 0; i < 3; i++) {
        get("/v1/check?key=s", NULL, &res, &b);
        cr_assert_eq(res.status, 200);
        cr_assert_eq(rl_tj_bool(b, "allowed"), 1);
        cr_assert_null(rl_test_header(&res, "X-RateLimit-Limit")); /* shadow: no headers */
        if (i == 0)
            cr_assert_null(rl_tj_get(b, "shadow_denied"));
        else
            cr_assert_str_eq(rl_tj_str(b, "shadow_denied.0"), "dry");
        done(&res, b);
    }
}

Test(check, cost)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, "[{\"name\":\"c\",\"scope\":\"key\",\"limit\":5,\"window\":\"1h\"}]");
    get("/v1/check?key=x&cost=3", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_eq(rl_tj_int(b, "remaining"), 2);
    done(&res, b);
    get("/v1/check?key=x&cost=3", NULL, &res, &b);
    cr_assert_eq(res.status, 429);
    cr_assert_eq(rl_tj_int(b, "remaining"), 2); /* nothing charged */
    /* one token takes 720 s; 3 fit once 1 more is back */
    cr_assert(hdr_long(&res, "Retry-After") >= 719 && hdr_long(&res, "Retry-After") <= 720);
    done(&res, b);
    get("/v1/check?key=x&cost=2", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_eq(rl_tj_int(b, "remaining"), 0);
    done(&res, b);
    const char *bad[] = {"0", "-1", "abc", "1.5", "6", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[96];
        snprintf(path, sizeof(path), "/v1/check?key=y&cost=%s", bad[i]);
        get(path, NULL, &res, &b);
        cr_assert_eq(res.status, 400, "cost=%s", bad[i]);
        cr_assert_str_eq(rl_tj_str(b, "type"), "urn:ratelimitd:problem:validation_error");
        cr_assert_str_eq(rl_tj_str(b, "field"), "cost", "cost=%s", bad[i]);
        done(&res, b);
    }
}

Test(check, idempotency_replay_and_conflict)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, "[{\"name\":\"i\",\"scope\":\"key\",\"limit\":5,\"window\":\"1h\"}]");
    get("/v1/check?key=k", "Idempotency-Key: op-1\r\n", &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_eq(rl_tj_int(b, "remaining"), 4);
    cr_assert_null(rl_tj_get(b, "replayed"));
    done(&res, b);
    for (int i = 0; i < 2; i++) {
        get("/v1/check?key=k", "Idempotency-Key: op-1\r\n", &res, &b);
        cr_assert_eq(res.status, 200);
        cr_assert_eq(rl_tj_int(b, "remaining"), 4);
        cr_assert_eq(rl_tj_bool(b, "replayed"), 1);
        done(&res, b);
    }
    get("/v1/check?key=k", NULL, &res, &b); /* only one charge so far */
    cr_assert_eq(rl_tj_int(b, "remaining"), 3);
    done(&res, b);
    get("/v1/check?key=k&cost=2", "Idempotency-Key: op-1\r\n", &res, &b);
    cr_assert_eq(res.status, 409);
    cr_assert_str_eq(rl_tj_str(b, "type"), "urn:ratelimitd:problem:conflict_error");
    done(&res, b);
    get("/v1/check?key=k", NULL, &res, &b); /* the conflict charged nothing */
    cr_assert_eq(rl_tj_int(b, "remaining"), 2);
    done(&res, b);
}

/* Keys are per caller: another key holder using "op-1" gets its own decision
 * (charged once, then replayed), never a 409 nor the first caller's answer. */
Test(check, idempotency_keys_are_per_caller)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, "[{\"name\":\"i\",\"scope\":\"key\",\"limit\":5,\"window\":\"1h\"}]");
    get("/v1/check?key=alice", "Idempotency-Key: op-1\r\n", &res, &b);
    cr_assert_eq(rl_tj_int(b, "remaining"), 4);
    done(&res, b);
    get("/v1/check?key=alice", NULL, &res, &b);
    cr_assert_eq(rl_tj_int(b, "remaining"), 3);
    done(&res, b);
    for (int i = 0; i < 2; i++) {
        get("/v1/check?key=bob", "Idempotency-Key: op-1\r\n", &res, &b);
        cr_assert_eq(res.status, 200, "bob's op-1 is not alice's: %s", res.body);
        cr_assert_eq(rl_tj_int(b, "remaining"), 4, "bob's own bucket, charged once");
        if (i == 0)
            cr_assert_null(rl_tj_get(b, "replayed"));
        else
            cr_assert_eq(rl_tj_bool(b, "replayed"), 1);
        done(&res, b);
    }
}

/*----------------------------------------------------------------------------
 * Matching, identities, headers modes
 *--------------------------------------------------------------------------*/

Test(check, match_method_and_path)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, "[{\"name\":\"posts\",\"scope\":\"caller\",\"limit\":1,\"window\":\"1h\","
             "\"match\":{\"method\":\"POST\",\"path_prefix\":\"/v1/calls\"}}]");
    const char *h = "X-Caller-Id: c1\r\nX-Original-Method: POST\r\nX-Original-URI: /v1/calls/9?a=b\r\n";
    get("/v1/check", h, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_str_eq(rl_tj_str(b, "policy"), "posts");
    done(&res, b);
    get("/v1/check", h, &res, &b);
    cr_assert_eq(res.status, 429);
    done(&res, b);
    /* a GET or another path does not match: allowed, no policy */
    get("/v1/check?caller=c1&method=GET&path=/v1/calls", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert(rl_tj_get(b, "policy") == NULL);
    cr_assert_null(rl_test_header(&res, "X-RateLimit-Limit"));
    done(&res, b);
    get("/v1/check?caller=c1&method=post&path=/v2/calls", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    done(&res, b);
    get("/v1/check?caller=c1&method=post&path=/v1/calls", NULL, &res, &b);
    cr_assert_eq(res.status, 429, "method= is case-insensitive");
    done(&res, b);
}

Test(check, ip_scope_from_proxy_headers)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, "[{\"name\":\"per-ip\",\"scope\":\"ip\",\"limit\":1,\"window\":\"1h\"}]");
    get("/v1/check", "X-Forwarded-For: 6.6.6.6, 10.0.0.1\r\n", &res, &b);
    cr_assert_eq(res.status, 200);
    done(&res, b);
    /* the client-supplied first entry changes, the proxy-added last does not */
    get("/v1/check", "X-Forwarded-For: 7.7.7.7, 10.0.0.1\r\n", &res, &b);
    cr_assert_eq(res.status, 429);
    done(&res, b);
    get("/v1/check", "X-Real-IP: 10.0.0.2\r\nX-Forwarded-For: 10.0.0.1\r\n", &res, &b);
    cr_assert_eq(res.status, 200, "X-Real-IP wins over X-Forwarded-For");
    done(&res, b);
}

Test(check, headers_legacy_only)
{
    struct rl_test_response res;
    struct json_object *b;

    up("\"headers\":\"legacy\"", ONE_KEY);
    get("/v1/check?key=h", NULL, &res, &b);
    cr_assert_not_null(rl_test_header(&res, "X-RateLimit-Limit"));
    cr_assert_null(rl_test_header(&res, "RateLimit"));
    cr_assert_null(rl_test_header(&res, "RateLimit-Policy"));
    done(&res, b);
}

Test(check, headers_ietf_only)
{
    struct rl_test_response res;
    struct json_object *b;

    up("\"headers\":\"ietf\"", ONE_KEY);
    get("/v1/check?key=h", NULL, &res, &b);
    cr_assert_null(rl_test_header(&res, "X-RateLimit-Limit"));
    cr_assert_null(rl_test_header(&res, "X-RateLimit-Remaining"));
    cr_assert_str_eq(rl_test_header(&res, "RateLimit-Policy"), "\"per-key\";q=3;w=60");
    cr_assert(strncmp(rl_test_header(&res, "RateLimit"), "\"per-key\";r=2;t=", 16) == 0);
    done(&res, b);
}

Test(check, request_id_echoed_or_generated)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, ONE_KEY);
    get("/v1/check?key=r", "X-Request-ID: abc-123\r\n", &res, &b);
    cr_assert_str_eq(rl_test_header(&res, "X-Request-ID"), "abc-123");
    cr_assert_str_eq(rl_tj_str(b, "request_id"), "abc-123");
    done(&res, b);
    get("/v1/check?key=r", NULL, &res, &b);
    const char *id = rl_test_header(&res, "X-Request-ID");
    cr_assert_not_null(id);
    cr_assert_eq(strlen(id), 20);
    cr_assert(strncmp(id, "req_", 4) == 0);
    cr_assert_eq(strspn(id + 4, "0123456789abcdef"), 16);
    done(&res, b);
}

Test(check, post_json_body)
{
    struct rl_test_response res;
    struct json_object *b;
    const char *body = "{\"key\":\"p\",\"cost\":2,\"envelope\":\"simple\"}";

    up(NULL, ONE_KEY);
    cr_assert_eq(rl_test_http(daemon_.port, "POST", "/v1/check", NULL, body, strlen(body), &res), 0);
    b = json_tokener_parse(res.body);
    cr_assert_eq(res.status, 200);
    cr_assert_eq(rl_tj_int(b, "remaining"), 1);
    done(&res, b);
    cr_assert_eq(rl_test_http(daemon_.port, "POST", "/v1/check", NULL, body, strlen(body), &res), 0);
    b = json_tokener_parse(res.body);
    cr_assert_eq(res.status, 429);
    cr_assert_str_eq(rl_tj_str(b, "error.type"), "rate_limit_error");
    done(&res, b);
    const char *bad = "{\"key\":";
    cr_assert_eq(rl_test_http(daemon_.port, "POST", "/v1/check", NULL, bad, strlen(bad), &res), 0);
    b = json_tokener_parse(res.body);
    cr_assert_eq(res.status, 400);
    cr_assert_str_eq(rl_tj_str(b, "field"), "body");
    done(&res, b);
    const char *unknown = "{\"kye\":\"typo\"}";
    cr_assert_eq(rl_test_http(daemon_.port, "POST", "/v1/check", NULL, unknown, strlen(unknown), &res), 0);
    b = json_tokener_parse(res.body);
    cr_assert_eq(res.status, 400);
    cr_assert_str_eq(rl_tj_str(b, "field"), "kye");
    done(&res, b);
}

/*----------------------------------------------------------------------------
 * Bad input (SPEC section 5): clear errors, and the service keeps its state
 *--------------------------------------------------------------------------*/

static void expect_error(const char *method, const char *path, const char *headers,
                         const char *body, int status, const char *type, const char *field)
{
    struct rl_test_response res;
    struct json_object *b;
    char t[96];

    cr_assert_eq(rl_test_http(daemon_.port, method, path, headers, body, body ? strlen(body) : 0,
                              &res), 0, "%s %s", method, path);
    cr_assert_eq(res.status, status, "%s %s: %d %s", method, path, res.status, res.body);
    b = json_tokener_parse(res.body);
    cr_assert_not_null(b, "%s %s: %s", method, path, res.body);
    snprintf(t, sizeof(t), "urn:ratelimitd:problem:%s", type);
    cr_assert_str_eq(rl_tj_str(b, "type"), t, "%s %s", method, path);
    cr_assert_eq(rl_tj_int(b, "status"), status);
    cr_assert_not_null(rl_tj_str(b, "detail"));
    if (field)
        cr_assert_str_eq(rl_tj_str(b, "field"), field, "%s %s", method, path);
    else
        cr_assert_null(rl_tj_get(b, "field"));
    cr_assert_str_eq(rl_test_header(&res, "Content-Type"), "application/problem+json");
    cr_assert_not_null(rl_test_header(&res, "X-Request-ID"));
    done(&res, b);
}

Test(check, bad_input)
{
    char path[512], hdr[512], big[RL_BODY_SIZE_TEST];

    up(NULL, ONE_KEY);
    memset(path, 0, sizeof(path));
    strcpy(path, "/v1/check?key=");
    memset(path + strlen(path), 'a', 129);
    expect_error("GET", path, NULL, NULL, 400, "validation_error", "key");
    path[strlen(path) - 1] = '\0'; /* 128 bytes is fine */
    {
        struct rl_test_response res;
        get(path, NULL, &res, NULL);
        cr_assert_eq(res.status, 200);
        rl_test_response_free(&res);
    }
    expect_error("GET", "/v1/check?key=a%01b", NULL, NULL, 400, "validation_error", "key");
    expect_error("GET", "/v1/check?key=a%00b", NULL, NULL, 400, "validation_error", "key");
    snprintf(hdr, sizeof(hdr), "X-Api-Key: a\tb\r\n");
    expect_error("GET", "/v1/check", hdr, NULL, 400, "validation_error", "X-Api-Key");
    expect_error("GET", "/v1/check?key=a&policy=nope", NULL, NULL, 404, "not_found", "policy");
    expect_error("GET", "/v1/check?key=a&envelope=xml", NULL, NULL, 400, "validation_error",
                 "envelope");
    expect_error("GET", "/v2/nothing", NULL, NULL, 404, "not_found", NULL);
    expect_error("DELETE", "/v1/check", NULL, NULL, 405, "method_not_allowed", NULL);
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\0';
    expect_error("POST", "/v1/check", NULL, big, 413, "payload_too_large", "body");

    /* 405 carries Allow; errors use ?envelope= when it is valid */
    struct rl_test_response res;
    cr_assert_eq(rl_test_http(daemon_.port, "PUT", "/v1/check?envelope=flat", NULL, NULL, 0, &res), 0);
    cr_assert_eq(res.status, 405);
    cr_assert_str_eq(rl_test_header(&res, "Allow"), "GET, HEAD, POST");
    struct json_object *b = json_tokener_parse(res.body);
    cr_assert_str_eq(rl_tj_str(b, "error"), "method_not_allowed");
    done(&res, b);

    /* state survived all of it: 'a' still has its 3 tokens */
    get("/v1/check?key=a", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_eq(rl_tj_int(b, "remaining"), 2);
    done(&res, b);
}

Test(check, health_and_ready)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, ONE_KEY);
    get("/healthz", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_str_eq(rl_tj_str(b, "status"), "ok");
    done(&res, b);
    get("/readyz", NULL, &res, &b);
    cr_assert_eq(res.status, 200);
    cr_assert_str_eq(rl_tj_str(b, "status"), "ready");
    done(&res, b);
}

Test(check, auth_endpoint)
{
    struct rl_test_response res;
    struct json_object *b;

    up(NULL, ONE_KEY);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rl_test_http(daemon_.port, "GET", "/v1/auth", "X-Api-Key: au\r\n", NULL, 0,
                                  &res), 0);
        cr_assert_eq(res.status, 204);
        cr_assert_eq(res.body_len, 0);
        cr_assert_eq(hdr_long(&res, "X-RateLimit-Remaining"), 2 - i);
        rl_test_response_free(&res);
    }
    get("/v1/auth", "X-Api-Key: au\r\n", &res, NULL);
    cr_assert_eq(res.status, 403, "auth_request treats 403 as a denial");
    cr_assert_not_null(rl_test_header(&res, "Retry-After"));
    rl_test_response_free(&res);
    /* /v1/check sees the same bucket */
    get("/v1/check?key=au", NULL, &res, &b);
    cr_assert_eq(res.status, 429);
    done(&res, b);
}
