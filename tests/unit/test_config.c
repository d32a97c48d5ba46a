/* test_config.c -- config.c: the SPEC example and deploy/policies.example.json
 * field by field, defaults, the embedded default, every rejection (exact JSON path
 * and reason, table-driven), durations, Redis URLs, listen addresses, override
 * lookup, syntax error positions, file loading and reference counting.
 * Fixtures live in tests/fixtures/config_*.json. */
#include "config.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef RL_SOURCE_DIR
#error "RL_SOURCE_DIR must name the source tree (CMakeLists.txt sets it)"
#endif

#define FIXTURE(name) RL_SOURCE_DIR "/tests/fixtures/" name
#define SENTINEL ((struct rl_config *)(uintptr_t)0x1)

/* The example of SPEC section 1, byte for byte. */
static const char spec_example[] =
    "{\n"
    "  \"listen\": \"127.0.0.1:8080\",\n"
    "  \"redis\": { \"url\": \"redis://127.0.0.1:6379/0\", \"timeout_ms\": 50, \"prefix\": "
    "\"rl:\" },\n"
    "  \"failure_mode\": \"open\",\n"
    "  \"envelope\": \"problem\",\n"
    "  \"headers\": \"both\",\n"
    "  \"identity\": { \"caller\": \"X-Caller-Id\", \"key\": \"X-Api-Key\", \"org\": "
    "\"X-Org-Id\" },\n"
    "  \"policies\": [\n"
    "    { \"name\": \"per-key\",    \"scope\": \"key\",    \"limit\": 100,  \"window\": "
    "\"60s\" },\n"
    "    { \"name\": \"per-org\",    \"scope\": \"org\",    \"limit\": 1000, \"window\": "
    "\"1m\", \"burst\": 200,\n"
    "      \"envelope\": \"error\" },\n"
    "    { \"name\": \"calls-post\", \"scope\": \"caller\", \"limit\": 5,    \"window\": "
    "\"1s\",\n"
    "      \"match\": { \"method\": \"POST\", \"path_prefix\": \"/v1/calls\" }, \"shadow\": "
    "true }\n"
    "  ],\n"
    "  \"overrides\": [ { \"policy\": \"per-org\", \"id\": \"acme\", \"limit\": 10000 } ]\n"
    "}\n";

static struct rl_config *parse_ok(const char *json)
{
    struct rl_config *c = NULL;
    struct rl_error err = {0};
    int rc = rl_config_parse(json, strlen(json), NULL, &c, &err);

    cr_assert_eq(rc, RL_OK, "%s\n-> %s", json, err.message);
    cr_assert_not_null(c);
    return c;
}

/* Parse json (expected to fail) and return the error; *out must stay untouched. */
static struct rl_error parse_err(const char *json, size_t len, const char *file)
{
    struct rl_config *c = SENTINEL;
    struct rl_error err = {0};
    int rc = rl_config_parse(json, len, file, &c, &err);

    cr_assert_eq(rc, RL_EINVAL, "%s: rc %d", json, rc);
    cr_assert_eq(c, SENTINEL, "out written on error");
    cr_assert_eq(err.code, RL_EINVAL);
    cr_assert_eq(err.http_status, 400);
    return err;
}

static void assert_limit(const struct rl_limit *l, int64_t limit, int64_t burst, int64_t ms,
                         const char *text)
{
    cr_assert_eq(l->limit, limit);
    cr_assert_eq(l->burst, burst);
    cr_assert_eq(l->window_ms, ms);
    cr_assert_str_eq(l->window, text);
}

/* Every field of the SPEC example, defaults included. */
static void assert_spec_example(const struct rl_config *c)
{
    const struct rl_policy *p = c->policies;

    cr_assert_str_eq(c->listen_host, "127.0.0.1");
    cr_assert_eq(c->listen_port, 8080);
    cr_assert(c->redis_enabled);
    cr_assert_str_eq(c->redis_host, "127.0.0.1");
    cr_assert_eq(c->redis_port, 6379);
    cr_assert_eq(c->redis_db, 0);
    cr_assert_null(c->redis_unix);
    cr_assert_null(c->redis_user);
    cr_assert_null(c->redis_password);
    cr_assert_eq(c->redis_timeout_ms, 50);
    cr_assert_str_eq(c->redis_prefix, "rl:");
    cr_assert_eq(c->failure_mode, RL_FAIL_OPEN);
    cr_assert_eq(c->envelope, RL_ENV_PROBLEM);
    cr_assert_eq(c->headers, RL_HDR_BOTH);
    cr_assert_str_eq(c->id_header[RL_SCOPE_CALLER], "X-Caller-Id");
    cr_assert_str_eq(c->id_header[RL_SCOPE_KEY], "X-Api-Key");
    cr_assert_str_eq(c->id_header[RL_SCOPE_ORG], "X-Org-Id");
    cr_assert_str_eq(c->id_header[RL_SCOPE_IP], "X-Real-IP");
    cr_assert_eq(c->npolicies, 3);

    cr_assert_str_eq(p[0].name, "per-key");
    cr_assert_eq(p[0].scope, RL_SCOPE_KEY);
    assert_limit(&p[0].lim, 100, 100, 60000, "60s");
    cr_assert_eq(p[0].envelope, -1);
    cr_assert_not(p[0].shadow);
    cr_assert_null(p[0].match_method);
    cr_assert_null(p[0].match_prefix);
    cr_assert_eq(p[0].noverrides, 0);
    cr_assert_eq(p[0].metric_slot, -1);

    cr_assert_str_eq(p[1].name, "per-org");
    cr_assert_eq(p[1].scope, RL_SCOPE_ORG);
    assert_limit(&p[1].lim, 1000, 200, 60000, "1m");
    cr_assert_eq(p[1].envelope, RL_ENV_ERROR);
    cr_assert_not(p[1].shadow);
    cr_assert_eq(p[1].noverrides, 1);
    cr_assert_eq(p[1].overrides[0].id_len, 4);
    cr_assert_eq(memcmp(p[1].overrides[0].id, "acme", 4), 0);
    assert_limit(&p[1].overrides[0].lim, 10000, 10000, 60000, "1m");

    cr_assert_str_eq(p[2].name, "calls-post");
    cr_assert_eq(p[2].scope, RL_SCOPE_CALLER);
    assert_limit(&p[2].lim, 5, 5, 1000, "1s");
    cr_assert_eq(p[2].envelope, -1);
    cr_assert(p[2].shadow);
    cr_assert_str_eq(p[2].match_method, "POST");
    cr_assert_str_eq(p[2].match_prefix, "/v1/calls");
    cr_assert_eq(p[2].noverrides, 0);

    cr_assert_eq(c->idempotency_ttl_ms, 3600000);
    cr_assert_eq(c->threads, 2);
    cr_assert_eq(c->connection_limit, 10000);
    cr_assert_eq(c->idle_timeout_s, 30);
    cr_assert_eq(c->log_decisions, 0);
    cr_assert_eq(c->refs, 1);
}

