/* fuzz_config.c -- libFuzzer harness for the policy file parser (config.c).
 * Feeds: the whole input as JSON text to rl_config_parse (with its length: NULs
 * and bytes past a NUL are seen), and a NUL-terminated copy of it to
 * rl_window_parse, rl_config_set_redis_url and rl_config_set_listen (the last
 * two on a fresh rl_config_default()).
 * Checks: a parsed config is complete and valid (names, limits, the 2^52 tick
 * bound, sorted overrides that rl_policy_limit finds, lookups by name); an
 * error has a code and a NUL-terminated, non-empty message and a path that
 * fits; a window is 1 ms..365 d and its text fits rl_limit.window; nothing
 * leaks (ASan's leak check runs after every input). */
#include "fuzz.h"

#include <stdint.h>

#define RL_FUZZ_WINDOW_MAX_MS (365LL * 86400 * 1000)

/* One limit of a loaded config: in range, its window text parses back. */
static void rl_fuzz_check_limit(const struct rl_limit *l)
{
    int64_t ms = 0;

    RL_FUZZ_CHECK(l->limit >= 1 && l->limit <= 1000000000 && l->burst >= 1);
    RL_FUZZ_CHECK(l->window_ms >= 1 && l->window_ms <= RL_FUZZ_WINDOW_MAX_MS);
    RL_FUZZ_CHECK(l->burst < ((int64_t)1 << 52) / l->window_ms);
    RL_FUZZ_CHECK(memchr(l->window, '\0', sizeof(l->window)) != NULL);
    RL_FUZZ_CHECK(rl_window_parse(l->window, &ms) == RL_OK && ms == l->window_ms);
}

static void rl_fuzz_check_policy(const struct rl_config *c, const struct rl_policy *p)
{
    size_t nlen = strnlen(p->name, sizeof(p->name));

    RL_FUZZ_CHECK(nlen >= 1 && nlen < sizeof(p->name));
    RL_FUZZ_CHECK(strspn(p->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789_.-") == nlen);
    RL_FUZZ_CHECK(rl_config_policy(c, p->name, nlen) == p);
    RL_FUZZ_CHECK((unsigned)p->scope < RL_SCOPE_COUNT);
    RL_FUZZ_CHECK(p->envelope >= -1 && p->envelope < RL_ENV_COUNT);
    RL_FUZZ_CHECK(p->match_prefix == NULL || p->match_prefix[0] == '/');
    rl_fuzz_check_limit(&p->lim);
    for (size_t j = 0; j < p->noverrides; j++) {
        const struct rl_override *o = &p->overrides[j], *prev = o - 1;

        RL_FUZZ_CHECK(o->id_len >= 1 && o->id_len <= RL_ID_MAX && o->id[o->id_len] == '\0');
        RL_FUZZ_CHECK(!rl_fuzz_outside(o->id, o->id_len, 0x20, 0xff) &&
                      memchr(o->id, 0x7f, o->id_len) == NULL);
        /* strictly sorted by (id_len, id): the binary search depends on it */
        RL_FUZZ_CHECK(j == 0 || prev->id_len < o->id_len ||
                      (prev->id_len == o->id_len && memcmp(prev->id, o->id, o->id_len) < 0));
        RL_FUZZ_CHECK(rl_policy_limit(p, o->id, o->id_len) == &o->lim);
        rl_fuzz_check_limit(&o->lim);
    }
    RL_FUZZ_CHECK(rl_policy_limit(p, "", 0) == &p->lim); /* ids are never empty */
    RL_FUZZ_CHECK(rl_policy_limit(p, "acme", 4) != NULL);
}

static void rl_fuzz_check_config(const struct rl_config *c)
{
    static const char *const names[] = {"per-key", "per-org", "a", "", "per-key\0x"};

    RL_FUZZ_CHECK(c->npolicies <= RL_MAX_POLICIES && c->refs == 1);
    RL_FUZZ_CHECK(c->listen_port >= 1 && memchr(c->listen_host, '\0', 64) != NULL);
    RL_FUZZ_CHECK(strlen(c->redis_prefix) >= 1 && strlen(c->redis_prefix) <= 32);
    RL_FUZZ_CHECK(!rl_fuzz_outside(c->redis_prefix, strlen(c->redis_prefix), 0x21, 0x7e));
    for (int s = 0; s < RL_SCOPE_COUNT; s++)
        RL_FUZZ_CHECK(c->id_header[s][0] != '\0' && memchr(c->id_header[s], '\0', 64) != NULL);
    for (size_t i = 0; i < c->npolicies; i++)
        rl_fuzz_check_policy(c, &c->policies[i]);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len = i == 4 ? 9 : strlen(names[i]);
        const struct rl_policy *p = rl_config_policy(c, names[i], len);

        RL_FUZZ_CHECK(p == NULL || (strlen(p->name) == len && memcmp(p->name, names[i], len) == 0));
    }
}

/* The CLI overrides and the window parser on one C string. */
static void rl_fuzz_strings(const char *s)
{
    struct rl_config *c = rl_config_default();
    struct rl_error err;
    int64_t ms = 0;
    int rc;

    if (rl_window_parse(s, &ms) == RL_OK)
        RL_FUZZ_CHECK(ms >= 1 && ms <= RL_FUZZ_WINDOW_MAX_MS && strlen(s) < 24);
    RL_FUZZ_CHECK(c != NULL);
    memset(&err, 0xaa, sizeof(err));
    if ((rc = rl_config_set_redis_url(c, s, &err)) != RL_OK)
        rl_fuzz_check_error(&err, rc);
    else if (c->redis_enabled)
        RL_FUZZ_CHECK(c->redis_unix != NULL ? c->redis_unix[0] == '/'
                                            : c->redis_port >= 1 && c->redis_host[0] != '\0' &&
                                                  memchr(c->redis_host, '\0', 256) != NULL);
    memset(&err, 0xaa, sizeof(err));
    if ((rc = rl_config_set_listen(c, s, &err)) != RL_OK)
        rl_fuzz_check_error(&err, rc);
    else
        RL_FUZZ_CHECK(c->listen_port >= 1 && c->listen_host[0] != '\0');
    rl_config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rl_config *c = NULL;
    struct rl_error err;
    char *s;
    int rc;

    memset(&err, 0xaa, sizeof(err));
    rc = rl_config_parse((const char *)data, size, "fuzz.json", &c, &err);
    if (rc == RL_OK) {
        rl_fuzz_check_config(c);
        rl_config_free(c);
    } else {
        rl_fuzz_check_error(&err, rc);
        RL_FUZZ_CHECK(strncmp(err.message, "fuzz.json: ", 11) == 0); /* names the file */
    }
    if ((s = malloc(size + 1)) == NULL) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    rl_fuzz_strings(s);
    free(s);
    return 0;
}
