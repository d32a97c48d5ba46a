/* test_request.c -- request.c: every 400 of the check endpoints and the field it
 * names (ids, ip, method, path, cost, policy=, envelope=, Idempotency-Key), the
 * precedence of parameters over headers, X-Request-ID echo or generation, the
 * envelope precedence and the idempotency fingerprint.
 * Configs are parsed from JSON with rl_config_parse, so the tests see real ones. */
#include "request.h"
#include "test_request_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The SPEC example (without Redis) plus an ip policy. Policy indexes:
 * 0 per-key, 1 per-org, 2 calls-post, 3 per-ip. Largest burst: the override
 * of "acme" (10000); without it, per-ip's 300 (per-org's limit 1000 has burst 200). */
#define POLICIES                                                                                   \
    "\"policies\": ["                                                                              \
    "{\"name\": \"per-key\", \"scope\": \"key\", \"limit\": 100, \"window\": \"60s\"},"            \
    "{\"name\": \"per-org\", \"scope\": \"org\", \"limit\": 1000, \"window\": \"1m\","             \
    " \"burst\": 200, \"envelope\": \"error\"},"                                                   \
    "{\"name\": \"calls-post\", \"scope\": \"caller\", \"limit\": 5, \"window\": \"1s\","          \
    " \"match\": {\"method\": \"POST\", \"path_prefix\": \"/v1/calls\"}, \"shadow\": true},"       \
    "{\"name\": \"per-ip\", \"scope\": \"ip\", \"limit\": 300, \"window\": \"1m\"}]"

static const char base_json[] =
    "{" POLICIES
    ", \"overrides\": [{\"policy\": \"per-org\", \"id\": \"acme\", \"limit\": 10000}]}";
static const char no_override_json[] = "{" POLICIES "}";
static const char custom_header_json[] =
    "{\"envelope\": \"typed\", \"identity\": {\"key\": \"X-Tenant-Key\", \"org\": \"X-Team\"}, "
    "" POLICIES "}";

static struct rl_request req;
static struct rl_error err;

/*----------------------------------------------------------------------------
 * Helpers
 *--------------------------------------------------------------------------*/

static void setup(void)
{
    rl_tf_setup(base_json);
}

static void teardown(void)
{
    rl_tf_teardown();
}

/* A raw value from bytes that may hold NULs. */
static struct rl_raw rawn(const char *s, size_t len)
{
    return (struct rl_raw){s, len};
}

/* n copies of c in buf (which must hold n + 1 bytes). */
static struct rl_raw repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return rawn(buf, n);
}

static int build_seed(uint64_t seed)
{
    memset(&err, 0, sizeof(err));
    memset(&req, 0x5a, sizeof(req)); /* build must not rely on a zeroed request */
    return rl_request_build(&req, &in, cfg, seed, &err);
}

static int build(void)
{
    return build_seed(42);
}

static void build_ok(void)
{
    int rc = build();

    cr_assert_eq(rc, RL_OK, "rc %d, path \"%s\": %s", rc, err.path, err.message);
}

/* The build fails with code / status and err.path names `field`. */
static void build_fails(int code, int status, const char *field)
{
    int rc = build();

    cr_assert_eq(rc, code, "rc %d (want %d), path \"%s\": %s", rc, code, err.path, err.message);
    cr_assert_eq(err.code, code);
    cr_assert_eq(err.http_status, status);
    cr_assert_str_eq(err.path, field);
    cr_assert_neq(err.message[0], '\0');
}

static void build_400(const char *field)
{
    build_fails(RL_EINVAL, 400, field);
}

static void assert_id(enum rl_scope s, const char *want, size_t len)
{
    cr_assert(req.has_id[s], "no id for scope %d", s);
    cr_assert_eq(req.id_len[s], len);
    cr_assert_eq(memcmp(req.id[s], want, len), 0);
    cr_assert_eq(req.id[s][len], '\0');
}

