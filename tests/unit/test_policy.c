/* test_policy.c -- policy.c: which policies a request matches (scope id, method,
 * path prefix, policy= filter, config order, overrides), rl_policy_for_id, the
 * id escaping and the store keys: exact strings, truncation, and injectivity
 * over hand-picked and random ids (no id reaches another policy's, scope's or
 * id's key, nor forms a hash tag). Configs are parsed from JSON; requests are
 * built with rl_request_build, as the HTTP front does. */
#include "policy.h"
#include "test_request_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Policy indexes: 0 per-key, 1 per-org, 2 calls-post, 3 per-caller, 4 reads,
 * 5 admin, 6 per-ip. Overrides: per-org "acme", per-key "vip:1". */
static const char match_json[] =
    "{\"policies\": ["
    "{\"name\": \"per-key\", \"scope\": \"key\", \"limit\": 100, \"window\": \"60s\"},"
    "{\"name\": \"per-org\", \"scope\": \"org\", \"limit\": 1000, \"window\": \"1m\","
    " \"burst\": 200},"
    "{\"name\": \"calls-post\", \"scope\": \"caller\", \"limit\": 5, \"window\": \"1s\","
    " \"match\": {\"method\": \"post\", \"path_prefix\": \"/v1/calls\"}, \"shadow\": true},"
    "{\"name\": \"per-caller\", \"scope\": \"caller\", \"limit\": 60, \"window\": \"1m\"},"
    "{\"name\": \"reads\", \"scope\": \"key\", \"limit\": 10, \"window\": \"1s\","
    " \"match\": {\"method\": \"GET\"}},"
    "{\"name\": \"admin\", \"scope\": \"caller\", \"limit\": 3, \"window\": \"1s\","
    " \"match\": {\"path_prefix\": \"/admin\"}, \"shadow\": true},"
    "{\"name\": \"per-ip\", \"scope\": \"ip\", \"limit\": 300, \"window\": \"1m\"}],"
    "\"overrides\": ["
    "{\"policy\": \"per-org\", \"id\": \"acme\", \"limit\": 10000},"
    "{\"policy\": \"per-key\", \"id\": \"vip:1\", \"limit\": 500, \"burst\": 50,"
    " \"window\": \"1s\"}]}";

/* Names that look like scopes or like each other, one or more per scope. */
static const char keys_json[] =
    "{\"policies\": ["
    "{\"name\": \"a\", \"scope\": \"key\", \"limit\": 1, \"window\": \"1s\"},"
    "{\"name\": \"a.b\", \"scope\": \"key\", \"limit\": 1, \"window\": \"1s\"},"
    "{\"name\": \"a-b\", \"scope\": \"org\", \"limit\": 1, \"window\": \"1s\"},"
    "{\"name\": \"a_b\", \"scope\": \"caller\", \"limit\": 1, \"window\": \"1s\"},"
    "{\"name\": \"key\", \"scope\": \"org\", \"limit\": 1, \"window\": \"1s\"},"
    "{\"name\": \"org\", \"scope\": \"key\", \"limit\": 1, \"window\": \"1s\"},"
    "{\"name\": \"ip\", \"scope\": \"caller\", \"limit\": 1, \"window\": \"1s\"},"
    "{\"name\": \"caller\", \"scope\": \"ip\", \"limit\": 1, \"window\": \"1s\"}]}";

static struct rl_request req;
static struct rl_bucket_ref refs[RL_MAX_POLICIES];
static size_t n;

/*----------------------------------------------------------------------------
 * Helpers
 *--------------------------------------------------------------------------*/

static void setup(void)
{
    rl_tf_setup(match_json);
}

static void teardown(void)
{
    rl_tf_teardown();
}

/* The request's ids by scope (NULL: absent), method and path (NULL: absent). */
static void ids(const char *caller, const char *key, const char *org, const char *ip)
{
    in.param_id[RL_SCOPE_CALLER] = raw(caller);
    in.param_id[RL_SCOPE_KEY] = raw(key);
    in.param_id[RL_SCOPE_ORG] = raw(org);
    in.param_id[RL_SCOPE_IP] = raw(ip);
}

static void at(const char *method, const char *path)
{
    in.http_method = raw(method);
    in.orig_uri = raw(path);
}