/*----------------------------------------------------------------------------
 * The example, the fixtures, the defaults
 *--------------------------------------------------------------------------*/

Test(example, spec_example_every_field)
{
    struct rl_config *c = parse_ok(spec_example);

    assert_spec_example(c);
    cr_assert_null(c->file);
    rl_config_free(c);
}

Test(example, deploy_example_file_loads_and_is_the_spec_example)
{
    const char *file = RL_SOURCE_DIR "/deploy/policies.example.json";
    struct rl_config *c = NULL;
    struct rl_error err = {0};
    char buf[4096];
    FILE *f = fopen(file, "r");
    size_t n;

    cr_assert_not_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    cr_assert_str_eq(buf, spec_example);
    cr_assert_eq(rl_config_load(file, &c, &err), RL_OK, "%s", err.message);
    assert_spec_example(c);
    cr_assert_str_eq(c->file, file);
    rl_config_free(c);
}

Test(example, full_fixture_every_non_default_field)
{
    struct rl_config *c = NULL;
    struct rl_error err = {0};
    const struct rl_policy *k, *ip;

    cr_assert_eq(rl_config_load(FIXTURE("config_full.json"), &c, &err), RL_OK, "%s",
                 err.message);
    cr_assert_str_eq(c->listen_host, "::1");
    cr_assert_eq(c->listen_port, 9090);
    cr_assert(c->redis_enabled);
    cr_assert_str_eq(c->redis_host, "redis.internal");
    cr_assert_eq(c->redis_port, 6380);
    cr_assert_eq(c->redis_db, 3);
    cr_assert_str_eq(c->redis_user, "app");
    cr_assert_str_eq(c->redis_password, "s@cret");
    cr_assert_eq(c->redis_timeout_ms, 200);
    cr_assert_str_eq(c->redis_prefix, "acme:rl:");
    cr_assert_eq(c->failure_mode, RL_FAIL_CLOSED);
    cr_assert_eq(c->envelope, RL_ENV_TYPED);
    cr_assert_eq(c->headers, RL_HDR_IETF);
    cr_assert_str_eq(c->id_header[RL_SCOPE_CALLER], "X-User");
    cr_assert_str_eq(c->id_header[RL_SCOPE_KEY], "Authorization-Key");
    cr_assert_str_eq(c->id_header[RL_SCOPE_ORG], "X-Tenant");
    cr_assert_str_eq(c->id_header[RL_SCOPE_IP], "X-Real-IP");
    cr_assert_eq(c->npolicies, 2);
    k = &c->policies[0];
    assert_limit(&k->lim, 100, 10, 250, "250ms");
    cr_assert_eq(k->envelope, RL_ENV_WS);
    cr_assert_not(k->shadow);
    cr_assert_str_eq(k->match_method, "GET"); /* upper-cased */
    cr_assert_str_eq(k->match_prefix, "/v2/");
    /* Sorted by (length, bytes): "zeta" before "alpha". */
    cr_assert_eq(k->noverrides, 2);
    cr_assert_str_eq(k->overrides[0].id, "zeta");
    assert_limit(&k->overrides[0].lim, 100, 50, 250, "250ms");
    cr_assert_str_eq(k->overrides[1].id, "alpha");
    assert_limit(&k->overrides[1].lim, 100, 10, 3600000, "1h");
    ip = &c->policies[1];
    cr_assert_eq(ip->scope, RL_SCOPE_IP);
    assert_limit(&ip->lim, 1, 1, 31536000000LL, "365d");
    cr_assert_eq(ip->noverrides, 1);
    assert_limit(&ip->overrides[0].lim, 5, 5, 1000, "1s");
    cr_assert_eq(c->idempotency_ttl_ms, 600000);
    cr_assert_eq(c->threads, 8);
    cr_assert_eq(c->connection_limit, 16);
    cr_assert_eq(c->idle_timeout_s, 120);
    cr_assert_eq(c->log_decisions, 1);
    rl_config_free(c);
}

Test(defaults, empty_object_gives_every_default)
{
    struct rl_config *c = parse_ok("{}");

    cr_assert_str_eq(c->listen_host, "127.0.0.1");
    cr_assert_eq(c->listen_port, 8080);
    cr_assert_not(c->redis_enabled);
    cr_assert_eq(c->redis_timeout_ms, 50);
    cr_assert_str_eq(c->redis_prefix, "rl:");
    cr_assert_eq(c->failure_mode, RL_FAIL_OPEN);
    cr_assert_eq(c->envelope, RL_ENV_PROBLEM);
    cr_assert_eq(c->headers, RL_HDR_BOTH);
    cr_assert_str_eq(c->id_header[RL_SCOPE_CALLER], "X-Caller-Id");
    cr_assert_str_eq(c->id_header[RL_SCOPE_KEY], "X-Api-Key");
    cr_assert_str_eq(c->id_header[RL_SCOPE_ORG], "X-Org-Id");
    cr_assert_str_eq(c->id_header[RL_SCOPE_IP], "X-Real-IP");
    cr_assert_eq(c->npolicies, 0);
    cr_assert_eq(c->idempotency_ttl_ms, 3600000);
    cr_assert_eq(c->threads, 2);
    cr_assert_eq(c->connection_limit, 10000);
    cr_assert_eq(c->idle_timeout_s, 30);
    cr_assert_eq(c->log_decisions, 0);
    cr_assert_eq(c->refs, 1);
    cr_assert_null(c->file);
    rl_config_free(c);
}

Test(defaults, redis_null_is_the_embedded_store_and_string_form_is_a_url)
{
    struct rl_config *c = parse_ok("{\"redis\": null}");

    cr_assert_not(c->redis_enabled);
    rl_config_free(c);
    c = parse_ok("{\"redis\": \"redis://10.1.2.3:7000/9\"}");
    cr_assert(c->redis_enabled);
    cr_assert_str_eq(c->redis_host, "10.1.2.3");
    cr_assert_eq(c->redis_port, 7000);
    cr_assert_eq(c->redis_db, 9);
    cr_assert_eq(c->redis_timeout_ms, 50);
    rl_config_free(c);
}

Test(defaults, log_decisions_and_modes_by_name)
{
    struct rl_config *c = parse_ok("{\"log_decisions\": \"all\", \"headers\": \"legacy\", "
                                   "\"envelope\": \"flat\"}");

    cr_assert_eq(c->log_decisions, 2);
    cr_assert_eq(c->headers, RL_HDR_LEGACY);
    cr_assert_eq(c->envelope, RL_ENV_FLAT);
    rl_config_free(c);
}

Test(defaults, parse_keeps_the_file_name)
{
    struct rl_config *c = NULL;

    cr_assert_eq(rl_config_parse("{}", 2, "x.json", &c, NULL), RL_OK);
    cr_assert_str_eq(c->file, "x.json");
    rl_config_free(c);
}

