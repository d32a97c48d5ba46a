/* test_render.c -- render.c as a pure function: the exact bodies of the six
 * envelopes (denials and the service's own errors), the exact headers, the
 * rounding rules, escaping, header refusal and the too-big fallback.
 * Every value is built by hand here; no config parsing. */
#include "render.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#define NOW_MS   1763851222000LL /* the store's clock */
#define RESET_MS 1763851234000LL /* full again 12 s later */
#define RID      "req_0123456789abcdef"

/*----------------------------------------------------------------------------
 * Fixture: up to 32 policies, refs parallel to them, one decision
 *--------------------------------------------------------------------------*/

struct fx {
    struct rl_policy pol[RL_MAX_POLICIES];
    struct rl_config cfg;
    struct rl_request req;
    struct rl_bucket_ref refs[RL_MAX_POLICIES];
    struct rl_decision d;
    struct rl_render_decision in;
    struct rl_reply out;
};

static struct fx fx;

/* Policy i: name, scope, limit per window; its ref and an outcome. */
static void fx_policy(size_t i, const char *name, enum rl_scope scope, int64_t limit,
                      const char *window, int64_t window_ms, bool shadow)
{
    struct rl_policy *p = &fx.pol[i];

    snprintf(p->name, sizeof(p->name), "%s", name);
    p->scope = scope;
    p->lim.limit = p->lim.burst = limit;
    p->lim.window_ms = window_ms;
    snprintf(p->lim.window, sizeof(p->lim.window), "%s", window);
    p->envelope = -1;
    p->shadow = shadow;
    fx.refs[i].policy = p;
    fx.refs[i].policy_index = (int)i;
    fx.refs[i].lim = p->lim;
    fx.refs[i].id = "k1";
    fx.refs[i].id_len = 2;
    fx.refs[i].shadow = shadow;
    if (i >= fx.cfg.npolicies)
        fx.cfg.npolicies = fx.d.n = i + 1;
}

static void fx_outcome(size_t i, bool allowed, int64_t remaining, int64_t reset_ms,
                       int64_t retry_ms)
{
    fx.d.out[i].allowed = allowed;
    fx.d.out[i].remaining = remaining;
    fx.d.out[i].reset_ms = reset_ms;
    fx.d.out[i].retry_ms = retry_ms;
}

/* The SPEC example: "per-key", 100 per 60s on key, denied, retry in 12 s. */
static void fx_denial(enum rl_envelope env, enum rl_headers_mode hdr)
{
    memset(&fx, 0, sizeof(fx));
    fx.cfg.envelope = env;
    fx.cfg.headers = hdr;
    fx.cfg.policies = fx.pol;
    fx.req.envelope = -1;
    snprintf(fx.req.request_id, sizeof(fx.req.request_id), "%s", RID);
    fx_policy(0, "per-key", RL_SCOPE_KEY, 100, "60s", 60000, false);
    fx_outcome(0, false, 0, RESET_MS, 11500);
    fx.d.status = RL_OK;
    fx.d.allowed = false;
    fx.d.now_ms = NOW_MS;
    fx.in = (struct rl_render_decision){.cfg = &fx.cfg, .req = &fx.req, .refs = fx.refs,
                                        .d = &fx.d, .governing = 0, .deny_status = 429,
                                        .instance = "/v1/calls"};
}

static void fx_allowed(enum rl_headers_mode hdr)
{
    fx_denial(RL_ENV_PROBLEM, hdr);
    fx.d.allowed = true;
    fx_outcome(0, true, 99, NOW_MS + 600, 0);
}

static void render(void)
{
    memset(&fx.out, 0x5a, sizeof(fx.out)); /* render must not rely on a zeroed reply */
    rl_render_decision(&fx.in, &fx.out);
    cr_assert_lt(fx.out.body_len, RL_REPLY_BODY);
    fx.out.body[fx.out.body_len] = '\0'; /* for strstr in the tests */
}

/*----------------------------------------------------------------------------
 * Assertions
 *--------------------------------------------------------------------------*/

/* The body equals `want` byte for byte and is valid, strict, UTF-8 JSON. */
static void assert_body(const struct rl_reply *r, const char *want)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *root;
    char got[RL_REPLY_BODY + 1];

    memcpy(got, r->body, r->body_len);
    got[r->body_len] = '\0';
    cr_assert_str_eq(got, want);
    cr_assert_eq(r->body_len, strlen(want));
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, r->body, (int)r->body_len);
    cr_assert_not_null(root, "invalid JSON: %s", got);
    cr_assert_eq(json_tokener_get_parse_end(tok), r->body_len);
    cr_assert(json_object_is_type(root, json_type_object));
    json_object_put(root);
    json_tokener_free(tok);
}

/* The headers are exactly `want` (name, value pairs, in order, NULL-ended). */
static void assert_headers(const struct rl_reply *r, const char *const *want)
{
    size_t n = 0;

    for (; want[2 * n] != NULL; n++) {
        cr_assert_lt(n, r->nheaders, "missing header %s", want[2 * n]);
        cr_assert_str_eq(r->headers[n].name, want[2 * n]);
        cr_assert_str_eq(r->headers[n].value, want[2 * n + 1], "header %s", want[2 * n]);
    }
    cr_assert_eq(r->nheaders, n, "%zu headers, want %zu", r->nheaders, n);
}