static bool is_generated_rid(const char *s)
{
    if (strlen(s) != 20 || strncmp(s, "req_", 4) != 0) return false;
    for (int i = 4; i < 20; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static uint64_t fingerprint(void)
{
    build_ok();
    return rl_request_fingerprint(&req);
}

/* The control bytes every id-like field must refuse, each inside a value. */
static const struct {
    const char *v;
    size_t len;
} ctl_values[] = {
    {"a\0b", 3},  {"\0", 1},   {"a\tb", 3},  {"a\rb", 3},     {"a\nb", 3},
    {"a\x7f", 2}, {"\x01", 1}, {"a\x1f", 2}, {"a\x1b[0m", 5},
};
#define NCTL (sizeof(ctl_values) / sizeof(ctl_values[0]))

/*----------------------------------------------------------------------------
 * Identities
 *--------------------------------------------------------------------------*/

TestSuite(ids, .init = setup, .fini = teardown);

Test(ids, query_parameter_wins_over_header)
{
    in.param_id[RL_SCOPE_KEY] = raw("from-param");
    in.header_id[RL_SCOPE_KEY] = raw("from-header");
    build_ok();
    assert_id(RL_SCOPE_KEY, "from-param", 10);
}

Test(ids, each_scope_reads_its_own_header)
{
    in.header_id[RL_SCOPE_CALLER] = raw("c1");
    in.header_id[RL_SCOPE_KEY] = raw("k22");
    in.header_id[RL_SCOPE_ORG] = raw("o333");
    in.header_id[RL_SCOPE_IP] = raw("10.0.0.1");
    build_ok();
    assert_id(RL_SCOPE_CALLER, "c1", 2);
    assert_id(RL_SCOPE_KEY, "k22", 3);
    assert_id(RL_SCOPE_ORG, "o333", 4);
    assert_id(RL_SCOPE_IP, "10.0.0.1", 8);
}

Test(ids, absent_everywhere_means_no_id)
{
    build_ok();
    for (int s = 0; s < RL_SCOPE_COUNT; s++) {
        cr_assert_not(req.has_id[s], "scope %d", s);
        cr_assert_eq(req.id_len[s], 0);
    }
}

/* nginx sends an empty header for an unset variable: it must not count as an id. */
Test(ids, empty_value_reads_as_absent)
{
    in.param_id[RL_SCOPE_ORG] = raw("");
    in.header_id[RL_SCOPE_ORG] = raw("");
    in.header_id[RL_SCOPE_CALLER] = raw("");
    build_ok();
    cr_assert_not(req.has_id[RL_SCOPE_ORG]);
    cr_assert_not(req.has_id[RL_SCOPE_CALLER]);
}

Test(ids, empty_parameter_falls_back_to_header)
{
    in.param_id[RL_SCOPE_KEY] = raw("");
    in.header_id[RL_SCOPE_KEY] = raw("hdr");
    build_ok();
    assert_id(RL_SCOPE_KEY, "hdr", 3);
}

Test(ids, exactly_128_bytes_accepted)
{
    char buf[RL_ID_MAX + 1];

    in.param_id[RL_SCOPE_CALLER] = repeat(buf, 'c', RL_ID_MAX);
    build_ok();
    assert_id(RL_SCOPE_CALLER, buf, RL_ID_MAX);
}

Test(ids, byte_129_rejected_naming_the_parameter)
{
    static const char *const names[RL_SCOPE_COUNT] = {"caller", "key", "org", "ip"};
    char buf[RL_ID_MAX + 2];

    for (int s = 0; s < RL_SCOPE_COUNT; s++) {
        memset(&in, 0, sizeof(in));
        in.param_id[s] = repeat(buf, 'x', RL_ID_MAX + 1);
        build_400(names[s]);
        cr_assert(strstr(err.message, names[s]) != NULL, "%s", err.message);
    }
}

Test(ids, byte_129_rejected_naming_the_header)
{
    static const char *const names[RL_SCOPE_COUNT] = {"X-Caller-Id", "X-Api-Key", "X-Org-Id",
                                                      "X-Real-IP"};
    char buf[RL_ID_MAX + 2];

    for (int s = 0; s < RL_SCOPE_COUNT; s++) {
        memset(&in, 0, sizeof(in));
        in.header_id[s] = repeat(buf, 'x', RL_ID_MAX + 1);
        build_400(names[s]);
    }
}

/* The parameter wins even when it is bad: no silent fallback to the header. */
Test(ids, bad_parameter_is_not_replaced_by_a_good_header)
{
    char buf[RL_ID_MAX + 2];

    in.param_id[RL_SCOPE_KEY] = repeat(buf, 'x', RL_ID_MAX + 1);
    in.header_id[RL_SCOPE_KEY] = raw("fine");
    build_400("key");
}

Test(ids, configured_identity_header_named_in_error)
{
    char buf[RL_ID_MAX + 2];

    use_config(custom_header_json);
    in.header_id[RL_SCOPE_KEY] = repeat(buf, 'k', RL_ID_MAX + 1);
    build_400("X-Tenant-Key");
    memset(&in, 0, sizeof(in));
    in.header_id[RL_SCOPE_ORG] = rawn("a\nb", 3);
    build_400("X-Team");
    memset(&in, 0, sizeof(in));
    in.header_id[RL_SCOPE_CALLER] = rawn("a\nb", 3); /* not configured: the default name */
    build_400("X-Caller-Id");
}

Test(ids, control_bytes_rejected_naming_the_field)
{
    for (size_t i = 0; i < NCTL; i++) {
        memset(&in, 0, sizeof(in));
        in.param_id[RL_SCOPE_ORG] = rawn(ctl_values[i].v, ctl_values[i].len);
        build_400("org");
        memset(&in, 0, sizeof(in));
        in.header_id[RL_SCOPE_ORG] = rawn(ctl_values[i].v, ctl_values[i].len);
        build_400("X-Org-Id");
    }
}

/* Only control bytes are refused; the store key escapes the rest (policy.c). */
Test(ids, other_bytes_kept_as_is)
{
    static const char *const ok[] = {"a:b",      "{tag}",       "100%",     "%3A",  "a b", "*",
                                     "\xff\xfe", "caf\xc3\xa9", "\xc3\x28", "\x80", "~!"};

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        memset(&in, 0, sizeof(in));
        in.param_id[RL_SCOPE_CALLER] = raw(ok[i]);
        build_ok();
        assert_id(RL_SCOPE_CALLER, ok[i], strlen(ok[i]));
    }
}

/*----------------------------------------------------------------------------
 * The ip scope: ip=, X-Real-IP, last X-Forwarded-For entry
 *--------------------------------------------------------------------------*/

TestSuite(ip, .init = setup, .fini = teardown);

Test(ip, parameter_wins_over_real_ip_and_forwarded_for)
{
    in.param_id[RL_SCOPE_IP] = raw("1.0.0.1");
    in.header_id[RL_SCOPE_IP] = raw("2.0.0.2");
    in.forwarded_for = raw("3.0.0.3");
    build_ok();
    assert_id(RL_SCOPE_IP, "1.0.0.1", 7);
}

Test(ip, real_ip_wins_over_forwarded_for)
{
    in.header_id[RL_SCOPE_IP] = raw("2.0.0.2");
    in.forwarded_for = raw("3.0.0.3");
    build_ok();
    assert_id(RL_SCOPE_IP, "2.0.0.2", 7);
}

/* The trusted proxy appends the client address: the earlier entries are the
 * client's own claims and must not be used. */
Test(ip, last_forwarded_for_entry_trimmed)
{
    in.forwarded_for = raw("1.1.1.1, 2.2.2.2 ");
    build_ok();
    assert_id(RL_SCOPE_IP, "2.2.2.2", 7);
}

Test(ip, single_forwarded_for_entry_trimmed_of_spaces_and_tabs)
{
    in.forwarded_for = raw(" \t2001:db8::1\t ");
    build_ok();
    assert_id(RL_SCOPE_IP, "2001:db8::1", 11);
}

Test(ip, forwarded_for_without_spaces)
{
    in.forwarded_for = raw("9.9.9.9,8.8.8.8,7.7.7.7");
    build_ok();
    assert_id(RL_SCOPE_IP, "7.7.7.7", 7);
}

/* An empty last entry is no ip at all: never fall back to a client-set entry. */
Test(ip, empty_last_forwarded_for_entry_is_no_ip)
{
    in.forwarded_for = raw("1.1.1.1, ");
    build_ok();
    cr_assert_not(req.has_id[RL_SCOPE_IP]);
}

Test(ip, empty_real_ip_falls_back_to_forwarded_for)
{
    in.header_id[RL_SCOPE_IP] = raw("");
    in.forwarded_for = raw("5.5.5.5");
    build_ok();
    assert_id(RL_SCOPE_IP, "5.5.5.5", 7);
}

/* Only the last entry is an id: a long list of hops is fine. */
Test(ip, only_the_last_entry_is_measured)
{
    char list[1024];
    size_t n = 0;

    while (n < 600)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "10.0.0.%zu, ", n % 250);
    snprintf(list + n, sizeof(list) - n, "4.4.4.4");
    in.forwarded_for = raw(list);
    build_ok();
    assert_id(RL_SCOPE_IP, "4.4.4.4", 7);
}