Test(defaults, embedded_default_config)
{
    struct rl_config *c = rl_config_default();
    const struct rl_policy *p;

    cr_assert_not_null(c);
    cr_assert_null(c->file);
    cr_assert_str_eq(c->listen_host, "127.0.0.1");
    cr_assert_eq(c->listen_port, 8080);
    cr_assert_not(c->redis_enabled);
    cr_assert_eq(c->refs, 1);
    cr_assert_eq(c->npolicies, 4);
    p = c->policies;
    cr_assert_str_eq(p[0].name, "per-key");
    cr_assert_eq(p[0].scope, RL_SCOPE_KEY);
    assert_limit(&p[0].lim, 100, 100, 60000, "60s");
    cr_assert_str_eq(p[1].name, "per-caller");
    cr_assert_eq(p[1].scope, RL_SCOPE_CALLER);
    assert_limit(&p[1].lim, 60, 60, 60000, "1m");
    cr_assert_str_eq(p[2].name, "per-org");
    cr_assert_eq(p[2].scope, RL_SCOPE_ORG);
    assert_limit(&p[2].lim, 1000, 200, 60000, "1m");
    cr_assert_str_eq(p[3].name, "per-ip");
    cr_assert_eq(p[3].scope, RL_SCOPE_IP);
    assert_limit(&p[3].lim, 300, 300, 60000, "1m");
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(p[i].envelope, -1);
        cr_assert_not(p[i].shadow);
        cr_assert_null(p[i].match_method);
        cr_assert_eq(p[i].noverrides, 0);
    }
    rl_config_free(c);
}

Test(defaults, default_json_is_exported_and_parses_to_the_default)
{
    struct rl_config *c = parse_ok(rl_config_default_json);

    cr_assert_eq(c->npolicies, 4);
    cr_assert_str_eq(c->policies[1].name, "per-caller");
    rl_config_free(c);
}

/*----------------------------------------------------------------------------
 * Rejections: each gives the exact path and a message with the reason
 *--------------------------------------------------------------------------*/

struct reject {
    const char *json;
    const char *path;
    const char *why; /* a substring of the message */
};

static void check_rejects(const struct reject *t, size_t n)
{
    char want[256];

    for (size_t i = 0; i < n; i++) {
        struct rl_error err = parse_err(t[i].json, strlen(t[i].json), NULL);

        cr_expect_str_eq(err.path, t[i].path, "%s", t[i].json);
        if (t[i].path[0] != '\0')
            snprintf(want, sizeof(want), "<config>: %s: ", t[i].path);
        else
            snprintf(want, sizeof(want), "<config>: ");
        cr_expect_eq(strncmp(err.message, want, strlen(want)), 0, "%s\n-> %s", t[i].json,
                     err.message);
        cr_expect_not_null(strstr(err.message + strlen(want), t[i].why),
                           "%s\n-> %s\n(want \"%s\")", t[i].json, err.message, t[i].why);
    }
}

#define CHECK_REJECTS(t) check_rejects((t), sizeof(t) / sizeof((t)[0]))

/* A valid policy with extra fields spliced in. */
#define POL(extra) "{\"name\":\"a\",\"scope\":\"key\",\"limit\":10,\"window\":\"1s\"" extra "}"

Test(reject, top_level)
{
    static const struct reject t[] = {
        {"[]", "", "expected a JSON object at the top level"},
        {"null", "", "expected a JSON object at the top level"},
        {"{\"listne\":\"1.2.3.4:80\"}", "listne", "unknown field"},
        {"{\"listen\":8080}", "listen", "expected a string"},
        {"{\"listen\":\"localhost:8080\"}", "listen", "numeric IPv4"},
        {"{\"listen\":\"1.2.3.4\"}", "listen", "expected host:port"},
        {"{\"listen\":\"1.2.3.4:0\"}", "listen", "port from 1 to 65535"},
        {"{\"listen\":\"1.2.3.4:65536\"}", "listen", "port from 1 to 65535"},
        {"{\"listen\":\"::1:80\"}", "listen", "needs brackets"},
        {"{\"listen\":\"[1.2.3.4]:80\"}", "listen", "IPv6 address inside"},
        {"{\"listen\":\"1.2.3.4:80\\u0000x\"}", "listen", "NUL byte"},
        {"{\"failure_mode\":\"half\"}", "failure_mode", "expected one of \"open\", \"closed\""},
        {"{\"envelope\":\"xml\"}", "envelope",
         "expected one of \"problem\", \"error\", \"typed\", \"simple\", \"flat\", \"ws\""},
        {"{\"headers\":\"none\"}", "headers", "expected one of \"legacy\", \"ietf\", \"both\""},
        {"{\"log_decisions\":true}", "log_decisions", "\"off\", \"denied\", \"all\""},
        {"{\"idempotency_ttl\":\"forever\"}", "idempotency_ttl", "invalid duration \"forever\""},
        {"{\"idempotency_ttl\":3600}", "idempotency_ttl", "expected a string"},
        {"{\"threads\":0}", "threads", "expected an integer from 1 to 64"},
        {"{\"threads\":65}", "threads", "expected an integer from 1 to 64"},
        {"{\"threads\":null}", "threads", "expected an integer from 1 to 64"},
        {"{\"threads\":2.0}", "threads", "expected an integer from 1 to 64"},
        {"{\"connection_limit\":15}", "connection_limit", "from 16 to 1000000"},
        {"{\"connection_limit\":1000001}", "connection_limit", "from 16 to 1000000"},
        {"{\"idle_timeout\":\"1500ms\"}", "idle_timeout", "whole seconds"},
        {"{\"idle_timeout\":\"0s\"}", "idle_timeout", "invalid duration \"0s\""},
    };

    CHECK_REJECTS(t);
}