static const char *header(const struct rl_reply *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/*----------------------------------------------------------------------------
 * The six denial envelopes
 *--------------------------------------------------------------------------*/

Test(render_denial, problem)
{
    fx_denial(RL_ENV_PROBLEM, RL_HDR_BOTH);
    render();
    cr_assert_eq(fx.out.status, 429);
    cr_assert_str_eq(fx.out.content_type, "application/problem+json");
    assert_body(&fx.out,
                "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
                "\"status\":429,\"title\":\"Too Many Requests\","
                "\"detail\":\"Rate limit of 100 per 60s exceeded for key; retry in 12 seconds.\","
                "\"instance\":\"/v1/calls\",\"violated-policies\":[\"per-key\"],"
                "\"retry_after_secs\":12,\"limit\":100,\"remaining\":0,\"reset\":1763851234,"
                "\"request_id\":\"req_0123456789abcdef\"}");
}

Test(render_denial, error)
{
    fx_denial(RL_ENV_ERROR, RL_HDR_BOTH);
    render();
    cr_assert_eq(fx.out.status, 429);
    cr_assert_str_eq(fx.out.content_type, "application/json");
    assert_body(&fx.out,
                "{\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"API rate limit "
                "exceeded. Please wait 12 seconds before retrying.\",\"details\":{\"limit\":100,"
                "\"window\":\"60s\",\"retry_after\":12,\"retry_after_secs\":12,"
                "\"request_id\":\"req_0123456789abcdef\"}}}");
}

Test(render_denial, typed)
{
    fx_denial(RL_ENV_TYPED, RL_HDR_BOTH);
    render();
    cr_assert_str_eq(fx.out.content_type, "application/json");
    assert_body(&fx.out,
                "{\"error\":{\"type\":\"rate_limit_error\",\"code\":\"rate_limit_exceeded\","
                "\"message\":\"Rate limit exceeded for key. Please retry in 12 seconds.\","
                "\"param\":null,\"request_id\":\"req_0123456789abcdef\",\"retry_after_secs\":12}}");
}

Test(render_denial, simple)
{
    fx_denial(RL_ENV_SIMPLE, RL_HDR_BOTH);
    render();
    cr_assert_str_eq(fx.out.content_type, "application/json");
    assert_body(&fx.out,
                "{\"error\":{\"message\":\"rate limit exceeded: try again in 12 seconds\","
                "\"type\":\"rate_limit_error\",\"retry_after_secs\":12}}");
}

Test(render_denial, flat)
{
    fx_denial(RL_ENV_FLAT, RL_HDR_BOTH);
    render();
    cr_assert_str_eq(fx.out.content_type, "application/json");
    assert_body(&fx.out,
                "{\"error\":\"rate_limited\",\"error_description\":\"Rate limit of 100 per 60s "
                "exceeded; retry in 12 seconds.\",\"retry_after_secs\":12}");
}

Test(render_denial, ws)
{
    fx_denial(RL_ENV_WS, RL_HDR_BOTH);
    render();
    cr_assert_str_eq(fx.out.content_type, "application/json");
    assert_body(&fx.out,
                "{\"type\":\"error\",\"error\":{\"code\":\"RATE_LIMITED\",\"message\":\"Rate "
                "limit exceeded; retry in 12 seconds.\",\"details\":{\"retry_after_secs\":12,"
                "\"limit\":100,\"reset\":1763851234}}}");
}

Test(render_denial, one_second_is_singular)
{
    static const char *const want[RL_ENV_COUNT] = {
        "\"detail\":\"Rate limit of 100 per 60s exceeded for key; retry in 1 second.\"",
        "\"message\":\"API rate limit exceeded. Please wait 1 second before retrying.\"",
        "\"message\":\"Rate limit exceeded for key. Please retry in 1 second.\"",
        "\"message\":\"rate limit exceeded: try again in 1 second\"",
        "\"error_description\":\"Rate limit of 100 per 60s exceeded; retry in 1 second.\"",
        "\"message\":\"Rate limit exceeded; retry in 1 second.\"",
    };

    for (int e = 0; e < RL_ENV_COUNT; e++) {
        char got[RL_REPLY_BODY + 1];

        fx_denial((enum rl_envelope)e, RL_HDR_BOTH);
        fx_outcome(0, false, 0, RESET_MS, 1000);
        render();
        memcpy(got, fx.out.body, fx.out.body_len);
        got[fx.out.body_len] = '\0';
        cr_assert_not_null(strstr(got, want[e]), "%s: %s", rl_envelope_name(e), got);
        cr_assert_not_null(strstr(got, "\"retry_after_secs\":1"));
    }
}

Test(render_denial, envelope_request_then_policy_then_config)
{
    fx_denial(RL_ENV_FLAT, RL_HDR_BOTH);
    fx.pol[0].envelope = RL_ENV_SIMPLE;
    render();
    cr_assert_not_null(strstr(fx.out.body, "try again in 12 seconds"), "policy's envelope");
    fx.req.envelope = RL_ENV_WS;
    render();
    cr_assert_eq(strncmp(fx.out.body, "{\"type\":\"error\"", 15), 0, "envelope= wins");
    fx.req.envelope = -1;
    fx.pol[0].envelope = -1;
    render();
    cr_assert_eq(strncmp(fx.out.body, "{\"error\":\"rate_limited\"", 23), 0, "config's");
}

Test(render_denial, status_is_the_deny_status)
{
    fx_denial(RL_ENV_PROBLEM, RL_HDR_LEGACY);
    fx.in.auth = true;
    fx.in.deny_status = 403;
    render();
    cr_assert_eq(fx.out.status, 403);
    cr_assert_not_null(strstr(fx.out.body, "\"status\":403,\"title\":\"Forbidden\""));
    cr_assert_str_eq(header(&fx.out, "Retry-After"), "12");
}

Test(render_denial, violated_lists_denied_enforced_only)
{
    fx_denial(RL_ENV_PROBLEM, RL_HDR_BOTH);
    fx_policy(1, "per-org", RL_SCOPE_ORG, 1000, "1h", 3600000, false);
    fx_policy(2, "shadow-ip", RL_SCOPE_IP, 5, "1s", 1000, true);
    fx_policy(3, "per-caller", RL_SCOPE_CALLER, 10, "10s", 10000, false);
    fx_outcome(1, true, 500, RESET_MS, 0);
    fx_outcome(2, false, 0, RESET_MS, 900);
    fx_outcome(3, false, 0, RESET_MS, 500);
    render();
    cr_assert_not_null(strstr(fx.out.body, "\"violated-policies\":[\"per-key\",\"per-caller\"],"),
                       "%.*s", (int)fx.out.body_len, fx.out.body);
}

/*----------------------------------------------------------------------------
 * Headers
 *--------------------------------------------------------------------------*/

Test(render_headers, both_on_a_denial)
{
    static const char *const want[] = {
        "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0",
        "X-RateLimit-Reset", "1763851234", "RateLimit-Policy", "\"per-key\";q=100;w=60",
        "RateLimit", "\"per-key\";r=0;t=12", "Retry-After", "12",
        "X-Request-ID", RID, NULL};

    fx_denial(RL_ENV_PROBLEM, RL_HDR_BOTH);
    render();
    assert_headers(&fx.out, want);
}

Test(render_headers, legacy_only)
{
    static const char *const want[] = {
        "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "0",
        "X-RateLimit-Reset", "1763851234", "Retry-After", "12", "X-Request-ID", RID, NULL};

    fx_denial(RL_ENV_ERROR, RL_HDR_LEGACY);
    render();
    assert_headers(&fx.out, want);
}

Test(render_headers, ietf_only)
{
    static const char *const want[] = {
        "RateLimit-Policy", "\"per-key\";q=100;w=60", "RateLimit", "\"per-key\";r=0;t=12",
        "Retry-After", "12", "X-Request-ID", RID, NULL};

    fx_denial(RL_ENV_ERROR, RL_HDR_IETF);
    render();
    assert_headers(&fx.out, want);
}

Test(render_headers, allowed_has_no_retry_after)
{
    static const char *const want[] = {
        "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "99",
        "X-RateLimit-Reset", "1763851223", "RateLimit-Policy", "\"per-key\";q=100;w=60",
        "RateLimit", "\"per-key\";r=99;t=1", "X-Request-ID", RID, NULL};

    fx_allowed(RL_HDR_BOTH);
    render();
    assert_headers(&fx.out, want);
    cr_assert_null(header(&fx.out, "Retry-After"));
}

Test(render_headers, retry_after_rounds_up_to_at_least_one)
{
    static const int64_t ms[] = {1, 999, 1000, 1001, 0, 60000, 60001};
    static const char *const want[] = {"1", "1", "1", "2", "1", "60", "61"};

    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        char n[32];

        fx_denial(RL_ENV_SIMPLE, RL_HDR_LEGACY);
        fx_outcome(0, false, 0, RESET_MS, ms[i]);
        render();
        cr_assert_str_eq(header(&fx.out, "Retry-After"), want[i], "retry_ms %lld",
                         (long long)ms[i]);
        snprintf(n, sizeof(n), "\"retry_after_secs\":%s}", want[i]);
        cr_assert_not_null(strstr(fx.out.body, n), "body equals the header");
    }
}