Test(ip, errors_name_the_source)
{
    char buf[9 + RL_ID_MAX + 1];

    in.param_id[RL_SCOPE_IP] = rawn("1.1.1.1\r", 8);
    build_400("ip");
    memset(&in, 0, sizeof(in));
    in.header_id[RL_SCOPE_IP] = rawn("1.1.1.1\0", 8);
    build_400("X-Real-IP");
    memset(&in, 0, sizeof(in));
    in.forwarded_for = raw("1.1.1.1, 2.2.\x7f.2");
    build_400("X-Forwarded-For");
    memset(&in, 0, sizeof(in));
    memcpy(buf, "1.1.1.1, ", 9);
    memset(buf + 9, '9', RL_ID_MAX + 1);
    in.forwarded_for = rawn(buf, 9 + RL_ID_MAX + 1);
    build_400("X-Forwarded-For");
}

/*----------------------------------------------------------------------------
 * Method
 *--------------------------------------------------------------------------*/

TestSuite(method, .init = setup, .fini = teardown);

Test(method, parameter_then_original_method_then_http_method)
{
    in.param_method = raw("PUT");
    in.orig_method = raw("DELETE");
    in.http_method = raw("GET");
    build_ok();
    cr_assert_str_eq(req.method, "PUT");
    in.param_method = raw("");
    build_ok();
    cr_assert_str_eq(req.method, "DELETE");
    in.orig_method = rawn(NULL, 0);
    build_ok();
    cr_assert_str_eq(req.method, "GET");
}