/* Build the request and match it into refs[0..n). */
static void match(void)
{
    struct rl_error err = {0};
    int rc = rl_request_build(&req, &in, cfg, 1, &err);

    cr_assert_eq(rc, RL_OK, "%s: %s", err.path, err.message);
    memset(refs, 0x5a, sizeof(refs));
    n = 99;
    cr_assert_eq(rl_policy_match(cfg, &req, refs, RL_MAX_POLICIES, &n), RL_OK);
}

/* The names of refs[0..n), comma separated, equal `want`. */
static void assert_names(const char *want)
{
    char got[RL_MAX_POLICIES * RL_NAME_MAX] = "";
    size_t w = 0;

    cr_assert_leq(n, RL_MAX_POLICIES);
    for (size_t i = 0; i < n; i++)
        w += (size_t)snprintf(got + w, sizeof(got) - w, "%s%s", i ? "," : "", refs[i].policy->name);
    cr_assert_str_eq(got, want, "method \"%s\" path \"%s\"", req.method, req.path);
}

/* The ref of the named policy among refs[0..n), or fail. */
static const struct rl_bucket_ref *ref_of(const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(refs[i].policy->name, name) == 0) return &refs[i];
    cr_assert_fail("policy %s not matched", name);
    return NULL;
}

static void assert_lim(const struct rl_limit *l, int64_t limit, int64_t burst, int64_t ms)
{
    cr_assert_eq(l->limit, limit);
    cr_assert_eq(l->burst, burst);
    cr_assert_eq(l->window_ms, ms);
}

/* The store key of (policy `name`, id) with the config's prefix. */
static size_t key_of(char *buf, const char *name, const char *id, size_t id_len)
{
    const struct rl_policy *p = rl_config_policy(cfg, name, strlen(name));
    struct rl_bucket_ref ref;
    size_t len;

    cr_assert_not_null(p, "no policy %s", name);
    memset(&ref, 0, sizeof(ref));
    ref.policy = p;
    ref.policy_index = (int)(p - cfg->policies);
    ref.id = id;
    ref.id_len = id_len;
    len = rl_policy_key(buf, RL_KEY_MAX, cfg->redis_prefix, &ref);
    cr_assert_eq(len, strlen(buf));
    cr_assert_lt(len, RL_KEY_MAX);
    return len;
}

/* The escape of one byte, written independently of policy.c. */
static bool kept(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '~' || c == '-';
}

/* Nothing a hash tag, a pattern or a protocol line could trip over. */
static void assert_key_is_safe(const char *key, size_t len)
{
    size_t colons = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];

        cr_assert(c > 0x20 && c < 0x7f, "byte 0x%02x in %s", c, key);
        cr_assert(c != '{' && c != '}' && c != '*' && c != '?' && c != '[', "%s", key);
        colons += c == ':';
    }
    cr_assert_eq(colons, 3, "%s", key); /* "rl:" + two separators */
}

/* xorshift64*: reproducible "random" ids. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545f4914f6cdd1dULL;
}

/*----------------------------------------------------------------------------
 * rl_policy_match
 *--------------------------------------------------------------------------*/

TestSuite(match, .init = setup, .fini = teardown);

Test(match, no_id_no_policy)
{
    at("POST", "/v1/calls");
    match();
    cr_assert_eq(n, 0);
}

Test(match, only_policies_whose_scope_id_is_present)
{
    at("PUT", "/x");
    ids(NULL, "k", NULL, NULL);
    match();
    assert_names("per-key");
    ids(NULL, NULL, "o", NULL);
    match();
    assert_names("per-org");
    ids(NULL, NULL, NULL, "1.2.3.4");
    match();
    assert_names("per-ip");
    ids("c", NULL, NULL, NULL);
    match();
    assert_names("per-caller");
}

/* Ids from headers count as well as parameters; an empty header is no id. */
Test(match, ids_from_headers)
{
    at("PUT", "/x");
    in.header_id[RL_SCOPE_ORG] = raw("o");
    in.header_id[RL_SCOPE_KEY] = raw("");
    in.forwarded_for = raw("9.9.9.9, 1.2.3.4");
    match();
    assert_names("per-org,per-ip");
    cr_assert_eq(ref_of("per-ip")->id_len, 7);
    cr_assert_eq(memcmp(ref_of("per-ip")->id, "1.2.3.4", 7), 0);
}

