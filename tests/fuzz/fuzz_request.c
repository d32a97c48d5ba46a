/* fuzz_request.c -- libFuzzer harness for one check request: rl_request_build
 * (request.c), then rl_policy_match and rl_policy_key (policy.c).
 * Feeds: byte 0 picks one of two fixed configs and the id seed; bytes 1-3 are
 * a mask (bit i: field i present even when empty; a non-empty field is always
 * present); the rest is split into the fields of struct rl_request_input at
 * 0xff bytes, 0xfe escaping the next byte, so a value may hold any byte (NULs
 * included). Each value gets its own exact-size heap buffer, so ASan sees any
 * read past its length.
 * Checks: request_id is 1..128 bytes of 0x21-0x7e (on error too) and echoes a
 * valid X-Request-ID; a failure is a 400/404 naming its field; on success the
 * ids, method, path, cost and policy filter are what the input allows, every
 * matched bucket (and every bucket of rl_policy_for_id) fits its policy, and
 * its key is < RL_KEY_MAX bytes of 0x21-0x7e without '{' or '}', and decodes
 * back to exactly its id; the idempotency scope depends on the ids only. */
#include "fuzz.h"
#include "decide.h"
#include "policy.h"

#include <ctype.h>

enum {
    F_PARAM_ID,                   /* 4: caller=, key=, org=, ip= */
    F_HEADER_ID = F_PARAM_ID + 4, /* 4: the identity headers, X-Real-IP */
    F_XFF = F_HEADER_ID + 4,      /* X-Forwarded-For */
    F_PMETHOD,
    F_PPATH,
    F_OMETHOD,
    F_OURI,
    F_HMETHOD,
    F_COST,
    F_POLICY,
    F_ENVELOPE,
    F_IDEM,
    F_RID,
    F_COUNT
};

/* Match rules, overrides, shadow, every scope, an odd (but valid) prefix. */
static const char rl_fuzz_cfg_a[] =
    "{\"redis\":{\"url\":\"redis://h:1\",\"prefix\":\"rl:~!@#$%^&*()_+=-|;'<>?,./`abcd\"},"
    "\"identity\":{\"caller\":\"X-Caller-Id\",\"key\":\"X-Api-Key\",\"org\":\"X-Org-Id\"},"
    "\"policies\":["
    "{\"name\":\"per-key\",\"scope\":\"key\",\"limit\":100,\"window\":\"60s\"},"
    "{\"name\":\"per-org\",\"scope\":\"org\",\"limit\":1000,\"window\":\"1m\",\"burst\":200,"
    "\"envelope\":\"error\"},"
    "{\"name\":\"calls-post\",\"scope\":\"caller\",\"limit\":5,\"window\":\"1s\",\"match\":"
    "{\"method\":\"post\",\"path_prefix\":\"/v1/calls\"},\"shadow\":true},"
    "{\"name\":\"get-any\",\"scope\":\"caller\",\"limit\":1,\"window\":\"1d\",\"match\":"
    "{\"method\":\"GET\"}},"
    "{\"name\":\"per-ip\",\"scope\":\"ip\",\"limit\":1000000000,\"window\":\"1ms\"},"
    "{\"name\":\"v2\",\"scope\":\"key\",\"limit\":3,\"window\":\"250ms\",\"match\":"
    "{\"path_prefix\":\"/v2/\"}}],"
    "\"overrides\":[{\"policy\":\"per-org\",\"id\":\"acme\",\"limit\":10000},"
    "{\"policy\":\"per-key\",\"id\":\"a:b{c}%41 \\u00fc\",\"burst\":7},"
    "{\"policy\":\"per-ip\",\"id\":\"10.0.0.1\",\"window\":\"1h\",\"limit\":2}]}";

static struct rl_config *rl_fuzz_cfg[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rl_fuzz_cfg[0] = rl_fuzz_config(rl_fuzz_cfg_a);
    rl_fuzz_cfg[1] = rl_fuzz_config_max();
    return 0;
}

/* Split data into the F_COUNT fields (see the file comment). */
static void rl_fuzz_fields(const uint8_t *data, size_t size, uint32_t mask, struct rl_raw *f)
{
    char *tmp = malloc(size + 1);
    size_t i = 0;

    for (int k = 0; k < F_COUNT && tmp != NULL; k++) {
        size_t len = 0;

        for (; i < size && data[i] != 0xff; i++)
            tmp[len++] = (char)(data[i] == 0xfe && i + 1 < size ? data[++i] : data[i]);
        i++; /* the separator */
        f[k].v = NULL;
        f[k].len = len;
        if ((len > 0 || (mask >> k & 1)) && (f[k].v = malloc(len ? len : 1)) != NULL)
            memcpy((char *)f[k].v, tmp, len);
    }
    free(tmp);
}