Test(method, upper_cased)
{
    in.param_method = raw("post");
    build_ok();
    cr_assert_str_eq(req.method, "POST");
    in.param_method = raw("m-Search");
    build_ok();
    cr_assert_str_eq(req.method, "M-SEARCH");
}

Test(method, absent_everywhere_is_empty)
{
    build_ok();
    cr_assert_str_eq(req.method, "");
}

Test(method, every_token_character_accepted)
{
    in.param_method = raw("!#$%&'*+-.^_`|~");
    build_ok();
    cr_assert_str_eq(req.method, "!#$%&'*+-.^_`|~");
}

Test(method, fifteen_bytes_accepted_sixteen_rejected)
{
    in.param_method = raw("ABCDEFGHIJKLMNO");
    build_ok();
    cr_assert_str_eq(req.method, "ABCDEFGHIJKLMNO");
    in.param_method = raw("ABCDEFGHIJKLMNOP");
    build_400("method");
    in.param_method = rawn(NULL, 0);
    in.orig_method = raw("ABCDEFGHIJKLMNOP");
    build_400("X-Original-Method");
    in.orig_method = rawn(NULL, 0);
    in.http_method = raw("ABCDEFGHIJKLMNOP");
    build_400("method");
}

Test(method, non_token_bytes_rejected_naming_the_source)
{
    static const struct {
        const char *v;
        size_t len;
    } bad[] = {{"GE T", 4},  {"GET\r", 4}, {"GE\0T", 4},     {"\0", 1},  {"GE/T", 4},
               {"G(ET)", 5}, {"GET,", 4},  {"\xc3\x89T", 3}, {"G\"", 2}, {"G\x7f", 2}};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&in, 0, sizeof(in));
        in.param_method = rawn(bad[i].v, bad[i].len);
        build_400("method");
        memset(&in, 0, sizeof(in));
        in.orig_method = rawn(bad[i].v, bad[i].len);
        build_400("X-Original-Method");
    }
}

/*----------------------------------------------------------------------------
 * Path
 *--------------------------------------------------------------------------*/

TestSuite(path, .init = setup, .fini = teardown);

Test(path, parameter_wins_over_original_uri)
{
    in.param_path = raw("/from/param");
    in.orig_uri = raw("/from/uri");
    build_ok();
    cr_assert_str_eq(req.path, "/from/param");
    in.param_path = raw("");
    build_ok();
    cr_assert_str_eq(req.path, "/from/uri");
}

Test(path, absent_is_empty)
{
    build_ok();
    cr_assert_str_eq(req.path, "");
}