Test(match, several_policies_in_config_order)
{
    ids("c", "k", "o", "1.2.3.4");
    at("POST", "/v1/calls/7");
    match();
    assert_names("per-key,per-org,calls-post,per-caller,per-ip");
    at("GET", "/admin/users");
    match();
    assert_names("per-key,per-org,per-caller,reads,admin,per-ip");
}

/* The config upper-cases "post", the request upper-cases its method. */
Test(match, method_compared_upper_case)
{
    ids("c", NULL, NULL, NULL);
    at("post", "/v1/calls");
    match();
    assert_names("calls-post,per-caller");
    at("GET", "/v1/calls");
    match();
    assert_names("per-caller");
    in.http_method = raw("GET");
    in.orig_method = raw("Post"); /* nginx's X-Original-Method wins */
    match();
    assert_names("calls-post,per-caller");
}

Test(match, method_must_equal_not_prefix)
{
    ids("c", "k", NULL, NULL);
    at("POSTX", "/v1/calls");
    match();
    assert_names("per-key,per-caller");
    at("GE", "/");
    match();
    assert_names("per-key,per-caller");
}

Test(match, no_method_fits_no_method_match)
{
    ids("c", "k", NULL, NULL);
    at(NULL, "/admin");
    match();
    assert_names("per-key,per-caller,admin");
}

Test(match, no_path_fits_no_path_match)
{
    ids("c", "k", NULL, NULL);
    at("POST", NULL);
    match();
    assert_names("per-key,per-caller");
}

/* path_prefix is a plain byte prefix, not a path segment: "/v1/calls" also
 * covers "/v1/callsX". Write "/v1/calls/" to match below the segment only. */
Test(match, path_prefix_is_a_plain_byte_prefix)
{
    static const char *const fits[] = {"/v1/calls", "/v1/calls/7", "/v1/callsX", "/v1/calls?x=1",
                                       "/v1/calls#f"};
    static const char *const misses[] = {"/v1/call", "/v1/c", "/V1/calls",  "/x/v1/calls",
                                         "v1/calls", "",      "/v1//calls", "/v1/cal?ls"};

    ids("c", NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof(fits) / sizeof(fits[0]); i++) {
        at("POST", fits[i]);
        match();
        assert_names("calls-post,per-caller");
    }
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        at("POST", misses[i]);
        match();
        assert_names("per-caller");
    }
}

/* A path cut at RL_PATH_MAX - 1 bytes still matches by its prefix. */
Test(match, long_path_matches_by_prefix)
{
    static char path[3 * RL_PATH_MAX];

    memset(path, 'z', sizeof(path) - 1);
    memcpy(path, "/admin/", 7);
    ids("c", NULL, NULL, NULL);
    at("GET", path);
    match();
    assert_names("per-caller,admin");
}

Test(match, method_and_path_both_needed)
{
    ids("c", NULL, NULL, NULL);
    at("POST", "/other");
    match();
    assert_names("per-caller");
    at("PUT", "/v1/calls");
    match();
    assert_names("per-caller");
}

Test(match, policy_filter_restricts)
{
    ids("c", "k", "o", NULL);
    at("POST", "/v1/calls");
    in.policy = raw("per-caller");
    match();
    assert_names("per-caller");
    in.policy = raw("per-org,calls-post");
    match();
    assert_names("per-org,calls-post");
}

/* The filter only narrows: a named policy still needs its id and its match. */
Test(match, policy_filter_does_not_force_a_policy)
{
    ids("c", NULL, NULL, NULL);
    at("GET", "/v1/calls");
    in.policy = raw("per-org,calls-post");
    match();
    cr_assert_eq(n, 0);
}

Test(match, index_shadow_and_id_copied)
{
    ids("c", "k", "o", "1.2.3.4");
    at("POST", "/v1/calls");
    match();
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++) {
        const struct rl_policy *p = refs[i].policy;
        enum rl_scope s = p->scope;

        cr_assert_eq(p, &cfg->policies[refs[i].policy_index]);
        cr_assert_eq(refs[i].shadow, p->shadow);
        cr_assert_eq(refs[i].id, req.id[s], "id must point into the request");
        cr_assert_eq(refs[i].id_len, req.id_len[s]);
    }
    cr_assert_eq(ref_of("calls-post")->policy_index, 2);
    cr_assert(ref_of("calls-post")->shadow);
    cr_assert_eq(ref_of("per-ip")->policy_index, 6);
    cr_assert_not(ref_of("per-ip")->shadow);
    assert_lim(&ref_of("per-org")->lim, 1000, 200, 60000);
    cr_assert_str_eq(ref_of("per-org")->lim.window, "1m");
}