/* The key decodes back to "<prefix><name>:<scope>:" + exactly the id. */
static void rl_fuzz_check_key(const struct rl_config *c, const struct rl_bucket_ref *ref)
{
    char key[RL_KEY_MAX + 16], head[256];
    size_t len = rl_policy_key(key, RL_KEY_MAX, c->redis_prefix, ref), hl, d = 0;

    RL_FUZZ_CHECK(len > 0 && len < RL_KEY_MAX && len == strlen(key));
    RL_FUZZ_CHECK(!rl_fuzz_outside(key, len, 0x21, 0x7e) && !strpbrk(key, "{}"));
    hl = (size_t)snprintf(head, sizeof(head), "%s%s:%s:", c->redis_prefix, ref->policy->name,
                          rl_scope_name(ref->policy->scope));
    RL_FUZZ_CHECK(hl < len && memcmp(key, head, hl) == 0);
    for (size_t i = hl; i < len; i++, d++) {
        static const char hex[] = "0123456789ABCDEF";
        unsigned char x = (unsigned char)key[i];
        bool keep = isalnum(x) || (x != 0 && strchr("_.~-", x) != NULL);

        if (x == '%') { /* %XX, upper-case hex, and only for a byte that is not kept */
            RL_FUZZ_CHECK(i + 2 < len && strchr(hex, key[i + 1]) && strchr(hex, key[i + 2]));
            x = (unsigned char)((strchr(hex, key[i + 1]) - hex) << 4 |
                                (strchr(hex, key[i + 2]) - hex));
            keep = isalnum(x) || (x != 0 && strchr("_.~-", x) != NULL);
            RL_FUZZ_CHECK(!keep);
            i += 2;
        } else {
            RL_FUZZ_CHECK(keep);
        }
        RL_FUZZ_CHECK(d < ref->id_len && (unsigned char)ref->id[d] == x);
    }
    RL_FUZZ_CHECK(d == ref->id_len);
}