Test(path, query_string_and_fragment_cut)
{
    in.orig_uri = raw("/v1/calls?limit=5&x=/y");
    build_ok();
    cr_assert_str_eq(req.path, "/v1/calls");
    in.orig_uri = raw("/v1/calls#frag");
    build_ok();
    cr_assert_str_eq(req.path, "/v1/calls");
    in.orig_uri = raw("/a#frag?x");
    build_ok();
    cr_assert_str_eq(req.path, "/a");
    in.orig_uri = raw("?only=query");
    build_ok();
    cr_assert_str_eq(req.path, "");
}

Test(path, longest_path_kept_longer_cut)
{
    static char buf[4096];

    in.param_path = repeat(buf, 'p', RL_PATH_MAX - 1);
    build_ok();
    cr_assert_eq(strlen(req.path), RL_PATH_MAX - 1);
    in.param_path = repeat(buf, 'p', RL_PATH_MAX);
    build_ok();
    cr_assert_eq(strlen(req.path), RL_PATH_MAX - 1);
    in.param_path = repeat(buf, 'q', sizeof(buf) - 1);
    build_ok();
    cr_assert_eq(strlen(req.path), RL_PATH_MAX - 1);
    cr_assert_eq(memcmp(req.path, buf, RL_PATH_MAX - 1), 0);
}

Test(path, control_byte_rejected_naming_the_source)
{
    for (size_t i = 0; i < NCTL; i++) {
        memset(&in, 0, sizeof(in));
        in.param_path = rawn(ctl_values[i].v, ctl_values[i].len);
        build_400("path");
        memset(&in, 0, sizeof(in));
        in.orig_uri = rawn(ctl_values[i].v, ctl_values[i].len);
        build_400("X-Original-URI");
    }
}

/* The query string is cut before the check, so what it holds does not matter. */
Test(path, control_byte_in_query_string_ignored)
{
    in.orig_uri = rawn("/a?x=\n\0", 7);
    build_ok();
    cr_assert_str_eq(req.path, "/a");
}

/*----------------------------------------------------------------------------
 * Cost
 *--------------------------------------------------------------------------*/

TestSuite(cost, .init = setup, .fini = teardown);

Test(cost, default_is_one)
{
    build_ok();
    cr_assert_eq(req.cost, 1);
}

Test(cost, plain_integers_accepted)
{
    in.cost = raw("1");
    build_ok();
    cr_assert_eq(req.cost, 1);
    in.cost = raw("250");
    build_ok();
    cr_assert_eq(req.cost, 250);
    in.cost = raw("007");
    build_ok();
    cr_assert_eq(req.cost, 7);
}

Test(cost, not_an_integer_in_range_rejected)
{
    static const char *const bad[] = {
        "0",  "-1",   "1.5", "",      "abc", "99999999999999999999", "+1", " 1",
        "1 ", "0x10", "1e3", "10001", "-0",  "18446744073709551617"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        in.cost = raw(bad[i]);
        build_400("cost");
    }
    in.cost = rawn("1\0", 2);
    build_400("cost");
}

/* The largest capacity counts overrides: only "acme" of per-org holds 10000. */
Test(cost, largest_burst_of_config_overrides_included)
{
    in.cost = raw("10000");
    build_ok();
    cr_assert_eq(req.cost, 10000);
    in.cost = raw("10001");
    build_400("cost");
    cr_assert(strstr(err.message, "10000") != NULL, "%s", err.message);
}

/* Without the override the largest burst is per-ip's 300; per-org's limit of
 * 1000 does not count, its burst is 200. */
Test(cost, largest_burst_not_largest_limit)
{
    use_config(no_override_json);
    in.cost = raw("300");
    build_ok();
    cr_assert_eq(req.cost, 300);
    in.cost = raw("301");
    build_400("cost");
    in.cost = raw("1000");
    build_400("cost");
}

/*----------------------------------------------------------------------------
 * policy=
 *--------------------------------------------------------------------------*/

TestSuite(policy, .init = setup, .fini = teardown);

Test(policy, absent_allows_every_policy)
{
    build_ok();
    cr_assert_eq(req.policy_mask, UINT32_MAX);
    cr_assert_not(req.has_policy_filter);
}

Test(policy, one_name_sets_its_config_index)
{
    in.policy = raw("calls-post");
    build_ok();
    cr_assert_eq(req.policy_mask, UINT32_C(1) << 2);
    cr_assert(req.has_policy_filter);
}