Test(match, override_for_the_overridden_id_only)
{
    at("GET", "/");
    ids(NULL, "acme", "acme", NULL);
    match();
    assert_lim(&ref_of("per-org")->lim, 10000, 10000, 60000);
    assert_lim(&ref_of("per-key")->lim, 100, 100, 60000); /* per-org's override only */
    ids(NULL, "vip:1", "ACME", NULL);
    match();
    assert_lim(&ref_of("per-key")->lim, 500, 50, 1000);
    cr_assert_str_eq(ref_of("per-key")->lim.window, "1s");
    assert_lim(&ref_of("reads")->lim, 10, 10, 1000);       /* same id, other policy */
    assert_lim(&ref_of("per-org")->lim, 1000, 200, 60000); /* ids compare bytewise */
    ids(NULL, "vip:", "acm", NULL);
    match();
    assert_lim(&ref_of("per-key")->lim, 100, 100, 60000);
    assert_lim(&ref_of("per-org")->lim, 1000, 200, 60000);
}

/* 32 policies: the last bit of the mask works like the first. */
Test(match, thirty_two_policies)
{
    char json[4096];
    size_t w = 0;

    w += (size_t)snprintf(json + w, sizeof(json) - w, "{\"policies\": [");
    for (int i = 0; i < RL_MAX_POLICIES; i++)
        w += (size_t)snprintf(json + w, sizeof(json) - w,
                              "%s{\"name\": \"p%d\", \"scope\": \"key\", \"limit\": %d, "
                              "\"window\": \"1s\"}",
                              i ? "," : "", i, i + 1);
    snprintf(json + w, sizeof(json) - w, "]}");
    use_config(json);
    ids(NULL, "k", NULL, NULL);
    match();
    cr_assert_eq(n, RL_MAX_POLICIES);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(refs[i].policy_index, (int)i);
        cr_assert_eq(refs[i].lim.limit, (int64_t)i + 1);
    }
    in.policy = raw("p31,p0");
    match();
    assert_names("p0,p31");
    in.policy = raw("p31");
    match();
    assert_names("p31");
}

/*----------------------------------------------------------------------------
 * rl_policy_for_id
 *--------------------------------------------------------------------------*/

TestSuite(for_id, .init = setup, .fini = teardown);

Test(for_id, every_policy_of_the_scope_match_rules_ignored)
{
    static const char id[] = "c7";

    cr_assert_eq(rl_policy_for_id(cfg, RL_SCOPE_CALLER, id, 2, refs, RL_MAX_POLICIES, &n), RL_OK);
    assert_names("calls-post,per-caller,admin");
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(refs[i].id, id);
        cr_assert_eq(refs[i].id_len, 2);
        cr_assert_eq(refs[i].policy, &cfg->policies[refs[i].policy_index]);
        cr_assert_eq(refs[i].shadow, refs[i].policy->shadow);
    }
    cr_assert_eq(rl_policy_for_id(cfg, RL_SCOPE_KEY, "k", 1, refs, RL_MAX_POLICIES, &n), RL_OK);
    assert_names("per-key,reads");
    cr_assert_eq(rl_policy_for_id(cfg, RL_SCOPE_IP, "::1", 3, refs, RL_MAX_POLICIES, &n), RL_OK);
    assert_names("per-ip");
}

Test(for_id, override_applies)
{
    cr_assert_eq(rl_policy_for_id(cfg, RL_SCOPE_ORG, "acme", 4, refs, RL_MAX_POLICIES, &n), RL_OK);
    assert_names("per-org");
    assert_lim(&refs[0].lim, 10000, 10000, 60000);
    cr_assert_eq(rl_policy_for_id(cfg, RL_SCOPE_ORG, "acme2", 5, refs, RL_MAX_POLICIES, &n), RL_OK);
    assert_lim(&refs[0].lim, 1000, 200, 60000);
}

Test(for_id, scope_without_policies_is_empty)
{
    use_config("{\"policies\": [{\"name\": \"k\", \"scope\": \"key\", \"limit\": 1, "
               "\"window\": \"1s\"}]}");
    n = 99;
    cr_assert_eq(rl_policy_for_id(cfg, RL_SCOPE_ORG, "o", 1, refs, RL_MAX_POLICIES, &n), RL_OK);
    cr_assert_eq(n, 0);
}