Test(render_headers, reset_and_t_round_up)
{
    fx_denial(RL_ENV_SIMPLE, RL_HDR_BOTH);
    fx_outcome(0, false, 0, RESET_MS + 1, 1);
    render();
    cr_assert_str_eq(header(&fx.out, "X-RateLimit-Reset"), "1763851235");
    cr_assert_str_eq(header(&fx.out, "RateLimit"), "\"per-key\";r=0;t=13");
    fx_outcome(0, false, 0, RESET_MS, 1);
    render();
    cr_assert_str_eq(header(&fx.out, "X-RateLimit-Reset"), "1763851234");
    cr_assert_str_eq(header(&fx.out, "RateLimit"), "\"per-key\";r=0;t=12");
    fx_outcome(0, false, 0, NOW_MS + 1, 1);
    render();
    cr_assert_str_eq(header(&fx.out, "RateLimit"), "\"per-key\";r=0;t=1");
    fx_outcome(0, false, 0, NOW_MS, 1);
    render();
    cr_assert_str_eq(header(&fx.out, "RateLimit"), "\"per-key\";r=0;t=0");
    fx_outcome(0, false, 0, NOW_MS - 5000, 1);
    render();
    cr_assert_str_eq(header(&fx.out, "RateLimit"), "\"per-key\";r=0;t=0", "never negative");
}