/* A built request against the raw input it came from. */
static void rl_fuzz_check_request(const struct rl_config *c, const struct rl_request *r,
                                  const struct rl_raw *f)
{
    const struct rl_raw *m = f[F_PMETHOD].len   ? &f[F_PMETHOD]
                             : f[F_OMETHOD].len ? &f[F_OMETHOD]
                                                : &f[F_HMETHOD];
    struct rl_bucket_ref refs[RL_MAX_POLICIES];
    struct rl_request other;
    struct rl_error err;
    size_t n = 0, k = 0;

    /* the method is the whole input value, upper case (a NUL must not cut it) */
    RL_FUZZ_CHECK(strlen(r->method) == m->len && strlen(r->method) < sizeof(r->method));
    for (size_t i = 0; i < m->len; i++)
        RL_FUZZ_CHECK(r->method[i] == toupper((unsigned char)m->v[i]));
    RL_FUZZ_CHECK(strnlen(r->path, RL_PATH_MAX) < RL_PATH_MAX && !strchr(r->path, 0x7f) &&
                  !rl_fuzz_outside(r->path, strlen(r->path), 0x20, 0xff));
    RL_FUZZ_CHECK(r->cost >= 1 && r->cost <= 1000000000);
    RL_FUZZ_CHECK(r->envelope >= -1 && r->envelope < RL_ENV_COUNT);
    RL_FUZZ_CHECK(strlen(r->idem_key) == (f[F_IDEM].v ? f[F_IDEM].len : 0));
    RL_FUZZ_CHECK(!r->has_policy_filter || c->npolicies == 32 ||
                  r->policy_mask >> c->npolicies == 0);
    for (int s = 0; s < RL_SCOPE_COUNT; s++)
        RL_FUZZ_CHECK(!r->has_id[s] || (r->id_len[s] >= 1 && r->id_len[s] <= RL_ID_MAX &&
                                        r->id[s][r->id_len[s]] == '\0' &&
                                        !rl_fuzz_outside(r->id[s], r->id_len[s], 0x20, 0xff) &&
                                        !memchr(r->id[s], 0x7f, r->id_len[s])));
    RL_FUZZ_CHECK(rl_policy_match(c, r, refs, RL_MAX_POLICIES, &n) == RL_OK);
    for (size_t i = 0; i < c->npolicies; i++) { /* exactly those that apply, in order */
        const struct rl_policy *p = &c->policies[i];
        const struct rl_bucket_ref *ref = &refs[k];
        bool applies =
            r->has_id[p->scope] && (r->policy_mask >> i & 1) &&
            (!p->match_method || strcmp(p->match_method, r->method) == 0) &&
            (!p->match_prefix || strncmp(r->path, p->match_prefix, strlen(p->match_prefix)) == 0);

        if (!applies) continue;
        RL_FUZZ_CHECK(k++ < n && ref->policy == p && ref->policy_index == (int)i);
        RL_FUZZ_CHECK(ref->id == r->id[p->scope] && ref->id_len == r->id_len[p->scope]);
        RL_FUZZ_CHECK(
            ref->shadow == p->shadow &&
            !memcmp(&ref->lim, rl_policy_limit(p, ref->id, ref->id_len), sizeof(ref->lim)));
        rl_fuzz_check_key(c, ref);
    }
    RL_FUZZ_CHECK(k == n);
    (void)rl_decide_check_cost(refs, n, r->cost, &err);
    for (int s = 0; s < RL_SCOPE_COUNT; s++) { /* reads and resets of one id */
        if (!r->has_id[s]) continue;
        RL_FUZZ_CHECK(rl_policy_for_id(c, (enum rl_scope)s, r->id[s], r->id_len[s], refs,
                                       RL_MAX_POLICIES, &n) == RL_OK);
        for (size_t i = 0; i < n; i++)
            rl_fuzz_check_key(c, &refs[i]);
    }
    for (size_t i = 0; i < c->npolicies; i++)
        RL_FUZZ_CHECK((unsigned)rl_request_envelope(r, &c->policies[i], c) < RL_ENV_COUNT);
    /* the Idempotency-Key namespace depends on the identities only */
    other = *r;
    other.method[0] ^= 1, other.path[0] ^= 1, other.cost++, other.policy_mask ^= 1;
    RL_FUZZ_CHECK(rl_request_idem_scope(&other) == rl_request_idem_scope(r));
    (void)rl_request_fingerprint(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rl_raw f[F_COUNT];
    struct rl_request_input in;
    struct rl_request r;
    struct rl_error err;
    const struct rl_config *c;
    size_t rid;
    int rc;

    if (size < 4) return 0;
    c = rl_fuzz_cfg[data[0] & 1];
    rl_fuzz_fields(data + 4, size - 4, (uint32_t)data[1] | data[2] << 8 | data[3] << 16, f);
    memset(&in, 0, sizeof(in));
    memcpy(in.param_id, &f[F_PARAM_ID], sizeof(in.param_id));
    memcpy(in.header_id, &f[F_HEADER_ID], sizeof(in.header_id));
    in.forwarded_for = f[F_XFF];
    in.param_method = f[F_PMETHOD], in.param_path = f[F_PPATH];
    in.orig_method = f[F_OMETHOD], in.orig_uri = f[F_OURI], in.http_method = f[F_HMETHOD];
    in.cost = f[F_COST], in.policy = f[F_POLICY], in.envelope = f[F_ENVELOPE];
    in.idem_key = f[F_IDEM], in.request_id = f[F_RID];

    memset(&err, 0xaa, sizeof(err));
    rc = rl_request_build(&r, &in, c, data[0], &err);
    /* request_id: always set, printable, and the caller's when that was valid */
    rid = strnlen(r.request_id, sizeof(r.request_id));
    RL_FUZZ_CHECK(rid >= 1 && rid <= RL_ID_MAX && !rl_fuzz_outside(r.request_id, rid, 0x21, 0x7e));
    if (f[F_RID].len >= 1 && f[F_RID].len <= RL_ID_MAX &&
        !rl_fuzz_outside(f[F_RID].v, f[F_RID].len, 0x21, 0x7e))
        RL_FUZZ_CHECK(rid == f[F_RID].len && memcmp(r.request_id, f[F_RID].v, rid) == 0);
    RL_FUZZ_CHECK(r.envelope >= -1 && r.envelope < RL_ENV_COUNT);
    if (rc == RL_OK) {
        rl_fuzz_check_request(c, &r, f);
    } else {
        rl_fuzz_check_error(&err, rc);
        RL_FUZZ_CHECK(err.http_status == 400 || err.http_status == 404);
        RL_FUZZ_CHECK(err.path[0] != '\0'); /* every 400 names its field */
    }
    for (int k = 0; k < F_COUNT; k++)
        free((char *)f[k].v);
    return 0;
}