Test(reject, redis_and_identity)
{
    static const struct reject t[] = {
        {"{\"redis\":5}", "redis", "expected a URL string, an object or null"},
        {"{\"redis\":{\"timeout_ms\":5}}", "redis.url", "required field is missing"},
        {"{\"redis\":{\"url\":7}}", "redis.url", "expected a string"},
        {"{\"redis\":{\"url\":\"rediss://h:6379\"}}", "redis.url", "TLS (rediss://) is not supported"},
        {"{\"redis\":\"rediss://h\"}", "redis", "TLS (rediss://) is not supported"},
        {"{\"redis\":{\"url\":\"http://h\"}}", "redis.url", "expected redis://"},
        {"{\"redis\":\"none\"}", "redis", "expected redis://"},
        {"{\"redis\":{\"url\":\"redis://h:0\"}}", "redis.url", "port from 1 to 65535"},
        {"{\"redis\":{\"url\":\"redis://h\",\"timeout_ms\":0}}", "redis.timeout_ms",
         "expected an integer from 1 to 60000"},
        {"{\"redis\":{\"url\":\"redis://h\",\"timeout_ms\":60001}}", "redis.timeout_ms",
         "expected an integer from 1 to 60000"},
        {"{\"redis\":{\"url\":\"redis://h\",\"timeout_ms\":\"50\"}}", "redis.timeout_ms",
         "expected an integer from 1 to 60000"},
        {"{\"redis\":{\"url\":\"redis://h\",\"prefix\":\"\"}}", "redis.prefix",
         "expected 1 to 32 printable ASCII characters without spaces"},
        {"{\"redis\":{\"url\":\"redis://h\",\"prefix\":\"a b\"}}", "redis.prefix",
         "without spaces"},
        {"{\"redis\":{\"url\":\"redis://h\",\"prefix\":\"123456789012345678901234567890123\"}}",
         "redis.prefix", "1 to 32"},
        {"{\"redis\":{\"url\":\"redis://h\",\"db\":1}}", "redis.db", "unknown field"},
        {"{\"identity\":\"X\"}", "identity", "expected an object"},
        {"{\"identity\":{\"caller\":\"X Caller\"}}", "identity.caller", "expected a header name"},
        {"{\"identity\":{\"key\":\"\"}}", "identity.key", "expected a header name"},
        {"{\"identity\":{\"org\":\"X-O:rg\"}}", "identity.org", "expected a header name"},
        {"{\"identity\":{\"org\":"
         "\"X-234567890123456789012345678901234567890123456789012345678901234\"}}",
         "identity.org", "1 to 63"},
        {"{\"identity\":{\"key\":5}}", "identity.key", "expected a string"},
        {"{\"identity\":{\"ip\":\"X-IP\"}}", "identity.ip", "unknown field"},
    };

    CHECK_REJECTS(t);
}

Test(reject, policies)
{
    static const struct reject t[] = {
        {"{\"policies\":{}}", "policies", "expected an array"},
        {"{\"policies\":[5]}", "policies[0]", "expected an object"},
        {"{\"policies\":[" POL(",\"limt\":5") "]}", "policies[0].limt", "unknown field"},
        {"{\"policies\":[{\"scope\":\"key\",\"limit\":1,\"window\":\"1s\"}]}",
         "policies[0].name", "required field is missing"},
        {"{\"policies\":[{\"name\":\"a\",\"limit\":1,\"window\":\"1s\"}]}", "policies[0].scope",
         "required field is missing"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"window\":\"1s\"}]}",
         "policies[0].limit", "required field is missing"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":1}]}", "policies[0].window",
         "required field is missing"},
        {"{\"policies\":[{\"name\":\"a b\",\"scope\":\"key\",\"limit\":1,\"window\":\"1s\"}]}",
         "policies[0].name", "expected a policy name"},
        {"{\"policies\":[{\"name\":\"\",\"scope\":\"key\",\"limit\":1,\"window\":\"1s\"}]}",
         "policies[0].name", "expected a policy name"},
        {"{\"policies\":[{\"name\":"
         "\"a234567890123456789012345678901234567890123456789012345678901234\","
         "\"scope\":\"key\",\"limit\":1,\"window\":\"1s\"}]}",
         "policies[0].name", "1 to 63"},
        {"{\"policies\":[{\"name\":1,\"scope\":\"key\",\"limit\":1,\"window\":\"1s\"}]}",
         "policies[0].name", "expected a string"},
        {"{\"policies\":[" POL("") "," POL("") "]}", "policies[1].name",
         "duplicate policy name \"a\" (also policies[0])"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"user\",\"limit\":1,\"window\":\"1s\"}]}",
         "policies[0].scope", "expected one of \"caller\", \"key\", \"org\", \"ip\""},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":0,\"window\":\"1s\"}]}",
         "policies[0].limit", "expected an integer from 1 to 1000000000"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":1000000001,\"window\":"
         "\"1s\"}]}",
         "policies[0].limit", "expected an integer from 1 to 1000000000"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":1.5,\"window\":\"1s\"}]}",
         "policies[0].limit", "expected an integer from 1 to 1000000000"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":\"10\",\"window\":\"1s\"}]}",
         "policies[0].limit", "expected an integer from 1 to 1000000000"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":99999999999999999999,"
         "\"window\":\"1s\"}]}",
         "policies[0].limit", "expected an integer from 1 to 1000000000"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":1,\"window\":\"5x\"}]}",
         "policies[0].window", "invalid duration \"5x\""},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":1,\"window\":60}]}",
         "policies[0].window", "expected a string"},
        {"{\"policies\":[" POL(",\"burst\":0") "]}", "policies[0].burst",
         "expected an integer from 1 to 1000000000"},
        {"{\"policies\":[" POL(",\"burst\":null") "]}", "policies[0].burst",
         "expected an integer from 1 to 1000000000"},
        {"{\"policies\":[" POL(",\"envelope\":\"xml\"") "]}", "policies[0].envelope",
         "expected one of \"problem\""},
        {"{\"policies\":[" POL(",\"shadow\":\"yes\"") "]}", "policies[0].shadow",
         "expected true or false"},
        {"{\"policies\":[" POL(",\"match\":\"x\"") "]}", "policies[0].match",
         "expected an object"},
        {"{\"policies\":[" POL(",\"match\":{\"verb\":\"GET\"}") "]}", "policies[0].match.verb",
         "unknown field"},
        {"{\"policies\":[" POL(",\"match\":{\"method\":\"G T\"}") "]}",
         "policies[0].match.method", "expected an HTTP method"},
        {"{\"policies\":[" POL(",\"match\":{\"method\":\"\"}") "]}", "policies[0].match.method",
         "expected an HTTP method"},
        {"{\"policies\":[" POL(",\"match\":{\"path_prefix\":\"v1\"}") "]}",
         "policies[0].match.path_prefix", "starting with '/'"},
        {"{\"policies\":[" POL(",\"match\":{\"path_prefix\":\"/v1\\n\"}") "]}",
         "policies[0].match.path_prefix", "no control bytes"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":1000000000,\"window\":"
         "\"365d\"}]}",
         "policies[0].limit", "burst * window is too large"},
        {"{\"policies\":[{\"name\":\"a\",\"scope\":\"key\",\"limit\":1,\"window\":\"365d\","
         "\"burst\":142809}]}",
         "policies[0].burst", "burst * window is too large"},
        {"{\"policies\":[" POL("") "," POL(",\"nmae\":\"b\"") "]}", "policies[1].nmae",
         "unknown field"},
    };

    CHECK_REJECTS(t);
}