Test(render_headers, ietf_lists_every_enforced_policy_but_no_shadow)
{
    fx_denial(RL_ENV_PROBLEM, RL_HDR_IETF);
    fx_policy(1, "shadow-org", RL_SCOPE_ORG, 1000, "1h", 3600000, true);
    fx_policy(2, "per-ip", RL_SCOPE_IP, 5, "250ms", 250, false);
    fx_outcome(1, false, 0, RESET_MS, 100);
    fx_outcome(2, true, 3, NOW_MS + 1500, 0);
    render();
    cr_assert_str_eq(header(&fx.out, "RateLimit-Policy"),
                     "\"per-key\";q=100;w=60, \"per-ip\";q=5;w=1");
    cr_assert_str_eq(header(&fx.out, "RateLimit"), "\"per-key\";r=0;t=12, \"per-ip\";r=3;t=2");
}

Test(render_headers, ietf_lists_of_32_long_names_keep_the_later_headers)
{
    char name[RL_NAME_MAX];
    const char *pol, *rate;
    size_t np = 0, nr = 0;

    fx_denial(RL_ENV_PROBLEM, RL_HDR_BOTH);
    for (size_t i = 0; i < RL_MAX_POLICIES; i++) {
        memset(name, 'a' + (int)(i % 26), sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        fx_policy(i, name, RL_SCOPE_KEY, 4503599627370495LL, "1d", 86400000, false);
        fx_outcome(i, false, 4503599627370494LL, RESET_MS, 1000);
    }
    render();
    pol = header(&fx.out, "RateLimit-Policy");
    rate = header(&fx.out, "RateLimit");
    cr_assert_not_null(pol);
    cr_assert_not_null(rate);
    for (const char *p = pol; (p = strstr(p, ";q=")) != NULL; p++)
        np++;
    for (const char *p = rate; (p = strstr(p, ";r=")) != NULL; p++)
        nr++;
    cr_assert_gt(np, 0);
    cr_assert_lt(np, RL_MAX_POLICIES, "the budget drops the members past it");
    cr_assert_eq(np, nr, "both lists keep the same members");
    cr_assert_str_eq(header(&fx.out, "Retry-After"), "1");
    cr_assert_str_eq(header(&fx.out, "X-Request-ID"), RID);
}

/*----------------------------------------------------------------------------
 * Allowed
 *--------------------------------------------------------------------------*/

Test(render_allowed, with_governing)
{
    fx_allowed(RL_HDR_LEGACY);
    render();
    cr_assert_eq(fx.out.status, 200);
    cr_assert_str_eq(fx.out.content_type, "application/json");
    assert_body(&fx.out, "{\"allowed\":true,\"policy\":\"per-key\",\"limit\":100,\"remaining\":99,"
                         "\"reset\":1763851223,\"request_id\":\"req_0123456789abcdef\"}");
}

Test(render_allowed, without_governing)
{
    static const char *const want[] = {"X-Request-ID", RID, NULL};

    fx_allowed(RL_HDR_BOTH);
    fx.in.governing = -1;
    render();
    cr_assert_eq(fx.out.status, 200);
    assert_body(&fx.out,
                "{\"allowed\":true,\"policy\":null,\"request_id\":\"req_0123456789abcdef\"}");
    assert_headers(&fx.out, want);
}

Test(render_allowed, degraded_timeout)
{
    static const char *const want[] = {"X-RateLimit-Degraded", "redis-timeout",
                                       "X-Request-ID", RID, NULL};

    fx_allowed(RL_HDR_BOTH);
    fx.d.status = RL_ETIMEDOUT;
    fx.d.n = 0;
    fx.in.governing = -1;
    fx.in.degraded = RL_DEG_TIMEOUT;
    render();
    cr_assert_eq(fx.out.status, 200);
    assert_body(&fx.out, "{\"allowed\":true,\"policy\":null,"
                         "\"request_id\":\"req_0123456789abcdef\",\"degraded\":true}");
    assert_headers(&fx.out, want);
}

Test(render_allowed, degraded_unavailable_ignores_governing_and_allowed)
{
    static const char *const want[] = {"X-RateLimit-Degraded", "redis-unavailable",
                                       "X-Request-ID", RID, NULL};

    fx_denial(RL_ENV_PROBLEM, RL_HDR_BOTH); /* stale outcome, governing 0 */
    fx.d.status = RL_EUNAVAIL;
    fx.in.degraded = RL_DEG_UNAVAILABLE;
    render();
    cr_assert_eq(fx.out.status, 200);
    assert_body(&fx.out, "{\"allowed\":true,\"policy\":null,"
                         "\"request_id\":\"req_0123456789abcdef\",\"degraded\":true}");
    assert_headers(&fx.out, want);
}

Test(render_allowed, replayed_and_shadow_denied)
{
    fx_allowed(RL_HDR_IETF);
    fx_policy(1, "shadow-org", RL_SCOPE_ORG, 1000, "1h", 3600000, true);
    fx_policy(2, "shadow-ip", RL_SCOPE_IP, 5, "1s", 1000, true);
    fx_policy(3, "shadow-ok", RL_SCOPE_CALLER, 5, "1s", 1000, true);
    fx_outcome(1, false, 0, RESET_MS, 100);
    fx_outcome(2, false, 0, RESET_MS, 100);
    fx_outcome(3, true, 4, RESET_MS, 0);
    fx.d.replayed = true;
    render();
    assert_body(&fx.out, "{\"allowed\":true,\"policy\":\"per-key\",\"limit\":100,\"remaining\":99,"
                         "\"reset\":1763851223,\"request_id\":\"req_0123456789abcdef\","
                         "\"replayed\":true,\"shadow_denied\":[\"shadow-org\",\"shadow-ip\"]}");
    cr_assert_str_eq(header(&fx.out, "RateLimit-Policy"), "\"per-key\";q=100;w=60");
}

Test(render_allowed, shadow_allowed_is_not_listed)
{
    fx_allowed(RL_HDR_IETF);
    fx_policy(1, "shadow-ok", RL_SCOPE_CALLER, 5, "1s", 1000, true);
    fx_outcome(1, true, 4, RESET_MS, 0);
    render();
    cr_assert_null(strstr(fx.out.body, "shadow_denied"));
    cr_assert_null(strstr(fx.out.body, "replayed"));
}

Test(render_allowed, auth_is_204_without_body)
{
    static const char *const want[] = {
        "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "99",
        "X-RateLimit-Reset", "1763851223", "X-Request-ID", RID, NULL};

    fx_allowed(RL_HDR_LEGACY);
    fx.in.auth = true;
    render();
    cr_assert_eq(fx.out.status, 204);
    cr_assert_eq(fx.out.body_len, 0);
    cr_assert_null(fx.out.content_type);
    assert_headers(&fx.out, want);
}

Test(render_allowed, bad_decisions_are_500_not_guesses)
{
    fx_denial(RL_ENV_FLAT, RL_HDR_BOTH);
    fx.in.governing = -1; /* denied, but no bucket to report */
    render();
    cr_assert_eq(fx.out.status, 500);
    assert_body(&fx.out, "{\"error\":\"internal_error\","
                         "\"error_description\":\"the decision could not be rendered\"}");
    cr_assert_str_eq(header(&fx.out, "X-Request-ID"), RID);
    fx_allowed(RL_HDR_BOTH);
    fx.d.status = RL_EUNAVAIL; /* a store error, not degraded */
    render();
    cr_assert_eq(fx.out.status, 500);
}

/*----------------------------------------------------------------------------
 * The service's own errors
 *--------------------------------------------------------------------------*/

static void render_error(int status, const char *path, const char *msg, enum rl_envelope env,
                         const char *rid, const char *instance, int retry)
{
    struct rl_error err;

    rl_error_set(&err, RL_EINVAL, status, path, "%s", msg);
    memset(&fx.out, 0x5a, sizeof(fx.out));
    rl_render_error(&err, env, rid, instance, retry, &fx.out);
    cr_assert_lt(fx.out.body_len, RL_REPLY_BODY);
    fx.out.body[fx.out.body_len] = '\0';
}

Test(render_error, bad_request_with_field)
{
    static const char *const want[RL_ENV_COUNT] = {
        "{\"type\":\"urn:ratelimitd:problem:validation_error\",\"status\":400,"
        "\"title\":\"Bad Request\",\"detail\":\"cost must be 1..100\",\"instance\":\"/v1/check\","
        "\"field\":\"cost\",\"request_id\":\"req_0123456789abcdef\"}",
        "{\"error\":{\"code\":\"validation_error\",\"message\":\"cost must be 1..100\","
        "\"details\":{\"field\":\"cost\",\"request_id\":\"req_0123456789abcdef\"}}}",
        "{\"error\":{\"type\":\"validation_error\",\"code\":\"validation_error\","
        "\"message\":\"cost must be 1..100\",\"param\":\"cost\","
        "\"request_id\":\"req_0123456789abcdef\"}}",
        "{\"error\":{\"message\":\"cost must be 1..100\",\"type\":\"validation_error\","
        "\"field\":\"cost\"}}",
        "{\"error\":\"validation_error\",\"error_description\":\"cost must be 1..100\","
        "\"field\":\"cost\"}",
        "{\"type\":\"error\",\"error\":{\"code\":\"VALIDATION_ERROR\","
        "\"message\":\"cost must be 1..100\",\"details\":{\"field\":\"cost\","
        "\"request_id\":\"req_0123456789abcdef\"}}}",
    };
    static const char *const hdr[] = {"X-Request-ID", RID, NULL};

    for (int e = 0; e < RL_ENV_COUNT; e++) {
        render_error(400, "cost", "cost must be 1..100", (enum rl_envelope)e, RID, "/v1/check",
                     0);
        cr_assert_eq(fx.out.status, 400);
        cr_assert_str_eq(fx.out.content_type,
                         e == RL_ENV_PROBLEM ? "application/problem+json" : "application/json");
        assert_body(&fx.out, want[e]);
        assert_headers(&fx.out, hdr);
    }
}

Test(render_error, not_found_without_field_nor_request_id)
{
    static const char *const want[RL_ENV_COUNT] = {
        "{\"type\":\"urn:ratelimitd:problem:not_found\",\"status\":404,\"title\":\"Not Found\","
        "\"detail\":\"no such endpoint\"}",
        "{\"error\":{\"code\":\"not_found\",\"message\":\"no such endpoint\",\"details\":{}}}",
        "{\"error\":{\"type\":\"not_found\",\"code\":\"not_found\","
        "\"message\":\"no such endpoint\",\"param\":null,\"request_id\":null}}",
        "{\"error\":{\"message\":\"no such endpoint\",\"type\":\"not_found\"}}",
        "{\"error\":\"not_found\",\"error_description\":\"no such endpoint\"}",
        "{\"type\":\"error\",\"error\":{\"code\":\"NOT_FOUND\","
        "\"message\":\"no such endpoint\",\"details\":{}}}",
    };

    for (int e = 0; e < RL_ENV_COUNT; e++) {
        render_error(404, "", "no such endpoint", (enum rl_envelope)e, NULL, NULL, 0);
        cr_assert_eq(fx.out.status, 404);
        assert_body(&fx.out, want[e]);
        cr_assert_eq(fx.out.nheaders, 0);
    }
}

Test(render_error, unavailable_with_retry)
{
    static const char *const want[RL_ENV_COUNT] = {
        "{\"type\":\"urn:ratelimitd:problem:service_unavailable\",\"status\":503,"
        "\"title\":\"Service Unavailable\",\"detail\":\"store down\",\"instance\":\"/v1/check\","
        "\"retry_after_secs\":2,\"request_id\":\"req_0123456789abcdef\"}",
        "{\"error\":{\"code\":\"service_unavailable\",\"message\":\"store down\","
        "\"details\":{\"retry_after_secs\":2,\"request_id\":\"req_0123456789abcdef\"}}}",
        "{\"error\":{\"type\":\"service_unavailable\",\"code\":\"service_unavailable\","
        "\"message\":\"store down\",\"param\":null,\"request_id\":\"req_0123456789abcdef\","
        "\"retry_after_secs\":2}}",
        "{\"error\":{\"message\":\"store down\",\"type\":\"service_unavailable\","
        "\"retry_after_secs\":2}}",
        "{\"error\":\"service_unavailable\",\"error_description\":\"store down\","
        "\"retry_after_secs\":2}",
        "{\"type\":\"error\",\"error\":{\"code\":\"SERVICE_UNAVAILABLE\","
        "\"message\":\"store down\",\"details\":{\"retry_after_secs\":2,"
        "\"request_id\":\"req_0123456789abcdef\"}}}",
    };
    static const char *const hdr[] = {"Retry-After", "2", "X-Request-ID", RID, NULL};

    for (int e = 0; e < RL_ENV_COUNT; e++) {
        render_error(503, "", "store down", (enum rl_envelope)e, RID, "/v1/check", 2);
        cr_assert_eq(fx.out.status, 503);
        assert_body(&fx.out, want[e]);
        assert_headers(&fx.out, hdr);
    }
}

Test(render_error, retry_only_when_positive)
{
    render_error(504, "", "slow", RL_ENV_FLAT, NULL, NULL, -3);
    assert_body(&fx.out, "{\"error\":\"timeout_error\",\"error_description\":\"slow\"}");
    cr_assert_eq(fx.out.nheaders, 0);
}

/*----------------------------------------------------------------------------
 * Escaping and refusal
 *--------------------------------------------------------------------------*/

Test(render_escape, instance_with_quotes_controls_and_bad_utf8)
{
    fx_denial(RL_ENV_PROBLEM, RL_HDR_LEGACY);
    fx.in.instance = "/a\"b\\c\r\n\x01\x7f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff\xc0\x80"
                     "\xe2\x82z\xed\xa0\x80";
    render();
    assert_body(&fx.out,
                "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
                "\"status\":429,\"title\":\"Too Many Requests\","
                "\"detail\":\"Rate limit of 100 per 60s exceeded for key; retry in 12 seconds.\","
                "\"instance\":\"/a\\\"b\\\\c\\u000d\\u000a\\u0001\\u007f/\xc3\xa9\xe2\x82\xac"
                "\xf0\x9f\x98\x80\\ufffd\\ufffd\\ufffd\\ufffdz\\ufffd\\ufffd\\ufffd\","
                "\"violated-policies\":[\"per-key\"],"
                "\"retry_after_secs\":12,\"limit\":100,\"remaining\":0,\"reset\":1763851234,"
                "\"request_id\":\"req_0123456789abcdef\"}");
}

Test(render_escape, error_message_and_field)
{
    render_error(400, "X-Api\"Key\n", "bad \"id\"\t\xfe here", RL_ENV_SIMPLE, NULL, NULL, 0);
    assert_body(&fx.out, "{\"error\":{\"message\":\"bad \\\"id\\\"\\u0009\\ufffd here\","
                         "\"type\":\"validation_error\",\"field\":\"X-Api\\\"Key\\u000a\"}}");
}

Test(render_escape, header_values_refuse_control_bytes)
{
    struct rl_reply r;
    static const char *const bad[] = {"a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\tb", "a\x7f",
                                      "\x01"};

    memset(&r, 0, sizeof(r));
    cr_assert_eq(rl_reply_add_header(&r, "X-Ok", "%s", "fine value"), RL_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t hlen = r.hlen;
        cr_assert_eq(rl_reply_add_header(&r, "X-Bad", "%s", bad[i]), RL_EINVAL, "%zu", i);
        cr_assert_eq(r.nheaders, 1);
        cr_assert_eq(r.hlen, hlen);
    }
    cr_assert_eq(rl_reply_add_header(&r, "X-Ok2", "%d", 7), RL_OK);
    cr_assert_str_eq(r.headers[1].value, "7");
    cr_assert_str_eq(r.headers[0].value, "fine value");
}

Test(render_escape, error_request_id_with_crlf_is_not_a_header)
{
    render_error(400, "", "bad", RL_ENV_TYPED, "req\r\nX-Evil: 1", NULL, 1);
    assert_body(&fx.out, "{\"error\":{\"type\":\"validation_error\",\"code\":\"validation_error\","
                         "\"message\":\"bad\",\"param\":null,"
                         "\"request_id\":\"req\\u000d\\u000aX-Evil: 1\",\"retry_after_secs\":1}}");
    cr_assert_eq(fx.out.nheaders, 1);
    cr_assert_str_eq(fx.out.headers[0].name, "Retry-After");
}

Test(render_escape, header_table_and_buffer_full)
{
    static struct rl_reply r;
    static char big[RL_REPLY_HBUF];

    memset(&r, 0, sizeof(r));
    for (int i = 0; i < RL_REPLY_HEADERS_MAX; i++)
        cr_assert_eq(rl_reply_add_header(&r, "X-N", "%d", i), RL_OK);
    cr_assert_eq(rl_reply_add_header(&r, "X-N", "x"), RL_ETOOBIG);
    cr_assert_eq(r.nheaders, RL_REPLY_HEADERS_MAX);
    memset(&r, 0, sizeof(r));
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0'; /* 4095 bytes + NUL fill hbuf exactly */
    cr_assert_eq(rl_reply_add_header(&r, "X-Big", "%s!", big), RL_ETOOBIG);
    cr_assert_eq(r.nheaders, 0);
    cr_assert_eq(r.hlen, 0);
    cr_assert_eq(rl_reply_add_header(&r, "X-Big", "%s", big), RL_OK);
    cr_assert_eq(r.hlen, RL_REPLY_HBUF);
    cr_assert_eq(rl_reply_add_header(&r, "X-More", "%s", ""), RL_ETOOBIG);
}

/*----------------------------------------------------------------------------
 * rl_json_string
 *--------------------------------------------------------------------------*/

Test(render_json, exact_literals)
{
    char buf[64];

    cr_assert_eq(rl_json_string(buf, sizeof(buf), "", 0), 2);
    cr_assert_str_eq(buf, "\"\"");
    cr_assert_eq(rl_json_string(buf, sizeof(buf), "a/b", 3), 5);
    cr_assert_str_eq(buf, "\"a/b\"", "/ is not escaped");
    cr_assert_eq(rl_json_string(buf, sizeof(buf), "a\0b", 3), 10);
    cr_assert_str_eq(buf, "\"a\\u0000b\"", "embedded NUL");
    cr_assert_eq(rl_json_string(buf, sizeof(buf), "\x1f\"\\", 3), 12);
    cr_assert_str_eq(buf, "\"\\u001f\\\"\\\\\"");
    cr_assert_eq(rl_json_string(buf, sizeof(buf), NULL, 5), 2);
    cr_assert_str_eq(buf, "\"\"");
}

Test(render_json, utf8_valid_copied_invalid_replaced)
{
    char buf[128];

    rl_json_string(buf, sizeof(buf), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13);
    cr_assert_str_eq(buf, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
    rl_json_string(buf, sizeof(buf), "\xc0\xaf", 2); /* overlong '/' */
    cr_assert_str_eq(buf, "\"\\ufffd\\ufffd\"");
    rl_json_string(buf, sizeof(buf), "\xe0\x80\xaf", 3); /* overlong, 3 bytes */
    cr_assert_str_eq(buf, "\"\\ufffd\\ufffd\\ufffd\"");
    rl_json_string(buf, sizeof(buf), "\xf4\x90\x80\x80", 4); /* above U+10FFFF */
    cr_assert_str_eq(buf, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    rl_json_string(buf, sizeof(buf), "\xf0\x9f\x98", 3); /* cut at the end: one U+FFFD */
    cr_assert_str_eq(buf, "\"\\ufffd\"");
    rl_json_string(buf, sizeof(buf), "\xe2\x82" "a\x80", 4);
    cr_assert_str_eq(buf, "\"\\ufffda\\ufffd\"");
    rl_json_string(buf, sizeof(buf), "\xf8\x88\x80\x80\x80", 5); /* 5-byte form */
    cr_assert_str_eq(buf, "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

Test(render_json, cap_too_small_returns_needed_size)
{
    char buf[16];

    memset(buf, 'x', sizeof(buf));
    cr_assert_eq(rl_json_string(buf, 0, "abc", 3), 5);
    cr_assert_eq(buf[0], 'x', "cap 0 writes nothing");
    cr_assert_eq(rl_json_string(buf, 1, "abc", 3), 5);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(rl_json_string(buf, 5, "abc", 3), 5);
    cr_assert_str_eq(buf, "\"abc", "cap-1 bytes and a NUL");
    cr_assert_eq(rl_json_string(buf, 6, "abc", 3), 5);
    cr_assert_str_eq(buf, "\"abc\"", "cap = need + 1 fits");
    cr_assert_eq(rl_json_string(buf, 6, "a\n", 2), 9);
    cr_assert_str_eq(buf, "\"a", "an escape is never cut");
    cr_assert_eq(rl_json_string(buf, 4, "\xe2\x82\xac", 3), 5);
    cr_assert_str_eq(buf, "\"", "a UTF-8 sequence is never cut");
}

/*----------------------------------------------------------------------------
 * Bodies that would not fit, and rl_reply_set_body
 *--------------------------------------------------------------------------*/

Test(render_big, problem_denial_drops_instance_and_violated_policies)
{
    static char inst[1001];
    char name[RL_NAME_MAX];

    fx_denial(RL_ENV_PROBLEM, RL_HDR_LEGACY);
    for (size_t i = 0; i < RL_MAX_POLICIES; i++) {
        snprintf(name, sizeof(name), "%02d-%060d", (int)i, 0);
        fx_policy(i, name, RL_SCOPE_KEY, 100, "60s", 60000, false);
        fx_outcome(i, false, 0, RESET_MS, 11500);
    }
    memset(inst, 0x01, 1000); /* 6 bytes each once escaped */
    fx.in.instance = inst;
    render();
    cr_assert_eq(fx.out.status, 429);
    assert_body(&fx.out,
                "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
                "\"status\":429,\"title\":\"Too Many Requests\","
                "\"detail\":\"Rate limit of 100 per 60s exceeded for key; retry in 12 seconds.\","
                "\"retry_after_secs\":12,\"limit\":100,\"remaining\":0,\"reset\":1763851234,"
                "\"request_id\":\"req_0123456789abcdef\"}");
    fx.d.n = 1; /* the same instance with one name fits: both kept */
    render();
    cr_assert_not_null(strstr(fx.out.body, "\"instance\":\"\\u0001\\u0001"));
    snprintf(name, sizeof(name), "%02d-%060d", 0, 0);
    cr_assert_not_null(strstr(fx.out.body, name));
    cr_assert_gt(fx.out.body_len, 6000);
}

Test(render_big, problem_error_drops_instance)
{
    static char inst[1400];
    char msg[256];

    memset(inst, '\x02', sizeof(inst) - 1);
    memset(msg, '\x03', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    render_error(400, "cost", msg, RL_ENV_PROBLEM, RID, inst, 0);
    cr_assert_eq(fx.out.status, 400);
    cr_assert_gt(fx.out.body_len, 1500);
    cr_assert_null(strstr(fx.out.body, "\"instance\""));
    cr_assert_not_null(strstr(fx.out.body,
                              "\"field\":\"cost\",\"request_id\":\"req_0123456789abcdef\"}"));
}

Test(render_big, set_body_copies_or_refuses)
{
    static struct rl_reply r;
    static char big[RL_REPLY_BODY + 1];

    memset(&r, 0, sizeof(r));
    rl_reply_add_header(&r, "X-Keep", "1");
    rl_reply_set_body(&r, 200, "{\"status\":\"ok\"}", 15);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.content_type, "application/json");
    cr_assert_eq(r.nheaders, 1, "headers untouched");
    assert_body(&r, "{\"status\":\"ok\"}");
    memset(big, ' ', sizeof(big));
    rl_reply_set_body(&r, 200, big, sizeof(big));
    cr_assert_eq(r.status, 500);
    assert_body(&r, "{\"error\":\"internal_error\","
                    "\"error_description\":\"response body too large\"}");
}