/*----------------------------------------------------------------------------
 * rl_escape_id
 *--------------------------------------------------------------------------*/

Test(escape, unreserved_bytes_kept)
{
    static const char id[] = "AZaz09_.~-Hello.World~v1";
    char buf[3 * sizeof(id) + 1];

    cr_assert_eq(rl_escape_id(buf, sizeof(buf), id, strlen(id)), strlen(id));
    cr_assert_str_eq(buf, id);
}

Test(escape, examples)
{
    static const struct {
        const char *id;
        size_t len;
        const char *want;
    } t[] = {
        {":", 1, "%3A"},
        {"{", 1, "%7B"},
        {"}", 1, "%7D"},
        {"%", 1, "%25"},
        {"\0", 1, "%00"},
        {"\xff", 1, "%FF"},
        {" ", 1, "%20"},
        {"*", 1, "%2A"},
        {"a:b", 3, "a%3Ab"},
        {"a\0b", 3, "a%00b"},
        {"%3A", 3, "%253A"},
        {"", 0, ""},
        {"caf\xc3\xa9", 5, "caf%C3%A9"},
        {"{user}", 6, "%7Buser%7D"},
    };
    char buf[64];

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t len = rl_escape_id(buf, sizeof(buf), t[i].id, t[i].len);

        cr_assert_str_eq(buf, t[i].want, "case %zu", i);
        cr_assert_eq(len, strlen(t[i].want), "case %zu", i);
    }
}

/* All 256 bytes: kept or "%XX" with upper-case hex, nothing else. */
Test(escape, every_byte)
{
    for (int c = 0; c < 256; c++) {
        char id = (char)c, buf[4], want[4];

        if (kept((unsigned char)c))
            snprintf(want, sizeof(want), "%c", c);
        else
            snprintf(want, sizeof(want), "%%%02X", c);
        cr_assert_eq(rl_escape_id(buf, sizeof(buf), &id, 1), strlen(want), "byte 0x%02x", c);
        cr_assert_str_eq(buf, want, "byte 0x%02x", c);
    }
}

Test(escape, longest_id_fits_three_times_its_length)
{
    char id[RL_ID_MAX], buf[3 * RL_ID_MAX + 1];

    memset(id, 0xff, sizeof(id));
    cr_assert_eq(rl_escape_id(buf, sizeof(buf), id, sizeof(id)), 3 * RL_ID_MAX);
    for (size_t i = 0; i < RL_ID_MAX; i++)
        cr_assert_eq(memcmp(buf + 3 * i, "%FF", 3), 0);
    cr_assert_eq(buf[3 * RL_ID_MAX], '\0');
}

/* Every cap: the longest whole-escape prefix that fits with its NUL, and not
 * a byte written past cap. */
Test(escape, truncation_never_splits_an_escape)
{
    static const char id[] = "ab:c{d";
    static const char full[] = "ab%3Ac%7Bd";
    static const size_t bounds[] = {0, 1, 2, 5, 6, 9, 10}; /* ends of whole escapes */
    char buf[32];

    for (size_t cap = 0; cap <= sizeof(full) + 2; cap++) {
        size_t len, want = 0;

        for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++)
            if (bounds[b] < cap) want = bounds[b];
        memset(buf, 0x5a, sizeof(buf));
        len = rl_escape_id(buf, cap, id, strlen(id));
        for (size_t i = cap; i < sizeof(buf); i++)
            cr_assert_eq(buf[i], 0x5a, "cap %zu: byte %zu written", cap, i);
        if (cap == 0) {
            cr_assert_eq(len, 0);
            continue;
        }
        cr_assert_eq(len, want, "cap %zu", cap);
        cr_assert_eq(buf[len], '\0', "cap %zu", cap);
        cr_assert_eq(memcmp(buf, full, len), 0, "cap %zu", cap);
    }
}

/*----------------------------------------------------------------------------
 * rl_policy_key
 *--------------------------------------------------------------------------*/

TestSuite(key, .init = setup, .fini = teardown);