Test(reject, overrides)
{
#define OV_POL "\"policies\":[{\"name\":\"p\",\"scope\":\"org\",\"limit\":1000000,\"window\":\"1s\"}]"
    static const struct reject t[] = {
        {"{" OV_POL ",\"overrides\":{}}", "overrides", "expected an array"},
        {"{" OV_POL ",\"overrides\":[1]}", "overrides[0]", "expected an object"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"nope\",\"id\":\"x\",\"limit\":1}]}",
         "overrides[0].policy", "no policy named \"nope\""},
        {"{\"overrides\":[{\"policy\":\"p\",\"id\":\"x\",\"limit\":1}]}", "overrides[0].policy",
         "no policy named \"p\""},
        {"{" OV_POL ",\"overrides\":[{\"id\":\"x\",\"limit\":1}]}", "overrides[0].policy",
         "required field is missing"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"limit\":1}]}", "overrides[0].id",
         "required field is missing"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"\",\"limit\":1}]}",
         "overrides[0].id", "expected an id: 1 to 128 bytes, no control bytes"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"a\\u0001b\",\"limit\":1}]}",
         "overrides[0].id", "no control bytes"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":5,\"limit\":1}]}",
         "overrides[0].id", "expected a string"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"x\"}]}", "overrides[0]",
         "expected at least one of \"limit\", \"burst\", \"window\""},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"x\",\"limit\":0}]}",
         "overrides[0].limit", "expected an integer from 1 to 1000000000"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"x\",\"burst\":-1}]}",
         "overrides[0].burst", "expected an integer from 1 to 1000000000"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"x\",\"window\":\"0s\"}]}",
         "overrides[0].window", "invalid duration \"0s\""},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"x\",\"tier\":\"gold\"}]}",
         "overrides[0].tier", "unknown field"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"x\",\"window\":\"365d\"}]}",
         "overrides[0].window", "burst * window is too large"},
        {"{" OV_POL ",\"overrides\":[{\"policy\":\"p\",\"id\":\"x\",\"window\":\"1d\","
         "\"limit\":1000000000}]}",
         "overrides[0].limit", "burst * window is too large"},
        {"{" OV_POL ",\"overrides\":["
         "{\"policy\":\"p\",\"id\":\"x\",\"limit\":1},"
         "{\"policy\":\"p\",\"id\":\"y\",\"limit\":1},"
         "{\"policy\":\"p\",\"id\":\"x\",\"burst\":1},"
         "{\"policy\":\"p\",\"id\":\"y\",\"burst\":1}]}",
         "overrides[2].id", "duplicate override for policy \"p\" and this id (also overrides[0])"},
    };

    CHECK_REJECTS(t);
#undef OV_POL
}

/* JSON with n policies named p0..p(n-1). */
static char *policies_json(size_t n)
{
    size_t cap = 64 + n * 80, len;
    char *s = malloc(cap);

    cr_assert_not_null(s);
    len = (size_t)snprintf(s, cap, "{\"policies\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len,
                                "%s{\"name\":\"p%zu\",\"scope\":\"key\",\"limit\":1,\"window\":"
                                "\"1s\"}",
                                i ? "," : "", i);
    snprintf(s + len, cap - len, "]}");
    return s;
}

Test(reject, more_than_32_policies)
{
    char *ok = policies_json(RL_MAX_POLICIES), *bad = policies_json(RL_MAX_POLICIES + 1);
    struct rl_config *c = parse_ok(ok);
    struct rl_error err;

    cr_assert_eq(c->npolicies, RL_MAX_POLICIES);
    rl_config_free(c);
    err = parse_err(bad, strlen(bad), NULL);
    cr_assert_str_eq(err.path, "policies");
    cr_assert_str_eq(err.message, "<config>: policies: too many policies: 33 (at most 32)");
    free(ok);
    free(bad);
}

Test(reject, length_limits_path_prefix_1000_and_id_128)
{
    char prefix[1003], id[131], json[1400];
    struct rl_config *c;
    struct rl_error err;

    memset(prefix, 'a', sizeof(prefix));
    prefix[0] = '/';
    prefix[1000] = '\0';
    snprintf(json, sizeof(json), "{\"policies\":[" POL(",\"match\":{\"path_prefix\":\"%s\"}") "]}",
             prefix);
    c = parse_ok(json);
    cr_assert_eq(strlen(c->policies[0].match_prefix), 1000);
    rl_config_free(c);
    prefix[1000] = 'a';
    prefix[1001] = '\0';
    snprintf(json, sizeof(json), "{\"policies\":[" POL(",\"match\":{\"path_prefix\":\"%s\"}") "]}",
             prefix);
    err = parse_err(json, strlen(json), NULL);
    cr_assert_str_eq(err.path, "policies[0].match.path_prefix");

    memset(id, 'i', sizeof(id));
    id[128] = '\0';
    snprintf(json, sizeof(json),
             "{\"policies\":[" POL("") "],\"overrides\":[{\"policy\":\"a\",\"id\":\"%s\","
             "\"limit\":2}]}",
             id);
    c = parse_ok(json);
    cr_assert_eq(rl_policy_limit(&c->policies[0], id, 128)->limit, 2);
    rl_config_free(c);
    id[128] = 'i';
    id[129] = '\0';
    snprintf(json, sizeof(json),
             "{\"policies\":[" POL("") "],\"overrides\":[{\"policy\":\"a\",\"id\":\"%s\","
             "\"limit\":2}]}",
             id);
    err = parse_err(json, strlen(json), NULL);
    cr_assert_str_eq(err.path, "overrides[0].id");
}

Test(reject, message_is_file_path_why_exactly)
{
    struct rl_config *c = SENTINEL;
    struct rl_error err = {0};
    const char *file = FIXTURE("config_bad_window.json");
    char want[512];

    cr_assert_eq(rl_config_load(file, &c, &err), RL_EINVAL);
    cr_assert_eq(c, SENTINEL);
    cr_assert_str_eq(err.path, "policies[2].window");
    snprintf(want, sizeof(want),
             "%s: policies[2].window: invalid duration \"5x\": expected a positive integer and a "
             "unit (ms, s, m, h, d), at most 365d",
             file);
    cr_assert_str_eq(err.message, want);
}

Test(reject, burst_times_window_just_below_2_pow_52_is_accepted)
{
    /* 142808 * 31536000000 = 4503593088000000 < 2^52 = 4503599627370496 */
    struct rl_config *c = parse_ok("{\"policies\":[{\"name\":\"a\",\"scope\":\"key\","
                                   "\"limit\":1,\"window\":\"365d\",\"burst\":142808}]}");

    cr_assert_eq(c->policies[0].lim.burst, 142808);
    rl_config_free(c);
}

Test(reject, unknown_key_with_control_bytes_is_quoted_safely)
{
    static const char json[] = "{\"ev\\u0001il\":1}";
    struct rl_error err = parse_err(json, strlen(json), "f.json");

    cr_assert_str_eq(err.path, "ev?il");
    cr_assert_str_eq(err.message, "f.json: ev?il: unknown field");
}

Test(reject, long_unknown_key_is_cut_with_dots)
{
    char json[256], key[101], want[128];
    struct rl_error err;

    memset(key, 'k', 100);
    key[100] = '\0';
    snprintf(json, sizeof(json), "{\"%s\":1}", key);
    err = parse_err(json, strlen(json), "f.json");
    snprintf(want, sizeof(want), "%.60s...", key); /* 63 bytes kept of a 64-byte buffer */
    cr_assert_str_eq(err.path, want);
}

/*----------------------------------------------------------------------------
 * Durations
 *--------------------------------------------------------------------------*/