Test(policy, list_sets_every_named_bit)
{
    in.policy = raw("per-ip,per-key");
    build_ok();
    cr_assert_eq(req.policy_mask, (UINT32_C(1) << 3) | UINT32_C(1));
    in.policy = raw("per-key,per-key");
    build_ok();
    cr_assert_eq(req.policy_mask, UINT32_C(1));
}

Test(policy, unknown_name_is_404)
{
    static const char *const bad[] = {"nope", "per-key,nope", "PER-KEY",
                                      "per",  "per-key ",     " per-key"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        in.policy = raw(bad[i]);
        build_fails(RL_ENOTFOUND, 404, "policy");
    }
    in.policy = raw("per-key,ghost");
    build_fails(RL_ENOTFOUND, 404, "policy");
    cr_assert(strstr(err.message, "\"ghost\"") != NULL, "%s", err.message);
}

Test(policy, empty_element_is_400)
{
    static const char *const bad[] = {"", ",per-key", "per-key,,per-org", "per-key,", ","};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        in.policy = raw(bad[i]);
        build_400("policy");
    }
}

/*----------------------------------------------------------------------------
 * envelope= and errors rendered in it
 *--------------------------------------------------------------------------*/

TestSuite(envelope, .init = setup, .fini = teardown);

Test(envelope, each_name_maps)
{
    static const char *const names[RL_ENV_COUNT] = {"problem", "error", "typed",
                                                    "simple",  "flat",  "ws"};

    for (int e = 0; e < RL_ENV_COUNT; e++) {
        in.envelope = raw(names[e]);
        build_ok();
        cr_assert_eq(req.envelope, e, "%s", names[e]);
    }
}

Test(envelope, absent_is_minus_one)
{
    build_ok();
    cr_assert_eq(req.envelope, -1);
}

Test(envelope, unknown_is_400)
{
    static const char *const bad[] = {"json", "", "Problem", "problem ", "w", "wss"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        in.envelope = raw(bad[i]);
        build_400("envelope");
        cr_assert_eq(req.envelope, -1);
        cr_assert(is_generated_rid(req.request_id), "%s", req.request_id);
    }
}

/* Every kind of error still leaves request_id and envelope for the renderer. */
Test(envelope, any_error_keeps_request_id_and_envelope)
{
    char big[RL_ID_MAX + 2];
    struct rl_raw *field[] = {&in.param_id[RL_SCOPE_KEY],
                              &in.header_id[RL_SCOPE_ORG],
                              &in.forwarded_for,
                              &in.param_method,
                              &in.orig_uri,
                              &in.cost,
                              &in.policy,
                              &in.idem_key};
    const struct rl_raw bad[] = {repeat(big, 'k', RL_ID_MAX + 1),
                                 rawn("a\0", 2),
                                 raw("\x01"),
                                 raw("G ET"),
                                 raw("/\n"),
                                 raw("0"),
                                 raw("ghost"),
                                 raw("")};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&in, 0, sizeof(in));
        in.envelope = raw("ws");
        in.request_id = raw("rid-1");
        *field[i] = bad[i];
        cr_assert_neq(build(), RL_OK, "case %zu", i);
        cr_assert_str_eq(req.request_id, "rid-1", "case %zu", i);
        cr_assert_eq(req.envelope, RL_ENV_WS, "case %zu", i);
    }
}

Test(envelope, error_without_request_id_gets_a_generated_one)
{
    in.envelope = raw("flat");
    in.cost = raw("abc");
    build_400("cost");
    cr_assert(is_generated_rid(req.request_id), "%s", req.request_id);
    cr_assert_eq(req.envelope, RL_ENV_FLAT);
}

/* request envelope > policy envelope > config envelope. */
Test(envelope, precedence_request_policy_config)
{
    const struct rl_policy *per_org, *per_key;

    use_config(custom_header_json); /* global "typed"; per-org says "error" */
    per_org = rl_config_policy(cfg, "per-org", 7);
    per_key = rl_config_policy(cfg, "per-key", 7);
    cr_assert_not_null(per_org);
    cr_assert_not_null(per_key);
    in.envelope = raw("ws");
    build_ok();
    cr_assert_eq(rl_request_envelope(&req, per_org, cfg), RL_ENV_WS);
    cr_assert_eq(rl_request_envelope(&req, NULL, cfg), RL_ENV_WS);
    in.envelope = rawn(NULL, 0);
    build_ok();
    cr_assert_eq(rl_request_envelope(&req, per_org, cfg), RL_ENV_ERROR);
    cr_assert_eq(rl_request_envelope(&req, per_key, cfg), RL_ENV_TYPED);
    cr_assert_eq(rl_request_envelope(&req, NULL, cfg), RL_ENV_TYPED);
}