Test(key, exact_strings)
{
    char buf[RL_KEY_MAX];

    key_of(buf, "per-key", "a:b", 3);
    cr_assert_str_eq(buf, "rl:per-key:key:a%3Ab");
    key_of(buf, "per-org", "acme", 4);
    cr_assert_str_eq(buf, "rl:per-org:org:acme");
    key_of(buf, "calls-post", "{user}", 6);
    cr_assert_str_eq(buf, "rl:calls-post:caller:%7Buser%7D");
    key_of(buf, "per-ip", "2001:db8::1", 11);
    cr_assert_str_eq(buf, "rl:per-ip:ip:2001%3Adb8%3A%3A1");
    key_of(buf, "per-key", "a\0%", 3);
    cr_assert_str_eq(buf, "rl:per-key:key:a%00%25");
}

Test(key, prefix_from_the_config)
{
    char buf[RL_KEY_MAX];

    use_config("{\"redis\": {\"url\": \"redis://127.0.0.1:6379/0\", \"prefix\": \"app1:rl:\"}, "
               "\"policies\": [{\"name\": \"per-key\", \"scope\": \"key\", \"limit\": 1, "
               "\"window\": \"1s\"}]}");
    key_of(buf, "per-key", "x", 1);
    cr_assert_str_eq(buf, "app1:rl:per-key:key:x");
}

/* The match refs feed the key directly: id and policy come from the request. */
Test(key, from_matched_refs)
{
    char buf[RL_KEY_MAX];

    ids("c:1", "k", NULL, NULL);
    at("POST", "/v1/calls");
    match();
    assert_names("per-key,calls-post,per-caller");
    rl_policy_key(buf, sizeof(buf), cfg->redis_prefix, &refs[1]);
    cr_assert_str_eq(buf, "rl:calls-post:caller:c%3A1");
}

Test(key, cap_too_small_for_the_fixed_part_is_zero)
{
    char buf[RL_KEY_MAX];
    const struct rl_policy *p = rl_config_policy(cfg, "per-key", 7);
    struct rl_bucket_ref ref = {.policy = p, .policy_index = 0, .id = "x", .id_len = 1};

    cr_assert_eq(rl_policy_key(buf, strlen("rl:per-key:key:"), "rl:", &ref), 0);
    cr_assert_eq(rl_policy_key(buf, strlen("rl:per-key:key:") + 2, "rl:", &ref), 16);
    cr_assert_str_eq(buf, "rl:per-key:key:x");
}