Test(window, accepted_forms)
{
    static const struct {
        const char *s;
        int64_t ms;
    } t[] = {
        {"250ms", 250},         {"1ms", 1},           {"1s", 1000},
        {"60s", 60000},         {"1m", 60000},        {"90m", 5400000},
        {"1h", 3600000},        {"1d", 86400000},     {"365d", 31536000000LL},
        {"8760h", 31536000000LL}, {"31536000000ms", 31536000000LL},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int64_t ms = -1;

        cr_expect_eq(rl_window_parse(t[i].s, &ms), RL_OK, "%s", t[i].s);
        cr_expect_eq(ms, t[i].ms, "%s -> %lld", t[i].s, (long long)ms);
    }
}

Test(window, rejected_forms_leave_output_alone)
{
    static const char *const t[] = {
        "",     "s",      "ms",    "0s",   "0ms",  "00s",   "01s",        "-1s",
        "+1s",  "1.5s",   " 1s",   "1s ",  "1 s",  "1",     "1S",         "1sec",
        "1w",   "1y",     "366d",  "8761h", "525601m", "31536000001ms", "31536001s",
        "99999999999999999999999s", "1e3s", "0x10s", "1sm", "1ss",
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int64_t ms = -7;

        cr_expect_eq(rl_window_parse(t[i], &ms), RL_EINVAL, "\"%s\" accepted", t[i]);
        cr_expect_eq(ms, -7, "\"%s\" wrote output", t[i]);
    }
    cr_expect_eq(rl_window_parse(NULL, NULL), RL_EINVAL);
}

Test(window, original_text_is_kept)
{
    struct rl_config *c = parse_ok("{\"policies\":[{\"name\":\"a\",\"scope\":\"ip\",\"limit\":1,"
                                   "\"window\":\"31536000000ms\"}]}");

    assert_limit(&c->policies[0].lim, 1, 1, 31536000000LL, "31536000000ms");
    rl_config_free(c);
}

/*----------------------------------------------------------------------------
 * Redis URLs (through the --redis override; the JSON path shares the parser)
 *--------------------------------------------------------------------------*/

static struct rl_config *with_redis(const char *url)
{
    struct rl_config *c = parse_ok("{}");
    struct rl_error err = {0};

    cr_assert_eq(rl_config_set_redis_url(c, url, &err), RL_OK, "%s -> %s", url, err.message);
    cr_assert(c->redis_enabled);
    return c;
}

Test(redis_url, host_port_db)
{
    struct rl_config *c = with_redis("redis://127.0.0.1:6379/0");

    cr_assert_str_eq(c->redis_host, "127.0.0.1");
    cr_assert_eq(c->redis_port, 6379);
    cr_assert_eq(c->redis_db, 0);
    cr_assert_null(c->redis_unix);
    cr_assert_null(c->redis_user);
    cr_assert_null(c->redis_password);
    rl_config_free(c);

    c = with_redis("redis://cache-1.internal");
    cr_assert_str_eq(c->redis_host, "cache-1.internal");
    cr_assert_eq(c->redis_port, 6379);
    cr_assert_eq(c->redis_db, 0);
    rl_config_free(c);

    c = with_redis("REDIS://h:7000/15");
    cr_assert_str_eq(c->redis_host, "h");
    cr_assert_eq(c->redis_port, 7000);
    cr_assert_eq(c->redis_db, 15);
    rl_config_free(c);

    c = with_redis("redis://[::1]:6380/");
    cr_assert_str_eq(c->redis_host, "::1");
    cr_assert_eq(c->redis_port, 6380);
    cr_assert_eq(c->redis_db, 0);
    rl_config_free(c);
}

Test(redis_url, user_and_password)
{
    struct rl_config *c = with_redis("redis://alice:p%40ss%3Aw0rd@h:6379/2");

    cr_assert_str_eq(c->redis_user, "alice");
    cr_assert_str_eq(c->redis_password, "p@ss:w0rd");
    cr_assert_str_eq(c->redis_host, "h");
    cr_assert_eq(c->redis_db, 2);
    rl_config_free(c);

    c = with_redis("redis://:secret@10.0.0.5");
    cr_assert_null(c->redis_user);
    cr_assert_str_eq(c->redis_password, "secret");
    cr_assert_str_eq(c->redis_host, "10.0.0.5");
    rl_config_free(c);
}

Test(redis_url, unix_socket_then_none)
{
    struct rl_config *c = with_redis("unix:///var/run/redis.sock");
    struct rl_error err = {0};

    cr_assert_str_eq(c->redis_unix, "/var/run/redis.sock");
    cr_assert_eq(c->redis_db, 0);
    cr_assert_eq(rl_config_set_redis_url(c, "unix:///tmp/r.sock?db=4", &err), RL_OK);
    cr_assert_str_eq(c->redis_unix, "/tmp/r.sock");
    cr_assert_eq(c->redis_db, 4);
    cr_assert_eq(rl_config_set_redis_url(c, "none", &err), RL_OK);
    cr_assert_not(c->redis_enabled);
    cr_assert_null(c->redis_unix);
    rl_config_free(c);
}

Test(redis_url, a_new_url_replaces_the_old_parts)
{
    struct rl_config *c = with_redis("redis://u:p@h/1");
    struct rl_error err = {0};

    cr_assert_eq(rl_config_set_redis_url(c, "redis://h2", &err), RL_OK);
    cr_assert_null(c->redis_user);
    cr_assert_null(c->redis_password);
    cr_assert_str_eq(c->redis_host, "h2");
    cr_assert_eq(c->redis_db, 0);
    rl_config_free(c);
}

Test(redis_url, rediss_refused_and_config_untouched)
{
    struct rl_config *c = with_redis("redis://u:p@h:7000/3");
    struct rl_error err = {0};

    cr_assert_eq(rl_config_set_redis_url(c, "rediss://h:6380", &err), RL_EINVAL);
    cr_assert_str_eq(err.message, "--redis: TLS (rediss://) is not supported: use redis:// on a "
                                  "trusted network, or a TLS tunnel");
    cr_assert_str_eq(err.path, "redis");
    cr_assert(c->redis_enabled);
    cr_assert_str_eq(c->redis_host, "h");
    cr_assert_eq(c->redis_port, 7000);
    cr_assert_eq(c->redis_db, 3);
    cr_assert_str_eq(c->redis_user, "u");
    cr_assert_str_eq(c->redis_password, "p");
    rl_config_free(c);
}