Test(envelope, request_envelope_problem_beats_policy)
{
    in.envelope = raw("problem");
    build_ok();
    cr_assert_eq(rl_request_envelope(&req, rl_config_policy(cfg, "per-org", 7), cfg),
                 RL_ENV_PROBLEM);
}

/*----------------------------------------------------------------------------
 * X-Request-ID
 *--------------------------------------------------------------------------*/

TestSuite(request_id, .init = setup, .fini = teardown);

Test(request_id, printable_ascii_kept)
{
    char all[0x7f - 0x21 + 1], buf[RL_ID_MAX + 1];
    static const char *const ok[] = {"x", "abc-123", "{\"a\":1}", "%00"};

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        in.request_id = raw(ok[i]);
        build_ok();
        cr_assert_str_eq(req.request_id, ok[i]);
    }
    for (int c = 0x21; c <= 0x7e; c++)
        all[c - 0x21] = (char)c;
    all[sizeof(all) - 1] = '\0';
    in.request_id = raw(all);
    build_ok();
    cr_assert_str_eq(req.request_id, all);
    in.request_id = repeat(buf, 'r', RL_ID_MAX);
    build_ok();
    cr_assert_str_eq(req.request_id, buf);
}

Test(request_id, replaced_when_absent_empty_long_or_not_printable)
{
    char buf[RL_ID_MAX + 2];
    const struct rl_raw bad[] = {rawn(NULL, 0),
                                 raw(""),
                                 repeat(buf, 'r', RL_ID_MAX + 1),
                                 raw("a b"),
                                 raw(" "),
                                 raw("a\tb"),
                                 rawn("a\0b", 3),
                                 raw("a\x7f"),
                                 raw("caf\xc3\xa9"),
                                 raw("\xff"),
                                 raw("id\r\nX-Injected: 1")};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        in.request_id = bad[i];
        build_ok();
        cr_assert(is_generated_rid(req.request_id), "case %zu: %s", i, req.request_id);
    }
}

Test(request_id, same_seed_same_id_different_seeds_differ)
{
    char first[RL_ID_MAX + 1];
    static char seen[1000][21];

    cr_assert_eq(build_seed(7), RL_OK);
    strcpy(first, req.request_id);
    cr_assert_eq(build_seed(7), RL_OK);
    cr_assert_str_eq(req.request_id, first);
    for (uint64_t s = 0; s < 1000; s++) {
        cr_assert_eq(build_seed(s), RL_OK);
        cr_assert(is_generated_rid(req.request_id));
        strcpy(seen[s], req.request_id);
        for (uint64_t t = 0; t < s; t++)
            cr_assert_str_neq(seen[t], seen[s], "seeds %llu and %llu", (unsigned long long)t,
                              (unsigned long long)s);
    }
}

/*----------------------------------------------------------------------------
 * Idempotency-Key
 *--------------------------------------------------------------------------*/

TestSuite(idempotency, .init = setup, .fini = teardown);

Test(idempotency, absent_is_empty)
{
    build_ok();
    cr_assert_str_eq(req.idem_key, "");
}

Test(idempotency, up_to_128_bytes_kept)
{
    char buf[RL_ID_MAX + 1];

    in.idem_key = raw("order-7:{x}%");
    build_ok();
    cr_assert_str_eq(req.idem_key, "order-7:{x}%");
    in.idem_key = repeat(buf, 'i', RL_ID_MAX);
    build_ok();
    cr_assert_str_eq(req.idem_key, buf);
}

Test(idempotency, too_long_empty_or_control_rejected)
{
    char buf[RL_ID_MAX + 2];

    in.idem_key = repeat(buf, 'i', RL_ID_MAX + 1);
    build_400("Idempotency-Key");
    in.idem_key = raw("");
    build_400("Idempotency-Key");
    for (size_t i = 0; i < NCTL; i++) {
        in.idem_key = rawn(ctl_values[i].v, ctl_values[i].len);
        build_400("Idempotency-Key");
    }
}