/* Longest prefix (32), longest name (63), longest scope, 128 escaped bytes. */
Test(key, longest_key_fits_rl_key_max)
{
    char json[512], name[RL_NAME_MAX], prefix[33], id[RL_ID_MAX], buf[RL_KEY_MAX];
    size_t len;

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    memset(prefix, 'p', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = '\0';
    snprintf(json, sizeof(json),
             "{\"redis\": {\"url\": \"redis://127.0.0.1:6379/0\", \"prefix\": \"%s\"}, "
             "\"policies\": [{\"name\": \"%s\", \"scope\": \"caller\", \"limit\": 1, "
             "\"window\": \"1s\"}]}",
             prefix, name);
    use_config(json);
    memset(id, '{', sizeof(id));
    len = key_of(buf, name, id, sizeof(id));
    cr_assert_eq(len, 32 + 63 + strlen(":caller:") + 3 * RL_ID_MAX);
}

/* The premise of injectivity: a policy name never holds ':' (nor '%', '{'). */
Test(key, policy_names_cannot_hold_separators)
{
    static const char *const bad[] = {"a:b", "a%3Ab", "{a}", "a b", ""};
    char json[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rl_config *c = NULL;
        struct rl_error e = {0};

        snprintf(json, sizeof(json),
                 "{\"policies\": [{\"name\": \"%s\", \"scope\": \"key\", \"limit\": 1, "
                 "\"window\": \"1s\"}]}",
                 bad[i]);
        cr_assert_eq(rl_config_parse(json, strlen(json), NULL, &c, &e), RL_EINVAL, "%s", bad[i]);
        cr_assert_str_eq(e.path, "policies[0].name");
    }
}

Test(key, hand_picked_triples_give_distinct_keys)
{
    static const struct {
        const char *policy;
        const char *id;
        size_t len;
    } t[] = {
        {"a", "a:b", 3},      {"a", "a%3Ab", 5},   {"a", "a%3ab", 5},   {"a", "%", 1},
        {"a", "%25", 3},      {"a", "{x}", 3},     {"a", "%7Bx%7D", 7}, {"a", "a\0", 2},
        {"a", "a", 1},        {"a", "", 0},        {"a", "%00", 3},     {"a", "\0", 1},
        {"a", "\xff", 1},     {"a", "%FF", 3},     {"a", "key:x", 5},   {"a", "x", 1},
        {"a.b", "x", 1},      {"org", "x", 1},     {"key", "x", 1},     {"a-b", "x", 1},
        {"a_b", "x", 1},      {"ip", "x", 1},      {"caller", "x", 1},  {"a", "b:key:x", 7},
        {"a", ".b:key:x", 8}, {"key", "org:x", 5}, {"org", "key:x", 5}, {"a", "b", 1},
        {"a.b", "", 0},       {"a", ".b", 2},      {"a", "%2Eb", 4},    {"ip", "caller:x", 8},
    };
    enum { N = sizeof(t) / sizeof(t[0]) };
    static char keys[N][RL_KEY_MAX];

    use_config(keys_json);
    for (size_t i = 0; i < N; i++) {
        size_t len = key_of(keys[i], t[i].policy, t[i].id, t[i].len);

        assert_key_is_safe(keys[i], len);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(keys[i], keys[j], "cases %zu and %zu: %s", j, i, keys[i]);
    }
}

static int by_string(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Exhaustive for short ids: every id of 0, 1 or 2 bytes, one policy. */
Test(key, all_ids_up_to_two_bytes_distinct)
{
    enum { N = 1 + 256 + 256 * 256, W = 32 };
    char *keys = malloc((size_t)N * W);
    size_t k = 0;

    cr_assert_not_null(keys);
    use_config(keys_json);
    for (int len = 0; len <= 2; len++)
        for (int v = 0; v < (len == 0 ? 1 : len == 1 ? 256 : 65536); v++) {
            char id[2] = {(char)(v & 0xff), (char)(v >> 8)}, buf[RL_KEY_MAX];
            size_t klen = key_of(buf, "a", id, (size_t)len);

            assert_key_is_safe(buf, klen);
            cr_assert_lt(klen, W);
            memcpy(keys + k++ * W, buf, klen + 1);
        }
    qsort(keys, N, W, by_string);
    for (size_t i = 1; i < N; i++)
        cr_assert_str_neq(keys + (i - 1) * W, keys + i * W);
    free(keys);
}

struct triple {
    size_t policy; /* index in keys_json */
    char id[RL_ID_MAX];
    size_t id_len;
    char key[RL_KEY_MAX];
};

static int triple_by_key(const void *a, const void *b)
{
    return strcmp(((const struct triple *)a)->key, ((const struct triple *)b)->key);
}

/* Random ids of 0..128 bytes, half of their bytes from the ones that matter
 * (separators, escapes, hex digits, NUL, 0xff), under every policy: equal keys
 * only ever come from equal (policy, id). */
Test(key, random_triples_never_share_a_key)
{
    static const char tricky[] = "ab3AF:%{}\0\xff.-_~";
    enum { IDS = 1500 };
    size_t np, total, k = 0;
    struct triple *t;

    use_config(keys_json);
    np = cfg->npolicies;
    total = IDS * np;
    t = calloc(total, sizeof(*t));
    cr_assert_not_null(t);
    for (size_t i = 0; i < IDS; i++) {
        char id[RL_ID_MAX];
        size_t len = (size_t)(rnd() % (RL_ID_MAX + 1));

        if (i < 300) len %= 4; /* many short ids: where collisions would show */
        for (size_t b = 0; b < len; b++)
            id[b] = rnd() & 1 ? tricky[rnd() % (sizeof(tricky) - 1)] : (char)rnd();
        for (size_t p = 0; p < np; p++, k++) {
            t[k].policy = p;
            memcpy(t[k].id, id, len);
            t[k].id_len = len;
            assert_key_is_safe(t[k].key, key_of(t[k].key, cfg->policies[p].name, id, len));
        }
    }
    qsort(t, total, sizeof(*t), triple_by_key);
    for (size_t i = 1; i < total; i++) {
        if (strcmp(t[i - 1].key, t[i].key) != 0) continue;
        cr_assert_eq(t[i - 1].policy, t[i].policy, "%s", t[i].key);
        cr_assert_eq(t[i - 1].id_len, t[i].id_len, "%s", t[i].key);
        cr_assert_eq(memcmp(t[i - 1].id, t[i].id, t[i].id_len), 0, "%s", t[i].key);
    }
    free(t);
}