Test(redis_url, rejected_forms)
{
    static const struct {
        const char *url, *why;
    } t[] = {
        {"", "expected redis://"},
        {"http://h", "expected redis://"},
        {"h:6379", "expected redis://"},
        {"redis://", "expected a host name"},
        {"redis:///0", "expected a host name"},
        {"redis://a b", "expected a host name"},
        {"redis://h:0", "port from 1 to 65535"},
        {"redis://h:65536", "port from 1 to 65535"},
        {"redis://h:", "port from 1 to 65535"},
        {"redis://h:6379:1", "port from 1 to 65535"},
        {"redis://h/x", "database number"},
        {"redis://h/-1", "database number"},
        {"redis://h/0/1", "database number"},
        {"redis://h?db=1", "query parameters are not supported"},
        {"redis://user@h", "expected user:password@"},
        {"redis://user:@h", "expected user:password@"},
        {"redis://u:p%4@h", "bad %-escape"},
        {"redis://u:p%00@h", "bad %-escape"},
        {"redis://[::1", "expected a host name"},
        {"redis://[nothost]:1", "expected a host name"},
        {"unix://relative.sock", "expected unix:///absolute/path"},
        {"unix:///", "expected unix:///absolute/path"},
        {"unix:///p?database=1", "expected ?db=N"},
        {"unix:///p?db=", "expected ?db=N"},
        {"rediss://u:p@h", "TLS (rediss://) is not supported"},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct rl_config *c = parse_ok("{}");
        struct rl_error err = {0};

        cr_expect_eq(rl_config_set_redis_url(c, t[i].url, &err), RL_EINVAL, "%s", t[i].url);
        cr_expect_eq(strncmp(err.message, "--redis: ", 9), 0, "%s -> %s", t[i].url, err.message);
        cr_expect_not_null(strstr(err.message, t[i].why), "%s -> %s", t[i].url, err.message);
        cr_expect_not(c->redis_enabled, "%s", t[i].url);
        rl_config_free(c);
    }
}

Test(redis_url, password_never_echoed_in_messages)
{
    struct rl_config *c = parse_ok("{}");
    struct rl_error err = {0};

    cr_assert_eq(rl_config_set_redis_url(c, "redis://u:hunter2@h:0", &err), RL_EINVAL);
    cr_assert_null(strstr(err.message, "hunter2"), "%s", err.message);
    rl_config_free(c);
    err = parse_err("{\"redis\":\"redis://u:hunter2@h:0\"}", 33, NULL);
    cr_assert_null(strstr(err.message, "hunter2"), "%s", err.message);
}

/*----------------------------------------------------------------------------
 * Listen addresses
 *--------------------------------------------------------------------------*/

Test(listen, accepted_forms)
{
    static const struct {
        const char *addr, *host;
        unsigned port;
    } t[] = {
        {"0.0.0.0:80", "0.0.0.0", 80},
        {"127.0.0.1:65535", "127.0.0.1", 65535},
        {"[::]:8080", "::", 8080},
        {"[::1]:1", "::1", 1},
        {":9000", "0.0.0.0", 9000},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct rl_config *c = parse_ok("{}");
        struct rl_error err = {0};

        cr_expect_eq(rl_config_set_listen(c, t[i].addr, &err), RL_OK, "%s -> %s", t[i].addr,
                     err.message);
        cr_expect_str_eq(c->listen_host, t[i].host, "%s", t[i].addr);
        cr_expect_eq(c->listen_port, t[i].port, "%s", t[i].addr);
        rl_config_free(c);
    }
}

Test(listen, rejected_forms_leave_config_untouched)
{
    static const char *const t[] = {
        "",           "8080",         "host:80",     "1.2.3.4:",   "1.2.3.4:x",
        "1.2.3.4:-1", "1.2.3.4:+80",  "1.2.3.4:0",   "1.2.3.4:65536", "[::1]80",
        "::1:80",     "[]:80",        "[::1:80",     "1.2.3:80",   "1.2.3.4 :80",
        "[fe80::1%eth0]:80",
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct rl_config *c = parse_ok("{}");
        struct rl_error err = {0};

        cr_expect_eq(rl_config_set_listen(c, t[i], &err), RL_EINVAL, "\"%s\" accepted", t[i]);
        cr_expect_str_eq(err.path, "listen");
        cr_expect_eq(strncmp(err.message, "--listen: ", 10), 0, "%s", err.message);
        cr_expect_str_eq(c->listen_host, "127.0.0.1", "%s", t[i]);
        cr_expect_eq(c->listen_port, 8080, "%s", t[i]);
        rl_config_free(c);
    }
}

Test(listen, from_the_file)
{
    struct rl_config *c = parse_ok("{\"listen\": \":8081\"}");

    cr_assert_str_eq(c->listen_host, "0.0.0.0");
    cr_assert_eq(c->listen_port, 8081);
    rl_config_free(c);
}

/*----------------------------------------------------------------------------
 * Lookups
 *--------------------------------------------------------------------------*/

Test(lookup, overrides_hit_miss_and_limit_only_gets_its_own_burst)
{
    struct rl_config *c = parse_ok(
        "{\"policies\":[{\"name\":\"per-org\",\"scope\":\"org\",\"limit\":1000,\"window\":\"1m\","
        "\"burst\":200},{\"name\":\"plain\",\"scope\":\"key\",\"limit\":1,\"window\":\"1s\"}],"
        "\"overrides\":[{\"policy\":\"per-org\",\"id\":\"acme\",\"limit\":10000},"
        "{\"policy\":\"per-org\",\"id\":\"beta\",\"burst\":5},"
        "{\"policy\":\"per-org\",\"id\":\"c\",\"window\":\"1h\"},"
        "{\"policy\":\"per-org\",\"id\":\"Acme\",\"limit\":7,\"burst\":3}]}");
    const struct rl_policy *p = rl_config_policy(c, "per-org", 7);

    cr_assert_not_null(p);
    cr_assert_eq(p->noverrides, 4);
    /* limit only: burst = the override's own limit, not the policy's 200 */
    assert_limit(rl_policy_limit(p, "acme", 4), 10000, 10000, 60000, "1m");
    assert_limit(rl_policy_limit(p, "beta", 4), 1000, 5, 60000, "1m");
    assert_limit(rl_policy_limit(p, "c", 1), 1000, 200, 3600000, "1h");
    assert_limit(rl_policy_limit(p, "Acme", 4), 7, 3, 60000, "1m");
    cr_assert_eq(rl_policy_limit(p, "acm", 3), &p->lim);
    cr_assert_eq(rl_policy_limit(p, "acmex", 5), &p->lim);
    cr_assert_eq(rl_policy_limit(p, "acme", 3), &p->lim); /* length counts, not the NUL */
    cr_assert_eq(rl_policy_limit(p, "", 0), &p->lim);
    cr_assert_eq(rl_policy_limit(&c->policies[1], "acme", 4), &c->policies[1].lim);
    rl_config_free(c);
}