/*----------------------------------------------------------------------------
 * Fingerprint
 *--------------------------------------------------------------------------*/

TestSuite(fingerprint, .init = setup, .fini = teardown);

/* A full request; each test changes one thing. */
static void fp_base(void)
{
    memset(&in, 0, sizeof(in));
    in.http_method = raw("POST");
    in.orig_uri = raw("/v1/calls/7");
    in.param_id[RL_SCOPE_CALLER] = raw("c");
    in.param_id[RL_SCOPE_KEY] = raw("k");
    in.param_id[RL_SCOPE_ORG] = raw("o");
    in.param_id[RL_SCOPE_IP] = raw("1.2.3.4");
    in.cost = raw("2");
    in.policy = raw("per-key,per-org");
}

Test(fingerprint, equal_for_identical_requests)
{
    uint64_t a;

    fp_base();
    a = fingerprint();
    fp_base();
    cr_assert_eq(fingerprint(), a);
}

/* A retry carries the same Idempotency-Key and often a new X-Request-ID; the
 * envelope only shapes the answer. None of them is part of "the request". */
Test(fingerprint, ignores_request_id_idempotency_key_and_envelope)
{
    uint64_t a;

    fp_base();
    a = fingerprint();
    in.request_id = raw("another");
    in.idem_key = raw("idem-1");
    in.envelope = raw("ws");
    cr_assert_eq(fingerprint(), a);
    cr_assert_eq(build_seed(999), RL_OK);
    cr_assert_eq(rl_request_fingerprint(&req), a);
}

Test(fingerprint, differs_when_any_field_changes)
{
    struct rl_raw *field[] = {&in.http_method,
                              &in.orig_uri,
                              &in.param_id[RL_SCOPE_CALLER],
                              &in.param_id[RL_SCOPE_KEY],
                              &in.param_id[RL_SCOPE_ORG],
                              &in.param_id[RL_SCOPE_IP],
                              &in.cost,
                              &in.policy,
                              &in.policy};
    const struct rl_raw other[] = {raw("PUT"), raw("/v1/calls/8"), raw("C"),
                                   raw("k2"),  raw("o2"),          raw("1.2.3.5"),
                                   raw("3"),   raw("per-key"),     rawn(NULL, 0)};
    uint64_t a;

    fp_base();
    a = fingerprint();
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        fp_base();
        *field[i] = other[i];
        cr_assert_neq(fingerprint(), a, "case %zu", i);
    }
}

Test(fingerprint, id_present_vs_absent_differs)
{
    uint64_t a;

    for (int s = 0; s < RL_SCOPE_COUNT; s++) {
        fp_base();
        a = fingerprint();
        in.param_id[s] = rawn(NULL, 0);
        cr_assert_neq(fingerprint(), a, "scope %d", s);
    }
}

Test(fingerprint, same_id_under_another_scope_differs)
{
    uint64_t a;

    memset(&in, 0, sizeof(in));
    in.param_id[RL_SCOPE_KEY] = raw("x");
    a = fingerprint();
    memset(&in, 0, sizeof(in));
    in.param_id[RL_SCOPE_ORG] = raw("x");
    cr_assert_neq(fingerprint(), a);
}

/* Moving bytes across a field boundary gives another request. */
Test(fingerprint, field_splits_differ)
{
    uint64_t a;

    memset(&in, 0, sizeof(in));
    in.param_id[RL_SCOPE_CALLER] = raw("ab");
    in.param_id[RL_SCOPE_ORG] = raw("c");
    a = fingerprint();
    in.param_id[RL_SCOPE_CALLER] = raw("a");
    in.param_id[RL_SCOPE_ORG] = raw("bc");
    cr_assert_neq(fingerprint(), a);

    memset(&in, 0, sizeof(in));
    in.param_method = raw("GET");
    in.param_path = raw("X/y");
    a = fingerprint();
    in.param_method = raw("GETX");
    in.param_path = raw("/y");
    cr_assert_neq(fingerprint(), a);

    memset(&in, 0, sizeof(in));
    in.param_path = raw("/a");
    in.param_id[RL_SCOPE_CALLER] = raw("b");
    a = fingerprint();
    in.param_path = raw("/ab");
    in.param_id[RL_SCOPE_CALLER] = rawn(NULL, 0);
    cr_assert_neq(fingerprint(), a);
}