Test(lookup, binary_search_over_many_overrides)
{
    size_t cap = 64 * 1024, len;
    char *json = malloc(cap), id[16];
    struct rl_config *c;
    const struct rl_policy *p;

    cr_assert_not_null(json);
    len = (size_t)snprintf(json, cap, "{\"policies\":[" POL("") "],\"overrides\":[");
    for (int i = 0; i < 300; i++) /* ids of 1..3 digits, written in a shuffled order */
        len += (size_t)snprintf(json + len, cap - len,
                                "%s{\"policy\":\"a\",\"id\":\"%d\",\"limit\":%d}", i ? "," : "",
                                (i * 7919) % 300, (i * 7919) % 300 + 1);
    snprintf(json + len, cap - len, "]}");
    c = parse_ok(json);
    p = &c->policies[0];
    cr_assert_eq(p->noverrides, 300);
    for (size_t i = 1; i < p->noverrides; i++) {
        const struct rl_override *a = &p->overrides[i - 1], *b = &p->overrides[i];

        cr_assert(a->id_len < b->id_len ||
                  (a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) < 0));
    }
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "%d", i);
        cr_expect_eq(rl_policy_limit(p, id, strlen(id))->limit, i + 1, "id %s", id);
    }
    cr_assert_eq(rl_policy_limit(p, "300", 3), &p->lim);
    cr_assert_eq(rl_policy_limit(p, "00", 2), &p->lim);
    rl_config_free(c);
    free(json);
}

Test(lookup, policy_by_name_uses_the_length)
{
    struct rl_config *c = rl_config_default();

    cr_assert_not_null(c);
    cr_assert_eq(rl_config_policy(c, "per-org", 7), &c->policies[2]);
    cr_assert_eq(rl_config_policy(c, "per-orgX", 7), &c->policies[2]);
    cr_assert_null(rl_config_policy(c, "per", 3));
    cr_assert_null(rl_config_policy(c, "per-org2", 8));
    cr_assert_null(rl_config_policy(c, "", 0));
    rl_config_free(c);
}

/*----------------------------------------------------------------------------
 * Syntax errors: line and column of the offending byte
 *--------------------------------------------------------------------------*/

static void expect_syntax(const char *json, size_t len, const char *message)
{
    struct rl_error err = parse_err(json, len, NULL);

    cr_expect_str_eq(err.path, "");
    cr_expect_str_eq(err.message, message, "%s", json);
}

Test(syntax, line_and_column)
{
    expect_syntax("{\"a\": tru}", 10, "<config>: invalid JSON at line 1, column 10: boolean expected");
    expect_syntax("", 0, "<config>: invalid JSON at line 1, column 1: unexpected end of data");
    expect_syntax("{\n\"policies\": [\n", 16,
                  "<config>: invalid JSON at line 3, column 1: unexpected end of data");
    expect_syntax("{\"a\":1,}", 8, "<config>: invalid JSON at line 1, column 8: unexpected character");
    expect_syntax("{} x", 4, "<config>: invalid JSON at line 1, column 4: unexpected character");
    expect_syntax("{}\n\n  {}", 8,
                  "<config>: invalid JSON at line 3, column 3: unexpected character");
    expect_syntax("{\n  // note\n}", 13,
                  "<config>: invalid JSON at line 2, column 3: quoted object property name "
                  "expected");
    expect_syntax("{\"a\":\"\xff\"}", 9,
                  "<config>: invalid JSON at line 1, column 7: invalid utf-8 string");
    expect_syntax("{\"a\" \0 :1}", 10, "<config>: invalid JSON at line 1, column 6: NUL byte");
}

Test(syntax, the_length_is_honoured_not_the_nul)
{
    struct rl_config *c = NULL;

    /* Only the first 2 bytes are the config. */
    cr_assert_eq(rl_config_parse("{}garbage", 2, NULL, &c, NULL), RL_OK);
    rl_config_free(c);
}

Test(syntax, fixture_file_names_the_file_line_and_column)
{
    struct rl_config *c = SENTINEL;
    struct rl_error err = {0};
    const char *file = FIXTURE("config_syntax.json");
    char want[512];

    cr_assert_eq(rl_config_load(file, &c, &err), RL_EINVAL);
    cr_assert_eq(c, SENTINEL);
    snprintf(want, sizeof(want),
             "%s: invalid JSON at line 4, column 3: object value separator ',' expected", file);
    cr_assert_str_eq(err.message, want);
    cr_assert_str_eq(err.path, "");
}

/*----------------------------------------------------------------------------
 * Loading files
 *--------------------------------------------------------------------------*/

Test(load, missing_file_names_file_and_errno)
{
    struct rl_config *c = SENTINEL;
    struct rl_error err = {0};

    cr_assert_eq(rl_config_load("/nonexistent/ratelimitd.json", &c, &err), RL_EINVAL);
    cr_assert_eq(c, SENTINEL);
    cr_assert_str_eq(err.message,
                     "/nonexistent/ratelimitd.json: cannot open: No such file or directory");
    cr_assert_str_eq(err.path, "");
}

Test(load, directory_is_refused)
{
    struct rl_config *c = SENTINEL;
    struct rl_error err = {0};

    cr_assert_eq(rl_config_load("/", &c, &err), RL_EINVAL);
    cr_assert_str_eq(err.message, "/: cannot read: Is a directory");
}

/* A file of `size` bytes: "{}" then spaces. */
static void write_sized(const char *path, size_t size)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f);
    fputs("{}", f);
    for (size_t i = 2; i < size; i++)
        fputc(' ', f);
    fclose(f);
}

Test(load, one_mebibyte_is_the_limit)
{
    char path[64];
    struct rl_config *c = NULL;
    struct rl_error err = {0};
    char want[128];

    snprintf(path, sizeof(path), "/tmp/rl_test_config_%d.json", (int)getpid());
    write_sized(path, 1024 * 1024);
    cr_assert_eq(rl_config_load(path, &c, &err), RL_OK, "%s", err.message);
    rl_config_free(c);
    c = SENTINEL;
    write_sized(path, 1024 * 1024 + 1);
    cr_assert_eq(rl_config_load(path, &c, &err), RL_EINVAL);
    unlink(path);
    cr_assert_eq(c, SENTINEL);
    snprintf(want, sizeof(want), "%s: larger than 1 MiB", path);
    cr_assert_str_eq(err.message, want);
}

/*----------------------------------------------------------------------------
 * Reference counting
 *--------------------------------------------------------------------------*/

Test(refs, ref_and_unref_count_and_free_at_zero)
{
    struct rl_config *c = rl_config_default();

    cr_assert_eq(c->refs, 1);
    cr_assert_eq(rl_config_ref(c), c);
    cr_assert_eq(c->refs, 2);
    rl_config_unref(c);
    cr_assert_eq(c->refs, 1);
    rl_config_unref(c); /* frees: valgrind/ASan would report a leak otherwise */
    cr_assert_null(rl_config_ref(NULL));
    rl_config_unref(NULL);
    rl_config_free(NULL);
}

static void *refs_worker(void *arg)
{
    struct rl_config *c = arg;

    for (int i = 0; i < 100000; i++)
        rl_config_unref(rl_config_ref(c));
    return NULL;
}

Test(refs, concurrent_ref_unref_is_atomic)
{
    struct rl_config *c = rl_config_default();
    pthread_t th[4];

    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, refs_worker, c), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(c->refs, 1);
    rl_config_unref(c);
}
